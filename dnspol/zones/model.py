"""Compiled zone data: records indexed by owner name, frozen once built.

A ``Zone`` is built from a flat list of ``Record`` values (what the loader read,
or a scope overlaid on a default zone) and answers the questions the lookup asks:
which node holds a name, does a name exist (empty non-terminals included),
where are the zone cuts.

A signed zone's NSEC3 records (and their RRSIGs) are held apart, in ``nsec3``: their
hashed owners are not names of the zone (RFC 5155 §7.2.8: a query for one is answered
as for any name that does not exist). ``signatures`` is the zone's DNSSEC index
(``dnspol.dnssec``) when the apex is signed, else None: RRSIGs by owner and covered
type, and the NSEC or NSEC3 chain in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from dnslib import RR, DNSBuffer, DNSLabel

from dnspol.codes import RRType
from dnspol.names import Name, to_label, to_text

WILDCARD = b"*"


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record as read from a file.

    ``where`` (``file:line``) is made from ``file`` and ``line`` when a message needs it,
    so a million records do not carry a million strings. With ``line`` 0, ``file`` alone
    says where the record comes from (e.g. ``file:line`` already, or a zone's source).
    """

    name: Name
    rtype: int
    ttl: int
    rdata: object  # a dnslib RD instance, ready to pack
    file: str = "?"
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class Rec(NamedTuple):
    """One record of an answer, ready for ``dnspol.packer`` (a tuple: cheap to make)."""

    owner: Name
    rtype: int
    rclass: int
    ttl: int
    rdata: object  # a dnslib RD instance


class PackedRec(NamedTuple):
    """A record of an answer packed in advance (a signed zone's NSEC and NSEC3 records):
    its owner's labels below ``zone`` as wire bytes, then ``zone`` (written as a pointer
    to the zone's name in the question), the type and TTL, then RDLENGTH and RDATA. The
    compiled answers append the same bytes, so both paths write the same message."""

    head: bytes
    zone: Name
    rtype: int
    ttl: int
    rest: bytes  # RDLENGTH and RDATA


@dataclass(frozen=True, slots=True)
class RRset:
    """All records of one owner and type. One TTL per RRset (RFC 2181 §5.2)."""

    name: Name
    rtype: int
    ttl: int
    rdatas: tuple[object, ...]

    def records(self, owner: Name | None = None, ttl: int | None = None) -> list[Rec]:
        """The records for an answer, optionally under another owner (wildcards)."""
        name = self.name if owner is None else owner
        use_ttl = self.ttl if ttl is None else ttl
        return [Rec(name, self.rtype, 1, use_ttl, rd) for rd in self.rdatas]

    def to_rrs(self, owner: DNSLabel | None = None, ttl: int | None = None) -> list[RR]:
        """dnslib RRs for packing, optionally under another owner (wildcards)."""
        rname = owner if owner is not None else to_label(self.name)
        use_ttl = self.ttl if ttl is None else ttl
        return [RR(rname, self.rtype, 1, use_ttl, rd) for rd in self.rdatas]


Node = Mapping[int, RRset]


class OneRRsetNode(Mapping[int, RRset]):
    """A node that holds one RRset, as most do: a read-only mapping of one entry.

    A dict of one entry behind a ``MappingProxyType`` takes some 300 bytes; this takes
    about 50, which is most of what a million-name zone weighs.
    """

    __slots__ = ("_rrset",)

    def __init__(self, rrset: RRset) -> None:
        self._rrset = rrset

    def __getitem__(self, rtype: int) -> RRset:
        if rtype == self._rrset.rtype:
            return self._rrset
        raise KeyError(rtype)

    def get(self, rtype: int, default: RRset | None = None) -> RRset | None:  # type: ignore[override]
        rrset = self._rrset
        return rrset if rtype == rrset.rtype else default

    def __contains__(self, rtype: object) -> bool:
        return rtype == self._rrset.rtype

    def __iter__(self) -> Iterator[int]:
        return iter((self._rrset.rtype,))

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"OneRRsetNode({self._rrset!r})"


class Existing(AbstractSet[Name]):
    """The names that exist in a zone: owners of data and empty non-terminals.

    A view over ``Zone.nodes`` and the (few) empty non-terminals, so that every owner
    name is not held a second time.
    """

    __slots__ = ("_nodes", "empty_non_terminals")

    def __init__(self, nodes: Mapping[Name, Node], empty_non_terminals: frozenset[Name]) -> None:
        self._nodes = nodes
        self.empty_non_terminals = empty_non_terminals

    def __contains__(self, name: object) -> bool:
        return name in self._nodes or name in self.empty_non_terminals

    def __iter__(self) -> Iterator[Name]:
        yield from self._nodes
        yield from self.empty_non_terminals

    def __len__(self) -> int:
        return len(self._nodes) + len(self.empty_non_terminals)


