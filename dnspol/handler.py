"""handle(wire, peer, listener) -> bytes | None: the query pipeline and its error boundary.

The journey: drop checks → fast path (a stored answer for a plain query) →
decode → opcode and class dispatch → zone selection → policy → lookup →
response. Nothing below this module knows about sockets, and nothing raised
below it escapes: a bug answers SERVFAIL and is logged, a malformed packet
answers FORMERR or is dropped.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address

from dnslib import QTYPE, TXT

from dnspol import answer, cookies
from dnspol.names import Name
from dnspol.policy.model import Action, Decision, QueryFacts
from dnspol.ratelimit import Limiter, RateLimit
from dnspol.state import ServerState, Snapshot
from dnspol.stats import AnswerLabel, Stats, qtype_label, rcode_label
from dnspol.wire import (
    CLASS_CH,
    CLASS_IN,
    COOKIE_MARK,
    MAX_STORED_QUERY,
    OPCODE_QUERY,
    OPTION_COOKIE,
    OPTION_ECS,
    OPTION_NSID,
    RCODE_BADCOOKIE,
    RCODE_BADVERS,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    RCODE_YXDOMAIN,
    TCP_LIMIT,
    BadVersion,
    FormErr,
    Query,
    cookie_data,
    decode,
    fast_key,
    read_qname,
    should_drop,
    udp_limit,
)
from dnspol.zones.lookup import LookupResult, Outcome, lookup
from dnspol.zones.model import Rec

log = logging.getLogger("dnspol.handler")

ANSWER, DROP, NXDOMAIN_ACTION = Action.ANSWER, Action.DROP, Action.NXDOMAIN
COOKIE_DATA = 24  # an answer's COOKIE: client (8) and server (16) cookie, the last bytes
COOKIE_HEAD = b"\x00\x0a\x00\x18"  # option code 10, length 24
INF = float("inf")
OUTCOME_RCODES = {Outcome.NXDOMAIN: RCODE_NXDOMAIN, Outcome.YXDOMAIN: RCODE_YXDOMAIN}

TYPE_AXFR = 252
TYPE_IXFR = 251
TYPE_TXT = QTYPE.TXT
TYPE_ANY = 255


@dataclass(frozen=True, slots=True, eq=False)
class Listener:
    """Where queries arrive: built once per socket, passed with every packet.

    Compared by identity (one object per socket), which also keeps its hash, used
    in the decision cache's keys, as cheap as an int's.
    """

    address: str
    port: int
    transport: str  # "udp" | "tcp"
    tcp: bool = field(init=False)
    tag: tuple[str, str] = field(init=False)  # (transport, family) for counting
    ip: object = field(init=False)  # the address, parsed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "tcp", self.transport == "tcp")
        object.__setattr__(self, "ip", ip_address(self.address.split("%")[0]))
        family = "ipv6" if ":" in self.address else "ipv4"
        object.__setattr__(self, "tag", (self.transport, family))


# The times a clock may be set to: 1970-01-01T00:00:00Z up to 10000-01-01T00:00:00Z
# (exclusive), the years time zones and ISO 8601 dates can show.
EARLIEST_TIME = 0.0
END_OF_TIME = 253402300800.0


class Clock:
    """The server's idea of now; tests may pin or shift it (``--fake-time``)."""

    def __init__(self, fixed: float | None = None) -> None:
        self._offset = 0.0 if fixed is None else fixed - time.time()
        self._frozen: float | None = None

    def now(self) -> float:
        return self._frozen if self._frozen is not None else time.time() + self._offset

    def set(self, when: float, frozen: bool = False) -> None:
        """Set the clock to ``when`` (epoch seconds); ValueError, with the reason, for a
        time it cannot show. ``nan`` would make every time window fail to evaluate."""
        when = settable_time(when)
        if frozen:
            self._frozen = when
        else:
            self._frozen = None
            self._offset = when - time.time()

    @property
    def faked(self) -> bool:
        return self._frozen is not None or self._offset != 0.0


def settable_time(when: float) -> float:
    """``when`` as a float if a clock may be set to it; else ValueError saying why."""
    when = float(when)
    if math.isnan(when):
        raise ValueError("cannot set the clock to nan: not a number of seconds")
    if math.isinf(when):
        raise ValueError(f"cannot set the clock to {when}: not a finite time")
    if not EARLIEST_TIME <= when < END_OF_TIME:
        raise ValueError(
            f"cannot set the clock to {when:.15g} seconds since the epoch: "
            "only times from 1970-01-01 to 9999-12-31 (UTC)"
        )
    return when


