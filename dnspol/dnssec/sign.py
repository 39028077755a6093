"""Signing zones at load: DNSKEY, RRSIG, NSEC or NSEC3 added to each scope's zone data.

This module owns online signing. ``sign_all`` takes the zones a config loaded (the default
scope and every scope overlay of each zone that has a ``dnssec:`` policy) and returns new
``Zone`` values that hold, besides their own records:

- the DNSKEY RRset at the apex (the policy's keys, plus any DNSKEY the zone file has, so a
  key can be pre-published), and CDS/CDNSKEY for the KSKs when ``cds: true``;
- an NSEC chain over the scope's authoritative names, or an NSEC3 chain (RFC 5155 with
  RFC 9276's parameters: SHA-1, no salt, no extra iterations, no opt-out) with NSEC3PARAM;
- an RRSIG for every authoritative RRset of the scope, by each key that should sign it
  (KSKs sign DNSKEY/CDS/CDNSKEY, ZSKs the rest; a zone with keys of one kind uses them
  for everything, a CSK; every algorithm signs everything, RFC 6840 §5.11).

Each scope is signed over its own RRsets and gets its own denial chain, made from its own
names, so a tailored answer validates like the default. An RRset that several scopes share
(most of an overlay) is signed once per load and its RRSIGs are reused. Records the signer
makes replace any RRSIG/NSEC/NSEC3/NSEC3PARAM the zone file had (a pre-signed file is
signed again). Names below a zone cut are glue: neither signed nor chained.

Everything the serving code needs is in the zone model afterwards, as records like those
of a zone signed by ``dnssec-signzone``; ``write_zone`` writes it out as a master file
(``dnspol dump``), which ``dnssec-verify`` checks. The RRSIG, NSEC and NSEC3 rdata made
here are dnslib's generic ``RD``, their wire form: a million of them are a few hundred MB
lighter than dnslib's own classes, and the packer writes them as they are.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import random
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import IO, Any

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dnslib import DNSKEY, RD, SOA

from dnspol import dnssec as dnssec_package
from dnspol.codes import RRType
from dnspol.dnssec.keys import SigningKey
from dnspol.dnssec.policy import SigningPolicy
from dnspol.names import Name, to_text, to_wire
from dnspol.zones.model import Existing, Node, RRset, Zone, ZoneSet
from dnspol.zones.rdata import pack_uncompressed

__all__ = ["SignedZones", "sign_all", "sign_zone", "type_bitmap", "write_zone"]

RRSIG_TYPE, NSEC_TYPE, NSEC3_TYPE, NSEC3PARAM_TYPE = 46, 47, 50, 51
DNSKEY_TYPE, DS_TYPE, CDS_TYPE, CDNSKEY_TYPE = 48, 43, 59, 60
# what the signer makes: a zone file's own copies are dropped, not signed
MADE_HERE = frozenset({RRSIG_TYPE, NSEC_TYPE, NSEC3_TYPE, NSEC3PARAM_TYPE})
# RFC 4034 §6.2 as amended by RFC 6840 §5.1: the names in these RDATA are lowercased
_NAMES_LOWERCASED = frozenset(
    {2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15, 17, 18, 21, 24, 26, 30, 35, 36, 33, 39, 38, 46}
)
_KEY_SIGNED = frozenset({DNSKEY_TYPE, CDS_TYPE, CDNSKEY_TYPE})  # signed by the KSKs
_NSEC3_HEADER = struct.pack("!BBHB", 1, 0, 0, 0)  # SHA-1, no opt-out, 0 iterations, no salt
_RR_FIXED = struct.Struct("!HHIH")
_RRSIG_FIXED = struct.Struct("!HBBIIIH")
PARALLEL_FROM = 20_000  # RRsets: fewer are signed in this process (forking costs more)


@dataclass(frozen=True)
class SignedZones:
    """``sign_all``'s result: the zones to serve, and when to sign them again."""

    zones: ZoneSet
    variants: Mapping[tuple[Name, str], Zone]
    resign_at: float | None  # epoch seconds; None: nothing is signed


