"""What is wrong with a zone's records as a whole, each problem as ``file:line: what``.

This module owns the checks BIND and Knot make once a zone is read: one SOA at
the apex, NS at the apex, a CNAME alone at its name, nothing outside the zone,
TTLs in range (RFC 2181 §8). ``validate`` returns every problem at once, in
file order; reading the text (syntax, rdata) is the readers' business.
"""

from __future__ import annotations

from collections.abc import Iterator

from dnslib import QTYPE

from dnspol.codes import RRType
from dnspol.names import Name, is_subdomain, to_text
from dnspol.zones.limits import MAX_TTL
from dnspol.zones.model import Record
from dnspol.zones.rdata import pack_uncompressed

__all__ = ["validate"]


# Types that may share a name with a CNAME (RFC 4035 §2.5, RFC 3007).
_CNAME_NEIGHBOURS = frozenset({QTYPE.RRSIG, QTYPE.NSEC, QTYPE.NSEC3, QTYPE.KEY})


def validate(origin: Name, records: list[Record], *, require_apex: bool = True) -> list[str]:
    """Every semantic problem in ``records``, each as ``file:line: what is wrong``.

    ``require_apex=False`` drops the checks that the apex has an SOA and NS
    records (for files that overlay another zone); everything else is checked.
    Problems come in file order, zone-wide ones first.
    """
    checks = [
        _outside_zone(origin, records),
        _ttl_too_large(records),
        _soa_misplaced_or_repeated(origin, records),
        _cname_not_alone(origin, records),
    ]
    if require_apex:
        checks.append(_apex_incomplete(origin, records))
    found = sorted((found for check in checks for found in check), key=lambda f: f[0])
    return [text for _, text in found]


# A check yields (index of the record a problem is about, problem text);
# index -1 is the zone as a whole.
_Found = Iterator[tuple[int, str]]
_Numbered = list[tuple[int, Record]]


def _outside_zone(origin: Name, records: list[Record]) -> _Found:
    last: Name | None = None
    inside = True
    for i, r in enumerate(records):
        if r.name is not last:  # records of one owner often share its tuple
            last = r.name
            inside = is_subdomain(last, origin)
        if not inside:
            yield i, f"{r.where}: {to_text(r.name)} is outside the zone {to_text(origin)}"


def _ttl_too_large(records: list[Record]) -> _Found:
    for i, r in enumerate(records):
        if r.ttl > MAX_TTL:
            yield i, f"{r.where}: TTL {r.ttl} is above {MAX_TTL}, the largest allowed (RFC 2181 §8)"


def _soa_misplaced_or_repeated(origin: Name, records: list[Record]) -> _Found:
    first: Record | None = None
    for i, r in enumerate(records):
        if r.rtype != RRType.SOA or not is_subdomain(r.name, origin):
            continue
        if r.name != origin:
            yield i, f"{r.where}: SOA at {to_text(r.name)} is not at the apex {to_text(origin)}"
        elif first is None:
            first = r
        elif not _same_rdata(r, first):
            yield i, f"{r.where}: a second SOA (the first is at {first.where}); a zone has one"


def _apex_incomplete(origin: Name, records: list[Record]) -> _Found:
    apex_types: dict[int, Record] = {}  # the first record of each type at the apex
    for r in records:
        if r.name == origin:
            apex_types.setdefault(r.rtype, r)
    soa = apex_types.get(RRType.SOA)
    zone = to_text(origin)
    if soa is None:
        yield -1, f"{_zone_file(records)}: zone {zone} has no SOA at its apex"
    if RRType.NS not in apex_types:
        where = soa.where if soa else _zone_file(records)
        yield -1, f"{where}: zone {zone} has no NS records at its apex"


def _cname_not_alone(origin: Name, records: list[Record]) -> _Found:
    cname_owners = {
        r.name for r in records if r.rtype == RRType.CNAME and is_subdomain(r.name, origin)
    }
    by_owner: dict[Name, _Numbered] = {}
    if cname_owners:
        for i, r in enumerate(records):
            if r.name in cname_owners:
                by_owner.setdefault(r.name, []).append((i, r))
    for owned in by_owner.values():
        cnames = [(i, r) for i, r in owned if r.rtype == RRType.CNAME]
        if cnames:
            yield from _beside_other_data(cnames[0], owned)
            yield from _second_cnames(cnames)


def _beside_other_data(cname: tuple[int, Record], owned: _Numbered) -> _Found:
    others: dict[int, Record] = {}  # the first record of each other type
    for _, r in owned:
        if r.rtype != RRType.CNAME and r.rtype not in _CNAME_NEIGHBOURS:
            others.setdefault(r.rtype, r)
    if others:
        i, r = cname
        listed = ", ".join(f"{QTYPE[t]} at {o.where}" for t, o in others.items())
        text = (
            f"{r.where}: CNAME at {to_text(r.name)} beside other data ({listed}); "
            "a CNAME must be alone at its name"
        )
        yield i, text


def _second_cnames(cnames: _Numbered) -> _Found:
    first = cnames[0][1]
    for i, r in cnames[1:]:
        if not _same_rdata(r, first):
            text = (
                f"{r.where}: a second CNAME at {to_text(r.name)} (the first is at "
                f"{first.where}); a name can have only one CNAME"
            )
            yield i, text


def _same_rdata(a: Record, b: Record) -> bool:
    return pack_uncompressed(a.rdata) == pack_uncompressed(b.rdata)


def _zone_file(records: list[Record]) -> str:
    """The file zone-wide problems are reported against: the first record's."""
    return records[0].where.rsplit(":", 1)[0] if records else "?"