@dataclass(slots=True)
class Answered:
    """What the slow path decided, for the cache and for metrics."""

    wire: bytes | None
    cacheable: bool = False
    rcode: int = 0
    decision: Decision | None = None
    zone: str = ""
    label: int | None = None  # interned AnswerLabel (Stats.intern)


class Handler:
    def __init__(self, state: ServerState, clock: Clock | None = None, seed: int | None = None):
        self.state = state
        self.clock = clock or Clock()
        self.rng = random.Random(seed)
        self.fast_path = True
        self.stats = Stats()
        self._addresses: dict[str, object] = {}
        # test mode only (``--fake-time``): CHAOS TXT queries drive the clock and reload
        self.control: Callable[[Name], str | None] | None = None
        self.rate_share = 1.0  # this process's part of the rate limits (1 / workers)
        self.cookie_clock: Callable[[], float] = time.time  # server cookies' timestamps
        self._limiter: Limiter | None = None

    def rate_limit(
        self, reply: bytes, client: str, config: RateLimit, query: bytes = b""
    ) -> bytes | None:
        """The UDP answer to send after response-rate limiting (``dnspol.ratelimit``):
        the reply, its truncated form, or None. The table outlives a reload whose
        limits did not change."""
        limiter = self._limiter
        if limiter is None or limiter.config is not config:
            if limiter is not None and limiter.config == config:
                limiter.config = config
            else:
                counts = self.stats.rate_limited
                limiter = self._limiter = Limiter(config, self.rate_share, counts=counts)
        out = limiter.apply(reply, client, query)
        if out is None:
            self.stats.drop("rate_limit")
        return out

    def handle(
        self, wire: bytes, peer: tuple, listener: Listener, report: list | None = None
    ) -> bytes | None:
        """The whole pipeline for one message. Never raises.

        ``report``, when given, receives the interned ``AnswerLabel`` key of the
        answer (see ``Stats.labels``), for the query log and other observers.
        """
        snap = self.state.snapshot
        if type(wire) is not bytes:  # the cache keys are slices of it
            wire = bytes(wire)
        if snap is None:
            self.stats.drop("malformed")
            return None
        repeat = None  # set for every query fast_key keys: it keys none longer either
        if self.fast_path and len(wire) <= MAX_STORED_QUERY:  # longer: never stored
            # A repeat of a query this client sent before, the ID aside and the letter
            # case of the name too (resolvers may randomise it: 0x20).
            sent = wire[2:]
            repeat = (peer[0] if snap.has_rules else None, listener, sent.lower())
            hit = snap.repeats.entries.get(repeat)
            if hit is not None:
                before, after, qend, counted = hit
                if sent == before:  # the very same bytes
                    out = wire[:2] + after
                elif sent[:10] == before[:10] and sent[qend - 6 :] == before[qend - 6 :]:
                    # lowering folds bytes outside the name too: those must be equal
                    out = wire[:2] + after[:10] + wire[12:qend] + after[qend - 2 :]
                else:
                    out = None
                if out is not None:
                    answers = self.stats.answers
                    answers[counted] = answers.get(counted, 0) + 1
                    if report is not None:
                        report.append(counted[0])
                    return out
        if should_drop(wire):
            self.stats.drop("malformed")
            return None
        found = (
            fast_key(wire, listener.tcp, snap.udp_max_payload, snap.cookies is not None)
            if self.fast_path
            else None
        )
        drawn = None  # a weighted rule's draw, if made here: the slow path must not draw again
        cookie = None  # with a COOKIE (server cookies on): the one this answer ends with
        if found is not None and found[0][-1] is COOKIE_MARK:
            cookie = self._cookie(snap, wire, found[1], peer, listener)
            if cookie is None:
                found = None  # BADCOOKIE: the slow path says so
        if found is not None:
            key, qend, ecs = found
            repeatable = True  # not drawn by a weighted rule, not shaped by the clock
            seen = None  # where the last query of this kind is noted (see below)
            if snap.has_rules:
                decided = snap.decisions.entries.get((peer[0], listener, key[0], ecs))
                if decided is None or (
                    decided[4] != INF and not decided[6] <= self.clock.now() < decided[4]
                ):
                    key = None  # never decided, or decided for another time: [from, until)
                elif decided[0] is DROP:
                    self.stats.drop("policy", decided[2])
                    if report is not None:
                        report.append(None)
                    return None
                elif decided[3] is None:
                    key = (key, decided[1])
                    repeatable = decided[4] == INF
                    seen = decided[5]
                else:  # a weighted rule: draw the scope now, as evaluate() would
                    drawn = self.rng.random()
                    token = decided[1]
                    key = (key, ("answer", decided[3].scope_at(drawn), token[2], token[3]))
                    repeatable = False
            if key is not None:
                hit = snap.answers.entries.get(key)
                if hit is not None:
                    out = _from_stored(hit, wire, qend, ecs)
                    if cookie is not None:
                        out = out[:-COOKIE_DATA] + cookie
                    counted = (hit[2], listener.tag, len(wire), len(out))
                    answers = self.stats.answers
                    answers[counted] = answers.get(counted, 0) + 1
                    if report is not None:
                        report.append(hit[2])
                    if repeatable and cookie is None:
                        # kept as a repeat once the same query comes twice in a row; a
                        # stream of queries that never repeat would only churn the store.
                        # Noted per decision (client, name, ECS subnet) where there is one:
                        # an answer serves many subnets, whose queries would take turns.
                        if seen is None:
                            seen = hit[4]
                        if seen[0] == repeat[2]:
                            snap.repeats.put(repeat, (sent, out[2:], qend, counted))
                        else:
                            seen[0] = repeat[2]
                    return out
        rng = self.rng if drawn is None else _Replay(drawn)
        result = self.answer(wire, peer, listener, snap, found, rng)
        if report is not None:
            report.append(result.label)
        if result.label is not None:
            if result.wire is None:
                label = self.stats.labels[result.label]
                self.stats.drop(label.dropped or "malformed", label.rule)
            else:
                self.stats.count(result.label, listener.tag, len(wire), len(result.wire))
        if found is not None and result.cacheable:
            self._store(snap, found, result, peer, listener, repeat[2])
        return result.wire

    def _cookie(self, snap: Snapshot, wire: bytes, qend: int, peer, listener) -> bytes | None:
        """The COOKIE option data for this client's answer; None: answer BADCOOKIE."""
        verdict = cookies.judge(
            snap.cookies, cookie_data(wire, qend), peer[0], listener.tcp, self.cookie_clock
        )
        return None if verdict.bad or verdict.option is None else verdict.option[1]

    def _store(
        self, snap: Snapshot, found: tuple, result: Answered, peer, listener, sent: bytes
    ) -> None:
        """Keep the packed answer (and the policy decision) for the next same query.

        ``sent``: the query's bytes after the ID, lowercased (its key in the repeat
        store). When they come again the answer may be kept as a repeat, unless it is
        drawn by a weighted rule or shaped by the clock (those are decided again when
        the clock leaves the interval they were made for: [valid_from, ``_expires``)).
        """
        key, qend, ecs = found
        if (
            key[-1] is COOKIE_MARK
            and result.wire is not None
            and (result.wire[-COOKIE_DATA - 4 : -COOKIE_DATA] != COOKIE_HEAD)
        ):
            return  # stored answers of COOKIE queries end with the option the reuse replaces
        decision = result.decision
        # a weighted rule draws anew each time; a time window's answer changes with it
        repeatable = decision is None or (not decision.weighted and _expires(decision) == INF)
        seen = [sent if repeatable else None]  # the last query answered from here
        if decision is not None:
            token = _token(decision)
            choice = snap.policy.weighted_choice(decision.rule) if decision.weighted else None
            expires = _expires(decision)
            since = decision.valid_from
            decided = (decision.action, token, decision.rule, choice, expires, seen, since)
            snap.decisions.put((peer[0], listener, key[0], ecs), decided)
            if result.wire is None:
                return
            key = (key, token)
        if result.wire is None:
            return
        tail = result.wire[qend:]
        at = 0
        if ecs is not None:
            # where the echoed address sits in the stored tail: after code, length,
            # family, source and scope of our (last-written) ECS option
            at = tail.rfind(b"\x00\x08" + len(ecs).to_bytes(2, "big") + ecs[:3]) + 8
            if at < 8:
                return
        snap.answers.put(key, (result.wire[2:12], tail, result.label, at, seen))

    def answer(
        self, wire: bytes, peer: tuple, listener: Listener, snap: Snapshot, found=None, rng=None
    ) -> Answered:
        """The slow path: decode fully and build the answer. Never raises.

        ``found``: the query's fast-path key, when it has one; a stored answer for the
        decision made here is then reused instead of built again. ``rng``: what weighted
        rules draw from (default: the handler's own).
        """
        if (wire[2] >> 3) & 0xF != OPCODE_QUERY:
            out = _notimp(wire, snap)
            return Answered(
                out, rcode=RCODE_NOTIMP, label=self.stats.intern(AnswerLabel(rcode="NOTIMP"))
            )
        try:
            query = decode(wire)
        except FormErr as exc:
            out = _formerr(wire, exc, snap)
            return Answered(
                out, rcode=RCODE_FORMERR, label=self.stats.intern(AnswerLabel(rcode="FORMERR"))
            )
        except BadVersion as exc:
            out = answer.error(exc.query, RCODE_BADVERS, snap.udp_max_payload)
            return Answered(
                out, rcode=RCODE_BADVERS, label=self.stats.intern(AnswerLabel(rcode="BADVERS"))
            )
        except Exception:  # noqa: BLE001 - the error boundary
            log.exception("decoding a query failed")
            return Answered(None, label=self.stats.intern(AnswerLabel(dropped="malformed")))
        try:
            rng = rng or self.rng
            result = self._respond(query, peer, listener, snap, found, wire, rng)
        except Exception:  # noqa: BLE001 - the error boundary
            log.exception("answering %s failed", query.qname)
            out = answer.error(query, RCODE_SERVFAIL, snap.udp_max_payload)
            result = Answered(out, rcode=RCODE_SERVFAIL)
        if result.label is None:
            result.label = self.stats.intern_fields(_label_fields(query, result))
        return result

    def _respond(
        self, query: Query, peer, listener: Listener, snap: Snapshot, found, wire, rng
    ) -> Answered:
        server_max = snap.udp_max_payload
        if query.qclass != CLASS_IN:
            return self._other_class(query, peer, snap)
        limit = TCP_LIMIT if listener.tcp else udp_limit(query.edns, server_max)
        if query.qtype in (TYPE_AXFR, TYPE_IXFR):
            # no zone transfers: NOTIMP over UDP (RFC 5936 §4.2), REFUSED + EDE 18 over TCP
            if not listener.tcp:
                return Answered(answer.error(query, RCODE_NOTIMP, server_max), True, RCODE_NOTIMP)
            return self._refused(query, snap, prohibited=True)
        cookie = cookies.judge(
            snap.cookies, _cookie_of(query), peer[0], listener.tcp, self.cookie_clock
        )
        if cookie.bad:  # RFC 7873 §5.2.3: a cookie-aware UDP client must prove its address
            out = answer.error(query, RCODE_BADCOOKIE, server_max, [cookie.option])
            return Answered(out, False, RCODE_BADCOOKIE)
        zone = snap.zones.find(query.qname)
        decision = self._decide(query, peer, listener, snap, zone, rng) if snap.has_rules else None
        if decision is not None and found is not None:
            reused = _reuse(snap, found, wire, decision, cookie.option)
            if reused is not None:
                reused.zone = zone.name if zone is not None else ""
                return reused
        options = _ecs_echo(query, decision) + _nsid(query, snap)
        if cookie.option is not None:
            options.append(cookie.option)
        if decision is not None and decision.action is not ANSWER:
            result = self._enforce(query, decision, zone, limit, options, snap)
            result.zone = zone.name if zone is not None else ""
            return result
        if zone is None:
            return self._refused(query, snap, prohibited=False, decision=decision, options=options)
        if decision is not None:
            zone = snap.variants.get((zone.origin, decision.scope), zone)
        result = lookup(zone, query.qname, query.qtype, snap.zones)
        rcode = OUTCOME_RCODES.get(result.outcome, RCODE_NOERROR)
        out = answer.build(
            query,
            rcode,
            result,
            limit=limit,
            server_max=server_max,
            aa=result.authoritative,
            ttl_cap=decision.ttl_cap if decision is not None else None,
            options=options,
        )
        return Answered(out, True, rcode, decision, zone.name)

    def _decide(self, query: Query, peer, listener: Listener, snap: Snapshot, zone, rng):
        ecs = query.edns.ecs if query.edns is not None else None
        network = ecs.network if ecs is not None and ecs.source > 0 else None
        origin = zone.origin if zone is not None else None
        kept = None
        if origin is not None and snap.policy.question_blind(origin):
            # the same decision for every name: a stream of new names skips the rules
            kept = (peer[0], listener, origin, network)
            decision = snap.zone_decisions.entries.get(kept)
            if decision is not None:
                return decision
        facts = QueryFacts(
            client=self._address(peer[0]),
            ecs=network,
            server=listener.ip,
            transport=listener.transport,
            qname=query.qname,
            qtype=query.qtype,
            zone=origin,
            now=self.clock.now(),
        )
        decision = snap.policy.evaluate(facts, rng)
        if kept is not None and not decision.weighted and decision.valid_until == INF:
            snap.zone_decisions.put(kept, decision)  # not drawn, not shaped by the clock
        return decision

    def _address(self, text: str):
        """Parsed client addresses, remembered: parsing costs more than the lookup."""
        addresses = self._addresses
        addr = addresses.get(text)
        if addr is None:
            if len(addresses) >= 65536:
                addresses.clear()
            addr = addresses[text] = ip_address(text.split("%")[0])
        return addr

    def _enforce(self, query: Query, decision, zone, limit: int, options, snap) -> Answered:
        """Policy actions other than answering: drop, refuse, NXDOMAIN."""
        if decision.action is DROP:
            return Answered(None, True, decision=decision)
        if decision.action is NXDOMAIN_ACTION and zone is not None:
            result = LookupResult(
                Outcome.NXDOMAIN, authority=zone.soa.records(ttl=zone.negative_ttl)
            )
            out = answer.build(
                query,
                RCODE_NXDOMAIN,
                result,
                limit=limit,
                server_max=snap.udp_max_payload,
                aa=True,
                ttl_cap=decision.ttl_cap,
                options=options,
            )
            return Answered(out, True, RCODE_NXDOMAIN, decision)
        return self._refused(query, snap, prohibited=True, decision=decision, options=options)

    def _refused(
        self, query: Query, snap: Snapshot, prohibited: bool, decision=None, options=()
    ) -> Answered:
        options = list(options)
        if prohibited:
            options.append(answer.ede_option(answer.EDE_PROHIBITED))  # RFC 8914 §4.19
        out = answer.error(query, RCODE_REFUSED, snap.udp_max_payload, options)
        return Answered(out, True, RCODE_REFUSED, decision)

    def _other_class(self, query: Query, peer: tuple, snap: Snapshot) -> Answered:
        """CHAOS built-ins only when configured; every other class is REFUSED."""
        text = None
        cacheable = True
        if query.qclass == CLASS_CH and query.qtype in (TYPE_TXT, TYPE_ANY):
            text = snap.chaos.get(b".".join(query.qname).decode("ascii", "replace"))
            if text is None and self.control is not None and _is_loopback(peer):
                text = self.control(query.qname)
                cacheable = False
        if text is None:
            return self._refused(query, snap, prohibited=False)
        return Answered(_chaos_answer(query, text, snap), cacheable, RCODE_NOERROR)


