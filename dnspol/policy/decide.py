"""The compiled decider: ``Policy.evaluate``'s decision per query, from the packet's own values.

``Policy.evaluate`` is the reference: it reads a ``QueryFacts`` (parsed ``ipaddress`` objects)
and walks each rule's criteria. That is too slow to run per query, and a per-client store of
decisions in front of it collapses on many clients. ``Decider`` is built once from a
``Policy`` and gives the same ``Decision`` (``==``, rng draws included) from the address text
``recvfrom`` returns and the raw ECS option, with nothing kept per client:

- the rules a query in a zone passes through (the server-wide rules acting there, then the
  zone's own) form one *segment*, or two when the server-wide part holds more than
  ``MERGE_LIMIT`` prefixes (then it is shared between zones instead of copied into each);
- a segment's criteria are numbered *leaves* (address sets, transport, family, qtype, qname,
  time windows) whose verdicts are one bitmask, ``verdicts``, computed per query with a few
  lookups: all the segment's address sets merged into one table of disjoint ranges per
  family, indexed by the address's first bits (one list index for most addresses, a short
  ``bisect`` where a range starts in the bucket), small dicts for transport, qtype and
  qname suffixes;
- which rule matches, which address leaves were tested on the ECS address (they set the ECS
  SCOPE) and which time windows were tested (they set ``valid_until``) depend only on
  ``verdicts`` and the rules' short-circuit order: that *path* is worked out once per distinct
  bitmask (at most 2**leaves, bounded by the configuration, never by clients) and kept in the
  segment's table;
- the ECS SCOPE of an address set (``PrefixSet.scope_length``) is a table too: the block's
  length inside it, outside the distance to the nearest block, precomputed per bucket;
- time windows are read from an *epoch*: every window's verdict and next flip
  (``TimeIn.verdict``), computed at one instant and valid until the earliest flip; a query
  whose clock lies outside the epoch's [since, until) — later, or earlier after a clock step
  back — computes a new one;
- with health checks (``HealthDecider``, so that a policy without them pays nothing),
  ``healthy:`` tests are leaves too, read from the epoch: an epoch also ends when
  the health board's version counter moves (``dnspol.checks``), so a query reads one int
  and a change of verdict is seen by the next query of every worker; ``failover:``,
  ``members:`` and checked weights pick their scope from the board, again once per
  version; a path that read a check caps the TTLs at ``health_ttl``;
- decisions without a clock or an ECS scope are built once; with an ECS scope, once per
  scope length.

This module is the only reader of the compiled tables; ``Policy.evaluate`` stays the reference
(tests/test_policy_decide.py compares the two on random rule sets and queries).
"""

from __future__ import annotations

import math
import random
import socket
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import NamedTuple

from dnspol.names import Name
from dnspol.policy.criteria import (
    AddressIn,
    All,
    Any,
    Criterion,
    FamilyIs,
    HealthyIs,
    Not,
    QnameIs,
    QtypeIs,
    TimeIn,
    TransportIs,
)
from dnspol.policy.engine import MAX_TTL_CAP, Policy, Rule
from dnspol.policy.model import Action, Decision, IPAddress
from dnspol.policy.prefixes import PrefixSet

INF = math.inf
MERGE_LIMIT = 1024  # server-wide prefixes copied into each zone's own tables, at most
LISTENER_LIMIT = 256  # listener addresses whose int is kept
PATH_LIMIT = 4096  # paths kept per segment; beyond it a path is worked out per query
MAPPED_HIGH = 0xFFFF  # ::ffff:a.b.c.d, shifted right by 32
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_inet_pton = socket.inet_pton
_from_bytes = int.from_bytes

LEAF, ALL, ANY, NOT = 0, 1, 2, 3  # node kinds of a compiled criteria tree


# --- addresses -------------------------------------------------------------------------------


def source_value(text: str) -> tuple[int, int]:
    """``(value, bits)`` of an address as ``recvfrom`` gives it (``%scope`` dropped;
    IPv4-mapped IPv6 counts as IPv4, as ``prefixes.address_value`` has it)."""
    if ":" not in text:
        return _from_bytes(_inet_pton(_AF_INET, text), "big"), 32
    cut = text.find("%")
    if cut >= 0:
        text = text[:cut]
    value = _from_bytes(_inet_pton(_AF_INET6, text), "big")
    if value >> 32 == MAPPED_HIGH:
        return value & 0xFFFFFFFF, 32
    return value, 128


def ecs_value(data: bytes) -> tuple[int, int, int] | None:
    """``(value, bits, source length)`` of validated ECS option data; None for SOURCE 0
    (no client information: the query is decided as if it had no ECS)."""
    source = data[2]
    if source == 0:
        return None
    if data[1] == 1:
        return _from_bytes(data[4:].ljust(4, b"\x00"), "big"), 32, source
    return _from_bytes(data[4:].ljust(16, b"\x00"), "big"), 128, source


