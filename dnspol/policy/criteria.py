"""Compiled match criteria, and the per-query ``Context`` they read and report into.

Each criterion answers ``test(ctx) -> bool`` with no parsing and no allocation beyond a few
ints, and ``failures(ctx)`` (why it did not match, in words) for ``explain``. While testing,
criteria report what the verdict depended on, because the decision must say how far it can
be reused:

- an address test on the ECS client notes the prefix length over which its verdict holds
  (``PrefixSet.scope_length``); the largest such length becomes the ECS SCOPE;
- a time test notes when its verdict next flips; the earliest such instant becomes
  ``valid_until`` and the TTL cap.
- a health test (``healthy:``) notes that a check was read: the TTLs are then capped at
  ``server.health_ttl``.

``All``/``Any`` test their children cheapest first (plain facts, then addresses, then
clocks, then health checks) and stop at the first verdict, so a criterion that was never
needed adds nothing to the ECS scope or the TTL cap.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from dataclasses import dataclass, field

from dnslib import QTYPE

from dnspol.names import Name, to_text
from dnspol.policy.model import QueryFacts
from dnspol.policy.prefixes import PrefixSet, address_value
from dnspol.policy.timewindow import HORIZON_DAYS, WEEKDAYS, TimeWindow

PLAIN, ADDRESS, CLOCK, HEALTH = 0, 1, 2, 3  # evaluation order classes
FAMILY_NAMES = {32: "ipv4", 128: "ipv6"}


class Context:
    """One query's facts as ints, plus what the verdicts so far depended on."""

    __slots__ = (
        "facts",
        "source",
        "server",
        "ecs",
        "ecs_length",
        "use_ecs",
        "scope_length",
        "next_change",
        "health",
        "health_seen",
    )

    def __init__(self, facts: QueryFacts, trusted_ecs: bool) -> None:
        self.facts = facts
        self.source = address_value(facts.client)
        self.server = address_value(facts.server)
        network = facts.ecs if trusted_ecs else None
        if network is not None:
            bits = 32 if network.version == 4 else 128
            self.ecs: tuple[int, int] | None = (int(network.network_address), bits)
            self.ecs_length = network.prefixlen
        else:
            self.ecs = None
            self.ecs_length = 0
        self.use_ecs = True  # set per rule
        self.scope_length = 0
        self.next_change = math.inf
        self.health = None  # the policy's HealthBoard (dnspol.checks), when it has checks
        self.health_seen = False  # a health verdict was read: the TTL cap applies

    @property
    def client(self) -> tuple[int, int]:
        """The address "client" criteria test: ECS when trusted and the rule uses it."""
        if self.use_ecs and self.ecs is not None:
            return self.ecs
        return self.source

    @property
    def client_is_ecs(self) -> bool:
        return self.use_ecs and self.ecs is not None

    def note_scope(self, length: int) -> None:
        if length > self.scope_length:
            self.scope_length = length

    def note_change(self, instant: float) -> None:
        if instant < self.next_change:
            self.next_change = instant