def sign_all(
    zones: ZoneSet,
    variants: Mapping[tuple[Name, str], Zone],
    policies: Mapping[Name, SigningPolicy],
    now: int | None = None,
    workers: int = 1,
) -> SignedZones:
    """Every scope of every zone that has a policy, signed; the others as they were."""
    if not policies:
        return SignedZones(zones, variants, None)
    now = int(time.time()) if now is None else now
    signed: dict[tuple[Name, str], Zone] = {}
    resign_at: float | None = None
    for origin, policy in policies.items():
        scopes = [key for key in variants if key[0] == origin] or [(origin, "default")]
        run = SigningRun(share=len(scopes) > 1)  # what the scopes of this zone share
        for key in scopes:
            zone = variants.get(key) or zones.get(origin)
            if zone is None:
                continue
            signed[key] = sign_zone(zone, policy, now, run=run, workers=workers)
        due = policy.resign_after(now)
        resign_at = due if resign_at is None else min(resign_at, due)
    new_variants = {key: signed.get(key, zone) for key, zone in variants.items()}
    defaults = [signed.get((zone.origin, "default"), zone) for zone in zones]
    for zone in defaults:
        new_variants.setdefault((zone.origin, "default"), zone)
    return SignedZones(ZoneSet(defaults), MappingProxyType(new_variants), resign_at)


# --- one zone -------------------------------------------------------------------------------


def sign_zone(
    zone: Zone,
    policy: SigningPolicy,
    now: int,
    run: SigningRun | None = None,
    workers: int = 1,
) -> Zone:
    """``zone`` with its keys, denial chain and signatures (a new ``Zone``)."""
    run = run if run is not None else SigningRun(share=False)
    origin = zone.origin
    data = _authoritative_data(zone, policy)
    occluded = _occluded(zone)
    apex = data[origin]
    apex.update(_key_rrsets(zone, policy))
    if policy.serial == "unixtime":
        apex[RRType.SOA] = _soa_with_serial(zone.soa, now)
    negative_ttl = zone.negative_ttl
    names = sorted((n for n in data if n not in occluded), key=_canonical)
    if policy.denial == "nsec3":
        ents = [n for n in zone.existing.empty_non_terminals if n not in occluded]
        apex[NSEC3PARAM_TYPE] = RRset(origin, NSEC3PARAM_TYPE, 0, (RD(_NSEC3_HEADER),))
        chain = _nsec3_chain(origin, names, ents, data, zone.cuts, negative_ttl, run)
    else:
        chain = _nsec_chain(origin, names, data, zone.cuts, negative_ttl, run)
    for name, rrset in chain:
        data.setdefault(name, {})[rrset.rtype] = rrset
    if policy.denial == "nsec3":
        names += [name for name, _ in chain]  # NSEC3 owners: signed like any other name
    to_sign = [
        rrset
        for name in names
        for rrset in data[name].values()
        if name not in zone.cuts or rrset.rtype in (DS_TYPE, NSEC_TYPE)
    ]
    signer = _Signer(origin, policy, now)
    signatures = signer.sign_rrsets(to_sign, run, workers)
    for name, rrsigs in signatures.items():
        data[name][RRSIG_TYPE] = rrsigs
    hashed_owners = [name for name, _ in chain] if policy.denial == "nsec3" else []
    return _rebuilt(zone, data, hashed_owners)


class SigningRun:
    """What one load's signing of a zone keeps between its scopes: the signatures of each
    RRset (an RRset the scopes share is signed once), the denial records (so a scope's NSEC
    that matches the default's is the same object), and each rdata's canonical wire form.

    Keys are object identities: every object they name lives as long as the run (the zones
    being signed hold them), so an id is not reused while the run is.
    """

    def __init__(self, share: bool) -> None:
        self.share = share  # False: one scope; keep no signatures (memory)
        self.signatures: dict[tuple, list[object]] = {}
        self.denials: dict[tuple, object] = {}
        self.wires: dict[int, bytes] = {}  # id(rdata) -> canonical RDATA

    def denial(self, key: tuple, make) -> object:  # noqa: ANN001 - a small factory
        """The denial rdata for ``key`` (made once per run), its wire form remembered."""
        found = self.denials.get(key)
        if found is None:
            found, wire = make()
            self.wires[id(found)] = wire
            if self.share:
                self.denials[key] = found
        return found

    def canonical_rdata(self, rtype: int, rd: object) -> bytes:
        wire = self.wires.get(id(rd))
        if wire is None:
            wire = _canonical_rdata(rtype, rd)
            if self.share:
                self.wires[id(rd)] = wire
        return wire