def _server_value(server: IPAddress) -> tuple[int, int]:
    value = int(server)
    if type(server) is IPv4Address:
        return value, 32
    if value >> 32 == MAPPED_HIGH:
        return value & 0xFFFFFFFF, 32
    return value, 128


# An address table: ``(top, shift)``. ``top[value >> shift]`` is the value of every address
# of that bucket, or, for a bucket where a range starts, a ``_Bucket``: the sorted ranges
# inside it and the value of each. See ``lookup``. Values: bitmasks of the sets holding the
# address (``address_table``), or what the ECS SCOPE of one set is made of (``scope_table``).
AddressTable = tuple[list, int]
TOP_BUCKETS = 1 << 16  # at most; a table gets about four buckets per range


class _Bucket(tuple):
    """``(starts, values)`` of the ranges in one bucket of an ``AddressTable``."""

    __slots__ = ()


def _indexed(bits: int, starts: list[int], values: list) -> AddressTable:
    """The table over sorted ranges (``starts[0]`` is 0) and their values."""
    size = min(TOP_BUCKETS, 1 << (4 * len(starts) - 1).bit_length())
    shift = bits - (size.bit_length() - 1)
    width = 1 << shift
    top: list = [None] * size
    ends = [*starts[1:], 1 << bits]
    for start, end, value in zip(starts, ends, values, strict=True):
        first, last = -(-start // width), end // width  # the buckets the range fills
        if first < last:
            top[first:last] = [value] * (last - first)
    for bucket, entry in enumerate(top):
        if entry is None:  # a range starts inside it
            low = bucket * width
            first = bisect_right(starts, low) - 1  # the range holding the first address
            end = bisect_left(starts, low + width, first)  # the first range past the bucket
            top[bucket] = _Bucket(([low, *starts[first + 1 : end]], values[first:end]))
    return top, shift


def lookup(table: AddressTable, value: int):  # noqa: ANN201 (an int or a scope part)
    """The value of the range holding the address (``decide`` has this inline)."""
    top, shift = table
    entry = top[value >> shift]
    if entry.__class__ is _Bucket:
        return entry[1][bisect_right(entry[0], value) - 1]
    return entry


def address_table(bits: int, sets: Iterable[tuple[int, PrefixSet]]) -> AddressTable:
    """The table of one family over ``(bit, prefix set)`` pairs: which sets hold an address."""
    return _indexed(bits, *_ranges(bits, sets))


def scope_table(bits: int, prefixes: PrefixSet) -> AddressTable:
    """``PrefixSet.scope_length`` of one family as a table: inside a block, its length (an
    int); outside, the starts of the blocks before and after (``ecs_scope_length`` below)."""
    blocks = [block for block in prefixes if block.bits == bits]
    if not blocks:
        return _indexed(bits, [0], [0])
    starts: list[int] = []
    values: list = []
    point, before = 0, None
    for block in blocks:
        if point < block.value:
            starts.append(point)
            values.append((before, block.value))
        starts.append(block.value)
        values.append(block.length)
        before = block.value
        point = block.value + (1 << (bits - block.length))
    if point < 1 << bits:
        starts.append(point)
        values.append((before, None))
    top, shift = _indexed(bits, starts, values)
    for bucket, entry in enumerate(top):
        if entry.__class__ is tuple:
            # a bucket inside one gap: both neighbours lie outside it, so every address
            # of the bucket shares as many bits with each as its first address does
            top[bucket] = _distance_length(entry, bucket << shift, bits)
    return top, shift


def ecs_scope_length(tables: tuple[AddressTable, AddressTable], value: int, bits: int) -> int:
    """``PrefixSet.scope_length(value, bits)`` from the set's two ``scope_table``s."""
    part = lookup(tables[bits == 128], value)
    if part.__class__ is int:
        return part
    return _distance_length(part, value, bits)


def _distance_length(neighbours: tuple[int | None, int | None], value: int, bits: int) -> int:
    """For an address outside the set: one bit more than it shares with the nearest block,
    from the starts of the blocks before and after it (``_FamilyTable.distance_length``)."""
    before, after = neighbours
    longest = 0 if before is None else bits - (value ^ before).bit_length() + 1
    if after is not None:
        longest = max(longest, bits - (value ^ after).bit_length() + 1)
    return min(longest, bits)


def _ranges(bits: int, sets: Iterable[tuple[int, PrefixSet]]) -> tuple[list[int], list[int]]:
    """Sorted disjoint ranges (their first addresses) covering the family, and for each the
    bitmask of the sets holding it."""
    changes: dict[int, list[int]] = {0: [0, 0]}  # point → [bits that start, that end]
    for bit, prefixes in sets:
        for block in prefixes:
            if block.bits != bits:
                continue
            changes.setdefault(block.value, [0, 0])[0] |= bit
            end = block.value + (1 << (bits - block.length))
            changes.setdefault(end, [0, 0])[1] |= bit
    starts: list[int] = []
    masks: list[int] = []
    mask = 0
    for point in sorted(changes):
        if point >> bits:
            break  # the end of the last block of the family
        began, ended = changes[point]
        mask = (mask & ~ended) | began  # a block may end where the next one begins
        if masks and masks[-1] == mask:
            continue
        starts.append(point)
        masks.append(mask)
    return starts, masks


def _both_families(sets: list[tuple[int, PrefixSet]]) -> tuple[AddressTable, AddressTable]:
    """(IPv4 table, IPv6 table): indexed by "is the address IPv6"."""
    return address_table(32, sets), address_table(128, sets)


# --- outcomes --------------------------------------------------------------------------------


class _Outcome:
    """One way a query can end (a rule's action and scope, or the default), with its
    decisions built once: without clock or ECS, and per ECS scope length."""

    __slots__ = (
        "action",
        "scope",
        "rule",
        "weighted",
        "plain",
        "by_ecs_scope",
        "choice",
        "drawn",
        "failover",
        "dynamic",
        "health_cap",
        "capped",
    )

    def __init__(
        self,
        action: Action,
        scope: str,
        rule: str | None,
        *,
        weighted: bool = False,
        health_cap: int | None = None,
    ) -> None:
        self.action = action
        self.scope = scope
        self.rule = rule
        self.weighted = weighted
        # a health-dependent outcome: every TTL at most this (``server.health_ttl``)
        self.health_cap = health_cap
        self.plain = Decision(
            action=action, scope=scope, rule=rule, weighted=weighted, ttl_cap=health_cap
        )
        self.by_ecs_scope: list[Decision | None] = [None] * 129
        self.choice = None  # a weighted rule: its _WeightedChoice, and an outcome per scope
        self.drawn: dict[str, _Outcome] = {}
        self.failover = None  # a failover rule: its engine.Failover
        self.dynamic = False  # the scope is drawn or picked per query (choice or failover)
        self.capped: _Outcome | None = None  # this outcome with the health cap

    def with_ecs_scope(self, ecs_scope: int) -> Decision:
        decision = self.by_ecs_scope[ecs_scope]
        if decision is None:
            decision = self.by_ecs_scope[ecs_scope] = Decision(
                action=self.action,
                scope=self.scope,
                rule=self.rule,
                ecs_scope=ecs_scope,
                weighted=self.weighted,
                ttl_cap=self.health_cap,
            )
        return decision

    def timed(self, now: float, next_change: float, ecs_scope: int | None) -> Decision:
        """``engine._decision`` when a time window was tested."""
        ttl_cap = min(MAX_TTL_CAP, max(0, math.floor(next_change - now)))
        if self.health_cap is not None and self.health_cap < ttl_cap:
            ttl_cap = self.health_cap
        return Decision(
            action=self.action,
            scope=self.scope,
            rule=self.rule,
            ttl_cap=ttl_cap,
            ecs_scope=ecs_scope,
            valid_until=next_change,
            weighted=self.weighted,
            valid_from=now,
        )

    def draw(self, rng: random.Random) -> _Outcome:
        """A weighted rule's outcome for one ``rng.random()``, as ``evaluate`` draws it;
        a failover rule's for the board as it is."""
        if self.failover is not None:
            scope = self.failover.scope()
        else:
            scope = self.choice.scope_at(rng.random())  # type: ignore[attr-defined]
        drawn = self.drawn.get(scope)
        if drawn is None:
            drawn = self.drawn[scope] = _Outcome(
                self.action,
                scope,
                self.rule,
                weighted=self.failover is None,
                health_cap=self.health_cap,
            )
        return drawn

    def with_health_cap(self, cap: int) -> _Outcome:
        """This outcome reached after reading a check: its TTLs capped too."""
        if self.health_cap is not None:
            return self
        capped = self.capped
        if capped is None:
            capped = self.capped = _Outcome(
                self.action, self.scope, self.rule, weighted=self.weighted, health_cap=cap
            )
        return capped


def _outcome_of(rule: Rule, policy: Policy) -> _Outcome:
    board = policy.health
    cap = board.health_ttl if board is not None and rule.health_dependent else None
    outcome = _Outcome(rule.action, rule.scope, rule.name, health_cap=cap)
    # evaluate draws whenever the policy holds weights under the rule's name
    outcome.choice = policy.weighted_choice(rule.name)
    outcome.failover = policy.failover(rule.name)
    outcome.dynamic = outcome.choice is not None or outcome.failover is not None
    return outcome


# --- time ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Epoch:
    """Every time window's verdict over [since, until): ``until`` is the earliest instant at
    which one of them flips. ``flips[i]``: when window criterion ``i`` next flips;
    ``open_bits[s]``: the leaf bits of the segment in slot ``s`` whose windows are open."""

    since: float
    until: float
    flips: tuple[float, ...]
    open_bits: tuple[int, ...]
    version: int = -1  # of the health board the up checks' bits were read at


class _Clock:
    """The current epoch (the one mutable part of a ``Decider``, replaced whole), for the
    segments with time windows or health checks: an epoch also ends when the health
    board's version moves (``dnspol.checks``)."""

    __slots__ = ("epoch", "windows", "segments", "board", "counter")

    def __init__(
        self,
        windows: tuple[TimeIn, ...],
        segments: tuple[_Segment, ...],
        board=None,  # noqa: ANN001
    ) -> None:
        self.windows = windows
        self.segments = segments
        self.board = board
        self.counter = board.counter if board is not None else None  # read per query
        self.epoch = Epoch(INF, -INF, (), ())  # empty: the first query computes one

    def at(self, now: float) -> Epoch:
        epoch = self.epoch
        if epoch.since <= now < epoch.until:
            return epoch
        return self.recompute(now)

    def recompute(self, now: float) -> Epoch:
        board = self.board
        version = board.version() if board is not None else -1
        verdicts = [window.verdict(now) for window in self.windows]
        flips = tuple(until for _, until in verdicts)
        open_bits = tuple(
            sum(bit for bit, index in segment.windows if verdicts[index][0])
            + sum(bit for bit, slot in segment.healths if board.up(slot))
            for segment in self.segments
        )
        self.epoch = Epoch(now, min(flips, default=INF), flips, open_bits, version)
        return self.epoch


# --- segments --------------------------------------------------------------------------------


class _Path(NamedTuple):
    """What evaluating a segment's rules does for one ``verdicts`` bitmask."""

    outcome: _Outcome | None  # None: no rule of the segment matched
    scope_sets: tuple[tuple[AddressTable, AddressTable], ...]  # scope tables of the address
    # sets tested on the ECS address
    windows: tuple[int, ...]  # window criteria tested (indexes into the epoch)


class _HealthPath(NamedTuple):
    """A ``_Path`` of a policy with health checks (``HealthDecider``)."""

    outcome: _Outcome | None
    scope_sets: tuple[tuple[AddressTable, AddressTable], ...]
    windows: tuple[int, ...]
    health: bool  # a check's verdict was read: the answer's TTLs are capped


class _Segment:
    """Consecutive rules compiled into leaf lookups and a table of paths."""

    __slots__ = (
        "slot",
        "rules",
        "trees",
        "outcomes",
        "address",
        "ecs_bits",
        "server",
        "listeners",
        "transport",
        "family",
        "qtype",
        "qname",
        "windows",
        "window_bits",
        "healths",
        "health_aware",
        "leaf_sets",
        "scope_tables",
        "paths",
        "hot",
    )

    def __init__(self, rules: tuple[Rule, ...], builder: _Builder) -> None:
        self.slot = -1  # index into ``Epoch.open_bits``, when the segment has windows
        self.rules = rules
        leaves = _Leaves(builder)
        self.trees = tuple(leaves.tree(rule.criteria, rule.use_ecs) for rule in rules)
        self.outcomes = tuple(builder.outcome(rule) for rule in rules)
        self.address = leaves.address_tables()
        self.ecs_bits = leaves.ecs_bits
        self.server = leaves.server_tables()
        self.listeners: dict[int, tuple[IPAddress, int]] = {}
        self.transport = leaves.transport_bits()
        self.family = leaves.family_bits()
        self.qtype = leaves.qtype_bits()
        self.qname = leaves.qname_bits()
        self.windows = tuple(leaves.windows)  # (leaf bit, window index)
        self.window_bits = sum(bit for bit, _ in leaves.windows)
        self.healths = tuple(leaves.healths)  # (leaf bit, board slot)
        self.health_aware = builder.policy.health is not None  # paths for HealthDecider
        self.leaf_sets = leaves.sets  # leaf bit → its prefix set
        self.scope_tables = {  # leaf bit → the scope tables of its set, for ECS leaves
            bit: builder.scope_tables(prefixes)
            for bit, prefixes in leaves.sets.items()
            if bit & leaves.ecs_bits
        }
        self.paths: dict[int, _Path] = {}
        self.hot: tuple = ()

    def seal(self, slot: int) -> None:
        """Take the epoch slot, and gather what ``Decider.decide`` reads into one tuple
        (unpacked at once: cheaper than ten attribute reads)."""
        self.slot = slot
        self.hot = (
            self.address,
            self.ecs_bits,
            self.listeners if self.server is not None else None,
            self.transport,
            self.family,
            self.qtype,
            self.qname,
            slot,
            self.paths,
            self,
        )

    def server_verdicts(self, server: IPAddress) -> tuple[IPAddress, int]:
        """The server-address leaves' verdicts for one listener address, kept per address
        object (a handful: the listeners'), as ``int()`` of an ``ipaddress`` object is slow."""
        if len(self.listeners) >= LISTENER_LIMIT:
            self.listeners.clear()
        value, bits = _server_value(server)
        kept = self.listeners[id(server)] = (server, lookup(self.server[bits == 128], value))
        return kept

    def path(self, verdicts: int) -> _Path | _HealthPath:
        path = self.paths.get(verdicts)
        if path is None:
            path = self._walk_rules(verdicts)
            if len(self.paths) < PATH_LIMIT:
                self.paths[verdicts] = path
        return path

    def _walk_rules(self, verdicts: int) -> _Path | _HealthPath:
        tested = 0
        matched = None
        for tree, outcome in zip(self.trees, self.outcomes, strict=True):
            verdict, seen = _walk(tree, verdicts)
            tested |= seen
            if verdict:
                matched = outcome
                break
        scope_sets = tuple(
            self.scope_tables[bit] for bit in self.leaf_sets if tested & self.ecs_bits & bit
        )
        windows = tuple(index for bit, index in self.windows if tested & bit)
        if not self.health_aware:
            return _Path(matched, scope_sets, windows)
        health = any(tested & bit for bit, _ in self.healths)
        return _HealthPath(matched, scope_sets, windows, health)


def _walk(node: tuple, verdicts: int) -> tuple[bool, int]:
    """(verdict, leaf bits tested) of a compiled tree, in the order ``Criterion.test`` runs."""
    kind, arg = node
    if kind == LEAF:
        return bool(verdicts & arg), arg
    if kind == NOT:
        verdict, tested = _walk(arg, verdicts)
        return not verdict, tested
    tested = 0
    stop_at = kind == ANY  # all() stops at the first False, any() at the first True
    for child in arg:
        verdict, seen = _walk(child, verdicts)
        tested |= seen
        if verdict is stop_at:
            return stop_at, tested
    return not stop_at, tested


class _Leaves:
    """Numbers a segment's leaf criteria and gathers the lookups that test them."""

    def __init__(self, builder: _Builder) -> None:
        self.builder = builder
        self.next_bit = 1
        self.ecs_bits = 0
        self.sets: dict[int, PrefixSet] = {}  # address leaves on client or source
        self.servers: list[tuple[int, PrefixSet]] = []
        self.transports: list[tuple[int, frozenset[str]]] = []
        self.families: list[tuple[int, frozenset[int]]] = []
        self.qtypes: list[tuple[int, frozenset[int]]] = []
        self.qnames: list[tuple[int, QnameIs]] = []
        self.windows: list[tuple[int, int]] = []
        self.healths: list[tuple[int, int]] = []

    def tree(self, criterion: Criterion, use_ecs: bool) -> tuple:
        if isinstance(criterion, All):
            return (ALL, tuple(self.tree(child, use_ecs) for child in criterion.ordered))
        if isinstance(criterion, Any):
            return (ANY, tuple(self.tree(child, use_ecs) for child in criterion.ordered))
        if isinstance(criterion, Not):
            return (NOT, self.tree(criterion.child, use_ecs))
        bit = self.next_bit
        self.next_bit <<= 1
        self._gather(bit, criterion, use_ecs)
        return (LEAF, bit)

    def _gather(self, bit: int, criterion: Criterion, use_ecs: bool) -> None:
        if isinstance(criterion, AddressIn):
            if criterion.subject == "server":
                self.servers.append((bit, criterion.prefixes))
                return
            self.sets[bit] = criterion.prefixes
            if criterion.subject == "client" and use_ecs:
                self.ecs_bits |= bit  # reads the ECS address when it is trusted
        elif isinstance(criterion, TransportIs):
            self.transports.append((bit, criterion.transports))
        elif isinstance(criterion, FamilyIs):
            self.families.append((bit, criterion.families))
        elif isinstance(criterion, QtypeIs):
            self.qtypes.append((bit, criterion.qtypes))
        elif isinstance(criterion, QnameIs):
            self.qnames.append((bit, criterion))
        elif isinstance(criterion, TimeIn):
            self.windows.append((bit, self.builder.window_index(criterion)))
        elif isinstance(criterion, HealthyIs):
            self.healths.append((bit, criterion.slot))
        else:
            raise TypeError(f"the decider cannot compile {type(criterion).__name__}")

    def address_tables(self) -> tuple[AddressTable, AddressTable] | None:
        return _both_families(list(self.sets.items())) if self.sets else None

    def server_tables(self) -> tuple[AddressTable, AddressTable] | None:
        return _both_families(self.servers) if self.servers else None

    def transport_bits(self) -> Mapping[str, int] | None:
        if not self.transports:
            return None
        names = {name for _, names in self.transports for name in names} | {"udp", "tcp"}
        return {name: _bits_holding(self.transports, name) for name in sorted(names)}

    def family_bits(self) -> tuple[int, int]:
        return _bits_holding(self.families, 32), _bits_holding(self.families, 128)

    def qtype_bits(self) -> Mapping[int, int] | None:
        if not self.qtypes:
            return None
        qtypes = {qtype for _, qtypes in self.qtypes for qtype in qtypes}
        return {qtype: _bits_holding(self.qtypes, qtype) for qtype in qtypes}

    def qname_bits(self) -> tuple[Mapping[Name, int], Mapping[Name, int]] | None:
        """(bits of the leaves a name matches itself: exact or at-or-below, bits of the
        leaves a strict suffix of the name matches: below or at-or-below)."""
        if not self.qnames:
            return None
        itself: dict[Name, int] = {}
        suffix: dict[Name, int] = {}
        for bit, leaf in self.qnames:
            for name in leaf.exact | leaf.at_or_below:
                itself[name] = itself.get(name, 0) | bit
            for name in leaf.below | leaf.at_or_below:
                suffix[name] = suffix.get(name, 0) | bit
        return itself, suffix


def _prefix_count(criterion: Criterion) -> int:
    if isinstance(criterion, All | Any):
        return sum(_prefix_count(child) for child in criterion.children)
    if isinstance(criterion, Not):
        return _prefix_count(criterion.child)
    if isinstance(criterion, AddressIn):
        return len(criterion.prefixes)
    return 0


def _bits_holding(leaves: list[tuple[int, frozenset]], item: object) -> int:
    return sum(bit for bit, items in leaves if item in items)


class _Builder:
    """State shared while segments are built: window indexes, outcomes, shared segments."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.windows: list[TimeIn] = []
        self.window_ids: dict[int, int] = {}
        self.outcomes: dict[int, _Outcome] = {}
        self.segments: dict[tuple[int, ...], _Segment] = {}
        self.timed: list[_Segment] = []  # the segments with time windows, by ``slot``
        # scope tables per set object (the set kept with them: its id stays its own)
        self.scopes: dict[int, tuple[PrefixSet, tuple[AddressTable, AddressTable]]] = {}

    def window_index(self, window: TimeIn) -> int:
        index = self.window_ids.get(id(window))
        if index is None:
            index = self.window_ids[id(window)] = len(self.windows)
            self.windows.append(window)
        return index

    def scope_tables(self, prefixes: PrefixSet) -> tuple[AddressTable, AddressTable]:
        """The scope tables of a set (shared by every leaf on the same set object)."""
        kept = self.scopes.get(id(prefixes))
        if kept is None:
            tables = (scope_table(32, prefixes), scope_table(128, prefixes))
            kept = self.scopes[id(prefixes)] = (prefixes, tables)
        return kept[1]

    def outcome(self, rule: Rule) -> _Outcome:
        outcome = self.outcomes.get(id(rule))
        if outcome is None:
            outcome = self.outcomes[id(rule)] = _outcome_of(rule, self.policy)
        return outcome

    def chain(self, zone: Name | None) -> tuple[tuple, ...]:
        """The segments (their ``hot`` tuples) a query in ``zone`` passes through: the
        server-wide rules acting there and the zone's own, as one segment, or as two when
        the server-wide part holds many prefixes (then it is shared between zones rather
        than copied into each zone's tables)."""
        acting = tuple(rule for rule in self.policy.rules_for(zone) if rule.acts_in(zone))
        server = tuple(rule for rule in acting if rule.zone is None)
        if sum(_prefix_count(rule.criteria) for rule in server) <= MERGE_LIMIT:
            parts = [acting]
        else:
            parts = [server, acting[len(server) :]]
        return tuple(self.segment(rules).hot for rules in parts if rules)

    def segment(self, rules: tuple[Rule, ...]) -> _Segment:
        """The segment for these rules (shared between zones)."""
        key = tuple(id(rule) for rule in rules)
        segment = self.segments.get(key)
        if segment is None:
            segment = self.segments[key] = _Segment(rules, self)
            slot = -1
            if segment.window_bits or segment.healths:
                slot = len(self.timed)
                self.timed.append(segment)
            segment.seal(slot)
        return segment


# --- the decider -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Decider:
    """``Policy.evaluate`` compiled; build it with ``Decider.build(policy)``.

    Immutable once built but for what it fills in as queries come, each bounded by the
    configuration, never by clients: the paths per verdict bitmask, the decisions per ECS
    scope length and per drawn scope, the ints of the listener addresses, the epoch.
    """

    policy: Policy
    # the hot tuples of the segments a query passes through, for the zones whose rule list
    # differs from that of every other zone; unserved names (zone None) take default_chain
    chains: dict[Name | None, tuple[tuple, ...]]
    default_chain: tuple[tuple, ...]
    trusted: tuple[AddressTable, AddressTable]  # bit 1: a trusted resolver's address
    default: _Outcome  # no rule matched
    clock: _Clock = field(compare=False)
    # whether any rule reads the query name: if not, ``decide`` may be given ``()``
    reads_qname: bool = False

    @classmethod
    def build(cls, policy: Policy) -> Decider:
        builder = _Builder(policy)
        default_chain = builder.chain(None)
        chains = {}
        for zone in _zones_named(policy.rules):
            chain = builder.chain(zone)
            if chain != default_chain:
                chains[zone] = chain
        kind = HealthDecider if policy.health is not None else cls
        return kind(
            policy=policy,
            chains=chains,
            default_chain=default_chain,
            trusted=_both_families([(1, policy.trusted_resolvers)]),
            default=_Outcome(Action.ANSWER, "default", None),
            clock=_Clock(tuple(builder.windows), tuple(builder.timed), policy.health),
            reads_qname=any(
                hot[6] is not None for chain in (default_chain, *chains.values()) for hot in chain
            ),
        )

    @property
    def has_rules(self) -> bool:
        """False: every decision is "answer from the default scope"."""
        return self.policy.has_rules

    def question_blind(self, zone: Name) -> bool:
        """True when no rule a query in ``zone`` passes through reads its name or type."""
        return self.policy.question_blind(zone)

    def decide(
        self,
        client: str,
        ecs: bytes | None,
        server: IPAddress,
        transport: str,
        qname: Name,
        qtype: int,
        zone: Name | None,
        now: float,
        rng: random.Random,
    ) -> Decision:
        """``Policy.evaluate`` of the facts these values make (see the module docstring).

        ``client``: the packet (or PROXY) source address as text, ``%scope`` allowed;
        ``ecs``: the query's ECS option data, already validated, or None.
        """
        # the source address as an int, inline (a third of the cost of a decision)
        if ":" in client:
            cut = client.find("%")
            if cut >= 0:
                client = client[:cut]
            value = _from_bytes(_inet_pton(_AF_INET6, client), "big")
            wide = True
            if value >> 32 == MAPPED_HIGH:
                value &= 0xFFFFFFFF
                wide = False
        else:
            value = _from_bytes(_inet_pton(_AF_INET, client), "big")
            wide = False
        # ECS, when the option has a SOURCE and the source is a trusted resolver
        ecs_source = 0
        if ecs is not None and ecs[2]:
            top, shift = self.trusted[wide]
            trusted = top[value >> shift]
            if trusted.__class__ is _Bucket:
                trusted = trusted[1][bisect_right(trusted[0], value) - 1]
            if trusted:
                ecs_source = ecs[2]
                ecs_wide = ecs[1] != 1
                ecs_at = _from_bytes(ecs[4:].ljust(16 if ecs_wide else 4, b"\x00"), "big")
        scope_length = 0
        next_change = INF
        outcome = None
        epoch = None
        for hot in self.chains.get(zone, self.default_chain):
            (
                address,
                ecs_bits,
                servers,
                transports,
                families,
                qtypes,
                qnames,
                slot,
                paths,
                segment,
            ) = hot
            if address is None:
                verdicts = families[wide]
            else:
                top, shift = address[wide]
                verdicts = top[value >> shift]
                if verdicts.__class__ is _Bucket:
                    verdicts = verdicts[1][bisect_right(verdicts[0], value) - 1]
                verdicts |= families[wide]
                if ecs_bits and ecs_source:
                    top, shift = address[ecs_wide]
                    at = top[ecs_at >> shift]
                    if at.__class__ is _Bucket:
                        at = at[1][bisect_right(at[0], ecs_at) - 1]
                    verdicts = (verdicts & ~ecs_bits) | (at & ecs_bits)
            if servers is not None:
                kept = servers.get(id(server))
                if kept is None or kept[0] is not server:
                    kept = segment.server_verdicts(server)
                verdicts |= kept[1]
            if transports is not None:
                verdicts |= transports.get(transport, 0)
            if qtypes is not None:
                verdicts |= qtypes.get(qtype, 0)
            if qnames is not None:
                verdicts |= _qname_verdicts(qnames, qname)
            if slot >= 0:
                epoch = self.clock.epoch
                if not epoch.since <= now < epoch.until:
                    epoch = self.clock.recompute(now)
                verdicts |= epoch.open_bits[slot]
            path = paths.get(verdicts)
            if path is None:
                path = segment.path(verdicts)
            outcome, scope_sets, windows = path
            if scope_sets and ecs_source:
                for tables in scope_sets:
                    top, shift = tables[ecs_wide]
                    length = top[ecs_at >> shift]
                    if length.__class__ is _Bucket:
                        length = length[1][bisect_right(length[0], ecs_at) - 1]
                    if length.__class__ is not int:  # outside the set: how far from it
                        length = _distance_length(length, ecs_at, 128 if ecs_wide else 32)
                    if length > scope_length:
                        scope_length = length
            if windows:
                flips = epoch.flips  # type: ignore[union-attr]
                for index in windows:
                    if flips[index] < next_change:
                        next_change = flips[index]
            if outcome is not None:
                break
        if outcome is None:
            outcome = self.default
        elif outcome.choice is not None:
            outcome = outcome.draw(rng)
        if ecs_source:
            ecs_scope = scope_length if scope_length < ecs_source else ecs_source
            if next_change != INF:
                return outcome.timed(now, next_change, ecs_scope)
            decision = outcome.by_ecs_scope[ecs_scope]
            return decision if decision is not None else outcome.with_ecs_scope(ecs_scope)
        if next_change != INF:
            return outcome.timed(now, next_change, None)
        return outcome.plain


@dataclass(frozen=True, slots=True, eq=False)
class HealthDecider(Decider):
    """The ``Decider`` of a policy with health checks (``Decider.build`` picks it): the same
    walk, with the checks' verdicts folded into the epoch, ``failover:``/``members:`` picks,
    and the TTL cap of a path that read a check. Kept apart so that a policy without checks
    runs ``Decider.decide`` with none of it (each line there is paid per query)."""

    def decide(
        self,
        client: str,
        ecs: bytes | None,
        server: IPAddress,
        transport: str,
        qname: Name,
        qtype: int,
        zone: Name | None,
        now: float,
        rng: random.Random,
    ) -> Decision:
        """``Decider.decide`` with health checks (see the class docstring)."""
        # the source address as an int, inline (a third of the cost of a decision)
        if ":" in client:
            cut = client.find("%")
            if cut >= 0:
                client = client[:cut]
            value = _from_bytes(_inet_pton(_AF_INET6, client), "big")
            wide = True
            if value >> 32 == MAPPED_HIGH:
                value &= 0xFFFFFFFF
                wide = False
        else:
            value = _from_bytes(_inet_pton(_AF_INET, client), "big")
            wide = False
        # ECS, when the option has a SOURCE and the source is a trusted resolver
        ecs_source = 0
        if ecs is not None and ecs[2]:
            top, shift = self.trusted[wide]
            trusted = top[value >> shift]
            if trusted.__class__ is _Bucket:
                trusted = trusted[1][bisect_right(trusted[0], value) - 1]
            if trusted:
                ecs_source = ecs[2]
                ecs_wide = ecs[1] != 1
                ecs_at = _from_bytes(ecs[4:].ljust(16 if ecs_wide else 4, b"\x00"), "big")
        scope_length = 0
        next_change = INF
        outcome = None
        epoch = None
        health = False
        for hot in self.chains.get(zone, self.default_chain):
            (
                address,
                ecs_bits,
                servers,
                transports,
                families,
                qtypes,
                qnames,
                slot,
                paths,
                segment,
            ) = hot
            if address is None:
                verdicts = families[wide]
            else:
                top, shift = address[wide]
                verdicts = top[value >> shift]
                if verdicts.__class__ is _Bucket:
                    verdicts = verdicts[1][bisect_right(verdicts[0], value) - 1]
                verdicts |= families[wide]
                if ecs_bits and ecs_source:
                    top, shift = address[ecs_wide]
                    at = top[ecs_at >> shift]
                    if at.__class__ is _Bucket:
                        at = at[1][bisect_right(at[0], ecs_at) - 1]
                    verdicts = (verdicts & ~ecs_bits) | (at & ecs_bits)
            if servers is not None:
                kept = servers.get(id(server))
                if kept is None or kept[0] is not server:
                    kept = segment.server_verdicts(server)
                verdicts |= kept[1]
            if transports is not None:
                verdicts |= transports.get(transport, 0)
            if qtypes is not None:
                verdicts |= qtypes.get(qtype, 0)
            if qnames is not None:
                verdicts |= _qname_verdicts(qnames, qname)
            if slot >= 0:
                clock = self.clock
                epoch = clock.epoch
                if not epoch.since <= now < epoch.until or (
                    clock.counter is not None and epoch.version != clock.counter[0]
                ):
                    epoch = clock.recompute(now)
                verdicts |= epoch.open_bits[slot]
            path = paths.get(verdicts)
            if path is None:
                path = segment.path(verdicts)
            outcome, scope_sets, windows, tested_health = path
            if scope_sets and ecs_source:
                for tables in scope_sets:
                    top, shift = tables[ecs_wide]
                    length = top[ecs_at >> shift]
                    if length.__class__ is _Bucket:
                        length = length[1][bisect_right(length[0], ecs_at) - 1]
                    if length.__class__ is not int:  # outside the set: how far from it
                        length = _distance_length(length, ecs_at, 128 if ecs_wide else 32)
                    if length > scope_length:
                        scope_length = length
            if windows:
                flips = epoch.flips  # type: ignore[union-attr]
                for index in windows:
                    if flips[index] < next_change:
                        next_change = flips[index]
            if tested_health:
                health = True
            if outcome is not None:
                break
        if outcome is None:
            outcome = self.default
        elif outcome.dynamic:
            outcome = outcome.draw(rng)
        if health:
            outcome = outcome.with_health_cap(self.policy.health.health_ttl)  # type: ignore[union-attr]
        if ecs_source:
            ecs_scope = scope_length if scope_length < ecs_source else ecs_source
            if next_change != INF:
                return outcome.timed(now, next_change, ecs_scope)
            decision = outcome.by_ecs_scope[ecs_scope]
            return decision if decision is not None else outcome.with_ecs_scope(ecs_scope)
        if next_change != INF:
            return outcome.timed(now, next_change, None)
        return outcome.plain


def _qname_verdicts(tables: tuple[Mapping[Name, int], Mapping[Name, int]], qname: Name) -> int:
    itself, suffix = tables
    verdicts = itself.get(qname, 0)
    for index in range(1, len(qname) + 1):
        verdicts |= suffix.get(qname[index:], 0)
    return verdicts


def _zones_named(rules: Iterable[Rule]) -> set[Name]:
    """Every zone a rule names (``zone:``, or the zones a server-wide rule acts in)."""
    zones: set[Name] = set()
    for rule in rules:
        if not rule.enabled:
            continue
        if rule.zone is not None:
            zones.add(rule.zone)
        if rule.zones is not None:
            zones.update(rule.zones)
    return zones
