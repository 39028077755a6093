"""Sets of IP prefixes, compiled for longest-prefix lookups and ECS scope answers.

A ``PrefixSet`` keeps, per address family, one Python set per distinct prefix length holding
the prefixes' network bits as ints. A lookup probes those sets longest first, so its cost grows
with the number of distinct lengths (at most 33 or 129), never with the number of prefixes:
100,000 prefixes answer as fast as 10. An index of which lengths occur under each /16 (IPv4)
or /32 (IPv6) narrows the probes to the lengths that can hold the address, usually one or two.

Prefixes are collapsed when the set is built (contained prefixes dropped, sibling prefixes
merged), so the blocks are disjoint and maximal. That makes two ECS questions exact and cheap:
an address inside the set is inside exactly one block, and the block's length is the shortest
prefix over which "inside" holds; an address outside the set needs a prefix just long enough to
keep it apart from the nearest block, which is the nearest block in sorted order (``bisect``).

Addresses are handled as ``(value, bits)`` pairs: ``bits`` is 32 for IPv4, 128 for IPv6.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

FAMILY_BITS = (32, 128)
INDEX_LENGTH = {32: 16, 128: 32}  # the lookup index groups prefixes by their first bits


@dataclass(frozen=True, slots=True, order=True)
class Prefix:
    """One network: ``value`` holds the address as an int, host bits zero."""

    bits: int  # 32 or 128
    value: int
    length: int

    def __str__(self) -> str:
        network_type = ipaddress.IPv4Network if self.bits == 32 else ipaddress.IPv6Network
        return str(network_type((self.value, self.length)))

    def contains(self, value: int, bits: int) -> bool:
        shift = self.bits - self.length
        return bits == self.bits and (value >> shift) == (self.value >> shift)


def parse_prefix(text: str) -> Prefix:
    """``10.0.0.0/8``, ``2001:db8::/32`` or a bare address (a /32 or /128).

    Raises ValueError with a message meant for people; host bits set is an error that names
    the network the writer probably meant.
    """
    text = text.strip()
    address, slash, length_text = text.partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in address else (socket.AF_INET, 32)
    try:
        value = int.from_bytes(socket.inet_pton(family, address), "big")
    except (OSError, ValueError):
        raise ValueError(f"{text!r} is not an IP address or CIDR prefix") from None
    if not slash:
        return Prefix(bits, value, bits)
    if not length_text.isdigit() or int(length_text) > bits:
        raise ValueError(f"{text!r}: prefix length must be 0..{bits}")
    length = int(length_text)
    host_mask = (1 << (bits - length)) - 1
    if value & host_mask:
        network = Prefix(bits, value & ~host_mask, length)
        raise ValueError(f"{text!r} has host bits set; the network is {network}")
    return Prefix(bits, value, length)


def address_value(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    """``(value, bits)`` of an address; IPv4-mapped IPv6 (``::ffff:a.b.c.d``) counts as IPv4."""
    if address.version == 6:
        mapped = address.ipv4_mapped  # type: ignore[union-attr]
        if mapped is not None:
            return int(mapped), 32
        return int(address), 128
    return int(address), 32


def common_prefix_length(a: int, b: int, bits: int) -> int:
    return bits - (a ^ b).bit_length()


class _FamilyTable:
    """The prefixes of one family: a set per length, an index of which lengths occur under
    each /16 (IPv4) or /32 (IPv6), and the blocks in address order."""

    __slots__ = ("bits", "index_shift", "short_lengths", "by_length", "buckets", "starts", "blocks")

    def __init__(self, bits: int, blocks: list[Prefix]) -> None:
        self.bits = bits
        self.blocks = blocks  # sorted, disjoint, maximal
        self.starts = [block.value for block in blocks]
        index_length = INDEX_LENGTH[bits]
        self.index_shift = bits - index_length
        by_length: dict[int, set[int]] = {}
        buckets: dict[int, set[int]] = {}
        for block in blocks:
            by_length.setdefault(block.length, set()).add(block.value >> (bits - block.length))
            if block.length >= index_length:
                buckets.setdefault(block.value >> self.index_shift, set()).add(block.length)
        self.by_length = {length: frozenset(keys) for length, keys in by_length.items()}
        self.short_lengths = tuple(
            sorted((length for length in by_length if length < index_length), reverse=True)
        )
        shared: dict[tuple[int, ...], tuple[int, ...]] = {}  # one tuple per distinct list
        self.buckets = {
            key: shared.setdefault(ordered, ordered)
            for key, lengths in buckets.items()
            for ordered in (tuple(sorted(lengths, reverse=True)),)
        }

    def find_length(self, value: int) -> int:
        """Length of the block holding ``value``, or -1.

        Probes, longest first, only the lengths that occur under the address's /16 (or /32),
        then the lengths shorter than that: one or two set lookups for most addresses.
        """
        bits = self.bits
        by_length = self.by_length
        for length in self.buckets.get(value >> self.index_shift, ()):
            if (value >> (bits - length)) in by_length[length]:
                return length
        for length in self.short_lengths:
            if (value >> (bits - length)) in by_length[length]:
                return length
        return -1

    def distance_length(self, value: int) -> int:
        """For an address outside every block: the shortest prefix length L such that the
        address's /L network overlaps no block. 0 when the family has no blocks."""
        starts = self.starts
        if not starts:
            return 0
        index = bisect.bisect_right(starts, value)
        longest = 0
        for neighbour in (index - 1, index):
            if 0 <= neighbour < len(starts):
                shared = common_prefix_length(value, starts[neighbour], self.bits)
                longest = max(longest, shared + 1)
        return min(longest, self.bits)


