"""Compiled zone data: records indexed by owner name, frozen once built.

A ``Zone`` is built from a flat list of ``Record`` values (what the loader read,
or a scope overlaid on a default zone) and answers the questions the lookup asks:
which node holds a name, does a name exist (empty non-terminals included),
where are the zone cuts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dnslib import QTYPE, RR, DNSLabel

from dnspol.names import Name, to_label, to_text

TYPE_SOA = QTYPE.SOA
TYPE_NS = QTYPE.NS
TYPE_CNAME = QTYPE.CNAME
TYPE_DS = QTYPE.DS
WILDCARD = b"*"


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record as read from a file; ``where`` is ``file:line``."""

    name: Name
    rtype: int
    ttl: int
    rdata: object  # a dnslib RD instance, ready to pack
    where: str = "?"


@dataclass(frozen=True, slots=True)
class RRset:
    """All records of one owner and type. One TTL per RRset (RFC 2181 §5.2)."""

    name: Name
    rtype: int
    ttl: int
    rdatas: tuple[object, ...]

    def to_rrs(self, owner: DNSLabel | None = None, ttl: int | None = None) -> list[RR]:
        """dnslib RRs for packing, optionally under another owner (wildcards)."""
        rname = owner if owner is not None else to_label(self.name)
        use_ttl = self.ttl if ttl is None else ttl
        return [RR(rname, self.rtype, 1, use_ttl, rd) for rd in self.rdatas]


Node = Mapping[int, RRset]


@dataclass(frozen=True, slots=True)
class Zone:
    origin: Name
    nodes: Mapping[Name, Node]
    existing: frozenset[Name]  # owners of data plus empty non-terminals
    cuts: frozenset[Name]  # names below the apex that own NS: delegations
    source: str = ""
    scope: str = "default"
    extras: Mapping[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Presentation form of the origin, e.g. ``example.com.``."""
        return to_text(self.origin)

    @property
    def soa(self) -> RRset:
        return self.nodes[self.origin][TYPE_SOA]

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
        grouped: dict[Name, dict[int, list[Record]]] = {}
        for rec in records:
            grouped.setdefault(rec.name, {}).setdefault(rec.rtype, []).append(rec)
        nodes: dict[Name, Node] = {}
        for name, by_type in grouped.items():
            nodes[name] = MappingProxyType(
                {rtype: _rrset(name, rtype, recs) for rtype, recs in by_type.items()}
            )
        existing = set()
        for name in nodes:
            # every ancestor between the name and the apex exists (RFC 4592 §2.2.2)
            for i in range(len(name) - len(origin) + 1):
                existing.add(name[i:])
        cuts = frozenset(n for n, node in nodes.items() if n != origin and TYPE_NS in node)
        return cls(
            origin=origin,
            nodes=MappingProxyType(nodes),
            existing=frozenset(existing),
            cuts=cuts,
            source=source,
            scope=scope,
        )


def _rrset(name: Name, rtype: int, recs: list[Record]) -> RRset:
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
    from dnslib import DNSBuffer

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