def _identity(rrset: RRset) -> tuple:
    """The same owner, type, TTL and rdata objects: the same signatures."""
    return (rrset.name, rrset.rtype, rrset.ttl, *map(id, rrset.rdatas))


def _canonical(name: Name) -> Name:
    """RFC 4034 §6.1's order: by labels from the root, each compared as lowercase bytes."""
    return name[::-1]


def _authoritative_data(zone: Zone, policy: SigningPolicy) -> dict[Name, dict[int, RRset]]:
    """Owner -> type -> RRset: the zone's records less what the signer makes again."""
    dropped = MADE_HERE | ({CDS_TYPE, CDNSKEY_TYPE} if policy.cds else frozenset())
    data: dict[Name, dict[int, RRset]] = {}
    for name, node in zone.nodes.items():
        kept = {rtype: rrset for rtype, rrset in node.items() if rtype not in dropped}
        if kept:
            data[name] = kept
    return data


def _occluded(zone: Zone) -> frozenset[Name]:
    """Names below a zone cut: glue, not the zone's data (RFC 4035 §2.2)."""
    if not zone.cuts:
        return frozenset()
    cuts, depth = zone.cuts, len(zone.origin)
    return frozenset(
        name for name in zone.existing if any(name[i:] in cuts for i in range(1, len(name) - depth))
    )


def _key_rrsets(zone: Zone, policy: SigningPolicy) -> dict[int, RRset]:
    """DNSKEY (the file's own plus the policy's), and CDS/CDNSKEY when configured."""
    origin = zone.origin
    old = zone.nodes[origin].get(DNSKEY_TYPE)
    ttl = policy.dnskey_ttl if policy.dnskey_ttl is not None else (old or zone.soa).ttl
    seen: dict[bytes, object] = {}
    for rd in old.rdatas if old else ():
        seen.setdefault(pack_uncompressed(rd), rd)
    for key in policy.keys:
        seen.setdefault(key.rdata, DNSKEY(key.flags, 3, key.algorithm, key.public_key))
    rrsets = {DNSKEY_TYPE: RRset(origin, DNSKEY_TYPE, ttl, tuple(seen.values()))}
    if policy.cds:
        ksks = [key for key in policy.keys if key.is_ksk] or list(policy.keys)
        owner = to_wire(origin)
        cds = [  # digest type 2: SHA-256 (RFC 4509)
            RD(struct.pack("!HBB", k.key_tag, k.algorithm, 2) + _sha256(owner + k.rdata))
            for k in ksks
        ]
        rrsets[CDS_TYPE] = RRset(origin, CDS_TYPE, ttl, tuple(cds))
        rrsets[CDNSKEY_TYPE] = RRset(origin, CDNSKEY_TYPE, ttl, tuple(RD(k.rdata) for k in ksks))
    return rrsets


# --- denial of existence ----------------------------------------------------------------


def _soa_with_serial(soa: RRset, now: int) -> RRset:
    """The SOA with the signing time as its serial, when that is newer (RFC 1982 §3.2);
    else as it is (a date serial such as 2026112701 is ahead of the clock until 2034)."""
    old = soa.rdatas[0]
    serial = now & 0xFFFFFFFF
    if not 0 < (serial - old.times[0]) % 2**32 < 2**31:
        return soa
    new = SOA(old.mname, old.rname, (serial, *old.times[1:]))
    return RRset(soa.name, soa.rtype, soa.ttl, (new,))


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def type_bitmap(types: Iterable[int]) -> bytes:
    """RFC 4034 §4.1.2: the window blocks of a type bitmap."""
    windows: dict[int, bytearray] = {}
    for rtype in types:
        window, low = divmod(rtype, 256)
        bits = windows.setdefault(window, bytearray(32))
        bits[low >> 3] |= 0x80 >> (low & 7)
    out = bytearray()
    for window in sorted(windows):
        bits = windows[window].rstrip(b"\0")
        out += bytes((window, len(bits))) + bits
    return bytes(out)


