"""Zone transfers out (AXFR, RFC 5936; IXFR, RFC 1995): the stage that decides a
transfer request and the stream of messages that carries the zone.

The handler hands every AXFR and IXFR request here (``Transfers.respond``). An AXFR over
UDP is NOTIMP (as Knot answers it). The request's zone must be served (else NOTAUTH,
RFC 5936 §2.2.1), then the transfer policy decides (``dnspol.policy.transfers``: allow,
refuse with EDE 18, drop; no rule: refuse). An allowed request gets a ``Transfer``: an
iterator of messages the TCP transport writes one after another, yielding to the event
loop between messages, so a large zone never holds up other clients.

A transfer gives the zone **as the scope its key maps to sees it** (``keys: K: scope: S``;
no key or no mapping: the default scope). The whole-zone messages of every zone and
scope some transfer rule may allow are written when the configuration loads
(``compile_transfers``, kept on the snapshot as ``transfer_zones``): sending a message
is then copying its bytes behind a header, so a transfer holds the event loop
microseconds a message, not the milliseconds writing its records took. The cost is the
zone's wire size in memory per scope (about 23 bytes a record for A records) and the
writing time at load (``dnspol check`` and reloads pay it, queries do not). The
transfer holds the snapshot, so a reload in the middle of it changes nothing it sends.
SOA first and last; the question (the client's bytes) and the query's ID in the first
message, the ID in every one; names compressed within each message, never against the
question, so the records keep the zone's letter case; with TSIG every message signed
(RFC 8945 §5.3.1). IXFR differences are written as they are sent (they are small).

IXFR: one with our serial or a newer one gets our SOA alone (RFC 1995 §2: up to date);
one with an older serial gets the journal's differences from it (``dnspol.journal``,
with ``server.journal`` set) when the journal reaches back to it, else the whole zone in
AXFR form (RFC 1995 §4 allows it). Over UDP an allowed IXFR always gets our SOA alone:
up to date, or the sign to ask again over TCP (RFC 1995 §2).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dnspol import answer, tsig
from dnspol.answers import opt_record
from dnspol.codes import Rcode, RRType
from dnspol.journal import Difference, Journal
from dnspol.names import Name, to_text
from dnspol.packer import write_record
from dnspol.policy.transfers import TransferAction, TransferPolicy, transfer_facts
from dnspol.tsig import TsigKey
from dnspol.wire import Query, skip_name
from dnspol.zones.model import Rec, Zone

log = logging.getLogger("dnspol.transfer")

TRANSFER_TYPES = frozenset({RRType.AXFR, RRType.IXFR})
# A message is ended once it passes this size: the most a compression pointer reaches
# (0x3FFF) is about as much as compression can use, and Knot and BIND write 16-64 KB.
MESSAGE_TARGET = 16 * 1024
MESSAGE_LIMIT = 65535  # RFC 1035 §4.2.2: what a TCP length prefix can say
# what a compiled message leaves free for the OPT record and a TSIG record (the longest
# key name, HMAC-SHA512's 64-byte MAC, an error's other data): under 400 bytes
RESERVE = 1024
_HEADER = struct.Struct("!HHHHHH")


@dataclass(slots=True)
class Outcome:
    """What became of one transfer request: for the log line and the metrics."""

    zone: str  # the zone's name, or "" when no zone of ours
    scope: str
    qtype: str  # AXFR | IXFR
    # ok | up_to_date | use_tcp | refused | dropped | notauth | aborted | failed | bad<tsig>
    result: str
    client: str
    key: str | None = None
    rule: str | None = None
    records: int = 0
    messages: int = 0
    size: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        seconds = time.monotonic() - self.started
        by = f" key {self.key}" if self.key else " no key"
        rule = f" rule {self.rule}" if self.rule else ""
        what = f"{self.qtype} {self.zone or '-'} scope {self.scope} to {self.client}{by}{rule}"
        sent = f"{self.records} records in {self.messages} messages, {self.size} bytes"
        return f"transfer {self.result}: {what}: {sent}, {seconds:.3f} s"


Report = Callable[[Outcome], None]


class Transfer:
    """The messages of one allowed transfer, made as they are asked for (``next_message``).

    ``finish`` is called once by the transport: with ``ok`` after the last message, or
    ``aborted`` when the connection ended first.
    """

    def __init__(
        self,
        messages: Iterator[bytes],
        outcome: Outcome,
        report: Report,
        signer: tsig.Signer | None = None,
    ) -> None:
        self.outcome = outcome
        self._report = report
        self._signer = signer
        self._messages = messages
        self._finished = False

    def next_message(self) -> bytes | None:
        """The next message (signed if the request was), or None once all are sent."""
        message = next(self._messages, None)
        if message is None:
            return None
        if self._signer is not None:
            message = self._signer.sign(message)
        self.outcome.messages += 1
        self.outcome.size += len(message)
        return message

    def finish(self, result: str) -> None:
        if self._finished:
            return
        self._finished = True
        if self.outcome.result == "ok":  # "up_to_date" and "incremental" keep their names
            self.outcome.result = result
        self._report(self.outcome)

    def __iter__(self) -> Iterator[bytes]:
        """Every message at once (tests; the transport asks one by one)."""
        while (message := self.next_message()) is not None:
            yield message
        self.finish("ok")


@dataclass(frozen=True)
class TransferSetup:
    """What zone transfers, TSIG and NOTIFY read from a snapshot, as one attribute there
    (``Snapshot.transfer``: the snapshot's attributes are read per packet and stay few)."""

    keys: Mapping[str, TsigKey] = field(default_factory=lambda: MappingProxyType({}))
    policy: TransferPolicy = field(default_factory=TransferPolicy)  # default: refuse all
    notify: Mapping[Name, tuple] = field(default_factory=lambda: MappingProxyType({}))
    journal: str | None = None  # the IXFR journal's directory (``dnspol.journal``)
    # (zone, scope) -> whole-zone messages, filled by ``Snapshot`` (``compile_transfers``)
    compiled: Mapping[tuple[Name, str], CompiledZone] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True, slots=True)
