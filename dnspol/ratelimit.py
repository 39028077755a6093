"""Response-rate limiting (RRL): the stage between a UDP answer and its ``sendto``.

A spoofed source can make an authoritative server send large answers to a
victim. RRL counts the answers each client *prefix* gets per *kind of answer*
(the same name and type; NXDOMAIN per zone; errors together) and, over the
configured rate, drops them, letting every ``slip``-th one go out truncated
(TC=1, no records) so that a real client behind the prefix asks again over
TCP, which is never limited. The semantics are BIND's ``rate-limit`` and Knot's
``mod-rrl``:

* each (prefix, kind) has a balance of answers, full (= its rate) when first
  seen, credited with ``rate`` per second up to ``rate``, debited by one per
  answer; an answer that takes it below zero is limited, and it never falls
  below ``-window * rate`` (so a flood is remembered for ``window`` seconds);
* of the limited answers, the first and then every ``slip``-th slips (0: none,
  1: all);
* exempt clients, clients that sent a valid server cookie (RFC 7873: their
  address is proven), and every TCP answer are never limited; ``log_only``
  counts and logs what would be limited but sends everything.

The stage reads only the answer's bytes (rcode, flags, counts, the question
and the SOA owner of a negative answer), so it sits after the handler without
knowing how the answer was made.

Several workers: each worker keeps its own table, credits its balances with
``1/N`` of each rate (``share``) and lets a balance hold up to the whole rate
(bursts that land on one worker are not cut). Every worker reads the same shared
UDP socket, so a client's packets spread over the workers at random and the
server as a whole allows about the configured rate (the test compares the
reflected bytes with BIND's).

This module is the one declaration of the ``server.rate_limit`` settings
(``SETTINGS``): the config reader, the snapshot and ``dnspol schema`` use it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from dnspol.policy.prefixes import PrefixSet
from dnspol.policy.yamlnodes import Node, Reader

log = logging.getLogger("dnspol.ratelimit")


@dataclass(frozen=True)
class Setting:
    key: str
    kind: type  # int, float or bool
    default: object  # None for the per-kind rates: "as responses_per_second"
    minimum: float | None
    maximum: float | None
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("responses_per_second", int, 0, 0, 1_000_000,
            "answers per second to one client prefix for one name and type; 0: off"),
    Setting("nodata_per_second", int, None, 0, 1_000_000,
            "NODATA answers per second (default: responses_per_second)"),
    Setting("nxdomains_per_second", int, None, 0, 1_000_000,
            "NXDOMAIN answers per second, per zone (default: responses_per_second)"),
    Setting("referrals_per_second", int, None, 0, 1_000_000,
            "referrals per second (default: responses_per_second)"),
    Setting("errors_per_second", int, None, 0, 1_000_000,
            "REFUSED, FORMERR, SERVFAIL and other errors per second, all together "
            "(default: responses_per_second)"),
    Setting("window", int, 15, 1, 3600,
            "seconds over which a flood is remembered"),
    Setting("slip", int, 2, 0, 10,
            "every n-th limited answer goes out truncated (TC=1); 0: none, 1: all"),
    Setting("ipv4_prefix_length", int, 24, 0, 32, "IPv4 clients are counted per this prefix"),
    Setting("ipv6_prefix_length", int, 56, 0, 128, "IPv6 clients are counted per this prefix"),
    Setting("log_only", bool, False, None, None,
            "count and log what would be limited, but send every answer"),
    Setting("max_entries", int, 100_000, 1_000, 10_000_000,
            "the most (prefix, kind) entries kept per worker; the least recently used go"),
)  # fmt: skip
KEYS = tuple(s.key for s in SETTINGS) + ("exempt_clients",)
PER_KIND = ("nodata_per_second", "nxdomains_per_second", "referrals_per_second",
            "errors_per_second")  # fmt: skip


@dataclass(frozen=True)
class RateLimit:
    """The compiled ``server.rate_limit`` section."""

    responses_per_second: int = 0
    nodata_per_second: int = 0
    nxdomains_per_second: int = 0
    referrals_per_second: int = 0
    errors_per_second: int = 0
    window: int = 15
    slip: int = 2
    ipv4_prefix_length: int = 24
    ipv6_prefix_length: int = 56
    log_only: bool = False
    max_entries: int = 100_000
    exempt_clients: PrefixSet = field(default_factory=PrefixSet)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, key) > 0 for key in ("responses_per_second", *PER_KIND))


def read_config(
    node: Node,
    reader: Reader,
    compile_exempt: Callable[[Node], PrefixSet | None],
) -> RateLimit | None:
    """``server.rate_limit`` → settings, every problem reported with file:line."""
    entries = reader.mapping(node, "rate_limit", KEYS)
    if entries is None:
        return None
    values: dict[str, object] = {}
    for setting in SETTINGS:
        item = entries.get(setting.key)
        if item is None:
            continue
        what = f"rate_limit.{setting.key}"
        if setting.kind is bool:
            value = reader.boolean(item, what)
        else:
            value = reader.integer(
                item, what, minimum=int(setting.minimum), maximum=int(setting.maximum)
            )
        if value is not None:
            values[setting.key] = value
    for key in PER_KIND:  # default: as responses_per_second
        values.setdefault(key, values.get("responses_per_second", 0))
    if "exempt_clients" in entries:
        exempt = compile_exempt(entries["exempt_clients"])
        if exempt is not None:
            values["exempt_clients"] = exempt
    return RateLimit(**values)  # type: ignore[arg-type]


def json_schema() -> dict:
    """The ``server.rate_limit`` part of ``dnspol schema``."""
    props: dict[str, dict] = {}
    for s in SETTINGS:
        if s.kind is bool:
            props[s.key] = {"type": "boolean", "default": s.default, "description": s.help}
            continue
        props[s.key] = {"type": "integer", "minimum": s.minimum, "maximum": s.maximum,
                        "description": s.help}  # fmt: skip
        if s.default is not None:
            props[s.key]["default"] = s.default
    props["exempt_clients"] = {
        "type": "array",
        "items": {"type": "string"},
        "description": "subnet names or CIDRs whose answers are never limited",
    }
    return {"type": "object", "additionalProperties": False, "properties": props}


class Verdict(Enum):
    SEND = "send"
    DROP = "drop"
    SLIP = "slip"


# kinds of answer, each with its own rate (the keys of ``RateLimit``), and their places
RESPONSE, NODATA, NXDOMAIN, REFERRAL, ERROR = KINDS = (
    "responses_per_second", "nodata_per_second", "nxdomains_per_second",
    "referrals_per_second", "errors_per_second",
)  # fmt: skip
RESPONSE_AT, NODATA_AT, NXDOMAIN_AT, REFERRAL_AT, ERROR_AT = range(5)
TC = 0x02  # in the first flags byte
AA = 0x04


class Limiter:
    """One worker's table of balances; ``apply`` is the stage (every UDP answer passes
    through it, so it reads a few header bytes and one dict entry, nothing more)."""

    def __init__(
        self,
        config: RateLimit,
        share: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        counts: dict | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        # per kind of answer (the order of KINDS): this worker's part of the rate is
        # what its balances are credited with; a balance holds up to the whole rate, so
        # a client near the rate whose queries reach one worker in a burst is not cut
        self.rates = tuple(getattr(config, kind) * share for kind in KINDS)
        self.caps = tuple(float(getattr(config, kind)) for kind in KINDS)
        # (prefix, kind, name) -> [balance, last seen, slip count]
        self.entries: OrderedDict[tuple, list] = OrderedDict()
        # action -> answers (the metrics' dict when given: ``Stats.rate_limited``)
        self.counts = counts if counts is not None else {}
        self._v4_shift = 32 - config.ipv4_prefix_length
        self._v6_shift = 128 - config.ipv6_prefix_length
        self._v4_24 = config.ipv4_prefix_length == 24  # the default: a prefix is text
        self._last_log = 0.0
        # the first look (``_uncounted``): answers per prefix in this second,
        # and busy prefixes, when they last were (at most ``max_entries`` of them)
        self._free = min((rate for rate in self.rates if rate > 0), default=0.0)
        self._second = float("-inf")
        self._answers: dict = {}
        self._hot: OrderedDict = OrderedDict()

    def apply(self, reply: bytes, client: str, query: bytes = b"") -> bytes | None:
        """The answer to send: ``reply`` itself, its truncated form, or None (drop).

        A client that sent back a valid server cookie is not spoofed: never limited.
        """
        prefix = self._prefix(client)
        if self._free >= 1 and self._uncounted(prefix):
            return reply
        over = self._debit(reply, prefix)
        if over is None:
            return reply
        return self._limited_answer(over, reply, client, query)

    def _limited_answer(self, key: tuple, reply: bytes, client: str, query: bytes) -> bytes | None:
        """An answer over its balance: sent (exempt, cookie, log_only), slipped or dropped."""
        verdict = self._limited(key, client)
        if verdict is Verdict.SEND or proven_by_cookie(reply, query):
            return reply
        action = "would_" + verdict.value if self.config.log_only else verdict.value
        self.counts[action] = self.counts.get(action, 0) + 1
        if self.config.log_only:
            return reply
        return slipped(reply) if verdict is Verdict.SLIP else None

    def _uncounted(self, prefix: str | tuple) -> bool:
        """The cheap first look, so that a legitimate load pays little: a prefix that
        is not *busy* gets its first answers of each second uncounted, up to the
        smallest rate, since no balance (each counts a subset of the prefix's answers)
        can go below zero on them. A prefix that goes over that in a second is busy
        for ``window`` seconds from then, and every one of its answers is counted. The
        one difference from counting all: a prefix's first ``rate`` answers before it
        turns busy are not in its balances (a flood's first second gets a few more
        whole answers, once)."""
        now = self.clock()
        busy_since = self._hot.get(prefix)
        if busy_since is not None:
            if now - busy_since <= self.config.window:
                self._hot[prefix] = now
                return False
            del self._hot[prefix]
        if now - self._second >= 1.0:
            self._second, self._answers = now, {}  # bounded: the prefixes of one second
        count = self._answers.get(prefix, 0) + 1
        self._answers[prefix] = count
        if count <= self._free:
            return True
        self._mark_hot(prefix, now)
        return False

    def _mark_hot(self, prefix: str | tuple, now: float) -> None:
        hot = self._hot
        hot[prefix] = now
        hot.move_to_end(prefix)
        if len(hot) > self.config.max_entries:
            hot.popitem(last=False)

    def judge(self, reply: bytes, client: str) -> Verdict:
        """What ``apply`` decides for this answer (cookies aside), counting it."""
        key = self._debit(reply, self._prefix(client))
        return Verdict.SEND if key is None else self._limited(key, client)

    def _debit(self, reply: bytes, prefix: str | tuple) -> tuple | None:
        """Count one answer against its balance: None while the balance allows it, else
        the key of the (prefix, kind, name) entry that is over."""
        rcode = reply[3] & 0x0F
        if rcode == 0:
            if reply[6] or reply[7]:
                kind = RESPONSE_AT
            else:
                kind = NODATA_AT if reply[2] & AA else REFERRAL_AT
        else:
            kind = NXDOMAIN_AT if rcode == 3 else ERROR_AT
        rate = self.rates[kind]
        if rate <= 0.0:
            return None
        end = reply.find(0, 12) + 1  # the question's root label (a zero inside a label only
        # moves the answer to another balance, as a new name would)
        if kind <= NODATA_AT:
            name = reply[12 : end + 2].lower()  # the name and the type
        elif kind == NXDOMAIN_AT:
            name = _zone_of_negative(reply, end + 4, reply[12:end].lower())
        elif kind == REFERRAL_AT:
            name = reply[12:end].lower()
        else:
            name = b""
        key = (prefix, kind, name)
        now = self.clock()
        entries = self.entries
        cap = self.caps[kind]
        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self.config.max_entries:
                entries.popitem(last=False)  # the least recently used
            entry = entries[key] = [cap, now, 0]
        else:
            entries.move_to_end(key)
            elapsed = now - entry[1]
            if elapsed > self.config.window:
                entry[0], entry[2] = cap, 0
            elif elapsed > 0:
                balance = entry[0] + rate * elapsed
                if balance >= cap:
                    balance, entry[2] = cap, 0
                entry[0] = balance
            entry[1] = now
        entry[0] -= 1
        if entry[0] >= 0:
            return None
        floor = -self.config.window * rate
        if entry[0] < floor:
            entry[0] = floor
        return key

    def _limited(self, key: tuple, client: str) -> Verdict:
        entry = self.entries[key]
        if self.config.exempt_clients and _exempt(self.config.exempt_clients, client):
            return Verdict.SEND
        verdict = self._slip_or_drop(entry)
        self._log(key, verdict, entry[1])
        return verdict

    def _slip_or_drop(self, entry: list) -> Verdict:
        """The first limited answer slips, then every ``slip``-th (BIND's order)."""
        slip = self.config.slip
        if slip == 0:
            return Verdict.DROP
        count = entry[2]
        entry[2] = 0 if count + 1 >= slip else count + 1
        return Verdict.SLIP if count == 0 else Verdict.DROP

    def _prefix(self, client: str) -> str | tuple[int, int]:
        """The client's prefix: for IPv4 /24 (the default) the text before the last dot,
        which costs a tenth of the arithmetic; else (family, the address's top bits)."""
        if ":" not in client:
            if self._v4_24:
                return client[: client.rfind(".")]
            return 4, int.from_bytes(socket.inet_aton(client)) >> self._v4_shift
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, client.split("%")[0]))
        return 6, value >> self._v6_shift

    def _log(self, key: tuple, verdict: Verdict, now: float) -> None:
        """At most one line a second: which prefix and kind is being limited."""
        if now - self._last_log < 1.0:
            return
        self._last_log = now
        prefix = key[0]
        family, value = (
            prefix
            if isinstance(prefix, tuple)
            else (4, int.from_bytes(socket.inet_aton(prefix + ".0")) >> 8)
        )
        bits = 32 if family == 4 else 128
        length = bits - (self._v4_shift if family == 4 else self._v6_shift)
        packed = (value << (bits - length)).to_bytes(bits // 8)
        net = socket.inet_ntop(socket.AF_INET if family == 4 else socket.AF_INET6, packed)
        would = "would " if self.config.log_only else ""
        name = _readable(key[2]) if key[2] else "-"
        log.warning(
            "rate limit: %s%s %s answers to %s/%d for %s",
            would, verdict.value, KINDS[key[1]].removesuffix("_per_second"), net, length, name,
        )  # fmt: skip


def _readable(name: bytes) -> str:
    """A wire name (possibly with its type after it) as text, for the log."""
    labels, pos = [], 0
    while pos < len(name) and name[pos]:
        labels.append(name[pos + 1 : pos + 1 + name[pos]].decode("ascii", "replace"))
        pos += 1 + name[pos]
    return ".".join(labels) + "."


def _exempt(exempt: PrefixSet, client: str) -> bool:
    if ":" in client:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, client.split("%")[0]))
        return exempt.contains(value, 128)
    return exempt.contains(int.from_bytes(socket.inet_aton(client)), 32)