def _types_at(name: Name, node: Mapping[int, RRset], cuts: frozenset[Name]) -> list[int]:
    """The types an NSEC/NSEC3 lists for a node, before RRSIG and NSEC are added."""
    if name in cuts:  # a delegation: only the parent's side of the cut (RFC 4035 §2.3)
        return [rtype for rtype in (RRType.NS, DS_TYPE) if rtype in node]
    return list(node)


def _nsec_chain(
    origin: Name,
    names: list[Name],
    data: Mapping[Name, Mapping[int, RRset]],
    cuts: frozenset[Name],
    ttl: int,
    run: SigningRun,
) -> list[tuple[Name, RRset]]:
    """One NSEC per authoritative name (in canonical order), the last pointing to the apex."""
    bitmaps: dict[frozenset[int], bytes] = {}  # nodes share a few type sets
    chain = []
    for at, name in enumerate(names):
        following = names[at + 1] if at + 1 < len(names) else origin
        types = frozenset(_types_at(name, data[name], cuts)) | {RRSIG_TYPE, NSEC_TYPE}
        bitmap = bitmaps.get(types)
        if bitmap is None:
            bitmap = bitmaps[types] = type_bitmap(types)

        def make(following=following, bitmap=bitmap):  # noqa: ANN001, ANN202
            wire = to_wire(following) + bitmap
            return RD(wire), wire

        rd = run.denial((name, following, types), make)
        chain.append((name, RRset(name, NSEC_TYPE, ttl, (rd,))))
    return chain


def nsec3_hash(name: Name) -> bytes:
    """RFC 5155 §5 with no salt and no extra iterations: SHA-1 of the wire name, once."""
    return hashlib.sha1(to_wire(name)).digest()


def _nsec3_chain(
    origin: Name,
    names: list[Name],
    empty_non_terminals: list[Name],
    data: Mapping[Name, Mapping[int, RRset]],
    cuts: frozenset[Name],
    ttl: int,
    run: SigningRun,
) -> list[tuple[Name, RRset]]:
    """One NSEC3 per authoritative name and empty non-terminal, in hash order."""
    hashed: dict[bytes, bytes] = {}  # hash -> type bitmap
    for name in [*names, *empty_non_terminals]:
        node = data.get(name, {})
        types = set(_types_at(name, node, cuts))
        if name == origin:
            types.add(NSEC3PARAM_TYPE)
        if types and (name not in cuts or DS_TYPE in node):
            types.add(RRSIG_TYPE)  # an insecure delegation's NS is not signed: no RRSIG there
        digest = nsec3_hash(name)
        if digest in hashed:
            raise ValueError(f"{to_text(name)}: NSEC3 hash collision")  # 2^-80: never seen
        hashed[digest] = type_bitmap(types)
    order = sorted(hashed)
    chain = []
    for at, digest in enumerate(order):
        following = order[(at + 1) % len(order)]
        owner = (base64.b32hexencode(digest).lower(),) + origin
        rdata = _NSEC3_HEADER + bytes((20,)) + following + hashed[digest]
        rd = run.denial((owner, rdata), lambda rdata=rdata: (RD(rdata), rdata))
        chain.append((owner, RRset(owner, NSEC3_TYPE, ttl, (rd,))))
    return chain


# --- signatures -------------------------------------------------------------------------


