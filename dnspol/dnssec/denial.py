"""A signed zone's DNSSEC index: RRSIGs by what they cover, and the denial chain.

Built once per zone (``index_signatures``, called when a ``Zone`` is built), never by a
query. The NSEC chain is sorted in canonical order (RFC 4034 §6.1: labels compared
right to left, as lowercase octet strings), the NSEC3 chain by hash (RFC 5155 §3): the
record covering a name is found by bisection, so a name nobody asked for before costs
one key (NSEC) or one SHA-1 (NSEC3, RFC 9276: zero extra iterations expected) and one
bisection. Each chain entry is also packed once, standalone (owner uncompressed), for
the compiled answers to append.

What an answer must prove (``lookup.Proof``) maps to entries in two parts: ``fixed``,
which depends on the closest encloser only (compiled with the place of that name), and
``varying``, the one record that covers the query name itself (NSEC, RFC 4035 §3.1.3)
or its next closer name (NSEC3, RFC 5155 §7.2.1).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from bisect import bisect_right
from typing import TYPE_CHECKING, NamedTuple

from dnspol.codes import RRType
from dnspol.names import Name, to_wire
from dnspol.zones.lookup import Denial, Proof
from dnspol.zones.model import WILDCARD, PackedRec, RRset
from dnspol.zones.rdata import pack_uncompressed

if TYPE_CHECKING:
    from dnspol.zones.model import Zone

_FIXED = struct.Struct("!HHIH")
_sha1 = hashlib.sha1
_VARYING = (Denial.NXDOMAIN, Denial.WILDCARD, Denial.WILDCARD_NODATA)


class Entry(NamedTuple):
    """One NSEC or NSEC3 RRset and its RRSIGs, as records packed in advance."""

    rrset: RRset
    records: tuple[PackedRec, ...]
    # the records' bytes cut where each owner's zone name goes: ``pointer.join(segments)``
    # writes them with that pointer (to the zone's name in the question)
    segments: tuple[bytes, ...]


class Chain:
    """The NSEC (``hashed`` False) or NSEC3 chain of a zone, in order."""

    __slots__ = (
        "hashed", "entries", "keys", "matches", "salt", "iterations", "opt_out", "max_ttl",
        "origin_length",
    )  # fmt: skip

    def __init__(self, hashed: bool, entries: list[Entry], keys: list, matches: dict) -> None:
        self.hashed = hashed
        self.entries = entries
        self.keys = keys  # canonical keys (reversed labels) or raw hashes, sorted
        self.matches = matches  # owner name (NSEC) or raw hash (NSEC3) -> index
        self.salt = b""
        self.iterations = 0
        self.opt_out = False
        self.max_ttl = max((r.ttl for entry in entries for r in entry.records), default=0)
        self.origin_length = 0  # of the zone's name in wire form

    # --- finding records ---------------------------------------------------------

    def hash(self, wire: bytes) -> bytes:
        """RFC 5155 §5: IH(salt, name, iterations), SHA-1, the name lowercased."""
        salt = self.salt
        digest = hashlib.sha1(wire + salt).digest()
        for _ in range(self.iterations):
            digest = hashlib.sha1(digest + salt).digest()
        return digest

    def match(self, name: Name) -> int | None:
        """The entry whose owner is ``name`` (NSEC3: whose hash is its hash)."""
        if self.hashed:
            return self.matches.get(self.hash(to_wire(name)))
        return self.matches.get(name)

    def cover(self, name: Name) -> int:
        """The entry whose owner is the last at or before ``name`` in the chain's order
        (wrapping to the last): the one covering a name that does not exist."""
        key = self.hash(to_wire(name)) if self.hashed else name[::-1]
        return (bisect_right(self.keys, key) - 1) % len(self.keys)

    def cover_wire(self, wire: bytes) -> int:
        """``cover`` for a lowered uncompressed name in wire form (the query's bytes)."""
        if self.hashed:
            key: object = (
                self.hash(wire) if self.iterations else _sha1(wire + self.salt).digest()
            )  # RFC 9276: no extra iterations, the usual case
        else:
            labels = []
            at = 0
            length = wire[0]
            while length:
                labels.append(wire[at + 1 : at + 1 + length])
                at += length + 1
                length = wire[at]
            labels.reverse()
            key = tuple(labels)
        return (bisect_right(self.keys, key) - 1) % len(self.keys)

    # --- what a proof needs --------------------------------------------------------

    def fixed(self, proof: Proof) -> list[int]:
        """The entries of ``proof`` that do not depend on the query name below its
        closest encloser (all of them, for NODATA and REFERRAL)."""
        kind, name, encloser = proof
        if kind is Denial.NODATA or kind is Denial.REFERRAL:
            return self._nodata(name)
        if kind is Denial.WILDCARD:  # RFC 4035 §3.1.3.3, RFC 5155 §7.2.6
            return []
        wildcard = (WILDCARD, *encloser)
        out: list[int] = []
        if self.hashed:  # RFC 5155 §7.2.2 and §7.2.5: the closest encloser matched
            found = self.match(encloser)
            if found is not None:
                out.append(found)
        if kind is Denial.NXDOMAIN:  # no wildcard at the closest encloser
            out.append(self.cover(wildcard))
        else:  # WILDCARD_NODATA: the wildcard, without the type
            found = self.match(wildcard)
            if found is not None:
                out.append(found)
        return _unique(out)

    def varying(self, proof: Proof) -> int | None:
        """The entry covering the query name (NSEC) or its next closer (NSEC3); None
        for proofs that need none."""
        kind, name, encloser = proof
        if kind not in _VARYING:
            return None
        if self.hashed:
            return self.cover(name[len(name) - len(encloser) - 1 :])
        return self.cover(name)

    def entries_for(self, proof: Proof) -> list[int]:
        out = self.fixed(proof)
        more = self.varying(proof)
        if more is not None and more not in out:
            out.append(more)
        return out

    def _nodata(self, name: Name) -> list[int]:
        found = self.match(name)
        if found is not None:
            return [found]
        if not self.hashed:  # an empty non-terminal: the NSEC covering it
            return [self.cover(name)]
        # RFC 5155 §7.2.4 (opt-out): the closest provable encloser and the next closer
        for i in range(1, len(name) + 1):
            found = self.match(name[i:])
            if found is not None:
                return _unique([found, self.cover(name[i - 1 :])])
        return []


def _unique(indices: list[int]) -> list[int]:
    out: list[int] = []
    for index in indices:
        if index not in out:
            out.append(index)
    return out


class Signatures:
    """A signed zone's RRSIGs by (owner, covered type), and its denial chain."""

    __slots__ = ("rrsigs", "chain", "at_name")

    def __init__(self, rrsigs: dict[tuple[Name, int], RRset], chain: Chain | None) -> None:
        self.rrsigs = rrsigs
        self.chain = chain
        at_name: dict[Name, list[RRset]] = {}
        for (name, _), rrset in sorted(rrsigs.items(), key=lambda item: item[0][1]):
            at_name.setdefault(name, []).append(rrset)
        self.at_name = at_name  # owner -> its RRSIG RRsets, by covered type

    def of(self, name: Name, rtype: int) -> RRset | None:
        return self.rrsigs.get((name, rtype))

    def records_at(self, name: Name, owner: Name) -> list:
        """Every RRSIG at ``name`` (an RRSIG query), by covered type, under ``owner``."""
        return [record for rrset in self.at_name.get(name, ()) for record in rrset.records(owner)]


def index_signatures(zone: Zone) -> Signatures:
    """The DNSSEC index of a zone whose apex is signed."""
    rrsigs: dict[tuple[Name, int], RRset] = {}
    for nodes in (zone.nodes, zone.nsec3):
        for name, node in nodes.items():
            sigs = node.get(RRType.RRSIG)
            if sigs is not None:
                _split_rrsigs(name, node, sigs, rrsigs)
    chain = _nsec3_chain(zone, rrsigs) if zone.nsec3 else _nsec_chain(zone, rrsigs)
    return Signatures(rrsigs, chain)


def _split_rrsigs(name: Name, node, sigs: RRset, out: dict) -> None:
    """The RRSIGs of a node by covered type, each with its RRset's TTL (the node holds
    them as one RRset, whose TTL is the lowest of them all)."""
    by_type: dict[int, list[object]] = {}
    for rdata in sigs.rdatas:
        covered = int.from_bytes(pack_uncompressed(rdata)[:2], "big")
        by_type.setdefault(covered, []).append(rdata)
    for covered, rdatas in by_type.items():
        covers = node.get(covered)
        ttl = covers.ttl if covers is not None else sigs.ttl
        out[(name, covered)] = RRset(name, RRType.RRSIG, ttl, tuple(rdatas))


def _entry(origin: Name, rrset: RRset, rrsig: RRset | None) -> Entry:
    records: list[PackedRec] = []
    segments = [b""]
    for one in (rrset, rrsig):
        if one is None:
            continue
        head = to_wire(one.name[: len(one.name) - len(origin)])[:-1]  # the labels below
        for rdata in one.rdatas:
            data = pack_uncompressed(rdata)
            rest = len(data).to_bytes(2, "big") + data
            records.append(PackedRec(head, origin, one.rtype, one.ttl, rest))
            segments[-1] += head
            segments.append(_FIXED.pack(one.rtype, 1, one.ttl, 0)[:8] + rest)
    return Entry(rrset, tuple(records), tuple(segments))


def _nsec_chain(zone: Zone, rrsigs: dict) -> Chain | None:
    owners = sorted(
        (name for name, node in zone.nodes.items() if RRType.NSEC in node),
        key=lambda name: name[::-1],
    )
    if not owners:
        return None
    nodes, origin = zone.nodes, zone.origin
    entries = [_entry(origin, nodes[n][RRType.NSEC], rrsigs.get((n, RRType.NSEC))) for n in owners]
    keys = [name[::-1] for name in owners]
    chain = Chain(False, entries, keys, {name: i for i, name in enumerate(owners)})
    chain.origin_length = len(to_wire(origin))
    return chain


def _nsec3_chain(zone: Zone, rrsigs: dict) -> Chain | None:
    found = []
    for name, node in zone.nsec3.items():
        rrset = node.get(RRType.NSEC3)
        if rrset is None or len(name) != len(zone.origin) + 1:
            continue
        try:
            digest = base64.b32hexdecode(name[0].upper())
        except ValueError:
            continue  # not a hash: no NSEC3 of this zone's chain
        found.append((digest, rrset))
    if not found:
        return None
    found.sort(key=lambda pair: pair[0])
    origin = zone.origin
    entries = [_entry(origin, rrset, rrsigs.get((rrset.name, RRType.NSEC3))) for _, rrset in found]
    keys = [digest for digest, _ in found]
    chain = Chain(True, entries, keys, {digest: i for i, digest in enumerate(keys)})
    chain.origin_length = len(to_wire(origin))
    params = pack_uncompressed(found[0][1].rdatas[0])  # alg, flags, iterations, salt
    chain.opt_out = bool(params[1] & 1)
    chain.iterations = int.from_bytes(params[2:4], "big")
    chain.salt = params[5 : 5 + params[4]]
    return chain
