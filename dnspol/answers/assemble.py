"""Reading the answer tables at run time: find the prepared answer, put the reply together.

Only bytes are touched: the query's lowered name is cut at its label boundaries and
looked up, and the reply is the query's ID, a prepared header, the query's own question
(its letter case kept), the prepared tail and the OPT record the handler made.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from hashlib import sha1 as _sha1
from typing import NamedTuple

from dnspol.answers.tables import Prepared, View, ZoneTables, head_for
from dnspol.codes import RRType

_OPT_HEAD = struct.Struct("!BHHBBHH")  # root owner, type, payload, ext rcode, version, flags, len


class Found(NamedTuple):
    """A prepared answer and the tail for this query's name."""

    prepared: Prepared
    tail: bytes


class AnswerTables:
    """Every served zone's compiled views, by lowered origin in wire form."""

    __slots__ = ("zones", "plain", "plain_names", "signed", "secure_plain", "secure_plain_names")

    def __init__(self, zones: dict[bytes, ZoneTables], plain: tuple[dict, dict]) -> None:
        self.zones = zones
        # a signed zone is served: DO=1 queries are answered from views of their own
        self.signed = any(
            view.secure is not None for tables in zones.values() for view in tables.views.values()
        )
        # every default view's answers (question key -> Prepared) and names (name ->
        # Place): for queries no rule decides, found without searching for the zone
        self.plain, self.plain_names = plain
        # the same for DO=1 queries: signed zones' secure views (``compile_tables``)
        self.secure_plain, self.secure_plain_names = plain

    def sizes(self) -> tuple[int, int]:
        """(exact answers, names) over every zone and scope, for metrics."""
        views = [view for zone in self.zones.values() for view in zone.views.values()]
        return sum(len(v.exact) for v in views), sum(len(v.names) for v in views)

    def zone_of(self, name: bytes) -> tuple[ZoneTables, int] | None:
        """The served zone holding ``name`` (lowered, wire form) and where its origin
        starts in it; None when no zone is served there."""
        zones = self.zones
        at = 0
        while True:
            found = zones.get(name[at:])
            if found is not None:
                return found, at
            length = name[at]
            if length == 0:
                return None
            at += length + 1


OUTSIDE = Found(None, b"")  # ``find_plain``: the name is in no served zone


def find_plain(
    tables: AnswerTables, name: bytes, qtype: int, names: dict | None = None
) -> Found | None:
    """The answer of the default views for a name their exact answers do not hold: the
    place of its longest known suffix says. ``OUTSIDE``: in no served zone; None: not
    compiled (or not a name), for the reference path."""
    if len(name) > 255:
        return None  # too long a name: the reference path says FORMERR
    names = tables.plain_names if names is None else names
    return _from_longest_suffix(names, name, qtype, OUTSIDE)


def find(view: View, name: bytes, qkey: bytes, qtype: int) -> Found | None:
    """The answer ``view`` gives for the lowered name and its question key (name, type,
    class); None when the reference path must answer."""
    prepared = view.exact.get(qkey)
    if prepared is not None:
        return Found(prepared, prepared.tail)
    return _from_longest_suffix(view.names, name, qtype, None)


def _from_longest_suffix(
    names: dict, name: bytes, qtype: int, outside: Found | None
) -> Found | None:
    """The answer the place of the longest suffix of ``name`` in ``names`` gives: for
    another type at the name itself, or for a name below it. ``outside`` when no suffix
    is known (the root reached); None when the labels are not a name, or the place
    leaves the answer to the reference path."""
    end = len(name)
    at = before = 0
    while True:
        place = names.get(name[at:])
        if place is not None:
            break
        if at >= end:
            return None  # the labels run past the question: not a name
        length = name[at]
        if length == 0:
            return outside if at == end - 1 else None  # the root: ours or not a name
        if length > 63:
            return None  # not a name: the reference path says FORMERR
        before = at
        at += length + 1
    if at == 0:
        prepared, offset, proof = place.other, place.other_at, place.other_proof
    else:
        by_type = place.below_types
        prepared = place.below if by_type is None else by_type.get(qtype, place.below)
        offset = at + place.below_at
        proof = place.below_proof
    if prepared is None:
        return None
    tail = prepared.tail_at(offset)
    if tail is None:
        return None
    if proof is None:
        proof = prepared.proof
        if proof is None:
            return Found(prepared, tail)
    return _proved(prepared, proof, tail, name, before)


def _proved(prepared: Prepared, proof: tuple, tail: bytes, name: bytes, before: int) -> Found:
    """A signed answer: the template, then the NSEC/NSEC3 records the place fixes and,
    for a name below a known one, the NSEC covering the name (RFC 4035 §3.1.3) or the
    NSEC3 covering its next closer name, which starts ``before`` (RFC 5155 §7.2.1);
    owners point at the zone's name in the question, as the reference path writes them."""
    skip, chain, added, count, cover = proof
    join = _POINTERS[12 + len(name) - chain.origin_length].join
    entries = chain.entries
    for index in added:
        tail += join(entries[index].segments)
    if cover:
        if chain.hashed and not chain.iterations:  # RFC 9276's NSEC3: one SHA-1, inline
            digest = _sha1(name[before:] + chain.salt).digest()
            index = (bisect_right(chain.keys, digest) - 1) % len(chain.keys)
        else:
            index = chain.cover_wire(name[before:] if chain.hashed else name)
        if index not in skip:
            entry = entries[index]
            tail += join(entry.segments)
            count += len(entry.records)
    composed = prepared.composed
    head = composed.get(count) if composed is not None else None
    if head is None:
        head = prepared.with_records(count, chain.max_ttl)
    return Found(head, tail)


# compression pointers to where a zone's name starts in the question (12 + at most 255)
_POINTERS = [bytes((0xC0 | (at >> 8), at & 0xFF)) for at in range(12 + 256)]


def opt_record(payload: int, do: bool, options: bytes = b"") -> bytes:
    """Our OPT record (RFC 6891 §6.1.2): our UDP payload size, the DO bit echoed."""
    return _OPT_HEAD.pack(0, RRType.OPT, payload, 0, 0, 0x8000 if do else 0, len(options)) + options


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def reply(wire: bytes, qend: int, found: Found, opt: bytes, limit: int) -> bytes:
    """The reply to the query ``wire`` (question ending at ``qend``): the whole answer if
    it fits ``limit``; else without its additional records if they may go; else empty
    with TC (RFC 2181 §9, RFC 6891 §7), the question and OPT kept."""
    prepared, tail = found
    index = (wire[2] & 0x01) | ((wire[3] >> 3) & 0x02) | (4 if opt else 0)
    if qend + len(tail) + len(opt) <= limit:
        return wire[:2] + prepared.heads[index] + wire[12:qend] + tail + opt
    short = prepared.short
    an, ns, _ = prepared.counts
    if short >= 0 and qend + short + len(opt) <= limit:
        head = head_for(prepared.flags, (an, ns, 0), index)
        return wire[:2] + head + wire[12:qend] + tail[:short] + opt
    head = head_for(prepared.flags | 0x0200, (0, 0, 0), index)
    return wire[:2] + head + wire[12:qend] + opt


_REFUSED = 0x8000 | 5  # QR, REFUSED; AA clear


def refused_reply(wire: bytes, qend: int, opt: bytes) -> bytes:
    """REFUSED with the question (RFC 8906 §3.1.4) and our OPT, RD and CD copied."""
    index = (wire[2] & 0x01) | ((wire[3] >> 3) & 0x02) | (4 if opt else 0)
    return wire[:2] + head_for(_REFUSED, (0, 0, 0), index) + wire[12:qend] + opt