class _Signer:
    """The keys and times of one signing run, and the RRSIGs it makes."""

    def __init__(self, origin: Name, policy: SigningPolicy, now: int) -> None:
        self.origin = origin
        self.signer_wire = to_wire(origin)
        self.inception = now - policy.inception
        self.expiration = now + policy.validity
        self.jitter = policy.jitter
        self.keys = policy.keys
        self.key_signers, self.zone_signers = _roles(policy.keys)

    def keys_for(self, rtype: int, owner: Name) -> tuple[int, ...]:
        """Indexes into ``keys`` of the keys that sign an RRset of this type."""
        if rtype in _KEY_SIGNED and owner == self.origin:
            return self.key_signers
        return self.zone_signers

    def sign_rrsets(self, rrsets: list[RRset], run: SigningRun, workers: int) -> dict[Name, RRset]:
        """Owner -> its RRSIG RRset, for every RRset given."""
        by_owner: dict[Name, list[object]] = {}
        ttls: dict[Name, int] = {}
        todo: list[RRset] = []
        for rrset in rrsets:
            found = run.signatures.get(_identity(rrset)) if run.share else None
            if found is not None:
                self._add(by_owner, ttls, rrset, found)
            else:
                todo.append(rrset)
        made = _sign_many(self, todo, run, workers)
        for rrset, signed in zip(todo, made, strict=True):
            rrsigs = [self._rrsig(rrset, *one) for one in signed]
            if run.share:
                run.signatures[_identity(rrset)] = rrsigs
            self._add(by_owner, ttls, rrset, rrsigs)
        return {
            name: RRset(name, RRSIG_TYPE, ttls[name], tuple(rrsigs))
            for name, rrsigs in by_owner.items()
        }

    @staticmethod
    def _add(by_owner, ttls, rrset: RRset, rrsigs: list[object]) -> None:  # noqa: ANN001
        by_owner.setdefault(rrset.name, []).extend(rrsigs)
        # the model keeps one TTL per RRset; like the loader, the lowest (each RRSIG's
        # Original TTL field still says its own)
        ttls[rrset.name] = min(ttls.get(rrset.name, rrset.ttl), rrset.ttl)

    def _rrsig(self, rrset: RRset, index: int, expiration: int, signature: bytes) -> object:
        key = self.keys[index]
        fixed = _RRSIG_FIXED.pack(
            rrset.rtype,
            key.algorithm,
            _labels(rrset.name),
            rrset.ttl,
            expiration,
            self.inception,
            key.key_tag,
        )
        return RD(fixed + self.signer_wire + signature)

    def signatures(
        self, rrset: RRset, run: SigningRun, rng: random.Random
    ) -> list[tuple[int, int, bytes]]:
        """(key index, expiration, signature) for each key that signs ``rrset``."""
        owner = to_wire(rrset.name)
        fixed = _RR_FIXED.pack(rrset.rtype, 1, rrset.ttl, 0)[:-2]
        rdatas = sorted({run.canonical_rdata(rrset.rtype, rd) for rd in rrset.rdatas})
        rrs = b"".join(owner + fixed + struct.pack("!H", len(rd)) + rd for rd in rdatas)
        labels = _labels(rrset.name)
        out = []
        for index in self.keys_for(rrset.rtype, rrset.name):
            key: SigningKey = self.keys[index]
            expiration = self.expiration - (rng.randint(0, self.jitter) if self.jitter else 0)
            header = _RRSIG_FIXED.pack(
                rrset.rtype,
                key.algorithm,
                labels,
                rrset.ttl,
                expiration,
                self.inception,
                key.key_tag,
            )
            out.append((index, expiration, key.sign(header + self.signer_wire + rrs)))
        return out