class PrefixSet:
    """An immutable set of IPv4 and IPv6 prefixes with longest-prefix lookup."""

    __slots__ = ("_tables", "_count")

    def __init__(self, prefixes: Iterable[Prefix] = ()) -> None:
        grouped: dict[int, list[Prefix]] = {32: [], 128: []}
        for prefix in prefixes:
            grouped[prefix.bits].append(prefix)
        self._tables = {
            bits: _FamilyTable(bits, collapse(items)) for bits, items in grouped.items()
        }
        self._count = sum(len(table.blocks) for table in self._tables.values())

    @classmethod
    def union(cls, sets: Iterable[PrefixSet]) -> PrefixSet:
        return cls(prefix for item in sets for prefix in item)

    def __iter__(self) -> Iterator[Prefix]:
        for bits in FAMILY_BITS:
            yield from self._tables[bits].blocks

    def __len__(self) -> int:
        """Number of collapsed blocks."""
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrefixSet) and list(self) == list(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        shown = ", ".join(str(prefix) for prefix in list(self)[:4])
        more = f", … {self._count - 4} more" if self._count > 4 else ""
        return f"PrefixSet([{shown}{more}])"

    def contains(self, value: int, bits: int) -> bool:
        return self._tables[bits].find_length(value) >= 0

    def contains_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return self.contains(*address_value(address))

    def find(self, value: int, bits: int) -> Prefix | None:
        """The block holding the address, if any."""
        length = self._tables[bits].find_length(value)
        if length < 0:
            return None
        return Prefix(bits, (value >> (bits - length)) << (bits - length), length)

    def scope_length(self, value: int, bits: int) -> int:
        """The shortest L such that "in this set" is the same for every address of the
        address's /L network: the RFC 7871 SCOPE this set alone asks for."""
        table = self._tables[bits]
        length = table.find_length(value)
        if length >= 0:
            return length
        return table.distance_length(value)

    def covers(self, other: PrefixSet) -> bool:
        """True when every address in ``other`` is also in this set."""
        for prefix in other:
            held = self.find(prefix.value, prefix.bits)
            if held is None or held.length > prefix.length:
                return False
        return True


def collapse(prefixes: Iterable[Prefix]) -> list[Prefix]:
    """Sorted, disjoint, maximal blocks covering exactly the given prefixes."""
    kept: list[Prefix] = []
    for prefix in sorted(prefixes, key=lambda p: (p.value, p.length)):
        if kept and _inside(prefix, kept[-1]):
            continue
        kept.append(prefix)
        while len(kept) >= 2 and _siblings(kept[-2], kept[-1]):
            kept.pop()
            left = kept.pop()
            kept.append(Prefix(left.bits, left.value, left.length - 1))
    return kept


def _inside(prefix: Prefix, block: Prefix) -> bool:
    return block.length <= prefix.length and block.contains(prefix.value, prefix.bits)


def _siblings(left: Prefix, right: Prefix) -> bool:
    if left.length != right.length or left.length == 0:
        return False
    size = 1 << (left.bits - left.length)
    return left.value + size == right.value and left.value & size == 0