class Criterion:
    """Base of every compiled criterion."""

    __slots__ = ()
    order = PLAIN

    def test(self, ctx: Context) -> bool:
        raise NotImplementedError

    def failures(self, ctx: Context) -> list[str]:
        """Why this criterion does not match ``ctx``; empty when it matches."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


# --- leaves ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddressIn(Criterion):
    """``client``, ``source`` or ``server`` address inside a set of prefixes."""

    subject: str  # "client" | "source" | "server"
    prefixes: PrefixSet
    labels: tuple[str, ...]  # subnet names and CIDRs as written
    parts: tuple[tuple[str, PrefixSet], ...] = field(default=(), compare=False, repr=False)

    @property
    def order(self) -> int:  # type: ignore[override]
        return ADDRESS

    def _address(self, ctx: Context) -> tuple[int, int]:
        if self.subject == "server":
            return ctx.server
        if self.subject == "source":
            return ctx.source
        return ctx.client

    def test(self, ctx: Context) -> bool:
        value, bits = self._address(ctx)
        if self.subject == "client" and ctx.client_is_ecs:
            ctx.note_scope(self.prefixes.scope_length(value, bits))
        return self.prefixes.contains(value, bits)

    def failures(self, ctx: Context) -> list[str]:
        value, bits = self._address(ctx)
        if self.prefixes.contains(value, bits):
            return []
        shown = _address_text(value, bits)
        if self.subject == "client" and ctx.client_is_ecs:
            shown = f"{shown} (ECS)"
        return [f"{self.subject} {shown} is not in {_join(self.labels)}"]

    def matched_label(self, ctx: Context) -> str | None:
        value, bits = self._address(ctx)
        for label, prefixes in self.parts:
            if prefixes.contains(value, bits):
                return label
        return None

    def describe(self) -> str:
        return f"{self.subject} in {_join(self.labels)}"


@dataclass(frozen=True, slots=True)
class TransportIs(Criterion):
    transports: frozenset[str]

    def test(self, ctx: Context) -> bool:
        return ctx.facts.transport in self.transports

    def failures(self, ctx: Context) -> list[str]:
        if self.test(ctx):
            return []
        return [f"transport {ctx.facts.transport} is not {_join(sorted(self.transports))}"]

    def describe(self) -> str:
        return f"transport {_join(sorted(self.transports))}"


@dataclass(frozen=True, slots=True)
class KeyIs(Criterion):
    """The TSIG key a transfer request was signed with, and checked (transfer rules only:
    ``dnspol.policy.transfers``)."""

    keys: frozenset[str]  # lowercase key names with the trailing dot
    labels: tuple[str, ...]  # as written

    def test(self, ctx: Context) -> bool:
        return ctx.facts.key in self.keys

    def failures(self, ctx: Context) -> list[str]:
        if self.test(ctx):
            return []
        signed = f"key {ctx.facts.key}" if ctx.facts.key else "no key"
        return [f"signed with {signed}, not {_join(self.labels)}"]

    def describe(self) -> str:
        return f"key {_join(self.labels)}"


@dataclass(frozen=True, slots=True)
class FamilyIs(Criterion):
    """IP family of the packet's source (IPv4-mapped IPv6 counts as IPv4)."""

    families: frozenset[int]  # 32, 128

    def test(self, ctx: Context) -> bool:
        return ctx.source[1] in self.families

    def failures(self, ctx: Context) -> list[str]:
        if self.test(ctx):
            return []
        wanted = _join(sorted(FAMILY_NAMES[bits] for bits in self.families))
        return [f"family {FAMILY_NAMES[ctx.source[1]]} is not {wanted}"]

    def describe(self) -> str:
        return f"family {_join(sorted(FAMILY_NAMES[bits] for bits in self.families))}"


@dataclass(frozen=True, slots=True)
class QnameIs(Criterion):
    """Exact names, ``*.suffix`` (strictly below) and ``.suffix`` (the suffix or below)."""

    exact: frozenset[Name]
    at_or_below: frozenset[Name]
    below: frozenset[Name]
    patterns: tuple[str, ...] = field(compare=False)

    def test(self, ctx: Context) -> bool:
        qname = ctx.facts.qname
        if qname in self.exact or qname in self.at_or_below:
            return True
        at_or_below, below = self.at_or_below, self.below
        for index in range(1, len(qname) + 1):
            suffix = qname[index:]
            if suffix in below or suffix in at_or_below:
                return True
        return False

    def failures(self, ctx: Context) -> list[str]:
        if self.test(ctx):
            return []
        return [f"qname {to_text(ctx.facts.qname)} does not match {_join(self.patterns)}"]

    def describe(self) -> str:
        return f"qname {_join(self.patterns)}"


@dataclass(frozen=True, slots=True)
class QtypeIs(Criterion):
    qtypes: frozenset[int]
    names: tuple[str, ...] = field(compare=False)

    def test(self, ctx: Context) -> bool:
        return ctx.facts.qtype in self.qtypes

    def failures(self, ctx: Context) -> list[str]:
        if self.test(ctx):
            return []
        return [f"qtype {qtype_text(ctx.facts.qtype)} is not {_join(self.names)}"]

    def describe(self) -> str:
        return f"qtype {_join(self.names)}"