class _Replay:
    """Stands in for the handler's ``random.Random`` when the fast path has drawn for a
    weighted rule already and then found no stored answer: the slow path uses that draw,
    so one query draws once whichever path answers it (and a seed repeats exactly)."""

    __slots__ = ("draw",)

    def __init__(self, draw: float) -> None:
        self.draw = draw

    def random(self) -> float:
        return self.draw


def _from_stored(stored: tuple, wire: bytes, qend: int, ecs: bytes | None) -> bytes:
    """A stored answer for this query: its ID and question, the client's ECS address."""
    tail = stored[1]
    if ecs is not None:  # the client's own subnet, echoed (RFC 7871 §7.2.1)
        at = stored[3]
        tail = tail[:at] + ecs[4:] + tail[at + len(ecs) - 4 :]
    return wire[:2] + stored[0] + wire[12:qend] + tail


def _reuse(
    snap: Snapshot, found: tuple, wire: bytes, decision: Decision, cookie=None
) -> Answered | None:
    """The stored answer for a fresh decision, as when another client (or ECS subnet)
    got the same decision for the same question before. None: build it. ``cookie``:
    the COOKIE option this client's answer ends with."""
    if decision.action is DROP:
        return None
    key, qend, ecs = found
    stored = snap.answers.entries.get((key, _token(decision)))
    if stored is None:
        return None
    out = _from_stored(stored, wire, qend, ecs)
    if key[-1] is COOKIE_MARK and cookie is not None:
        out = out[:-COOKIE_DATA] + cookie[1]
    return Answered(out, True, out[3] & 0x0F, decision, label=stored[2])


