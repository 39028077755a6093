"""The lookup in one zone (RFC 1034 §4.3.2 step 3, RFC 4592, RFC 6604).

``lookup`` walks a zone for one name and type and returns what the answer is
made of: an ``Outcome`` and the records for each section. It never decides an
rcode or touches the wire; ``answer`` maps outcomes to messages.

It also says what a signed answer must prove (``Proof``: which name does not exist,
has no such type, was synthesized from a wildcard, or is a delegation) and which
owners were synthesized from which wildcard; ``dnspol.dnssec`` adds the RRSIGs and
the NSEC/NSEC3 records from that (RFC 4035 §3.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from dnslib import CNAME, DNSBuffer

from dnspol.codes import RRType
from dnspol.names import Name, is_subdomain, to_label
from dnspol.zones.model import (
    WILDCARD,
    Rec,
    RRset,
    Zone,
    ZoneSet,
)

MAX_CHAIN = 16  # CNAME links followed before giving up (never spin, never SERVFAIL)


class Denial(enum.Enum):
    """What a signed answer must prove (RFC 4035 §3.1.3, RFC 5155 §7.2)."""

    NXDOMAIN = "nxdomain"  # ``name`` does not exist, ``encloser`` is its closest encloser
    NODATA = "nodata"  # ``name`` exists without the type
    WILDCARD = "wildcard"  # ``name`` was synthesized from ``*.<encloser>``
    WILDCARD_NODATA = "wildcard_nodata"  # ... and the wildcard lacks the type
    REFERRAL = "referral"  # ``name`` is a zone cut: its DS, or the proof there is none


class Proof(NamedTuple):
    kind: Denial
    name: Name
    encloser: Name


class Outcome(enum.Enum):
    ANSWER = "answer"  # data (possibly after CNAMEs), NOERROR
    NODATA = "nodata"  # the name exists without that type, NOERROR + SOA
    NXDOMAIN = "nxdomain"  # the (last) name does not exist, NXDOMAIN + SOA
    REFERRAL = "referral"  # below a zone cut: NS in authority, AA=0
    YXDOMAIN = "yxdomain"  # a DNAME substitution would exceed 255 octets (RFC 6672 §2.2)


@dataclass(slots=True)
class LookupResult:
    outcome: Outcome
    answer: list[Rec] = field(default_factory=list)
    authority: list[Rec] = field(default_factory=list)
    additional: list[Rec] = field(default_factory=list)
    glue_required: bool = False  # additional records that must fit (RFC 9471)
    proofs: tuple[Proof, ...] = ()  # what a signed answer proves (``dnspol.dnssec``)
    wildcards: tuple[tuple[Name, Name], ...] = ()  # (owner written, wildcard it came from)

    @property
    def authoritative(self) -> bool:
        return self.outcome is not Outcome.REFERRAL


def lookup(zone: Zone, qname: Name, qtype: int, served: ZoneSet | None = None) -> LookupResult:
    """Answer ``qname``/``qtype`` from ``zone``, following CNAMEs inside it.

    ``served`` (all zones of the server) stops a chain at a name that belongs to
    another served zone, even one below this zone's origin (RFC 1034 §4.3.2).
    """
    answer: list[Rec] = []
    seen = {qname}
    name = qname
    proofs: list[Proof] = []
    wild: list[tuple[Name, Name]] = []
    for _ in range(MAX_CHAIN):
        cut = _find_cut(zone, name, qtype)
        if cut is not None:
            if answer:  # a CNAME led below a cut: stop with what we have
                return _with_proofs(LookupResult(Outcome.ANSWER, answer), proofs, wild)
            proofs.append(Proof(Denial.REFERRAL, cut, cut))
            return _with_proofs(_referral(zone, cut), proofs, wild)
        node = zone.nodes.get(name)
        synthesized = False
        if node is None:
            if name in zone.existing:  # empty non-terminal: blocks wildcards
                proofs.append(Proof(Denial.NODATA, name, name))
                return _with_proofs(_negative(zone, Outcome.NODATA, answer), proofs, wild)
            encloser = _closest_encloser(zone, name)
            dname = zone.nodes.get(encloser, {}).get(RRType.DNAME)
            if dname is not None:  # RFC 6672 §3.2: substitute, then go on as a CNAME
                target = _substitute(name, encloser, dname)
                if target is None:
                    result = LookupResult(Outcome.YXDOMAIN, answer + dname.records())
                    return _with_proofs(result, proofs, wild)
                answer.extend(dname.records())
                answer.append(Rec(name, RRType.CNAME, 1, dname.ttl, CNAME(to_label(target))))
                if not _same_zone(zone, target, served) or target in seen:
                    return _with_proofs(LookupResult(Outcome.ANSWER, answer), proofs, wild)
                seen.add(target)
                name = target
                continue
            node = zone.nodes.get((WILDCARD, *encloser))
            if node is None:
                proofs.append(Proof(Denial.NXDOMAIN, name, encloser))
                return _with_proofs(_negative(zone, Outcome.NXDOMAIN, answer), proofs, wild)
            synthesized = True
            wild.append((name, (WILDCARD, *encloser)))
        rrset = _select(node, qtype)
        if rrset is not None:
            if synthesized:
                proofs.append(Proof(Denial.WILDCARD, name, encloser))
            if qtype == RRType.RRSIG and zone.signatures is not None:
                # each covered type's RRSIGs with their own TTL, as BIND answers
                source = (WILDCARD, *encloser) if synthesized else name
                answer.extend(zone.signatures.records_at(source, name))
            else:
                answer.extend(_records(rrset, name, synthesized))
            result = LookupResult(Outcome.ANSWER, answer, additional=_additional(zone, rrset))
            return _with_proofs(result, proofs, wild)
        cname = node.get(RRType.CNAME)
        if cname is None:
            if synthesized:
                proofs.append(Proof(Denial.WILDCARD_NODATA, name, encloser))
            else:
                proofs.append(Proof(Denial.NODATA, name, name))
            return _with_proofs(_negative(zone, Outcome.NODATA, answer), proofs, wild)
        if synthesized:
            proofs.append(Proof(Denial.WILDCARD, name, encloser))
        answer.extend(_records(cname, name, synthesized))
        target = _target_name(cname)
        if target in seen or not _same_zone(zone, target, served):
            return _with_proofs(LookupResult(Outcome.ANSWER, answer), proofs, wild)
        seen.add(target)
        name = target
    return _with_proofs(LookupResult(Outcome.ANSWER, answer), proofs, wild)


def _with_proofs(result: LookupResult, proofs: list[Proof], wild: list) -> LookupResult:
    if proofs:
        result.proofs = tuple(proofs)
    if wild:
        result.wildcards = tuple(wild)
    return result


def _select(node, qtype: int) -> RRset | None:
    if qtype == RRType.ANY:  # RFC 8482 §4.1: one RRset, never the whole node
        return node[min(node)] if node else None
    return node.get(qtype)


def _find_cut(zone: Zone, name: Name, qtype: int) -> Name | None:
    """The highest zone cut at or above ``name`` (DS at the cut is the parent's)."""
    cuts = zone.cuts
    if not cuts:
        return None
    depth = len(zone.origin)
    for i in range(len(name) - depth - 1, -1, -1):
        candidate = name[i:]
        if candidate in cuts and not (i == 0 and qtype == RRType.DS):
            return candidate
    return None


def _closest_encloser(zone: Zone, name: Name) -> Name:
    """RFC 4592 §3.3.1: the longest existing ancestor; only ``*.<it>`` may synthesize."""
    existing = zone.existing
    for i in range(1, len(name) - len(zone.origin) + 1):
        encloser = name[i:]
        if encloser in existing:
            return encloser
    return zone.origin


def _same_zone(zone: Zone, target: Name, served: ZoneSet | None) -> bool:
    if not is_subdomain(target, zone.origin):
        return False
    return served is None or served.find(target).origin == zone.origin


def _substitute(name: Name, owner: Name, dname: RRset) -> Name | None:
    """``name`` with the DNAME owner suffix replaced by its target; None if too long."""
    target = DNSBuffer(dname.rdatas[0].data).decode_name().label
    result = name[: len(name) - len(owner)] + tuple(label.lower() for label in target)
    if sum(len(label) + 1 for label in result) + 1 > 255:
        return None
    return result


def _records(rrset: RRset, name: Name, synthesized: bool) -> list[Rec]:
    # owners are written lowercase; the packer points them at the question,
    # so clients see their own spelling (as Knot does)
    return rrset.records(name if synthesized else None)


def _target_name(cname: RRset) -> Name:
    return tuple(label.lower() for label in cname.rdatas[0].label.label)


def _negative(zone: Zone, outcome: Outcome, answer: list[Rec]) -> LookupResult:
    soa = zone.soa.records(ttl=zone.negative_ttl)  # RFC 2308 §5
    return LookupResult(outcome, answer, authority=soa)


def _referral(zone: Zone, cut: Name) -> LookupResult:
    ns = zone.nodes[cut][RRType.NS]
    glue = _addresses(zone, ns, glue=True)
    return LookupResult(
        Outcome.REFERRAL, authority=ns.records(), additional=glue, glue_required=bool(glue)
    )


def _additional(zone: Zone, rrset: RRset) -> list[Rec]:
    if rrset.rtype in (RRType.NS, RRType.MX, RRType.SRV):
        return _addresses(zone, rrset, glue=False)
    return []


def _addresses(zone: Zone, rrset: RRset, glue: bool) -> list[Rec]:
    """A/AAAA of the NS/MX/SRV targets that we hold (RFC 1034 §4.3.2 step 6)."""
    out: list[Rec] = []
    done: set[Name] = set()
    for rdata in rrset.rdatas:
        target = _rdata_target(rrset.rtype, rdata)
        if target in done or not is_subdomain(target, zone.origin):
            continue
        done.add(target)
        if not glue and _find_cut(zone, target, RRType.A) is not None:
            continue  # below a cut: glue, not authoritative data
        node = zone.nodes.get(target)
        if node is None:
            continue
        for rtype in (RRType.A, RRType.AAAA):
            if rtype in node:
                out.extend(node[rtype].records())
    return out


def _rdata_target(rtype: int, rdata) -> Name:
    if rtype == RRType.MX:
        label = rdata.label
    elif rtype == RRType.SRV:
        label = rdata.target
    else:
        label = rdata.label
    return tuple(part.lower() for part in label.label)


__all__ = ["Denial", "LookupResult", "Outcome", "Proof", "lookup"]
