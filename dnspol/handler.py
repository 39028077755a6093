"""handle(wire, peer, listener) -> bytes | None: the query pipeline and its error boundary.

The journey, in stages: drop checks → the plain query without rules, one lookup in
the compiled tables (``_plain``) → the fast read of the query's bytes (``wire.read_plain``)
→ zone → cookie → policy decision (``Decider``) → compiled answer and OPT record
(``_compiled``, ``dnspol.answers``) → count. What the tables leave out takes the
reference path (``answer``): decode → opcode and class dispatch → zone → policy
(``Policy.evaluate``) → lookup → response. Rate limiting follows in the UDP loop, on
the answer's bytes. Nothing below this module knows about sockets, and nothing raised
below it escapes: a bug answers SERVFAIL and is logged, a malformed packet answers
FORMERR or is dropped.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address

from dnslib import TXT

from dnspol import answer, cookies, transfer, tsig
from dnspol.answers import (
    OUTSIDE,
    REFERENCE_TYPES,
    Found,
    find,
    find_plain,
    opt_record,
    option,
    refused_reply,
    reply,
)
from dnspol.codes import Rcode, RRType
from dnspol.dnssec import secure
from dnspol.names import Name, from_wire
from dnspol.policy.model import Action, Decision, QueryFacts
from dnspol.ratelimit import Limiter, RateLimit
from dnspol.state import ServerState, Snapshot
from dnspol.stats import (
    QTYPE_LABELS,
    AnswerLabel,
    Stats,
    qtype_label,
    rcode_label,
    scope_label,
)
from dnspol.transfer import TRANSFER_TYPES, Transfer, Transfers
from dnspol.wire import (
    CLASS_CH,
    CLASS_IN,
    MIN_UDP_PAYLOAD,
    OPCODE_QUERY,
    OPTION_COOKIE,
    OPTION_ECS,
    OPTION_NSID,
    TCP_LIMIT,
    BadVersion,
    FormErr,
    PlainQuery,
    Query,
    cookie_data,
    decode,
    read_plain,
    read_qname,
    udp_limit,
)
from dnspol.zones.lookup import LookupResult, Outcome, lookup
from dnspol.zones.model import Rec

log = logging.getLogger("dnspol.handler")

ANSWER, DROP, NXDOMAIN_ACTION = Action.ANSWER, Action.DROP, Action.NXDOMAIN
REFUSE = Action.REFUSE
ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QD, AN, NS, AR counts
ONE_QUESTION_AND_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
BARE_OPT_START = b"\x00\x00\x29"  # the root owner, type OPT
# ``_compiled``'s word for "the reference path answers, nothing decided yet"
NOT_DECIDED = Decision(Action.ANSWER, scope="(not decided)")


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
    tag: tuple[str, str, str] = field(init=False)  # (proto, family, server): metric labels
    ip: object = field(init=False)  # the address, parsed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "tcp", self.transport == "tcp")
        object.__setattr__(self, "ip", ip_address(self.address.split("%")[0]))
        object.__setattr__(self, "tag", listener_labels(self.address, self.port, self.transport))


def listener_labels(address: str, port: int, transport: str) -> tuple[str, str, str]:
    """``proto``, ``family`` and ``server`` as CoreDNS spells them: family "1" for IPv4
    and "2" for IPv6 (the IANA address family numbers), server ``dns://127.0.0.1:53``."""
    v6 = ":" in address
    host = f"[{address}]" if v6 else address
    return transport, "2" if v6 else "1", f"dns://{host}:{port}"


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
    """What the reference path decided, for metrics and the query log."""

    wire: bytes | None
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
        # test mode only (``--fake-time``): CHAOS TXT queries drive the clock and reload
        self.control: Callable[[Name], str | None] | None = None
        self.rate_share = 1.0  # this process's part of the rate limits (1 / workers)
        self.cookie_clock: Callable[[], float] = time.time  # server cookies' timestamps
        self._limiter: Limiter | None = None
        self._labels: dict[tuple, int] = {}  # compiled answers' label keys (``_label``)
        self._plain_labels: dict[tuple, int] = {}  # the same, for ``_plain``'s answers
        self.transfers = Transfers(self._transferred)  # the zone transfer stage

    def _transferred(self, outcome: transfer.Outcome) -> None:
        """One transfer request is over: one log line, one count."""
        key = (outcome.zone, outcome.scope, outcome.qtype, outcome.result)
        self.stats.transfers[key] = self.stats.transfers.get(key, 0) + 1
        transfer.log_outcome(outcome)

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
    ) -> bytes | Transfer | None:
        """The whole pipeline for one message. Never raises.

        Stages: drop what gets no answer; read the common shape of query from its bytes
        (``wire.read_plain``); answer it from the compiled tables (``_compiled``); anything
        else, or what the tables leave out, goes down the reference path (``answer``),
        which decodes fully, checks a TSIG record, hands zone transfer requests to the
        transfer stage and builds any other reply from the zone. Over TCP an allowed
        transfer comes back as a ``Transfer``, whose messages the transport sends.

        ``report``, when given, receives the interned ``AnswerLabel`` key of the
        answer (see ``Stats.labels``), for the query log and other observers.
        """
        snap = self.state.snapshot
        if type(wire) is not bytes:  # sliced and joined below
            wire = bytes(wire)
        if snap is None or len(wire) < 12 or wire[2] & 0x80:  # ``should_drop``, inline
            self.stats.drop("malformed")
            return None
        decision = None
        if self.fast_path:
            if not snap.has_rules:
                out = self._plain(snap, wire, listener, report)
                if out is not None:
                    return out
            query = read_plain(wire, listener.tcp, snap.udp_max_payload, snap.cookies is not None)
            if query is not None:
                out = self._compiled(snap, wire, query, peer, listener, report)
                if type(out) is not Decision:
                    return out
                decision = out if out is not NOT_DECIDED else None
        result = self.answer(wire, peer, listener, snap, decision=decision)
        paths = self.stats.paths
        paths["reference"] = paths.get("reference", 0) + 1
        if report is not None:
            report.append(result.label)
        if type(result.wire) is Transfer:  # counted by the transfer stage when it ends
            return result.wire
        if result.label is not None:
            if result.wire is None:
                label = self.stats.labels[result.label]
                self.stats.drop(label.dropped or "malformed", label.rule)
            else:
                self.stats.count(result.label, listener.tag, len(wire), len(result.wire))
        return result.wire

    def _plain(self, snap: Snapshot, wire: bytes, listener: Listener, report) -> bytes | None:
        """The most common query answered with one lookup, or None: one question and at
        most an OPT without options, for a name and type the zones hold, no rules to
        decide. The lookup itself checks the name: a key in the table is a whole valid
        question, so the bytes are that question exactly."""
        n = len(wire)
        counts = wire[4:12]
        if counts == ONE_QUESTION:
            qend = n
            limit = TCP_LIMIT if listener.tcp else MIN_UDP_PAYLOAD
            do = None
        elif counts == ONE_QUESTION_AND_OPT and wire[n - 11 : n - 8] == BARE_OPT_START:
            if wire[n - 6 : n - 4] != b"\x00\x00" or wire[n - 2 :] != b"\x00\x00":
                return None  # extended rcode, version, or options
            qend = n - 11
            do = wire[n - 4] & 0x80
            payload = (wire[n - 8] << 8) | wire[n - 7]
            limit = TCP_LIMIT if listener.tcp else min(max(payload, 512), snap.udp_max_payload)
        else:
            return None
        if wire[2] & 0xF8 or qend < 17:  # QR and OPCODE must be 0
            return None
        tables = snap.tables
        if do and tables.signed:  # DO=1: signed zones' own answers (RFC 4035 §3.1)
            exact, names = tables.secure_plain, tables.secure_plain_names
        else:
            exact, names = tables.plain, tables.plain_names
        name = wire[12 : qend - 4].lower()
        question = wire[qend - 4 : qend]
        qtype = (question[0] << 8) | question[1]
        prepared = exact.get(name + question)
        if prepared is not None:
            tail = prepared.tail
        elif question[2:] != b"\x00\x01" or qtype in REFERENCE_TYPES:
            return None
        else:
            found = find_plain(tables, name, qtype, names)
            if found is None:
                return None
            if found is OUTSIDE:  # no zone of ours: REFUSED (RFC 8906 §3.1.4)
                opt = b"" if do is None else _plain_opt(snap.udp_max_payload, do)
                out = refused_reply(wire, qend, opt)
                return self._counted(n, out, "", qtype, None, None, listener, report)
            prepared, tail = found
        opt = b"" if do is None else _plain_opt(snap.udp_max_payload, do)
        index = (wire[2] & 0x01) | ((wire[3] >> 3) & 0x02) | (4 if opt else 0)
        if qend + len(tail) + len(opt) <= limit:  # ``reply``'s common case, inline
            out = wire[:2] + prepared.heads[index] + wire[12:qend] + tail + opt
        else:
            out = reply(wire, qend, Found(prepared, tail), opt, limit)
        kind = (prepared.zone, QTYPE_LABELS.get(qtype, "other"), out[3], out[2] & 0x02)
        label = self._plain_labels.get(kind)  # no decision: fewer values say the label
        if label is None:
            label = self._plain_labels[kind] = self._label(
                prepared.zone, qtype, prepared.rcode, None, None, out
            )
        return self._count(label, n, out, listener, report)

    def _compiled(
        self, snap: Snapshot, wire: bytes, query: PlainQuery, peer, listener: Listener, report
    ) -> bytes | Decision | None:
        """The answer from the compiled tables, or None (dropped); a ``Decision`` when
        the reference path must answer (``NOT_DECIDED`` if none was made yet: a query
        is decided once, so a weighted rule draws once whichever path answers)."""
        qkey, qend, do, limit, ecs, cookie_sent = query
        qtype = (qkey[-4] << 8) | qkey[-3]
        if qkey[-2:] != b"\x00\x01" or qtype in REFERENCE_TYPES:
            return NOT_DECIDED
        name = qkey[:-4]
        located = snap.tables.zone_of(name)
        tables = located[0] if located is not None else None
        cookie = None  # with a COOKIE (server cookies on): the one this answer ends with
        if cookie_sent:
            cookie = self._cookie(snap, wire, qend, peer, listener)
            if cookie is None:
                return NOT_DECIDED  # BADCOOKIE: the reference path says so
        decision = None
        view = tables.default if tables is not None else None
        if snap.has_rules:
            origin = tables.origin if tables is not None else None
            decision = self._decide_wire(snap, name, qtype, ecs, peer, listener, origin)
            action = decision.action
            if action is DROP:
                self.stats.drop("policy", decision.rule)
                if report is not None:
                    report.append(None)
                return None
            if action is REFUSE or (action is NXDOMAIN_ACTION and tables is None):
                opt = self._opt(snap, do, ecs, decision, cookie, prohibited=True)
                out = refused_reply(wire, qend, opt)
                zone = tables.name if tables is not None else ""
                return self._counted(len(wire), out, zone, qtype, decision, ecs, listener, report)
            if action is not ANSWER:
                return decision  # NXDOMAIN in a zone: built on the reference path
            if view is not None:
                view = tables.views.get(decision.scope, view)
        if view is None:  # no zone of ours: REFUSED (RFC 8906 §3.1.4), without EDE
            opt = self._opt(snap, do, ecs, decision, cookie)
            out = refused_reply(wire, qend, opt)
            return self._counted(len(wire), out, "", qtype, decision, ecs, listener, report)
        if do and view.secure is not None:  # DO=1 to a signed zone (RFC 4035 §3.1)
            view = view.secure
        answer_found = find(view, name, qkey, qtype)
        if answer_found is None:
            return decision or NOT_DECIDED
        prepared = answer_found.prepared
        cap = decision.ttl_cap if decision is not None else None
        if cap is not None and cap < prepared.max_ttl:
            return decision  # a TTL capped by a time window: built on the reference path
        opt = self._opt(snap, do, ecs, decision, cookie)
        out = reply(wire, qend, answer_found, opt, limit)
        return self._counted(len(wire), out, tables.name, qtype, decision, ecs, listener, report)

    @staticmethod
    def _opt(snap: Snapshot, do, ecs, decision, cookie, prohibited: bool = False) -> bytes:
        """Our OPT record for a query with EDNS (``do`` not None): the client's own ECS
        subnet with our scope (RFC 7871 §7.2.1), its COOKIE, EDE 18 when refused by a
        rule (RFC 8914 §4.19), in the reference path's order."""
        if do is None:  # no EDNS
            return b""
        if ecs is None and cookie is None and not prohibited:
            return _plain_opt(snap.udp_max_payload, do)
        if cookie is None and not prohibited:  # ECS alone: the common case with rules
            scope = decision.ecs_scope if decision is not None else None
            scope = min(scope or 0, ecs[2])
            return _ecs_opt_head(snap.udp_max_payload, do, ecs[:3], scope) + ecs[4:]
        options = b""
        if ecs is not None:
            scope = decision.ecs_scope if decision is not None else None
            scope = min(scope or 0, ecs[2])
            options = option(OPTION_ECS, ecs[:3] + bytes((scope,)) + ecs[4:])
        if cookie is not None:
            options += option(OPTION_COOKIE, cookie)
        if prohibited:
            options += option(*answer.ede_option(answer.EDE_PROHIBITED))
        return opt_record(snap.udp_max_payload, bool(do), options)

    def _counted(
        self, size: int, out: bytes, zone: str, qtype: int, decision, ecs, listener, report
    ) -> bytes:
        """Count a compiled answer (to a query of ``size`` bytes) under its label, and
        report it."""
        label = self._label(zone, qtype, out[3] & 0x0F, decision, ecs, out)
        return self._count(label, size, out, listener, report)

    def _count(self, label: int, size: int, out: bytes, listener, report) -> bytes:
        counted = (label, listener.tag, size, len(out))
        answers = self.stats.answers
        answers[counted] = answers.get(counted, 0) + 1
        if report is not None:
            report.append(label)
        return out

    def _label(self, zone: str, qtype: int, rcode: int, decision, ecs, out: bytes) -> int:
        """The interned ``AnswerLabel`` of a compiled answer, found by the few values that
        vary (all from bounded sets: zones, counted types, rcodes, rules, scopes)."""
        qlabel = QTYPE_LABELS.get(qtype, "other")
        # a rule has one action: rule and scope say it (an Enum hashes in Python code)
        how = None if decision is None else (decision.rule, decision.scope)
        weighted = decision is not None and decision.weighted
        key = (zone, qlabel, rcode, how, weighted, ecs is None, out[2] & 0x02)
        label = self._labels.get(key)
        if label is None:
            rule, scope = how or ("", "default")
            action = decision.action if decision is not None else ANSWER
            scope = scope_label(zone, action.value, scope)
            fields = (zone, qlabel, Rcode.label(rcode), rule or "", action.value, scope)
            fields += (weighted, ecs is not None, bool(out[2] & 0x02), "")
            label = self._labels[key] = self.stats.intern_fields(fields)
        return label

    def _decide_wire(
        self, snap: Snapshot, name: bytes, qtype: int, ecs, peer, listener: Listener, origin
    ) -> Decision:
        """The policy's decision for a query read from its bytes, from the compiled rules
        (``Policy.evaluate`` is the reference the reference path uses)."""
        decider = snap.decider
        return decider.decide(
            peer[0],
            ecs,
            listener.ip,
            listener.transport,
            from_wire(name) if decider.reads_qname else (),
            qtype,
            origin,
            self.clock.now(),
            self.rng,
        )

    def _cookie(self, snap: Snapshot, wire: bytes, qend: int, peer, listener) -> bytes | None:
        """The COOKIE option data for this client's answer; None: answer BADCOOKIE."""
        verdict = cookies.judge(
            snap.cookies, cookie_data(wire, qend), peer[0], listener.tcp, self.cookie_clock
        )
        return None if verdict.bad or verdict.option is None else verdict.option[1]

    def answer(
        self,
        wire: bytes,
        peer: tuple,
        listener: Listener,
        snap: Snapshot,
        decision: Decision | None = None,
    ) -> Answered:
        """The reference path: decode fully and build the answer. Never raises.

        ``decision``: the policy's decision when the compiled path made it already.
        """
        if (wire[2] >> 3) & 0xF != OPCODE_QUERY:
            out = _notimp(wire, snap)
            return Answered(
                out, rcode=Rcode.NOTIMP, label=self.stats.intern(AnswerLabel(rcode="NOTIMP"))
            )
        try:
            query = decode(wire)
        except FormErr as exc:
            out = _formerr(wire, exc, snap)
            return Answered(
                out, rcode=Rcode.FORMERR, label=self.stats.intern(AnswerLabel(rcode="FORMERR"))
            )
        except BadVersion as exc:
            out = answer.error(exc.query, Rcode.BADVERS, snap.udp_max_payload)
            return Answered(
                out, rcode=Rcode.BADVERS, label=self.stats.intern(AnswerLabel(rcode="BADVERS"))
            )
        except Exception:  # noqa: BLE001 - the error boundary
            log.exception("decoding a query failed")
            return Answered(None, label=self.stats.intern(AnswerLabel(dropped="malformed")))
        signed = None
        if wire[10:12] != b"\x00\x00":  # additional records: a TSIG is checked first
            checked = self._tsig(wire, query, peer, snap)
            if type(checked) is Answered:
                return checked
            signed = checked
        try:
            if query.qtype in TRANSFER_TYPES and query.qclass == CLASS_IN:
                result = self._transfer(query, wire, peer, listener, snap, signed)
            else:
                result = self._respond(query, peer, listener, snap, decision)
        except Exception:  # noqa: BLE001 - the error boundary
            log.exception("answering %s failed", query.qname)
            out = answer.error(query, Rcode.SERVFAIL, snap.udp_max_payload)
            result = Answered(out, rcode=Rcode.SERVFAIL)
        if signed is not None and type(result.wire) is bytes:  # RFC 8945 §5.3
            result.wire = _signed(result.wire, signed, query, listener, snap)
        if result.label is None:
            result.label = self.stats.intern_fields(_label_fields(query, result))
        return result

    def _tsig(
        self, wire: bytes, query: Query, peer, snap: Snapshot
    ) -> tsig.Signed | Answered | None:
        """The TSIG stage (RFC 8945 §5.2): the checked key of a signed request, None for
        an unsigned one, or the answer to a request whose TSIG failed: NOTAUTH with the
        TSIG error (BADKEY, BADSIG, BADTIME), or FORMERR for a malformed or misplaced
        TSIG record."""
        try:
            verdict = tsig.check(wire, snap.transfer.keys)
        except Exception:  # noqa: BLE001 - whatever dnspython finds wrong in the record
            out = answer.error(query, Rcode.FORMERR, snap.udp_max_payload)
            return Answered(out, Rcode.FORMERR)
        if type(verdict) is not tsig.Rejected:
            return verdict
        out = tsig.error_reply(answer.error(query, Rcode.NOTAUTH, snap.udp_max_payload), verdict)
        if query.qtype in TRANSFER_TYPES:
            qtype = "AXFR" if query.qtype == RRType.AXFR else "IXFR"
            zone = snap.zones.get(query.qname)
            name = zone.name if zone is not None else ""
            owner = verdict.owner.to_text().lower()
            client = self.transfers.client_text(peer)
            outcome = transfer.Outcome(name, "default", qtype, verdict.reason, client, owner)
            self.transfers.report(outcome)
        return Answered(out, Rcode.NOTAUTH)

    def _transfer(
        self, query: Query, wire: bytes, peer, listener: Listener, snap: Snapshot, signed
    ) -> Answered:
        """The transfer stage (``dnspol.transfer``): AXFR and IXFR requests."""
        out, rcode = self.transfers.respond(
            query, wire, peer, listener, snap, signed, self.clock.now()
        )
        zone = snap.zones.get(query.qname)
        result = Answered(out, rcode, zone=zone.name if zone is not None else "")
        if type(out) is Transfer:
            fields = (result.zone, qtype_label(query.qtype), "NOERROR", out.outcome.rule or "")
            fields += ("answer", out.outcome.scope, False, False, False, "")
            result.label = self.stats.intern_fields(fields)
        return result

    def _respond(
        self, query: Query, peer, listener: Listener, snap: Snapshot, decision: Decision | None
    ) -> Answered:
        server_max = snap.udp_max_payload
        if query.qclass != CLASS_IN:
            return self._other_class(query, peer, snap)
        limit = TCP_LIMIT if listener.tcp else udp_limit(query.edns, server_max)
        cookie = cookies.judge(
            snap.cookies, _cookie_of(query), peer[0], listener.tcp, self.cookie_clock
        )
        if cookie.bad:  # RFC 7873 §5.2.3: a cookie-aware UDP client must prove its address
            out = answer.error(query, Rcode.BADCOOKIE, server_max, [cookie.option])
            return Answered(out, Rcode.BADCOOKIE)
        zone = snap.zones.find(query.qname)
        if decision is None and snap.has_rules:
            decision = self._decide(query, peer, listener, snap, zone)
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
        if query.edns is not None and query.edns.do:  # RFC 4035 §3.1: DO asks for DNSSEC
            result = secure(zone, result)
        rcode = answer.rcode_for(result.outcome)
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
        return Answered(out, rcode, decision, zone.name)

    def _decide(self, query: Query, peer, listener: Listener, snap: Snapshot, zone) -> Decision:
        ecs = query.edns.ecs if query.edns is not None else None
        facts = QueryFacts(
            client=ip_address(peer[0].split("%")[0]),
            ecs=ecs.network if ecs is not None and ecs.source > 0 else None,
            server=listener.ip,
            transport=listener.transport,
            qname=query.qname,
            qtype=query.qtype,
            zone=zone.origin if zone is not None else None,
            now=self.clock.now(),
        )
        return snap.policy.evaluate(facts, self.rng)

    def _enforce(self, query: Query, decision, zone, limit: int, options, snap) -> Answered:
        """Policy actions other than answering: drop, refuse, NXDOMAIN."""
        if decision.action is DROP:
            return Answered(None, decision=decision)
        if decision.action is NXDOMAIN_ACTION and zone is not None:
            result = LookupResult(
                Outcome.NXDOMAIN, authority=zone.soa.records(ttl=zone.negative_ttl)
            )
            out = answer.build(
                query,
                Rcode.NXDOMAIN,
                result,
                limit=limit,
                server_max=snap.udp_max_payload,
                aa=True,
                ttl_cap=decision.ttl_cap,
                options=options,
            )
            return Answered(out, Rcode.NXDOMAIN, decision)
        return self._refused(query, snap, prohibited=True, decision=decision, options=options)

    def _refused(
        self, query: Query, snap: Snapshot, prohibited: bool, decision=None, options=()
    ) -> Answered:
        options = list(options)
        if prohibited:
            options.append(answer.ede_option(answer.EDE_PROHIBITED))  # RFC 8914 §4.19
        out = answer.error(query, Rcode.REFUSED, snap.udp_max_payload, options)
        return Answered(out, Rcode.REFUSED, decision)

    def _other_class(self, query: Query, peer: tuple, snap: Snapshot) -> Answered:
        """CHAOS built-ins only when configured; every other class is REFUSED."""
        text = None
        if query.qclass == CLASS_CH and query.qtype in (RRType.TXT, RRType.ANY):
            text = snap.chaos.get(b".".join(query.qname).decode("ascii", "replace"))
            if text is None and self.control is not None and _is_loopback(peer):
                text = self.control(query.qname)
        if text is None:
            return self._refused(query, snap, prohibited=False)
        return Answered(_chaos_answer(query, text, snap), Rcode.NOERROR)