@dataclass(frozen=True, slots=True)
class TimeIn(Criterion):
    """Inside any of the windows. Remembers its last verdict until that verdict's end."""

    windows: tuple[TimeWindow, ...]
    _memo: list[tuple[float, float, bool]] = field(
        default_factory=list, compare=False, repr=False, hash=False
    )

    @property
    def order(self) -> int:  # type: ignore[override]
        return CLOCK

    def verdict(self, now: float) -> tuple[bool, float]:
        """(inside?, instant the answer next changes)."""
        memo = self._memo
        if memo:
            since, until, inside = memo[0]
            if since <= now < until:
                return inside, until
        try:
            inside = self._inside(now)
            until = self._next_flip(now, inside)
        except (OverflowError, OSError):
            # the last days of year 9999: looking ahead leaves what datetime can show.
            # Decide for one second at a time (a finite end: never kept as timeless)
            inside, until = self._inside_at_the_end(now), now + 1.0
        if memo:
            memo[0] = (now, until, inside)
        else:
            memo.append((now, until, inside))
        return inside, until

    def _inside(self, now: float) -> bool:
        return any(window.matches(now) for window in self.windows)

    def _inside_at_the_end(self, now: float) -> bool:
        """``_inside``, where a window whose local time is past year 9999 does not match."""
        for window in self.windows:
            try:
                if window.matches(now):
                    return True
            except (OverflowError, OSError):
                continue
        return False

    def _next_flip(self, now: float, inside: bool) -> float:
        """When the union of the windows flips (a window may open as another closes)."""
        instant = now
        horizon = now + HORIZON_DAYS * 86400.0
        while instant < horizon:
            instant = min(window.next_change(instant) for window in self.windows)
            if self._inside(instant) != inside:
                return instant
        return instant

    def test(self, ctx: Context) -> bool:
        inside, until = self.verdict(ctx.facts.now)
        ctx.note_change(until)
        return inside

    def failures(self, ctx: Context) -> list[str]:
        inside, _ = self.verdict(ctx.facts.now)
        if inside:
            return []
        zones = {window.tz.key: window.tz for window in self.windows}
        local = [_local_text(ctx.facts.now, tz) for tz in zones.values()]
        return [f"time {', '.join(local)} is outside {self.describe_windows()}"]

    def describe_windows(self) -> str:
        return " or ".join(window.describe() for window in self.windows)

    def describe(self) -> str:
        return f"time {self.describe_windows()}"


@dataclass(frozen=True, slots=True)
class HealthyIs(Criterion):
    """``healthy: NAME``: the check's verdict on the board (``dnspol.checks``) is up."""

    check: str
    slot: int

    @property
    def order(self) -> int:  # type: ignore[override]
        return HEALTH

    def test(self, ctx: Context) -> bool:
        ctx.health_seen = True
        return ctx.health is not None and ctx.health.up(self.slot)

    def failures(self, ctx: Context) -> list[str]:
        if self.test(ctx):
            return []
        return [f"check {self.check} is down"]

    def describe(self) -> str:
        return f"healthy {self.check}"


# --- composition -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Group(Criterion):
    """Children, and the same children cheapest first for testing."""

    children: tuple[Criterion, ...]
    ordered: tuple[Criterion, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ordered", _cheapest_first(self.children))

    @property
    def order(self) -> int:  # type: ignore[override]
        return max((child.order for child in self.children), default=PLAIN)


@dataclass(frozen=True, slots=True)
class All(_Group):
    """Every child matches. No children: always matches."""

    def test(self, ctx: Context) -> bool:
        return all(child.test(ctx) for child in self.ordered)

    def failures(self, ctx: Context) -> list[str]:
        return [reason for child in self.children for reason in child.failures(ctx)]

    def describe(self) -> str:
        if not self.children:
            return "always"
        return " and ".join(child.describe() for child in self.children)


@dataclass(frozen=True, slots=True)
class Any(_Group):
    """At least one child matches."""

    def test(self, ctx: Context) -> bool:
        return any(child.test(ctx) for child in self.ordered)

    def failures(self, ctx: Context) -> list[str]:
        reasons = [child.failures(ctx) for child in self.children]
        if not all(reasons):
            return []
        return ["none of: " + "; ".join(" and ".join(each) for each in reasons)]

    def describe(self) -> str:
        return "any of (" + "; ".join(child.describe() for child in self.children) + ")"


@dataclass(frozen=True, slots=True)
class Not(Criterion):
    child: Criterion

    @property
    def order(self) -> int:  # type: ignore[override]
        return self.child.order

    def test(self, ctx: Context) -> bool:
        return not self.child.test(ctx)

    def failures(self, ctx: Context) -> list[str]:
        if self.child.failures(ctx):
            return []
        return [f"matches not: {self.child.describe()}"]

    def describe(self) -> str:
        return f"not ({self.child.describe()})"


def _cheapest_first(children: tuple[Criterion, ...]) -> tuple[Criterion, ...]:
    return tuple(sorted(children, key=lambda child: child.order))


ALWAYS = All(())


# --- words -----------------------------------------------------------------------------------


def _join(items: tuple[str, ...] | list[str]) -> str:
    items = list(items)
    if len(items) > 6:
        items = items[:6] + [f"… ({len(items) - 6} more)"]
    return ", ".join(items) if len(items) != 1 else items[0]


def _address_text(value: int, bits: int) -> str:
    return str(ipaddress.IPv4Address(value) if bits == 32 else ipaddress.IPv6Address(value))


def _local_text(now: float, tz: dt.tzinfo) -> str:
    local = dt.datetime.fromtimestamp(now, tz)
    return f"{WEEKDAYS[local.weekday()]} {local:%Y-%m-%d %H:%M} {local.tzname()}"


def qtype_text(qtype: int) -> str:
    return str(QTYPE[qtype])