def proven_by_cookie(reply: bytes, query: bytes) -> bool:
    """Whether the query carried the very client+server cookie the answer carries: the
    handler echoes a server cookie only when it was valid (``dnspol.cookies``)."""
    end = question_end(reply)
    if end < 0 or not query:
        return False
    opt = _opt_record(reply, end + 4)
    at = opt.find(b"\x00\x0a\x00\x18", 11)  # COOKIE, client (8) + server (16) bytes
    return at > 0 and opt[at + 4 : at + 28] in query


def question_end(reply: bytes) -> int:
    """Where the question's name ends (after its root label); -1 when malformed."""
    pos = 12
    size = len(reply)
    while pos < size:
        length = reply[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0:
            return -1
        pos += 1 + length
    return -1


def classify(reply: bytes) -> tuple[str, bytes, bytes]:
    """(kind of answer, the name it is counted under, the type) from an answer's bytes.

    Positive answers and NODATA count per name and type; referrals per name;
    NXDOMAIN per zone (the owner of the SOA in authority, so random names of a
    zone share one balance); errors all together.
    """
    rcode = reply[3] & 0x0F
    if rcode not in (0, 3) or len(reply) < 17:
        return ERROR, b"", b""
    end = question_end(reply)
    if end < 0 or len(reply) < end + 4:
        return ERROR, b"", b""
    name = reply[12:end].lower()
    if rcode == 3:
        return NXDOMAIN, _zone_of_negative(reply, end + 4, name), b""
    qtype = reply[end : end + 2]
    if reply[6] or reply[7]:  # ANCOUNT
        return RESPONSE, name, qtype
    if reply[2] & AA:
        return NODATA, name, qtype
    return REFERRAL, name, b""


def _zone_of_negative(reply: bytes, pos: int, name: bytes) -> bytes:
    """The SOA owner when it points into the question (how dnspol writes it); else the
    whole name (counted per name rather than per zone)."""
    if reply[6] or reply[7] or len(reply) < pos + 2:  # a CNAME chain ended in NXDOMAIN
        return name
    if reply[pos] & 0xC0 == 0xC0:
        offset = ((reply[pos] & 0x3F) << 8) | reply[pos + 1]
        if 12 <= offset < 12 + len(name):
            return name[offset - 12 :]
    return name


def slipped(reply: bytes) -> bytes:
    """The truncated form: TC=1, the question, and the OPT record if there was one."""
    end = question_end(reply)
    if end < 0:
        return reply[:2] + bytes((reply[2] | TC, reply[3])) + b"\x00\x00" * 4
    opt = _opt_record(reply, end + 4)
    counts = b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00")
    return reply[:2] + bytes((reply[2] | TC, reply[3])) + counts + reply[12 : end + 4] + opt


def _opt_record(reply: bytes, pos: int) -> bytes:
    """The OPT RR of an answer (EDNS), found by walking its records; b"" if none."""
    total = sum(int.from_bytes(reply[i : i + 2]) for i in (6, 8, 10))
    size = len(reply)
    for _ in range(total):
        start = pos
        while pos < size:  # the owner name
            length = reply[pos]
            if length & 0xC0 == 0xC0:
                pos += 2
                break
            pos += 1 + length
            if length == 0:
                break
        if pos + 10 > size:
            return b""
        rtype = int.from_bytes(reply[pos : pos + 2])
        end = pos + 10 + int.from_bytes(reply[pos + 8 : pos + 10])
        if rtype == 41:
            return reply[start:end]
        pos = end
    return b""