class CompiledZone:
    """A zone as one scope sees it, as the records of its transfer messages.

    ``messages`` are (the records' bytes, their count); the first message's records
    were written after room for a question of ``question_size`` bytes (the zone's name,
    type and class), which a request for the zone always has, whatever its letter case.
    """

    question_size: int
    messages: tuple[tuple[bytes, int], ...]


def compile_transfers(zones, variants, policy, keys) -> dict[tuple[Name, str], CompiledZone]:
    """The whole-zone messages of each zone some ``transfers:`` rule may allow, for the
    default scope and each scope a key maps to (``Transfers.respond`` picks by key)."""
    scopes = ["default", *sorted({key.scope for key in keys.values() if key.scope})]
    compiled: dict[tuple[Name, str], CompiledZone] = {}
    for zone in zones:
        if not policy.may_allow(zone.origin):
            continue
        for scope in scopes:
            scoped = zone if scope == "default" else variants.get((zone.origin, scope))
            if scoped is not None:
                compiled[(zone.origin, scope)] = compile_zone(scoped)
    return compiled


def compile_zone(zone: Zone) -> CompiledZone:
    """``zone``'s records in transfer order, cut into messages of about
    ``MESSAGE_TARGET`` bytes, names compressed within each message."""
    question_size = sum(len(label) + 1 for label in zone.origin) + 1 + 4
    messages: list[tuple[bytes, int]] = []
    base = 12 + question_size
    out, names, count = bytearray(base), {}, 0
    for record in zone_records(zone):
        mark = len(out)
        write_record(out, names, record)
        if len(out) > MESSAGE_LIMIT - RESERVE:
            if count == 0:
                raise ValueError(f"a record of {to_text(zone.origin)} does not fit a message")
            del out[mark:]
            messages.append((bytes(out[base:]), count))
            base = 12
            out, names, count = bytearray(base), {}, 0
            write_record(out, names, record)
        count += 1
        if len(out) >= MESSAGE_TARGET:
            messages.append((bytes(out[base:]), count))
            base = 12
            out, names, count = bytearray(base), {}, 0
    if count:
        messages.append((bytes(out[base:]), count))
    return CompiledZone(question_size, tuple(messages))


def compiled_messages(
    query: Query, compiled: CompiledZone, opt: bytes, outcome: Outcome
) -> Iterator[bytes]:
    """The messages of a compiled zone for this request: a header, the question in the
    first, the records' bytes, the OPT record."""
    flags = answer.flags_word(query.flags, Rcode.NOERROR, aa=True)
    additional = 1 if opt else 0
    first = True
    for records, count in compiled.messages:
        head = _HEADER.pack(query.id, flags, 1 if first else 0, count, 0, additional)
        outcome.records += count
        yield head + (query.question if first else b"") + records + opt
        first = False


