"""Compiled rules and the ``Policy`` that evaluates them per query.

Processing order: the server-wide rules (no ``zone:``), then the rules of the query's zone,
each list in written order; the first enabled rule that matches decides. No match: answer
from the zone's default scope.

Evaluation is pure: the facts, the rules, the caller's ``random.Random`` and the health
checks' verdicts (the policy's ``HealthBoard``, ``dnspol.checks``) decide everything, so tests
(and ``dnspol explain``) replay a decision exactly.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from dnspol.names import Name, to_text
from dnspol.policy.criteria import (
    ALWAYS,
    AddressIn,
    All,
    Any,
    Context,
    Criterion,
    HealthyIs,
    Not,
    QnameIs,
    QtypeIs,
)
from dnspol.policy.model import (
    Action,
    Decision,
    Explanation,
    IPAddress,
    Outcome,
    QueryFacts,
    RuleTrace,
)
from dnspol.policy.prefixes import PrefixSet, address_value, parse_prefix

if TYPE_CHECKING:
    from dnspol.checks import HealthBoard

MAX_TTL_CAP = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule.

    ``zones``: the served zones the rule can act in. None means anywhere, unserved names too
    (refuse and drop rules without ``zone:``). A server-wide answer rule only acts in the zones
    that have every scope it names.
    """

    name: str
    where: str  # file:line where the rule starts
    zone: Name | None = None
    action: Action = Action.ANSWER
    scope: str = "default"
    weights: tuple[tuple[str, float], ...] = ()  # non-empty: a weighted choice between scopes
    criteria: Criterion = ALWAYS
    enabled: bool = True
    use_ecs: bool = True
    zones: frozenset[Name] | None = None
    # ``failover:``: (scope, board slots of its checks) in order; the first whose checks
    # are all up answers
    failover: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # weighted members' checks (board slots), in the order of ``weights``; empty: none
    weight_checks: tuple[tuple[int, ...], ...] = ()
    check_names: tuple[tuple[str, ...], ...] = ()  # per failover item or weight: as written
    # ``members:``: the record-set check (``dnspol.checks.RecordSet``) and the fallback scope
    members: tuple[object, str] | None = None

    @property
    def health_dependent(self) -> bool:
        """The scope answered depends on check verdicts (failover, checked weights)."""
        return bool(self.failover) or self.members is not None or any(self.weight_checks)

    @property
    def scopes(self) -> tuple[str, ...]:
        if self.failover:
            return tuple(scope for scope, _ in self.failover)
        if self.weights:
            return tuple(scope for scope, _ in self.weights)
        return (self.scope,) if self.action is Action.ANSWER else ()

    def acts_in(self, zone: Name | None) -> bool:
        return self.zones is None or (zone is not None and zone in self.zones)

    def matches(self, ctx: Context) -> bool:
        ctx.use_ecs = self.use_ecs
        return self.criteria.test(ctx)

    def describe_action(self) -> str:
        if self.members is not None:
            record_set, fallback = self.members
            tail = "" if fallback == "default" else f", fallback {fallback}"
            owner = to_text(record_set.owner)  # type: ignore[attr-defined]
            return f"members: {record_set.name} (healthy addresses of {owner}{tail})"  # type: ignore[attr-defined]
        if self.failover:
            items = [
                f"{scope} [{', '.join(names)}]" if names else scope
                for (scope, _), names in zip(self.failover, self.check_names, strict=True)
            ]
            return "failover: " + ", ".join(items)
        if self.weights:
            return "weighted: " + ", ".join(f"{scope} {weight:g}" for scope, weight in self.weights)
        if self.action is Action.ANSWER:
            return f"answer: {self.scope}"
        return f"action: {self.action.value}"


class _WeightedChoice:
    """Scopes and cumulative weights, for one ``rng.random()`` per pick."""

    __slots__ = ("scopes", "cumulative", "total")

    def __init__(self, weights: tuple[tuple[str, float], ...]) -> None:
        self.scopes = tuple(scope for scope, _ in weights)
        self.cumulative = tuple(itertools.accumulate(weight for _, weight in weights))
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> str:
        return self.scope_at(rng.random())

    def scope_at(self, draw: float) -> str:
        """The scope for one draw in [0, 1)."""
        index = bisect.bisect_right(self.cumulative, draw * self.total)
        return self.scopes[min(index, len(self.scopes) - 1)]