def _roles(keys: tuple[SigningKey, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(indexes of keys signing the key RRsets, indexes of keys signing the rest).

    Per algorithm: KSKs sign DNSKEY/CDS/CDNSKEY and ZSKs the rest; an algorithm with keys
    of one kind only signs everything with them (a CSK)."""
    key_signers: list[int] = []
    zone_signers: list[int] = []
    for algorithm in dict.fromkeys(key.algorithm for key in keys):
        mine = [i for i, key in enumerate(keys) if key.algorithm == algorithm]
        ksks = [i for i in mine if keys[i].is_ksk]
        zsks = [i for i in mine if not keys[i].is_ksk]
        key_signers += ksks or zsks
        zone_signers += zsks or ksks
    return tuple(key_signers), tuple(zone_signers)


def _labels(name: Name) -> int:
    """RFC 4034 §3.1.3: the owner's labels, not counting a leading wildcard."""
    return len(name) - 1 if name and name[0] == b"*" else len(name)


def _canonical_rdata(rtype: int, rd: object) -> bytes:
    """RFC 4034 §6.2: uncompressed, and names lowercased for the types that say so."""
    wire = pack_uncompressed(rd)
    if rtype in _NAMES_LOWERCASED:
        parsed = dns.rdata.from_wire(dns.rdataclass.IN, rtype, wire, 0, len(wire))
        wire = parsed.to_digestable()
    return wire


# --- in parallel ------------------------------------------------------------------------

_WORK: tuple[_Signer, list[RRset], SigningRun] | None = None  # what forked workers sign from


def _sign_many(
    signer: _Signer, rrsets: list[RRset], run: SigningRun, workers: int
) -> Iterator[list[tuple]]:
    """The signatures of each RRset in turn, on up to ``workers`` processes for a big zone.

    Yielded as they come (in order), so the caller turns them into records at once and
    the whole zone's signatures are never held twice."""
    workers = min(workers, os.cpu_count() or 1)
    forkable = "fork" in multiprocessing.get_all_start_methods()
    if workers <= 1 or len(rrsets) < PARALLEL_FROM or not forkable:
        rng = random.Random()
        for rrset in rrsets:
            yield signer.signatures(rrset, run, rng)
        return
    global _WORK
    _WORK = (signer, rrsets, run)  # a forked child sees it without pickling the zone
    try:
        step = max(1000, -(-len(rrsets) // (workers * 16)))
        ranges = [(start, min(start + step, len(rrsets))) for start in range(0, len(rrsets), step)]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_sign_range, ranges):
                yield from part
    finally:
        _WORK = None


def _sign_range(bounds: tuple[int, int]) -> list[list[tuple]]:
    assert _WORK is not None
    signer, rrsets, run = _WORK
    rng = random.Random()
    return [signer.signatures(rrset, run, rng) for rrset in rrsets[bounds[0] : bounds[1]]]


# --- the signed zone as a new Zone, and as a master file ------------------------------------


# The zone model's optional DNSSEC fields: a model that keeps NSEC3 owners apart from the
# zone's names (``Zone.nsec3``) and an index of the signatures the serving code builds
# when a signed zone is made (``Zone.signatures``, ``dnspol.dnssec.index_signatures``). A
# signed zone made here gets both, as ``Zone.from_records`` gives a zone signed elsewhere.
_ZONE_FIELDS = frozenset(f.name for f in fields(Zone))


def _rebuilt(
    zone: Zone, data: Mapping[Name, Mapping[int, RRset]], hashed_owners: Iterable[Name]
) -> Zone:
    """A ``Zone`` over ``data``; glue and the zone cuts are the old zone's."""
    nodes: dict[Name, Node] = {name: MappingProxyType(by_type) for name, by_type in data.items()}
    apart: dict[str, object] = {}
    if "nsec3" in _ZONE_FIELDS:
        apart["nsec3"] = MappingProxyType({name: nodes.pop(name) for name in hashed_owners})
    if "signatures" in _ZONE_FIELDS:
        apart["signatures"] = None
    # NSEC3 owners sit right below the apex: the empty non-terminals stay the same
    existing = Existing(nodes, zone.existing.empty_non_terminals)
    signed = replace(zone, nodes=MappingProxyType(nodes), existing=existing, **apart)
    index = getattr(dnssec_package, "index_signatures", None)
    if index is not None and "signatures" in _ZONE_FIELDS:
        object.__setattr__(signed, "signatures", index(signed))
    return signed


def write_zone(zone: Zone, out: IO[str]) -> int:
    """``zone`` as an RFC 1035 master file (apex first, then canonical order); the count of
    records written. Each RRSIG gets the TTL of the RRset it covers (its Original TTL)."""
    written = 0
    out.write(f"$ORIGIN .\n; zone {zone.name} scope {zone.scope}\n")
    every = {**zone.nodes, **getattr(zone, "nsec3", {})}  # NSEC3 owners, if held apart
    for name in sorted(every, key=_canonical):
        owner = to_text(name)
        node = every[name]
        order = sorted(node, key=lambda rtype: (rtype != RRType.SOA, rtype))
        for rtype in order:
            rrset = node[rtype]
            for rd in rrset.rdatas:
                wire = pack_uncompressed(rd)
                ttl = struct.unpack_from("!I", wire, 4)[0] if rtype == RRSIG_TYPE else rrset.ttl
                text = _rdata_text(rtype, wire)
                out.write(f"{owner}\t{ttl}\tIN\t{dns.rdatatype.to_text(rtype)}\t{text}\n")
                written += 1
    return written


def _rdata_text(rtype: int, wire: bytes) -> str:
    rdata: Any = dns.rdata.from_wire(dns.rdataclass.IN, rtype, wire, 0, len(wire))
    return rdata.to_text()