def zone_records(zone: Zone, soa_only: bool = False) -> Iterator[Rec]:
    """The zone in transfer order: its SOA, every other record, the SOA again."""
    soa = zone.soa.records()
    yield from soa
    if soa_only:
        return
    origin = zone.origin
    for name, node in zone.nodes.items():
        for rtype, rrset in node.items():
            if rtype == RRType.SOA and name == origin:
                continue
            yield from rrset.records()
    yield from soa


def ixfr_records(zone: Zone, steps: list[Difference]) -> Iterator[Rec | bytes]:
    """An incremental transfer (RFC 1995 §4): our SOA; per step the old SOA and the records
    gone, the new SOA and the records new (as the journal keeps them: wire bytes); our SOA."""
    soa = zone.soa.records()
    yield from soa
    for step in steps:
        yield from step.removed
        yield from step.added
    yield from soa


def _messages(
    query: Query,
    records: Iterator[Rec | bytes],
    opt: bytes,
    signer: tsig.Signer | None,
    outcome: Outcome,
) -> Iterator[bytes]:
    """The transfer's messages, each written record by record until it passes
    ``MESSAGE_TARGET``; a record that would take a message past ``MESSAGE_LIMIT`` starts
    the next one."""
    flags = answer.flags_word(query.flags, Rcode.NOERROR, aa=True)
    room = MESSAGE_LIMIT - len(opt) - (signer.overhead if signer is not None else 0)
    first = True
    out, names, count = _start(query, first)
    for record in records:
        mark = len(out)
        _write(out, names, record)
        if len(out) > room:
            if count == 0:
                raise ValueError(f"a record of {to_text(query.qname)} does not fit a message")
            del out[mark:]
            yield _finish(out, query.id, flags, first, count, opt)
            first = False
            out, names, count = _start(query, first)
            _write(out, names, record)
        count += 1
        outcome.records += 1
        if len(out) >= MESSAGE_TARGET:
            yield _finish(out, query.id, flags, first, count, opt)
            first = False
            out, names, count = _start(query, first)
    if count:
        yield _finish(out, query.id, flags, first, count, opt)


def _write(out: bytearray, names: dict, record: Rec | bytes) -> None:
    if type(record) is bytes:  # from the journal: uncompressed already
        out += record
    else:
        write_record(out, names, record)


def _start(query: Query, first: bool) -> tuple[bytearray, dict, int]:
    """A new message: room for the header, and in the first the question (the client's
    bytes: the records do not compress against it, so they keep the zone's letter case)."""
    out = bytearray(12)
    if first:
        out += query.question
    return out, {}, 0


def _finish(out: bytearray, ident: int, flags: int, first: bool, count: int, opt: bytes) -> bytes:
    _HEADER.pack_into(out, 0, ident, flags, 1 if first else 0, count, 0, 1 if opt else 0)
    return bytes(out + opt)


def client_serial(wire: bytes) -> int | None:
    """The serial of the SOA an IXFR request carries in its authority section (RFC 1995
    §3), or None when it has none."""
    _, _, qd, an, ns, _ = _HEADER.unpack_from(wire)
    if ns == 0:
        return None
    offset = 12
    for _ in range(qd):
        offset = skip_name(wire, offset) + 4
    for _ in range(an):
        offset = skip_name(wire, offset)
        offset += 10 + int.from_bytes(wire[offset + 8 : offset + 10], "big")
    offset = skip_name(wire, offset)
    if int.from_bytes(wire[offset : offset + 2], "big") != RRType.SOA:
        return None
    rdata = offset + 10
    after_names = skip_name(wire, skip_name(wire, rdata))
    if after_names + 4 > len(wire):
        return None
    return int.from_bytes(wire[after_names : after_names + 4], "big")


def serial_at_least(theirs: int, ours: int) -> bool:
    """RFC 1982: ``theirs`` equals or is newer than ``ours`` (32-bit serial arithmetic)."""
    return theirs == ours or 0 < (theirs - ours) % 2**32 < 2**31