class _HealthyWeightedChoice:
    """A weighted choice among the members whose checks are all up (all of them when none
    is): the same ``scope_at`` as ``_WeightedChoice``, rebuilt when the board changes."""

    __slots__ = ("weights", "checks", "board", "_seen")

    def __init__(self, weights, checks, board) -> None:  # noqa: ANN001 - see Rule
        self.weights = weights
        self.checks = checks
        self.board = board
        self._seen: tuple[int, _WeightedChoice] = (-1, _WeightedChoice(weights))

    def current(self) -> _WeightedChoice:
        version = self.board.counter[0]
        seen = self._seen
        if seen[0] != version:
            healthy = tuple(
                weight
                for weight, slots in zip(self.weights, self.checks, strict=True)
                if self.board.slots_up(slots)
            )
            seen = self._seen = (version, _WeightedChoice(healthy or self.weights))
        return seen[1]

    def pick(self, rng: random.Random) -> str:
        return self.current().scope_at(rng.random())

    def scope_at(self, draw: float) -> str:
        return self.current().scope_at(draw)


class Failover:
    """``failover:``'s pick: the first scope whose checks are all up (a scope without
    checks always passes); none passing: the last. Worked out again only when the board
    changes."""

    __slots__ = ("items", "board", "_seen")

    def __init__(self, items: tuple[tuple[str, tuple[int, ...]], ...], board) -> None:  # noqa: ANN001
        self.items = items
        self.board = board
        self._seen: tuple[int, str] = (-1, items[-1][0])

    def scope(self) -> str:
        version = self.board.counter[0]
        seen = self._seen
        if seen[0] != version:
            pick = next(
                (scope for scope, slots in self.items if self.board.slots_up(slots)),
                self.items[-1][0],
            )
            seen = self._seen = (version, pick)
        return seen[1]


class MembersPick:
    """``members:``'s pick: the scope holding the record set's healthy addresses (all of
    them: the default scope; none: the fallback). Worked out again only when the board
    changes."""

    __slots__ = ("record_set", "fallback", "board", "_seen")

    def __init__(self, record_set, fallback: str, board) -> None:  # noqa: ANN001
        self.record_set = record_set
        self.fallback = fallback
        self.board = board
        self._seen: tuple[int, str] = (-1, "default")

    def scope(self) -> str:
        version = self.board.counter[0]
        seen = self._seen
        if seen[0] != version:
            up = self.board.up
            mask = sum(1 << i for i, slot in enumerate(self.record_set.slots) if up(slot))
            pick = self.record_set.scope(mask) if mask else self.fallback
            seen = self._seen = (version, pick)
        return seen[1]