_PLAIN_OPTS: dict[tuple[int, int], bytes] = {}  # (our payload size, DO) -> OPT without options


def _plain_opt(payload: int, do: int) -> bytes:
    opt = _PLAIN_OPTS.get((payload, do))
    if opt is None:
        opt = _PLAIN_OPTS[(payload, do)] = opt_record(payload, bool(do))
    return opt


_ECS_OPT_HEADS: dict[tuple, bytes] = {}  # OPT with one ECS option, up to its address


def _ecs_opt_head(payload: int, do: int, family_source: bytes, scope: int) -> bytes:
    """Our OPT record with an ECS option echoing ``family_source`` with ``scope``, all
    but the address (at most 2 families x 129 sources x 129 scopes x DO x payloads)."""
    key = (payload, do, family_source, scope)
    head = _ECS_OPT_HEADS.get(key)
    if head is None:
        length = (family_source[2] + 7) // 8
        data = family_source + bytes((scope,)) + bytes(length)
        head = _ECS_OPT_HEADS[key] = opt_record(payload, bool(do), option(OPTION_ECS, data))[
            : -length or None
        ]
    return head


def _signed(wire: bytes, signed: tsig.Signed, query: Query, listener, snap: Snapshot) -> bytes:
    """The reply signed; over UDP, when the signature takes it past the client's limit,
    the reply without records and with TC, signed (RFC 8945 §5.3)."""
    out = tsig.Signer(signed).sign(wire)
    if listener.tcp or len(out) <= udp_limit(query.edns, snap.udp_max_payload):
        return out
    empty = bytearray(answer.error(query, wire[3] & 0x0F, snap.udp_max_payload))
    empty[2] |= 0x02  # TC
    return tsig.Signer(signed).sign(bytes(empty))