class Transfers:
    """The transfer stage of the handler: decides a request and makes its ``Transfer``."""

    def __init__(self, report: Report | None = None) -> None:
        self.report: Report = report or log_outcome

    def respond(
        self,
        query: Query,
        wire: bytes,
        peer: tuple,
        listener,  # dnspol.handler.Listener
        snap,  # dnspol.state.Snapshot
        signed: tsig.Signed | None,
        now: float,
    ) -> tuple[bytes | Transfer | None, int]:
        """The answer to a transfer request (a message, a ``Transfer``, or None: dropped)
        and its rcode. The caller signs a message when the request was signed."""
        qtype = "AXFR" if query.qtype == RRType.AXFR else "IXFR"
        key = signed.key.name if signed is not None else None
        outcome = Outcome("", "default", qtype, "ok", self.client_text(peer), key)
        server_max = snap.udp_max_payload
        if not listener.tcp and query.qtype == RRType.AXFR:  # RFC 5936 §4.2: not over UDP
            # NOTIMP as Knot answers (BIND: FORMERR), docs/authoritative.md §15
            return answer.error(query, Rcode.NOTIMP, server_max), Rcode.NOTIMP
        zone = snap.zones.get(query.qname)
        if zone is None:  # RFC 5936 §2.2.1: not authoritative for that zone
            outcome.result = "notauth"
            self.report(outcome)
            return answer.error(query, Rcode.NOTAUTH, server_max), Rcode.NOTAUTH
        outcome.zone = zone.name
        facts = transfer_facts(
            peer[0], listener.ip, query.qname, query.qtype, zone.origin, now, key
        )
        decision = snap.transfer.policy.decide(facts)
        outcome.rule = decision.rule
        if decision.action is not TransferAction.ALLOW:
            outcome.result = "dropped" if decision.action is TransferAction.DROP else "refused"
            self.report(outcome)
            if decision.action is TransferAction.DROP:
                return None, Rcode.REFUSED
            options = [answer.ede_option(answer.EDE_PROHIBITED)]
            return answer.error(query, Rcode.REFUSED, server_max, options), Rcode.REFUSED
        scope = signed.key.scope if signed is not None and signed.key.scope else "default"
        scoped = snap.variants.get((zone.origin, scope))
        if scoped is None:  # the key's scope is not one of this zone's: the default
            scope, scoped = "default", zone
        outcome.scope = scope
        records = self._records(query, wire, scoped, scope, snap, listener.tcp, outcome)
        opt = b"" if query.edns is None else opt_record(server_max, query.edns.do)
        if not listener.tcp:  # RFC 1995 §2: over UDP our SOA alone (up to date, or use TCP)
            assert records is not None
            message = next(_messages(query, records, opt, None, outcome))
            self.report(outcome)
            return message, Rcode.NOERROR  # the caller signs it
        signer = tsig.Signer(signed) if signed is not None else None
        compiled = snap.transfer.compiled.get((zone.origin, scope))
        if records is None and compiled and compiled.question_size == len(query.question):
            messages = compiled_messages(query, compiled, opt, outcome)
        else:
            if records is None:
                records = zone_records(scoped)
            messages = _messages(query, records, opt, signer, outcome)
        return Transfer(messages, outcome, self.report, signer), Rcode.NOERROR

    @staticmethod
    def _records(
        query: Query, wire: bytes, zone: Zone, scope: str, snap, tcp: bool, outcome: Outcome
    ) -> Iterator[Rec | bytes] | None:
        """What the transfer carries: None for the whole zone (sent from its compiled
        messages); for an IXFR our SOA alone when the client is up to date (and always
        over UDP), else the journal's steps from its serial when the journal reaches back
        to it, else the whole zone."""
        if query.qtype != RRType.IXFR:
            return None
        theirs = client_serial(wire)
        if theirs is not None and serial_at_least(theirs, zone.serial):
            outcome.result = "up_to_date"
            return zone_records(zone, soa_only=True)
        if not tcp:
            outcome.result = "use_tcp"
            return zone_records(zone, soa_only=True)
        journal = snap.transfer.journal
        steps = Journal(journal).differences(zone, scope, theirs) if journal else None
        if steps is None:
            return None  # RFC 1995 §4: the whole zone, as AXFR sends it
        outcome.result = "incremental"
        return ixfr_records(zone, steps)

    @staticmethod
    def client_text(peer: tuple) -> str:
        """The client as the log line names it."""
        if not peer:
            return "-"
        host = peer[0]
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


def log_outcome(outcome: Outcome) -> None:
    log.info("%s", outcome.line())
