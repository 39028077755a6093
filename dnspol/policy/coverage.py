"""Finding rules that can never match because an earlier rule matches all their queries first.

``covers(a, b)`` answers "does every query matching ``b`` also match ``a``?". It is sound
but not complete: True only when that is certain (identical or broader criteria, catch-all
rules, set containment of subnets, names, types and transports); False when unsure. The
checks warn about shadowed rules, which CoreDNS's ``view`` plugin only warns about in prose.
"""

from __future__ import annotations

from collections.abc import Sequence

from dnspol.names import Name, is_subdomain
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
from dnspol.policy.engine import Rule


def shadowed_rule_warnings(rules: Sequence[Rule], ecs_possible: bool) -> list[str]:
    """A ``warning:`` line for each enabled rule an earlier enabled rule always beats."""
    warnings = []
    server_rules = [rule for rule in rules if rule.enabled and rule.zone is None]
    for index, rule in enumerate(rules):
        if not rule.enabled:
            continue
        earlier = _earlier_rules(rules, index, server_rules)
        for first in earlier:
            if rule_covers(first, rule, ecs_possible):
                warnings.append(_shadow_warning(first, rule))
                break
    return warnings


def _earlier_rules(rules: Sequence[Rule], index: int, server_rules: list[Rule]) -> list[Rule]:
    rule = rules[index]
    if rule.zone is None:
        return [other for other in rules[:index] if other.enabled and other.zone is None]
    same_zone = [other for other in rules[:index] if other.enabled and other.zone == rule.zone]
    return server_rules + same_zone


def _shadow_warning(first: Rule, rule: Rule) -> str:
    if isinstance(first.criteria, All) and not first.criteria.children:
        how = "has no criteria, so it matches every query first"
    else:
        how = "matches every query this one would, and runs first"
    return (
        f"warning: {rule.where}: rule {rule.name!r} can never match: rule {first.name!r} "
        f"({first.where}) {how}"
    )


def rule_covers(first: Rule, later: Rule, ecs_possible: bool) -> bool:
    if not _acts_wherever(first, later):
        return False
    same_view = first.use_ecs == later.use_ecs or not ecs_possible
    return covers(first.criteria, later.criteria, same_view)


def _acts_wherever(first: Rule, later: Rule) -> bool:
    if first.zones is None:
        return True
    return later.zones is not None and later.zones <= first.zones


def covers(a: Criterion, b: Criterion, same_view: bool = True) -> bool:
    """True when every query matching ``b`` certainly matches ``a``.

    ``same_view``: both see the same client address (both use ECS or both do not).
    """
    if isinstance(a, All):  # a = a1 ∧ a2 …: needs each ai ⊇ b
        return all(covers(child, b, same_view) for child in a.children)
    if isinstance(b, Any):  # b = b1 ∨ b2 …: needs a ⊇ each bi
        return all(covers(a, child, same_view) for child in b.children)
    if isinstance(a, Any):
        return any(covers(child, b, same_view) for child in a.children)
    if isinstance(b, All):
        return any(covers(a, child, same_view) for child in b.children)
    if isinstance(a, Not) and isinstance(b, Not):
        return covers(b.child, a.child, same_view)
    return _leaf_covers(a, b, same_view)


def _leaf_covers(a: Criterion, b: Criterion, same_view: bool) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, AddressIn) and isinstance(b, AddressIn):
        if a.subject != b.subject or (a.subject == "client" and not same_view):
            return False
        return a.prefixes.covers(b.prefixes)
    if isinstance(a, TransportIs) and isinstance(b, TransportIs):
        return a.transports >= b.transports
    if isinstance(a, FamilyIs) and isinstance(b, FamilyIs):
        return a.families >= b.families
    if isinstance(a, QtypeIs) and isinstance(b, QtypeIs):
        return a.qtypes >= b.qtypes
    if isinstance(a, TimeIn) and isinstance(b, TimeIn):
        return set(a.windows) >= set(b.windows)
    if isinstance(a, QnameIs) and isinstance(b, QnameIs):
        return _qnames_cover(a, b)
    if isinstance(a, HealthyIs):
        return a == b  # the same check: its verdict is the same for both rules
    return False


def _qnames_cover(a: QnameIs, b: QnameIs) -> bool:
    exact_ok = all(_name_covered(a, name) for name in b.exact)
    suffix_ok = all(_suffix_covered(a, name, include_self=True) for name in b.at_or_below)
    below_ok = all(_suffix_covered(a, name, include_self=False) for name in b.below)
    return exact_ok and suffix_ok and below_ok


def _name_covered(a: QnameIs, name: Name) -> bool:
    if name in a.exact or name in a.at_or_below:
        return True
    for index in range(1, len(name) + 1):
        suffix = name[index:]
        if suffix in a.at_or_below or suffix in a.below:
            return True
    return False


def _suffix_covered(a: QnameIs, name: Name, include_self: bool) -> bool:
    """Is every name at (``include_self``) or below ``name`` matched by ``a``?"""
    if include_self:
        return any(is_subdomain(name, suffix) for suffix in a.at_or_below) or any(
            is_subdomain(name, suffix) and name != suffix for suffix in a.below
        )
    return any(is_subdomain(name, suffix) for suffix in a.at_or_below | a.below)