def _chaos_answer(query: Query, text: str, snap: Snapshot) -> bytes:
    rr = Rec(query.qname, RRType.TXT, CLASS_CH, 0, TXT(text))
    result = LookupResult(Outcome.ANSWER, [rr])
    return answer.build(
        query, Rcode.NOERROR, result, limit=TCP_LIMIT, server_max=snap.udp_max_payload, aa=True
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
        scope = scope_label(result.zone, "answer", "default")
        return (result.zone, qtype, rcode, "", "answer", scope, False, ecs, truncated, dropped)
    return (
        result.zone,
        qtype,
        rcode,
        decision.rule or "",
        decision.action.value,
        scope_label(result.zone, decision.action.value, decision.scope),
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
        return answer.header_only(ident, int.from_bytes(wire[2:4], "big"), Rcode.NOTIMP)
    return answer.error(query, Rcode.NOTIMP, snap.udp_max_payload)


def _formerr(wire: bytes, exc: FormErr, snap: Snapshot) -> bytes:
    """FORMERR echoing the question when it was readable (RFC 8906 §3: never silence)."""
    ident = int.from_bytes(wire[0:2], "big")
    flags = int.from_bytes(wire[2:4], "big")
    if not exc.question:
        return answer.header_only(ident, flags, Rcode.FORMERR)
    qname, _ = read_qname(wire, 12)
    qtype = int.from_bytes(exc.question[-4:-2], "big")
    qclass = int.from_bytes(exc.question[-2:], "big")
    query = Query(ident, flags, qname, qtype, qclass, exc.question, exc.edns)
    return answer.error(query, Rcode.FORMERR, snap.udp_max_payload)
