"""The shapes of the answer tables (written by ``compile``, read by ``assemble``).

Names are keys in wire form, lowercased (``b"\\x03www\\x07example\\x00"``): the query's
own bytes after lowering are looked up without building a name object.
"""

from __future__ import annotations

import struct

_HEAD = struct.Struct("!HHHHH")  # flags and the four counts
POINTER = 0xC000


class Prepared:
    """One answer, ready but for the ID, RD/CD, the question and the OPT record.

    ``tail`` is everything after the question, made for a query whose anchor (the name
    the answer was keyed by) started ``base`` bytes into the query name. Compression
    pointers into the question and into the tail move together when the anchor sits
    elsewhere: ``parts`` (pieces of the tail and the pointers between them) rebuild it
    for another offset; None when the answer is used at ``base`` only.
    """

    __slots__ = (
        "flags",
        "counts",
        "heads",
        "tail",
        "short",
        "max_ttl",
        "rcode",
        "base",
        "parts",
        "end",
        "by_offset",
        "zone",
        "proof",
        "composed",
    )

    def __init__(
        self,
        flags: int,
        counts: tuple[int, int, int],
        tail: bytes,
        short: int,
        max_ttl: int,
        base: int,
        parts: tuple[tuple[bytes, int], ...] | None,
        shared: bool,
        zone: str,
    ) -> None:
        self.flags = flags  # QR, AA, rcode: RD and CD come from the query
        self.counts = counts  # answer, authority, additional (without OPT)
        self.heads = _heads(flags, counts)
        self.tail = tail
        self.short = short  # the tail's length without additional records; -1: none may go
        self.max_ttl = max_ttl  # the largest TTL in it: a lower TTL cap needs another answer
        self.rcode = flags & 0xF
        self.base = base
        self.parts = parts  # (piece, pointer target) pairs; the rest of the tail is ``end``
        self.end = tail[sum(len(piece) + 2 for piece, _ in parts) :] if parts is not None else b""
        # tails by anchor offset, for templates shared by many names (at most 255 offsets)
        self.by_offset: dict[int, bytes] | None = {base: tail} if shared else None
        self.zone = zone  # the zone's name, for metrics labels
        # signed (DO=1) answers: the NSEC/NSEC3 records added at run time: (indices
        # into the chain not to add again, the ``dnssec.Chain``, indices of the records
        # to add, their count, whether the one covering the query name follows)
        self.proof: tuple | None = None
        self.composed: dict[int, Prepared] | None = None  # headers with the added records

    def with_records(self, count: int, max_ttl: int) -> Prepared:
        """This answer's header with ``count`` more authority records (no additional
        records may follow them, so none may be dropped: TC if it does not fit)."""
        composed = self.composed
        if composed is None:
            composed = self.composed = {}
        found = composed.get(count)
        if found is None:
            an, ns, ar = self.counts
            found = composed[count] = Prepared(
                self.flags, (an, ns + count, ar), b"", -1, max(self.max_ttl, max_ttl),
                0, None, False, self.zone,
            )  # fmt: skip
        return found

    def tail_at(self, offset: int) -> bytes | None:
        """The tail for a query whose anchor starts ``offset`` bytes into its name; None
        when this answer cannot be moved there (the reference path answers)."""
        if offset == self.base:
            return self.tail
        if self.parts is None:
            return None
        if not self.parts:
            return self.tail  # no pointer moves: the same bytes at any offset
        memo = self.by_offset
        if memo is not None:
            tail = memo.get(offset)
            if tail is None:
                tail = memo[offset] = self._moved(offset - self.base)
            return tail
        return self._moved(offset - self.base)

    def _moved(self, delta: int) -> bytes:
        pieces = []
        for piece, target in self.parts:
            pieces.append(piece)
            pieces.append((POINTER | (target + delta)).to_bytes(2, "big"))
        pieces.append(self.end)
        return b"".join(pieces)


def _heads(flags: int, counts: tuple[int, int, int]) -> tuple[bytes, ...]:
    """Flags and counts for each (RD, CD, OPT) a query may have: index
    ``rd | cd << 1 | opt << 2``. One tuple per distinct header: most answers share a
    handful."""
    key = (flags, counts)
    heads = _HEADS.get(key)
    if heads is None:
        heads = _HEADS[key] = _make_heads(flags, counts)
    return heads


def _make_heads(flags: int, counts: tuple[int, int, int]) -> tuple[bytes, ...]:
    an, ns, ar = counts
    heads = []
    for index in range(8):
        word = flags | (0x0100 if index & 1 else 0) | (0x0010 if index & 2 else 0)
        heads.append(_HEAD.pack(word, 1, an, ns, ar + (1 if index & 4 else 0)))
    return tuple(heads)


_HEADS: dict[tuple, tuple[bytes, ...]] = {}  # grows with the distinct (flags, counts) only


def head_for(flags: int, counts: tuple[int, int, int], index: int) -> bytes:
    """One header outside the prepared ones (shortened and truncated forms)."""
    return _heads(flags, counts)[index]


class Place:
    """What a known name answers for a type it does not own (``other``) and for names
    below it (``below``, or ``below_types`` by type for wildcards). ``*_at``: where the
    anchor of that answer lies inside this name, added to the name's own offset. None
    answers are left to the reference path (DNAME, names outside the compiled cases)."""

    __slots__ = ("other", "other_at", "below", "below_at", "below_types")
    __slots__ += ("other_proof", "below_proof")

    def __init__(
        self,
        other: Prepared | None,
        other_at: int,
        below: Prepared | None,
        below_at: int,
        below_types: dict[int, Prepared] | None = None,
        other_proof: tuple | None = None,
        below_proof: tuple | None = None,
    ) -> None:
        self.other = other
        self.other_at = other_at
        self.below = below
        self.below_at = below_at
        self.below_types = below_types
        # signed (DO=1) views: the NSEC/NSEC3 records added to a shared template, as
        # ``Prepared.proof`` says (``assemble._proved``); None: nothing to add
        self.other_proof = other_proof
        self.below_proof = below_proof


class View:
    """One zone as one scope answers it."""

    __slots__ = ("exact", "names", "secure")

    def __init__(self, exact: dict[bytes, Prepared], names: dict[bytes, Place]) -> None:
        self.exact = exact  # lowered name + type + class -> answer
        self.names = names  # lowered name -> Place
        self.secure: View | None = None  # a signed zone's DO=1 answers (RFC 4035 §3.1)


class ZoneTables:
    """A served zone's views by scope."""

    __slots__ = ("views", "default", "name", "origin")

    def __init__(self, views: dict[str, View], name: str, origin: tuple[bytes, ...]) -> None:
        self.views = views
        self.default = views["default"]
        self.name = name  # the origin as text, for metrics labels
        self.origin = origin  # as the policy knows zones