def _token(decision: Decision) -> tuple:
    """What a stored answer depends on of a decision, as plain values that hash fast."""
    return (decision.action.value, decision.scope, decision.ecs_scope, decision.ttl_cap)


def _expires(decision: Decision) -> float:
    """Until when a decision holds (exclusive): the end of its time window, or sooner, the
    end of the second in which the TTL cap (whole seconds to that end) is still the same.
    It holds from ``decision.valid_from``: a clock stepped back before that decides again."""
    if decision.ttl_cap is None:
        return decision.valid_until
    return decision.valid_until - decision.ttl_cap


def _chaos_answer(query: Query, text: str, snap: Snapshot) -> bytes:
    rr = Rec(query.qname, TYPE_TXT, CLASS_CH, 0, TXT(text))
    result = LookupResult(Outcome.ANSWER, [rr])
    return answer.build(
        query, RCODE_NOERROR, result, limit=TCP_LIMIT, server_max=snap.udp_max_payload, aa=True
    )


def _label_fields(query: Query, result: Answered) -> tuple:
    """The fields of the answer's ``AnswerLabel``, in its order."""
    decision = result.decision
    wire = result.wire
    ecs = query.edns is not None and query.edns.ecs is not None
    truncated = wire is not None and bool(wire[2] & 0x02)
    dropped = "policy" if wire is None else ""
    qtype, rcode = qtype_label(query.qtype), rcode_label(result.rcode)
    if decision is None:
        return (result.zone, qtype, rcode, "", "answer", "default", False, ecs, truncated, dropped)
    return (
        result.zone,
        qtype,
        rcode,
        decision.rule or "",
        decision.action.value,
        decision.scope,
        decision.weighted,
        ecs,
        truncated,
        dropped,
    )