@dataclass(frozen=True, slots=True)
class Zone:
    origin: Name
    nodes: Mapping[Name, Node]
    existing: Existing  # owners of data plus empty non-terminals
    cuts: frozenset[Name]  # names below the apex that own NS: delegations
    source: str = ""
    scope: str = "default"
    extras: Mapping[str, object] = field(default_factory=dict)
    nsec3: Mapping[Name, Node] = field(default_factory=dict)  # hashed owner -> NSEC3, RRSIG
    signatures: Any = field(default=None, compare=False)  # ``dnssec.Signatures`` or None
    name: str = field(init=False, compare=False)  # the origin as text, e.g. ``example.com.``

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", to_text(self.origin))

    @property
    def soa(self) -> RRset:
        return self.nodes[self.origin][RRType.SOA]

    @property
    def serial(self) -> int:
        return self.soa.rdatas[0].times[0]

    @property
    def negative_ttl(self) -> int:
        """RFC 2308 §5: min(SOA TTL, SOA MINIMUM)."""
        return min(self.soa.ttl, self.soa.rdatas[0].times[4])

    def node(self, name: Name) -> Node | None:
        return self.nodes.get(name)

    @classmethod
    def from_records(
        cls, origin: Name, records: Iterable[Record], source: str = "", scope: str = "default"
    ) -> Zone:
        """Index records by owner and type. Validation is the loader's job."""
        # owner -> its one record, or the list of them; becomes owner -> node in place
        grouped: dict[Name, Any] = {}
        records, hashed = _split_nsec3(records)
        for rec in records:
            found = grouped.get(rec.name)
            if found is None:
                grouped[rec.name] = rec
            elif type(found) is list:
                found.append(rec)
            else:
                grouped[rec.name] = [found, rec]
        for name, found in grouped.items():
            grouped[name] = _node(name, found if type(found) is list else [found])
        nodes: dict[Name, Node] = grouped
        cuts = frozenset(n for n, node in nodes.items() if n != origin and RRType.NS in node)
        zone = cls(
            origin=origin,
            nodes=MappingProxyType(nodes),
            existing=Existing(nodes, _empty_non_terminals(origin, nodes)),
            cuts=cuts,
            source=source,
            scope=scope,
            nsec3=MappingProxyType(_nodes_of(hashed)),
        )
        apex = nodes.get(origin)
        if apex is not None and RRType.RRSIG in apex and RRType.DNSKEY in apex:
            from dnspol.dnssec import index_signatures  # the zone model is below dnssec

            object.__setattr__(zone, "signatures", index_signatures(zone))
        return zone

    def records(self) -> list[Record]:
        """The zone's records again, one per rdata (where: the zone's source)."""
        where = self.source or "?"
        return [
            Record(rrset.name, rrset.rtype, rrset.ttl, rdata, where)
            for nodes in (self.nodes, self.nsec3)
            for node in nodes.values()
            for rrset in node.values()
            for rdata in rrset.rdatas
        ]


def _split_nsec3(records: Iterable[Record]) -> tuple[Iterable[Record], list[Record]]:
    """The records of the zone's names, and its NSEC3 records with their RRSIGs (by
    owner: an owner that holds an NSEC3 holds nothing else of the zone's)."""
    records = records if isinstance(records, list) else list(records)
    owners = {rec.name for rec in records if rec.rtype == RRType.NSEC3}
    if not owners:
        return records, []
    kept = [rec for rec in records if rec.name not in owners]
    hashed = [rec for rec in records if rec.name in owners]
    return kept, hashed


def _nodes_of(records: list[Record]) -> dict[Name, Node]:
    by_owner: dict[Name, list[Record]] = {}
    for rec in records:
        by_owner.setdefault(rec.name, []).append(rec)
    return {name: _node(name, recs) for name, recs in by_owner.items()}


def _node(name: Name, recs: list[Record]) -> Node:
    by_type: dict[int, list[Record]] = {}
    for rec in recs:
        by_type.setdefault(rec.rtype, []).append(rec)
    if len(by_type) == 1:
        ((rtype, same),) = by_type.items()
        return OneRRsetNode(_rrset(name, rtype, same))
    return MappingProxyType({rtype: _rrset(name, rtype, same) for rtype, same in by_type.items()})


def _empty_non_terminals(origin: Name, nodes: Mapping[Name, Node]) -> frozenset[Name]:
    """Names between an owner and the apex that own nothing (RFC 4592 §2.2.2)."""
    found: set[Name] = set()
    depth = len(origin)
    for name in nodes:
        for i in range(1, len(name) - depth + 1):
            parent = name[i:]
            if parent in nodes or parent in found:
                break  # its own ancestors are (or will be) done from there
            found.add(parent)
    return frozenset(found)


def _rrset(name: Name, rtype: int, recs: list[Record]) -> RRset:
    if len(recs) == 1:
        rec = recs[0]
        return RRset(name, rtype, rec.ttl, (rec.rdata,))
    rdatas: list[object] = []
    seen: set[bytes] = set()
    for rec in recs:
        key = _rdata_key(rec.rdata)
        if key not in seen:  # duplicate RRs collapse (RFC 2181 §5)
            seen.add(key)
            rdatas.append(rec.rdata)
    # RFC 2181 §5.2: one TTL per RRset; like BIND, the lowest wins.
    return RRset(name, rtype, min(rec.ttl for rec in recs), tuple(rdatas))


def _rdata_key(rdata: object) -> bytes:
    buf = DNSBuffer()
    rdata.pack(buf)  # type: ignore[attr-defined]
    return bytes(buf.data)


class ZoneSet:
    """The served zones of one scope, found by longest matching suffix."""

    __slots__ = ("_zones",)

    def __init__(self, zones: Iterable[Zone]) -> None:
        self._zones: dict[Name, Zone] = {z.origin: z for z in zones}

    def find(self, name: Name) -> Zone | None:
        zones = self._zones
        for i in range(len(name) + 1):
            zone = zones.get(name[i:])
            if zone is not None:
                return zone
        return None

    def __iter__(self):
        return iter(self._zones.values())

    def __len__(self) -> int:
        return len(self._zones)

    def get(self, origin: Name) -> Zone | None:
        return self._zones.get(origin)
