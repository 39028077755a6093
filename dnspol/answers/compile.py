"""Compiling zones into answer tables when a configuration loads.

For every view (a zone as one scope serves it):

* ``exact``: each owner and each type it answers with data, packed once. Plain RRsets of
  types the packer compresses no name in (A, AAAA, TXT, DNSKEY, NSEC, ...) are written
  directly, as it would write them; everything else is packed by the reference path.
* ``names``: every name the zone knows (owners, empty non-terminals, names in record data,
  and their parents inside the zone), with a ``Place`` saying what a query for another
  type at the name gets, and what a query for a name below it gets. A query name is
  answered from the longest of its suffixes found here (its *anchor*): no part of the
  name above the anchor appears anywhere in the answer, so the answer's bytes depend on
  the anchor and on where it starts, and a template made for one offset is moved to
  another by shifting its compression pointers.
* NODATA and NXDOMAIN answers hold only the SOA: one template per view and per name of
  the SOA the query name ends with (usually just the apex) serves every name.
* A signed zone (``dnspol.dnssec``) has a second view per scope, ``View.secure``, for
  queries with DO (RFC 4035 §3.1): RRSIGs after each RRset, and NSEC/NSEC3 proofs. A
  proof is a shared template plus the NSEC/NSEC3 records the name's place fixes
  (``Place.other_proof``, ``Place.below_proof``, ``Prepared.proof`` for wildcards) and,
  for a name below, the one covering the query name, found at run time by bisection in
  the chain sorted at load.

What is not compiled is answered by the reference path: ANY, AXFR and IXFR queries,
names under a DNAME, CNAME chains that leave the owners of the zone, answers over 16 KB.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from dnslib import AAAA, CNAME, MX, NS, PTR, SOA, A

from dnspol import answer
from dnspol.answers.tables import Place, Prepared, View, ZoneTables
from dnspol.codes import RRType
from dnspol.dnssec import secure
from dnspol.dnssec.serve import depends_on_name, written_entries
from dnspol.names import Name, is_subdomain, to_wire
from dnspol.packer import POINTER_LIMIT, _rdata
from dnspol.wire import Query
from dnspol.zones.lookup import MAX_CHAIN, Denial, LookupResult, Outcome, Proof, lookup
from dnspol.zones.model import WILDCARD, Node, Zone, ZoneSet

# Query types the tables leave to the reference path: ANY picks one RRset, zone
# transfers are refused.
REFERENCE_TYPES = frozenset({RRType.ANY, RRType.IXFR, RRType.AXFR})
# Types whose RDATA holds a name the packer compresses (RFC 3597 §4), and the bytes
# before the (first) name
_NAMED_RDATA = {RRType.NS: 0, RRType.CNAME: 0, RRType.PTR: 0, RRType.MX: 2, RRType.SOA: 0}
_FIXED = struct.Struct("!HHIH")
_ANSWER_FLAGS = 0x8400  # QR, AA, NOERROR
_MOVABLE_LIMIT = POINTER_LIMIT - 512  # a moved answer must keep every pointer reachable
PLAIN = -2  # ``_below``: children get the zone's shared NXDOMAIN


def compile_tables(zones: ZoneSet, variants: Mapping[tuple[Name, str], Zone]) -> dict:
    """Lowered origin in wire form -> ``ZoneTables``, for every served zone and scope.
    (``plain_answers`` merges their default views' exact answers.)"""
    by_origin: dict[Name, dict[str, Zone]] = {zone.origin: {"default": zone} for zone in zones}
    for (origin, scope), zone in variants.items():
        if origin in by_origin:
            by_origin[origin][scope] = zone
    out = {}
    for origin, scopes in by_origin.items():
        views = {scope: compile_view(zone, zones) for scope, zone in scopes.items()}
        for scope, zone in scopes.items():
            if zone.signatures is not None:  # DO=1 answers (RFC 4035 §3.1), a view apart
                views[scope].secure = compile_view(zone, zones, signed=True)
        out[to_wire(origin)] = ZoneTables(views, scopes["default"].name, origin)
    return out


def plain_answers(by_origin: dict[bytes, ZoneTables], signed: bool = False) -> tuple[dict, dict]:
    """Every default view's exact answers and names in one table each (question key ->
    ``Prepared``, name -> ``Place``): a query that needs no decision is answered without
    searching for its zone first. A name inside another served zone below (a child zone
    served here too) is that zone's to answer, as ``ZoneSet.find`` says: a parent's names
    under a child's origin are left out. One zone: its own tables, not copied.
    ``signed``: the DO=1 answers (a signed zone's ``secure`` view, another's own)."""

    def view_of(tables: ZoneTables) -> View:
        return (tables.default.secure or tables.default) if signed else tables.default

    if len(by_origin) == 1:
        (tables,) = by_origin.values()
        return view_of(tables).exact, view_of(tables).names
    exact: dict[bytes, Prepared] = {}
    names: dict[bytes, Place] = {}
    children = _served_below(by_origin)
    for origin, tables in by_origin.items():
        below = children.get(origin)
        if not below:
            exact.update(view_of(tables).exact)
            names.update(view_of(tables).names)
            continue
        for key, prepared in view_of(tables).exact.items():
            if not any(_within(key[:-4], child) for child in below):
                exact[key] = prepared
        for name, place in view_of(tables).names.items():
            if not any(_within(name, child) for child in below):
                names[name] = place
    return exact, names


def _served_below(origins) -> dict[bytes, list[bytes]]:
    """Each served origin (wire form) with served origins below it: found by walking
    each origin's ancestors, so 100,000 zones cost 100,000 short walks."""
    children: dict[bytes, list[bytes]] = {}
    for origin in origins:
        at = 0
        while origin[at]:
            at += origin[at] + 1
            if origin[at:] in origins:
                children.setdefault(origin[at:], []).append(origin)
    return children


def _within(name: bytes, origin: bytes) -> bool:
    """Whether wire name ``name`` is ``origin`` or below it (on a label boundary)."""
    if not name.endswith(origin):
        return False
    at = 0
    while len(name) - at > len(origin):
        at += name[at] + 1
    return len(name) - at == len(origin)


def compile_view(zone: Zone, served: ZoneSet, signed: bool = False) -> View:
    """A zone's answers; ``signed``: its DO=1 answers, with RRSIGs and denial proofs."""
    return _ViewCompiler(zone, served, signed).run()


class _ViewCompiler:
    def __init__(self, zone: Zone, served: ZoneSet, signed: bool = False) -> None:
        self.zone = zone
        self.signed = signed
        self.chain = zone.signatures.chain if signed else None
        self.nx_message: dict[Name, tuple] = {}  # SOA name -> signed NXDOMAIN, memo
        self.label = zone.name  # what metrics call the zone
        self.served = served
        self.other_type = _unused_type(zone)  # stands for every type a node does not hold
        self.exact: dict[bytes, Prepared] = {}
        self.names: dict[bytes, Place] = {}
        soa = zone.soa.rdatas[0]
        self.soa_names = _suffixes(
            [zone.origin, _lowered(soa.mname.label), _lowered(soa.rname.label)]
        )
        self.negatives: dict[Name, tuple[Prepared, Prepared]] = {}
        self.plain_places: dict[tuple[Name, int], Place] = {}

    def run(self) -> View:
        zone = self.zone
        for name, node in zone.nodes.items():
            wire = to_wire(name)
            self.names[wire] = self._owner(name, wire, node)
        for name in zone.existing.empty_non_terminals:
            self.names[to_wire(name)] = self._empty(name)
        for name in _suffixes(self._named_in_data()):
            wire = to_wire(name)
            if wire not in self.names and is_subdomain(name, zone.origin):
                self.names[wire] = self._unowned(name)
        return View(self.exact, self.names)

    # --- the places of names -------------------------------------------------------

    def _owner(self, name: Name, wire: bytes, node: Node) -> Place:
        if self._cut_at_or_above(name) is not None:
            if name in self.zone.cuts:  # DS at the cut is the parent's (RFC 4035 §3.1.4.1)
                key = wire + struct.pack("!HH", RRType.DS, 1)
                self.exact[key] = self._at(name, RRType.DS)
            return self._referral_place(name)
        chain = RRType.CNAME in node
        types = self._chain_types(name) if chain else set(node)
        for rtype in types if types is not None else node:
            if rtype not in REFERENCE_TYPES:
                key = wire + struct.pack("!HH", rtype, 1)
                self.exact[key] = self._exact(name, node, rtype)
        below = self._below(name, node)
        if chain:
            other = self._at(name, self.other_type) if types is not None else None
            return Place(other, 0, *below)
        return self._plain_place(name, below)

    def _empty(self, name: Name) -> Place:
        """An empty non-terminal: NODATA for every type, unless under a delegation."""
        if self._cut_at_or_above(name) is not None:
            return self._referral_place(name)
        return self._plain_place(name, self._below(name, None))

    def _referral_place(self, name: Name) -> Place:
        """A name at or under a zone cut: every type, and every name below, is referred."""
        return Place(self._at(name, self.other_type), 0, self._under(name, None), 0)

    def _plain_place(self, name: Name, below: tuple) -> Place:
        """A name whose other types get NODATA, and whose children NXDOMAIN (shared)."""
        if self.signed:
            return self._signed_place(name, below)
        anchor, at = self._soa_anchor(name)
        nodata, nxdomain = self._negative(anchor)
        if below[1] == PLAIN:  # children: NXDOMAIN like any name
            key = (anchor, at)
            place = self.plain_places.get(key)
            if place is None:
                place = self.plain_places[key] = Place(nodata, at, nxdomain, at)
            return place
        return Place(nodata, at, *below)

    def _signed_place(self, name: Name, below: tuple) -> Place:
        """The DO=1 place of an existing name: for other types, the shared NODATA
        template and the NSEC/NSEC3 records proving the name lacks them (RFC 4035
        §3.1.3.1, RFC 5155 §7.2.3); for children, the shared NXDOMAIN template and the
        records proving no name and no wildcard (RFC 4035 §3.1.3.2, RFC 5155 §7.2.2),
        the one covering the query name found at run time (``Place.*_proof``)."""
        chain = self.chain
        if chain is None:
            return Place(self._at(name, self.other_type), 0, None, 0)
        anchor, at = self._soa_anchor(name)
        _, nxdomain, nodata = self._signed_negatives(anchor)
        nodata_proof = self._proof_spec(Proof(Denial.NODATA, name, name), cover=False)
        if below[1] != PLAIN:
            return Place(nodata, at, *below, other_proof=nodata_proof)
        nx_proof = self._proof_spec(Proof(Denial.NXDOMAIN, (b"", *name), name))
        return Place(nodata, at, nxdomain, at, other_proof=nodata_proof, below_proof=nx_proof)

    def _signed_negatives(self, anchor: Name) -> tuple:
        """For names ending in ``anchor`` (a name of the SOA): the signed NXDOMAIN's
        message, NXDOMAIN and NODATA templates (the SOA and its RRSIG), shared by all."""
        made = self.nx_message.get(anchor)
        if made is None:
            soa = self.zone.soa.records(ttl=self.zone.negative_ttl)  # RFC 2308 §5
            result = secure(self.zone, LookupResult(Outcome.NXDOMAIN, authority=soa))
            message = _pack(anchor, self.other_type, result)
            nodata, qend, glue = message
            rcode = answer.rcode_for(Outcome.NODATA)
            nodata = nodata[:3] + bytes(((nodata[3] & 0xF0) | rcode,)) + nodata[4:]
            made = self.nx_message[anchor] = (
                message,
                _prepared(*message, 0, True, True, self.label),
                _prepared(nodata, qend, glue, 0, True, True, self.label),
            )
        return made

    def _proof_spec(
        self, proof: Proof, written: frozenset[int] = frozenset(), cover: bool = True
    ) -> tuple:
        """What run time adds for ``proof`` (``assemble._proved``): the chain entries
        its encloser fixes (all of them, for NODATA), less ``written``, those the
        template holds already; and whether the entry covering the query name (or its
        next closer) follows, unless it is one of those."""
        chain = self.chain
        fixed = chain.entries_for(proof) if not cover else chain.fixed(proof)
        added = tuple(i for i in fixed if i not in written)
        count = sum(len(chain.entries[i].records) for i in added)
        return tuple(set(fixed) | written), chain, added, count, cover

    def _unowned(self, name: Name) -> Place:
        """A name in record data that owns nothing: answered as its encloser says."""
        if self.signed:
            return Place(None, 0, None, 0)  # its closest encloser is elsewhere
        if self._cut_at_or_above(name) is not None:
            return self._referral_place(name)
        encloser = self._closest_encloser(name)
        node = self.zone.nodes.get(encloser)
        if self._wildcard(encloser) is not None or (node is not None and RRType.DNAME in node):
            return Place(None, 0, None, 0)
        anchor, at = self._soa_anchor(name)
        nodata, nxdomain = self._negative(anchor)
        return Place(nxdomain, at, nxdomain, at)

    def _below(self, name: Name, node: Node | None) -> tuple:
        """(below, below_at, below_types) for names under an owner (or ENT) ``name``:
        ``below_at`` PLAIN means "NXDOMAIN, as for any name", filled in by
        ``_plain_place``."""
        if node is not None and RRType.DNAME in node:
            return None, 0, None  # the answer holds the query's own labels: reference path
        wildcard = self._wildcard(name)
        if wildcard is None:
            return None, PLAIN, None
        types = self._chain_types((WILDCARD, *name))
        if types is None:
            return None, 0, None
        by_type = {t: self._under(name, t) for t in types if t not in REFERENCE_TYPES}
        return self._under(name, None), 0, by_type

    # --- answers -------------------------------------------------------------------

    def _exact(self, name: Name, node: Node, rtype: int) -> Prepared:
        rrset = node.get(rtype)
        signatures = self.zone.signatures
        if rtype == RRType.RRSIG and rrset is not None and name and signatures is not None:
            # every RRSIG at the name, at its RRset's TTL (``lookup``)
            records = [
                record
                for sigs in signatures.at_name.get(name, ())
                for record in _direct_records(RRType.RRSIG, sigs.ttl, sigs.rdatas)
            ]
            tail = b"".join(records)
            ttl = max((sigs.ttl for sigs in signatures.at_name.get(name, ())), default=0)
            counts = (len(records), 0, 0)
            return Prepared(_ANSWER_FLAGS, counts, tail, -1, ttl, 0, None, False, self.label)
        if rrset is not None and name and _uncompressed(rrset):
            # signed: the RRset and its RRSIGs (RFC 4035 §3.1.1)
            rrsigs = signatures.of(name, rtype) if self.signed else None
            return _direct(rrset, self.label, rrsigs)
        return self._at(name, rtype)

    def _at(self, name: Name, qtype: int) -> Prepared:
        """The reference answer for exactly ``name``, used at offset 0 only."""
        packed = self._reference(name, qtype)
        return _prepared(*packed, base=0, movable=False, shared=False, zone=self.label)

    def _under(self, name: Name, qtype: int | None) -> Prepared | None:
        """A movable template for names strictly below ``name``. Signed, a proof about
        the query name itself (a wildcard's, RFC 4035 §3.1.3.3) is left to run time;
        None (the reference path) when it would have to go before additional records."""
        child = self._fresh_child(name)
        qtype = self.other_type if qtype is None else qtype
        result = lookup(self.zone, child, qtype, self.served)
        spec = None
        if self.signed:
            varying = [p for p in result.proofs if depends_on_name(p) and p.name == child]
            if varying and (
                varying != [result.proofs[0]] or result.additional or self.chain is None
            ):
                return None
            leave_out = varying[0] if varying else None
            if leave_out is not None:
                written = written_entries(self.zone, result.proofs, leave_out)
                spec = self._proof_spec(leave_out, written)
            result = secure(self.zone, result, leave_out)
        prepared = _prepared(
            *_pack(child, qtype, result),
            base=len(child[0]) + 1,
            movable=True,
            shared=False,
            zone=self.label,
        )
        prepared.proof = spec
        return prepared

    def _negative(self, anchor: Name) -> tuple[Prepared, Prepared]:
        """NODATA and NXDOMAIN for names ending in ``anchor`` (a name of the SOA)."""
        made = self.negatives.get(anchor)
        if made is None:
            soa = self.zone.soa.records(ttl=self.zone.negative_ttl)  # RFC 2308 §5
            message, qend, glue = _pack(anchor, self.other_type, LookupResult(
                Outcome.NODATA, authority=soa))  # fmt: skip
            nodata = _prepared(message, qend, glue, 0, True, True, self.label)
            # NXDOMAIN: the same records, another rcode
            rcode = answer.rcode_for(Outcome.NXDOMAIN)
            message = message[:3] + bytes(((message[3] & 0xF0) | rcode,)) + message[4:]
            made = (nodata, _prepared(message, qend, glue, 0, True, True, self.label))
            self.negatives[anchor] = made
        return made

    def _reference(self, name: Name, qtype: int) -> tuple[bytes, int, bool]:
        result = lookup(self.zone, name, qtype, self.served)
        if self.signed:
            result = secure(self.zone, result)
        return _pack(name, qtype, result)

    # --- what the zone holds -------------------------------------------------------

    def _cut_at_or_above(self, name: Name) -> Name | None:
        cuts = self.zone.cuts
        if not cuts:
            return None
        for i in range(len(name) - len(self.zone.origin)):
            if name[i:] in cuts:
                return name[i:]
        return None

    def _closest_encloser(self, name: Name) -> Name:
        existing = self.zone.existing
        for i in range(len(name) - len(self.zone.origin) + 1):
            if name[i:] in existing:
                return name[i:]
        return self.zone.origin

    def _wildcard(self, name: Name) -> Node | None:
        return self.zone.nodes.get((WILDCARD, *name))

    def _chain_types(self, name: Name) -> set[int] | None:
        """The types whose answers differ at ``name``: those of every node its CNAME
        chain passes (a type none holds gets the same answer as any other); None when
        the chain reaches a name that owns nothing (answered by the reference path)."""
        types: set[int] = set()
        seen = {name}
        nodes = self.zone.nodes
        for _ in range(MAX_CHAIN):
            node = nodes.get(name)
            if node is None:
                return None
            types.update(node)
            if name in self.zone.cuts:
                types.add(RRType.DS)  # a chain that reaches a cut: DS is answered there
            cname = node.get(RRType.CNAME)
            if cname is None:
                return types
            name = _lowered(cname.rdatas[0].label.label)
            if name in seen or not is_subdomain(name, self.zone.origin):
                return types
            found = self.served.find(name)
            if found is None or found.origin != self.zone.origin:
                return types
            seen.add(name)
        return types

    def _soa_anchor(self, name: Name) -> tuple[Name, int]:
        """The longest suffix of ``name`` that the SOA record writes, and its offset."""
        at = 0
        for i in range(len(name) + 1):
            if name[i:] in self.soa_names:
                return name[i:], at
            if i < len(name):
                at += len(name[i]) + 1
        return (), at

    def _fresh_child(self, name: Name) -> Name:
        """A name just below ``name`` that the zone does not know."""
        label = b"-"
        while to_wire((label, *name)) in self.names or (label, *name) in self.soa_names:
            label += b"-"
        return (label, *name)

    def _named_in_data(self) -> Iterable[Name]:
        """Every name inside the record data the packer compresses."""
        for node in self.zone.nodes.values():
            for rtype, rrset in node.items():
                if rtype not in _NAMED_RDATA:
                    continue
                for rd in rrset.rdatas:
                    if rtype == RRType.SOA:
                        yield _lowered(rd.mname.label)
                        yield _lowered(rd.rname.label)
                    else:
                        yield _lowered(rd.label.label)


def _pack(name: Name, qtype: int, result: LookupResult) -> tuple[bytes, int, bool]:
    """The reference path's message for one question (ID 0, RD and CD clear, no OPT),
    where its question ends, and whether its additional records must stay."""
    question = to_wire(name) + struct.pack("!HH", qtype, 1)
    query = Query(0, 0, name, qtype, 1, question, None)
    rcode = answer.rcode_for(result.outcome)
    message = answer.build(
        query,
        rcode,
        result,
        limit=answer.UNLIMITED,
        server_max=answer.UNLIMITED,
        aa=result.authoritative,
    )
    return message, 12 + len(question), result.glue_required


def _prepared(
    message: bytes, qend: int, glue: bool, base: int, movable: bool, shared: bool, zone: str
) -> Prepared:
    flags = int.from_bytes(message[2:4], "big")
    an, ns, ar = struct.unpack_from("!HHH", message, 6)
    additional_at, sites, max_ttl = _walk(message, qend, an + ns, ar, 12 + base)
    tail = message[qend:]
    short = additional_at - qend if ar and not glue else -1  # RFC 2181 §9, RFC 9471
    parts = None
    if movable and len(message) < _MOVABLE_LIMIT:
        parts = []
        at = qend
        for site in sites:
            target = int.from_bytes(message[site : site + 2], "big") & 0x3FFF
            parts.append((message[at:site], target))
            at = site + 2
        parts = tuple(parts)
    return Prepared(flags, (an, ns, ar), tail, short, max_ttl, base, parts, shared, zone)


def _walk(message: bytes, at: int, before: int, additional: int, moving: int):
    """(where the additional section starts, the offsets of compression pointers at or
    past ``moving``, the largest TTL) of a packed message's records from ``at``."""
    sites: list[int] = []
    max_ttl = 0
    additional_at = at
    for index in range(before + additional):
        if index == before:
            additional_at = at
        at = _name_end(message, at, sites, moving)
        rtype, _, ttl, length = _FIXED.unpack_from(message, at)
        max_ttl = max(max_ttl, ttl)
        at += 10
        data_end = at + length
        skip = _NAMED_RDATA.get(rtype)
        if skip is not None:
            end = _name_end(message, at + skip, sites, moving)
            if rtype == RRType.SOA:
                _name_end(message, end, sites, moving)
        at = data_end
    if additional == 0:
        additional_at = at
    return additional_at, sites, max_ttl


def _name_end(message: bytes, at: int, sites: list[int], moving: int) -> int:
    while True:
        length = message[at]
        if length == 0:
            return at + 1
        if length >= 0xC0:
            if (int.from_bytes(message[at : at + 2], "big") & 0x3FFF) >= moving:
                sites.append(at)
            return at + 2
        at += length + 1


_WITH_ADDITIONAL = frozenset({RRType.NS, RRType.MX, RRType.SRV})


_COMPRESSED = (CNAME, NS, PTR, MX, SOA)  # names in their data are compressed (RFC 3597 §4)


def _uncompressed(rrset) -> bool:
    """Data the packer writes as it is, and nothing for the additional section."""
    if rrset.rtype in _WITH_ADDITIONAL:
        return False
    return not any(type(rd) in _COMPRESSED for rd in rrset.rdatas)


def _direct(rrset, zone: str, rrsigs=None) -> Prepared:
    """A plain RRset at the query name, and its ``rrsigs`` if given, packed as the packer
    would pack them (the owner a pointer to the question, the data as ``packer._rdata``
    writes it; RRSIGs at the RRset's TTL, as ``dnssec.secure`` gives them)."""
    records = _direct_records(rrset.rtype, rrset.ttl, rrset.rdatas)
    if rrsigs is not None:
        records += _direct_records(RRType.RRSIG, rrset.ttl, rrsigs.rdatas)
    counts = (len(records), 0, 0)
    tail = b"".join(records)
    return Prepared(_ANSWER_FLAGS, counts, tail, -1, rrset.ttl, 0, None, False, zone)


def _direct_records(rtype: int, ttl: int, rdatas) -> list[bytes]:
    fixed = b"\xc0\x0c" + _FIXED.pack(rtype, 1, ttl, 0)[:8]
    records = []
    for rd in rdatas:
        kind = type(rd)
        if kind is A or kind is AAAA:
            data = bytes(rd.data)
        else:
            buffer = bytearray()
            _rdata(buffer, {}, rd)
            data = bytes(buffer)
        records.append(fixed + len(data).to_bytes(2, "big") + data)
    return records


def _unused_type(zone: Zone) -> int:
    """A private-use type (RFC 6895) no node of the zone holds."""
    held = {rtype for node in zone.nodes.values() for rtype in node}
    return next(t for t in range(65280, 65535) if t not in held)


def _suffixes(names: Iterable[Name]) -> set[Name]:
    out: set[Name] = set()
    for name in names:
        for i in range(len(name) + 1):
            out.add(name[i:])
    return out


def _lowered(labels) -> Name:
    return tuple(label.lower() for label in labels)