def _ecs_echo(query: Query, decision) -> list[tuple[int, bytes]]:
    """RFC 7871 §7.2.1: echo ECS only when it was sent, with the scope the policy set."""
    ecs = query.edns.ecs if query.edns is not None else None
    if ecs is None:
        return []
    scope = decision.ecs_scope if decision is not None and decision.ecs_scope is not None else 0
    return [(OPTION_ECS, ecs.to_option(min(scope, ecs.source)))]


def _cookie_of(query: Query) -> bytes | None:
    edns = query.edns
    if edns is None:
        return None
    return next((data for code, data in edns.options if code == OPTION_COOKIE), None)


def _nsid(query: Query, snap: Snapshot) -> list[tuple[int, bytes]]:
    """RFC 5001: the server's identity, when configured and asked for (an empty NSID
    option). The fast path never sees such a query (``wire._plain_options``)."""
    edns = query.edns
    if not snap.nsid or edns is None or not any(code == OPTION_NSID for code, _ in edns.options):
        return []
    return [(OPTION_NSID, snap.nsid)]


def _is_loopback(peer: tuple) -> bool:
    host = peer[0] if peer else ""
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")


def _notimp(wire: bytes, snap: Snapshot) -> bytes:
    """NOTIMP for opcodes other than QUERY, echoing the question when there is one."""
    try:
        query = decode(wire)
    except Exception:  # noqa: BLE001 - anything unreadable gets a bare header
        ident = int.from_bytes(wire[0:2], "big")
        return answer.header_only(ident, int.from_bytes(wire[2:4], "big"), RCODE_NOTIMP)
    return answer.error(query, RCODE_NOTIMP, snap.udp_max_payload)


def _formerr(wire: bytes, exc: FormErr, snap: Snapshot) -> bytes:
    """FORMERR echoing the question when it was readable (RFC 8906 §3: never silence)."""
    ident = int.from_bytes(wire[0:2], "big")
    flags = int.from_bytes(wire[2:4], "big")
    if not exc.question:
        return answer.header_only(ident, flags, RCODE_FORMERR)
    qname, _ = read_qname(wire, 12)
    qtype = int.from_bytes(exc.question[-4:-2], "big")
    qclass = int.from_bytes(exc.question[-2:], "big")
    query = Query(ident, flags, qname, qtype, qclass, exc.question, exc.edns)
    return answer.error(query, RCODE_FORMERR, snap.udp_max_payload)