class Policy:
    """Every rule, compiled and ordered; immutable once built."""

    __slots__ = (
        "health",
        "_failovers",
        "rules",
        "_server_rules",
        "_zone_rules",
        "_choices",
        "_trusted",
        "has_rules",
        "_question_blind",
        "_sealed",
    )

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        trusted_resolvers: PrefixSet | None = None,
        health: HealthBoard | None = None,
    ):
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.health = health  # the check verdicts rules read; None: no checks
        active = [rule for rule in self.rules if rule.enabled]
        self._server_rules = tuple(rule for rule in active if rule.zone is None)
        by_zone: dict[Name, list[Rule]] = {}
        for rule in active:
            if rule.zone is not None:
                by_zone.setdefault(rule.zone, []).append(rule)
        self._zone_rules: Mapping[Name, tuple[Rule, ...]] = MappingProxyType(
            {zone: tuple(items) for zone, items in by_zone.items()}
        )
        self._choices = MappingProxyType(
            {rule.name: self._choice(rule) for rule in active if rule.weights}
        )
        self._failovers = MappingProxyType(
            {rule.name: self._pick(rule) for rule in active if rule.failover or rule.members}
        )
        self._trusted = trusted_resolvers if trusted_resolvers is not None else PrefixSet()
        self.has_rules: bool = bool(active)
        """False: every decision is "answer from the default scope" (ECS scope 0 when the
        query had trusted ECS), and the server may skip ``evaluate``."""
        self._question_blind = _question_blind(self._server_rules, self._zone_rules)
        self._sealed = True

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_sealed", False):
            raise AttributeError(f"Policy is immutable; cannot set {name!r}")
        object.__setattr__(self, name, value)

    def _choice(self, rule: Rule) -> _WeightedChoice | _HealthyWeightedChoice:
        if any(rule.weight_checks) and self.health is not None:
            return _HealthyWeightedChoice(rule.weights, rule.weight_checks, self.health)
        return _WeightedChoice(rule.weights)

    def _pick(self, rule: Rule) -> Failover | MembersPick:
        if rule.members is not None:
            return MembersPick(rule.members[0], rule.members[1], self.health)
        return Failover(rule.failover, self.health)

    def failover(self, rule_name: str) -> Failover | MembersPick | None:
        """The failover pick of a ``failover:`` rule (``Decider`` reads it too)."""
        return self._failovers.get(rule_name)

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Every rule name, for metrics labels (a bounded set)."""
        return tuple(rule.name for rule in self.rules)

    @property
    def trusted_resolvers(self) -> PrefixSet:
        return self._trusted

    def is_trusted_resolver(self, addr: IPAddress) -> bool:
        """May ECS from this (packet or PROXY) source address be used?"""
        return self._trusted.contains(*address_value(addr))

    def weighted_choice(self, rule_name: str) -> _WeightedChoice | _HealthyWeightedChoice | None:
        """The compiled weights of a weighted rule, so a server that cached the rest of a
        decision can draw the scope itself (one ``rng.random()``, as ``evaluate`` does)."""
        return self._choices.get(rule_name)

    def question_blind(self, zone: Name) -> bool:
        """True when no rule a query in ``zone`` passes through reads its name or type:
        then one decision holds for every question from the same client (and ECS subnet,
        and listener), and a server may keep it per zone rather than per name."""
        return self._question_blind.get(zone, self._question_blind[None])

    def rules_for(self, zone: Name | None) -> tuple[Rule, ...]:
        """The enabled rules a query in ``zone`` passes through, in processing order."""
        if zone is None:
            return self._server_rules
        return self._server_rules + self._zone_rules.get(zone, ())

    # --- evaluation ----------------------------------------------------------------------

    def evaluate(self, facts: QueryFacts, rng: random.Random) -> Decision:
        ctx = self._context(facts)
        for rule in self.rules_for(facts.zone):
            if rule.acts_in(facts.zone) and rule.matches(ctx):
                return self._decide(rule, ctx, rng)
        return _decision(Action.ANSWER, "default", None, ctx)

    def _context(self, facts: QueryFacts) -> Context:
        trusted = facts.ecs is not None and self.is_trusted_resolver(facts.client)
        ctx = Context(facts, trusted)
        ctx.health = self.health
        return ctx

    def _decide(self, rule: Rule, ctx: Context, rng: random.Random) -> Decision:
        health = rule.health_dependent
        failover = self._failovers.get(rule.name)
        if failover is not None:
            return _decision(rule.action, failover.scope(), rule.name, ctx, health=health)
        choice = self._choices.get(rule.name)
        if choice is not None:
            scope = choice.pick(rng)
            return _decision(rule.action, scope, rule.name, ctx, weighted=True, health=health)
        return _decision(rule.action, rule.scope, rule.name, ctx)

    # --- explanation ---------------------------------------------------------------------

    def explain(self, facts: QueryFacts, rng: random.Random) -> Explanation:
        """The decision ``evaluate`` makes, with each rule's outcome in processing order."""
        decision = self.evaluate(facts, rng)
        ctx = self._context(facts)
        traces = []
        decided = False
        for rule in self._rules_in_order(facts.zone):
            traces.append(self._trace(rule, ctx, decided))
            decided = decided or traces[-1].matched
        return Explanation(facts, decision, _addresses_text(facts, ctx), tuple(traces))

    def _rules_in_order(self, zone: Name | None) -> list[Rule]:
        server = [rule for rule in self.rules if rule.zone is None]
        zonal = [rule for rule in self.rules if zone is not None and rule.zone == zone]
        return server + zonal

    def _trace(self, rule: Rule, ctx: Context, decided: bool) -> RuleTrace:
        def trace(outcome: Outcome, reasons: tuple[str, ...] = ()) -> RuleTrace:
            return RuleTrace(rule.name, rule.where, rule.zone, outcome, reasons)

        if not rule.enabled:
            return trace(Outcome.DISABLED)
        if decided:
            return trace(Outcome.NOT_REACHED)
        if not rule.acts_in(ctx.facts.zone):
            return trace(Outcome.NO_MATCH, (_why_not_here(rule, ctx.facts.zone),))
        if rule.matches(ctx):
            return trace(Outcome.MATCHED, _match_notes(rule, ctx))
        ctx.use_ecs = rule.use_ecs
        return trace(Outcome.NO_MATCH, tuple(rule.criteria.failures(ctx)))


def _decision(
    action: Action,
    scope: str,
    rule: str | None,
    ctx: Context,
    *,
    weighted: bool = False,
    health: bool = False,
) -> Decision:
    now = ctx.facts.now
    ttl_cap = None
    if ctx.next_change != math.inf:
        ttl_cap = min(MAX_TTL_CAP, max(0, math.floor(ctx.next_change - now)))
    if (health or ctx.health_seen) and ctx.health is not None:
        # a health-dependent answer: resolvers come back soon after a change
        ttl_cap = min(ttl_cap if ttl_cap is not None else MAX_TTL_CAP, ctx.health.health_ttl)
    ecs_scope = min(ctx.scope_length, ctx.ecs_length) if ctx.ecs is not None else None
    return Decision(
        action=action,
        scope=scope,
        rule=rule,
        ttl_cap=ttl_cap,
        ecs_scope=ecs_scope,
        valid_until=ctx.next_change,
        weighted=weighted,
        valid_from=now if ctx.next_change != math.inf else -math.inf,
    )


def _question_blind(
    server: tuple[Rule, ...], zones: Mapping[Name, tuple[Rule, ...]]
) -> Mapping[Name | None, bool]:
    """Per zone with rules of its own, and for every other zone (key None): whether
    the rules it passes through leave the query's name and type unread."""

    def blind(rules: Iterable[Rule]) -> bool:
        leaves = (leaf for rule in rules for leaf in _leaves(rule.criteria))
        return not any(isinstance(leaf, QnameIs | QtypeIs) for leaf in leaves)

    server_blind = blind(server)
    out: dict[Name | None, bool] = {None: server_blind}
    for zone, rules in zones.items():
        out[zone] = server_blind and blind(rules)
    return MappingProxyType(out)


def _why_not_here(rule: Rule, zone: Name | None) -> str:
    if zone is None:
        return "the name is in no served zone, and this rule needs one to answer from"
    missing = ", ".join(repr(scope) for scope in rule.scopes)
    return f"zone {to_text(zone)} has no scope {missing}"


def _match_notes(rule: Rule, ctx: Context) -> tuple[str, ...]:
    notes = [rule.describe_action()]
    board = ctx.health
    if board is not None and rule.members is not None:
        record_set = rule.members[0]
        verdicts = ", ".join(
            f"{address} {'up' if board.up(slot) else 'down'}"
            for (_, address), slot in zip(record_set.members, record_set.slots, strict=True)  # type: ignore[attr-defined]
        )
        notes.append(f"members: {verdicts}")
    elif board is not None and rule.health_dependent:
        groups = rule.failover or tuple(zip(rule.scopes, rule.weight_checks, strict=True))
        for (scope, slots), names in zip(groups, rule.check_names, strict=True):
            if names:
                verdicts = ", ".join(
                    f"{name} {'up' if board.up(slot) else 'down'}"
                    for name, slot in zip(names, slots, strict=True)
                )
                notes.append(f"scope {scope}: {verdicts}")
    for criterion in _leaves(rule.criteria):
        if isinstance(criterion, AddressIn):
            label = criterion.matched_label(ctx)
            if label is not None:
                notes.append(f"{criterion.subject} matched {label}")
        elif isinstance(criterion, HealthyIs) and board is not None:
            notes.append(
                f"check {criterion.check} is {'up' if board.up(criterion.slot) else 'down'}"
            )
    return tuple(notes)


def _leaves(criterion: Criterion) -> list[Criterion]:
    """The plain criteria inside ``all``/``any``/``not``, at any depth."""
    if isinstance(criterion, All | Any):
        return [leaf for child in criterion.children for leaf in _leaves(child)]
    if isinstance(criterion, Not):
        return _leaves(criterion.child)
    return [criterion]


def _addresses_text(facts: QueryFacts, ctx: Context) -> str:
    if facts.ecs is None:
        return f"{facts.client}"
    if ctx.ecs is None:
        return f"{facts.client} (ECS {facts.ecs} ignored: {facts.client} is not a trusted resolver)"
    return (
        f"ECS {facts.ecs} from trusted resolver {facts.client} "
        "(refuse and drop rules see the resolver's address unless use_ecs: true)"
    )


def empty_policy(trusted_resolvers: Iterable[str] = ()) -> Policy:
    """A policy without rules (``dnspol serve --zone``)."""
    return Policy((), PrefixSet(parse_prefix(text) for text in trusted_resolvers))
