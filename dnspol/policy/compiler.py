"""The rule language: YAML ``subnets:`` and ``rules:`` compiled into ``PrefixSet``s and ``Rule``s.

This module owns what every key of a rule means and what is wrong with it. It reads ``Node``
values (YAML with line numbers), records every problem as ``file:line: what is wrong`` and
keeps going, so one run reports all mistakes. Nothing here runs per query.

Files it reads itself (``include:``d rule files, prefix lists) are appended to ``files`` so the
server can watch them for reload.
"""

from __future__ import annotations

import datetime as dt
import glob
import math
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field

from dnslib import QTYPE

from dnspol.checks import Check, RecordSet, unknown_check
from dnspol.names import Name, from_text, is_subdomain, to_text
from dnspol.policy import geoip
from dnspol.policy.criteria import (
    ALWAYS,
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
from dnspol.policy.model import Action
from dnspol.policy.prefixes import Prefix, PrefixSet, parse_prefix
from dnspol.policy.timewindow import TimeWindow, parse_between, parse_date_range, parse_days
from dnspol.policy.yamlnodes import MAX_FILE_BYTES, Node, Reader, did_you_mean, read_yaml_file

RULE_KEYS = ("name", "description", "zone", "enabled", "match", "answer", "action", "use_ecs")
MATCH_KEYS = (
    "client",
    "source",
    "server",
    "transport",
    "family",
    "qname",
    "qtype",
    "time",
    *geoip.MATCH_KEYS,
    "healthy",
    "any",
    "all",
    "not",
)
TIME_KEYS = ("between", "days", "dates", "tz")
ACTIONS = {"refuse": Action.REFUSE, "drop": Action.DROP, "nxdomain": Action.NXDOMAIN}
TRANSPORTS = ("udp", "tcp")
FAMILIES = {"ipv4": 32, "ipv6": 128}
RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SUBNET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_PROBLEMS_PER_LIST = 20
DEFAULT_SCOPE = "default"


# --- subnets ---------------------------------------------------------------------------------


def compile_subnets(
    node: Node | None, reader: Reader, base_dir: str, files: list[str]
) -> dict[str, PrefixSet]:
    """``subnets:`` → name → PrefixSet. Lists may name other subnets; files hold prefixes."""
    if node is None:
        return {}
    entries = reader.mapping(node, "subnets", None)
    if entries is None:
        return {}
    raw: dict[str, tuple[list[Prefix], list[tuple[str, Node]]]] = {}
    for name, value in entries.items():
        if not SUBNET_NAME.match(name) or _looks_like_address(name):
            reader.problem(
                value,
                f"subnet name {name!r} must start with a letter (letters, "
                "digits, _ . - after that)",
            )
            continue
        raw[name] = _subnet_parts(name, value, reader, base_dir, files)
    return _resolve_subnets(raw, reader)


def _subnet_parts(
    name: str, node: Node, reader: Reader, base_dir: str, files: list[str]
) -> tuple[list[Prefix], list[tuple[str, Node]]]:
    """A subnet's own prefixes, and the other subnets it names."""
    prefixes: list[Prefix] = []
    references: list[tuple[str, Node]] = []
    items: list[tuple[str, Node]] = []
    if node.kind == "map":
        entries = reader.mapping(node, f"subnet {name!r}", ("file", "prefixes")) or {}
        if not entries:
            reader.problem(node, f"subnet {name!r} needs 'file' and/or 'prefixes'")
        file_items = reader.texts(entries["file"], "file") if "file" in entries else []
        for path_text, path_node in file_items:
            path = os.path.join(base_dir, path_text)
            prefixes.extend(read_prefix_file(path, reader, path_node))
            files.append(path)
        if "prefixes" in entries:
            items = reader.texts(entries["prefixes"], f"subnet {name!r}")
    else:
        items = reader.texts(node, f"subnet {name!r}")
    for text, item in items:
        if _looks_like_address(text):
            prefix = reader.convert(item, "prefix", parse_prefix)
            if prefix is not None:
                prefixes.append(prefix)
        else:
            references.append((text, item))
    return prefixes, references


def _resolve_subnets(
    raw: dict[str, tuple[list[Prefix], list[tuple[str, Node]]]], reader: Reader
) -> dict[str, PrefixSet]:
    """Follow subnet names to their prefixes; each loop or unknown name is reported once."""
    resolved: dict[str, list[Prefix]] = {}
    reported: set[str] = set()

    def report_once(node: Node, message: str) -> None:
        if f"{node.where}{message}" not in reported:
            reported.add(f"{node.where}{message}")
            reader.problem(node, message)

    def resolve(name: str, chain: tuple[str, ...]) -> list[Prefix]:
        if name in resolved:
            return resolved[name]
        own, references = raw[name]
        collected = list(own)
        for other, node in references:
            if other in chain:
                loop = " → ".join(chain[chain.index(other) :] + (other,))
                report_once(node, f"subnets name each other in a loop: {loop}")
            elif other not in raw:
                report_once(node, f"unknown subnet {other!r}{did_you_mean(other, raw)}")
            else:
                collected.extend(resolve(other, chain + (other,)))
        resolved[name] = collected
        return collected

    return {name: PrefixSet(resolve(name, (name,))) for name in raw}


def read_prefix_file(path: str, reader: Reader, node: Node) -> list[Prefix]:
    """One prefix per line; ``#`` starts a comment; blank lines are skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        reader.problem(node, f"cannot read prefix list {path}: {reason}")
        return []
    prefixes: list[Prefix] = []
    bad = 0
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            prefixes.append(parse_prefix(text))
        except ValueError as error:
            bad += 1
            if bad <= MAX_PROBLEMS_PER_LIST:
                reader.problem(f"{path}:{number}", str(error))
    if bad > MAX_PROBLEMS_PER_LIST:
        reader.problem(f"{path}:1", f"… and {bad - MAX_PROBLEMS_PER_LIST} more bad lines")
    return prefixes


def _looks_like_address(text: str) -> bool:
    return ":" in text or "/" in text or bool(re.match(r"^\d+\.", text))


def compile_addresses(
    node: Node, what: str, reader: Reader, subnets: Mapping[str, PrefixSet]
) -> tuple[PrefixSet, tuple[str, ...], tuple[tuple[str, PrefixSet], ...]] | None:
    """Subnet names and/or CIDRs → (their union, labels as written, one set per label)."""
    parts: list[tuple[str, PrefixSet]] = []
    for text, item in reader.texts(node, what):
        if _looks_like_address(text):
            prefix = reader.convert(item, what, parse_prefix)
            if prefix is not None:
                parts.append((text, PrefixSet((prefix,))))
        elif text in subnets:
            parts.append((text, subnets[text]))
        else:
            reader.problem(item, f"unknown subnet {text!r}{did_you_mean(text, subnets)}")
    if not parts:
        return None
    union = parts[0][1] if len(parts) == 1 else PrefixSet.union(part for _, part in parts)
    return union, tuple(label for label, _ in parts), tuple(parts)


# --- rules -----------------------------------------------------------------------------------


@dataclass
class RuleSource:
    """What rules may refer to: subnets, zones and their scopes, the default time zone."""

    subnets: Mapping[str, PrefixSet]
    scopes: Mapping[Name, frozenset[str]]  # zone origin → its scope names (with "default")
    default_tz: zoneinfo.ZoneInfo
    warnings: list[str] = field(default_factory=list)
    regions: Mapping[str, tuple[geoip.Term, ...]] = field(default_factory=dict)
    checks: Mapping[str, Check] = field(default_factory=dict)  # ``checks:`` by name
    record_sets: Mapping[str, RecordSet] = field(default_factory=dict)  # ``records:`` checks


class RuleCompiler:
    """Compiles a ``rules:`` list, following ``include:`` items, into ``Rule``s."""

    match_keys: tuple[str, ...] = MATCH_KEYS  # what a ``match:`` may test

    def __init__(
        self,
        source: RuleSource,
        reader: Reader,
        files: list[str],
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.source = source
        self.reader = reader
        self.files = files
        self.max_file_bytes = max_file_bytes  # of each included file
        self.rules: list[Rule] = []
        self._names: dict[str, str] = {}  # rule name → where first defined
        self._including: list[str] = []  # the include chain, to report loops
        self._included: set[str] = set()  # every file read: each is read once per load

    # --- lists and includes ----------------------------------------------------------------

    def compile_list(self, node: Node | None, base_dir: str) -> None:
        if node is None or node.is_null:
            return
        items = self.reader.sequence(node, "rules", scalar_ok=False)
        for item in items or ():
            if item.kind == "map" and "include" in item.value:  # type: ignore[operator]
                self._include(item, base_dir)
            else:
                rule = self.compile_rule(item)
                if rule is not None:
                    self.rules.append(rule)

    def _include(self, node: Node, base_dir: str) -> None:
        entries = self.reader.mapping(node, "include item", ("include",))
        if not entries:
            return
        for pattern, item in self.reader.texts(entries["include"], "include"):
            paths = sorted(glob.glob(os.path.join(base_dir, pattern)))
            if not paths:
                self.reader.problem(item, f"include {pattern!r} matches no file")
            for path in paths:
                self._include_file(path, item)

    def _include_file(self, path: str, node: Node) -> None:
        real = os.path.realpath(path)
        if real in self._including:
            self.reader.problem(node, f"include loop: {path} includes itself")
            return
        if real in self._included:  # its rules are already in, where it was first included
            return
        self._included.add(real)
        self.files.append(path)
        root, _ = read_yaml_file(
            path, self.reader.problems, self.max_file_bytes, "server: rule_file_max_bytes"
        )
        if root is None:
            return
        entries = self.reader.mapping(root, "an included rules file", ("rules",))
        if entries is None or "rules" not in entries:
            return
        self._including.append(real)
        self.compile_list(entries["rules"], os.path.dirname(path))
        self._including.pop()

    # --- one rule ---------------------------------------------------------------------------

    def compile_rule(self, node: Node) -> Rule | None:
        """One rule; None when anything in it is wrong (every problem is recorded)."""
        reader = self.reader
        problems_before = len(reader.problems)
        entries = reader.mapping(node, "a rule", RULE_KEYS, required=("name",))
        if entries is None:
            return None
        name = self._rule_name(entries.get("name"))
        zone = self._zone(entries.get("zone"))
        enabled = reader.boolean(entries["enabled"], "enabled") if "enabled" in entries else True
        criteria = self.compile_match(entries["match"]) if "match" in entries else ALWAYS
        action = self._action(entries, node, zone)
        if criteria is None or action is None or name is None or zone is False:
            return None
        use_ecs = action.use_ecs
        if "use_ecs" in entries:
            use_ecs = bool(reader.boolean(entries["use_ecs"], "use_ecs"))
        if len(reader.problems) > problems_before:
            return None
        if zone is not None:
            self._warn_names_outside_zone(criteria, zone, name, node)
        return Rule(
            name=name,
            where=node.where,
            zone=zone,
            action=action.action,
            scope=action.scope,
            weights=action.weights,
            criteria=criteria,
            enabled=enabled is not False,
            use_ecs=use_ecs,
            zones=action.zones,
            failover=action.failover,
            members=action.members,
            weight_checks=action.weight_checks,
            check_names=action.check_names,
        )

    def _rule_name(self, node: Node | None) -> str | None:
        if node is None:
            return None
        name = self.reader.text(node, "name")
        if name is None:
            return None
        if not RULE_NAME.match(name):
            self.reader.problem(
                node, f"rule name {name!r} must be 1-63 letters, digits, '_', '.' or '-'"
            )
            return None
        if name in self._names:
            first = self._names[name]
            self.reader.problem(node, f"duplicate rule name {name!r} (first at {first})")
            return None
        self._names[name] = node.where
        return name

    def _zone(self, node: Node | None) -> Name | None | bool:
        """The rule's zone; None for server-wide; False when invalid."""
        if node is None:
            return None
        text = self.reader.text(node, "zone")
        if text is None:
            return False
        origin = _name_or_none(text)
        if origin not in self.source.scopes:
            known = [to_text(zone).rstrip(".") for zone in self.source.scopes]
            hint = did_you_mean(text.rstrip("."), known) or f"; zones: {', '.join(known) or 'none'}"
            self.reader.problem(node, f"zone {text!r} is not served{hint}")
            return False
        return origin

    # --- actions ---------------------------------------------------------------------------

    def _action(
        self, entries: dict[str, Node], node: Node, zone: Name | None | bool
    ) -> _CompiledAction | None:
        reader = self.reader
        if ("answer" in entries) == ("action" in entries):
            reader.problem(
                node,
                "a rule needs exactly one of 'answer: <scope>' or 'action: refuse|drop|nxdomain'",
            )
            return None
        if "action" in entries:
            return self._plain_action(entries["action"], zone)
        answer = entries["answer"]
        if zone is False:
            return None
        if answer.kind == "map":
            if "failover" in answer.value:  # type: ignore[operator]
                return self._failover(answer, zone)
            if "members" in answer.value:  # type: ignore[operator]
                return self._members(answer, zone)
            return self._weighted(answer, zone)
        scope = reader.text(answer, "answer")
        if scope is None or not self._scopes_exist((scope,), answer, zone):
            return None
        return _CompiledAction(Action.ANSWER, scope, (), True, self._zones_with((scope,), zone))

    def _plain_action(self, node: Node, zone: Name | None | bool) -> _CompiledAction | None:
        word = self.reader.choice(node, "action", (*ACTIONS, "answer"))
        if word is None:
            return None
        if word == "answer":
            self.reader.problem(node, "write 'answer: <scope>' instead of 'action: answer'")
            return None
        action = ACTIONS[word]
        if zone is False:
            return None
        if action is Action.NXDOMAIN:
            return _CompiledAction(action, DEFAULT_SCOPE, (), True, self._zones_with((), zone))
        zones = None if zone is None else frozenset({zone})
        return _CompiledAction(action, DEFAULT_SCOPE, (), False, zones)  # type: ignore[arg-type]

    def _weighted(self, node: Node, zone: Name | None) -> _CompiledAction | None:
        reader = self.reader
        entries = reader.mapping(node, "answer", ("weighted",), required=("weighted",))
        if not entries or "weighted" not in entries:
            return None
        weights_node = entries["weighted"]
        table = reader.mapping(weights_node, "weighted", None)
        if table is None:
            return None
        if not table:
            reader.problem(weights_node, "weighted needs at least one scope: weight")
        weights: list[tuple[str, float]] = []
        checked: list[tuple[tuple[int, ...], tuple[str, ...]]] = []
        for scope, member_node in table.items():
            weight_node, slots, names = self._member(scope, member_node)
            checked.append((slots, names))
            weight = reader.number(weight_node, f"weight of {scope!r}")
            if weight is not None and not 0 < weight < math.inf:
                reader.problem(weight_node, f"weight of {scope!r} must be above 0, not {weight:g}")
                weight = None
            if weight is not None and self._scopes_exist((scope,), weight_node, zone):
                weights.append((scope, weight))
        if len(weights) != len(table) or not weights:
            return None
        scopes = tuple(scope for scope, _ in weights)
        zones = self._zones_with(scopes, zone)
        if not zones:
            reader.problem(node, f"no zone has every scope named here ({', '.join(scopes)})")
            return None
        if not any(slots for slots, _ in checked):
            checked = []
        return _CompiledAction(
            Action.ANSWER,
            weights[0][0],
            tuple(weights),
            True,
            zones,
            weight_checks=tuple(slots for slots, _ in checked),
            check_names=tuple(names for _, names in checked),
        )

    def _member(self, scope: str, node: Node) -> tuple[Node, tuple[int, ...], tuple[str, ...]]:
        """A weighted member: ``scope: 3`` or ``scope: {weight: 3, check: NAME}``."""
        if node.kind != "map":
            return node, (), ()
        entries = self.reader.mapping(
            node, f"weighted member {scope!r}", ("weight", "check"), required=("weight",)
        )
        if not entries or "weight" not in entries:
            return node, (), ()
        slots, names = self._checks_named(entries["check"]) if "check" in entries else ((), ())
        return entries["weight"], slots, names

    def _checks_named(self, node: Node) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """Check names (one or a list) → their board slots; unknown names are problems."""
        slots: list[int] = []
        names: list[str] = []
        known = self.source.checks
        for name, item in self.reader.texts(node, "check"):
            if name not in known:
                self.reader.problem(item, unknown_check(name, known))
                continue
            slots.append(known[name].slot)
            names.append(name)
        return tuple(slots), tuple(names)

    def _members(self, node: Node, zone: Name | None) -> _CompiledAction | None:
        """``answer: {members: CHECK, fallback: SCOPE}``: the record set the check watches,
        cut down to its healthy addresses; none healthy: all of them, or the fallback."""
        reader = self.reader
        entries = reader.mapping(node, "answer", ("members", "fallback"), required=("members",))
        if not entries or "members" not in entries:
            return None
        name = reader.text(entries["members"], "members")
        if name is None:
            return None
        record_set = self.source.record_sets.get(name)
        if record_set is None:
            known = list(self.source.record_sets)
            hint = (
                did_you_mean(name, known) or f" (record-set checks: {', '.join(known) or 'none'})"
            )
            reader.problem(entries["members"], f"no check {name!r} with records:{hint}")
            return None
        if zone is not None and zone != record_set.zone:
            reader.problem(
                entries["members"],
                f"check {name!r} watches {to_text(record_set.owner)}, which is not in zone "
                f"{to_text(zone)}",
            )
            return None
        fallback = "default"
        if "fallback" in entries:
            fallback = reader.text(entries["fallback"], "fallback") or "default"
            if not self._scopes_exist((fallback,), entries["fallback"], record_set.zone):
                return None
        zones = frozenset({record_set.zone})
        names = tuple(f"{name}@{address}" for _, address in record_set.members)
        return _CompiledAction(
            Action.ANSWER,
            "default",
            (),
            True,
            zones,
            members=(record_set, fallback),
            check_names=(names,),
        )

    def _failover(self, node: Node, zone: Name | None) -> _CompiledAction | None:
        """``answer: {failover: [{primary: web1}, {secondary: [web2, db2]}, dr]}``; a bare
        scope name is checked by the check of the same name (``[primary, secondary, dr]``
        with checks ``primary`` and ``secondary``), or by none."""
        reader = self.reader
        entries = reader.mapping(node, "answer", ("failover",), required=("failover",))
        if not entries:
            return None
        items = reader.sequence(entries["failover"], "failover", scalar_ok=False) or []
        order: list[tuple[str, tuple[int, ...]]] = []
        names: list[tuple[str, ...]] = []
        before = len(reader.problems)
        for item in items:
            if item.kind == "map":
                pairs = reader.mapping(item, "a failover item", None) or {}
                if len(pairs) != 1:
                    reader.problem(item, "a failover item is 'scope' or '{scope: check}'")
                    continue
                ((scope, checks_node),) = pairs.items()
                slots, written = self._checks_named(checks_node)
            else:  # a bare scope: the check of the same name, if there is one
                scope = reader.text(item, "a failover item") or ""
                check = self.source.checks.get(scope)
                slots, written = ((check.slot,), (scope,)) if check else ((), ())
            if scope and self._scopes_exist((scope,), item, zone):
                order.append((scope, slots))
                names.append(written)
        if len(reader.problems) > before:
            return None
        if len(order) < 2 or not any(slots for _, slots in order):
            reader.problem(
                entries["failover"],
                "failover needs two or more scopes, at least one with checks: "
                "[{primary: CHECK}, secondary]",
            )
            return None
        scopes = tuple(scope for scope, _ in order)
        zones = self._zones_with(scopes, zone)
        if not zones:
            reader.problem(node, f"no zone has every scope named here ({', '.join(scopes)})")
            return None
        return _CompiledAction(
            Action.ANSWER,
            scopes[0],
            (),
            True,
            zones,
            failover=tuple(order),
            check_names=tuple(names),
        )

    def _scopes_exist(self, scopes: tuple[str, ...], node: Node, zone: Name | None) -> bool:
        known = self.source.scopes
        for scope in scopes:
            if zone is not None:
                if scope not in known[zone]:
                    self.reader.problem(
                        node,
                        f"zone {to_text(zone)} has no scope {scope!r} (scopes: "
                        f"{', '.join(sorted(known[zone]))}){did_you_mean(scope, known[zone])}",
                    )
                    return False
            elif not any(scope in names for names in known.values()):
                every = sorted({name for names in known.values() for name in names})
                self.reader.problem(
                    node, f"no zone has a scope {scope!r}{did_you_mean(scope, every)}"
                )
                return False
        return True

    def _zones_with(self, scopes: tuple[str, ...], zone: Name | None) -> frozenset[Name]:
        if zone is not None:
            return frozenset({zone})
        return frozenset(
            origin for origin, names in self.source.scopes.items() if set(scopes) <= names
        )

    # --- match ----------------------------------------------------------------------------

    def compile_match(self, node: Node) -> Criterion | None:
        entries = self.reader.mapping(node, "match", self.match_keys)
        if entries is None:
            return None
        children = []
        ok = True
        for key, value in entries.items():
            child = self._criterion(key, value)
            if child is None:
                ok = False
            else:
                children.append(child)
        if not ok:
            return None
        return children[0] if len(children) == 1 else All(tuple(children))

    def _criterion(self, key: str, node: Node) -> Criterion | None:
        reader = self.reader
        if key in ("client", "source", "server"):
            compiled = compile_addresses(node, key, reader, self.source.subnets)
            return AddressIn(key, *compiled) if compiled else None
        if key == "transport":
            values = self._choices(node, key, TRANSPORTS)
            return TransportIs(frozenset(values)) if values else None
        if key == "family":
            values = self._choices(node, key, tuple(FAMILIES))
            return FamilyIs(frozenset(FAMILIES[v] for v in values)) if values else None
        if key == "qname":
            return self._qname(node)
        if key == "qtype":
            return self._qtype(node)
        if key == "time":
            return self._time(node)
        if key in geoip.MATCH_KEYS:
            return geoip.compile_criterion(key, node, reader, self.source.regions)
        if key == "healthy":
            return self._healthy(node)
        if key == "not":
            inner = self.compile_match(node)
            return Not(inner) if inner is not None else None
        return self._composition(key, node)

    def _composition(self, key: str, node: Node) -> Criterion | None:
        items = self.reader.sequence(node, key, scalar_ok=False)
        if items is None:
            return None
        if not items:
            self.reader.problem(node, f"{key} needs at least one match")
            return None
        children = [self.compile_match(item) for item in items]
        if any(child is None for child in children):
            return None
        kind = All if key == "all" else Any
        return kind(tuple(children))  # type: ignore[arg-type]

    def _healthy(self, node: Node) -> Criterion | None:
        """``healthy: NAME`` (or a list: all of them up)."""
        before = len(self.reader.problems)
        slots, names = self._checks_named(node)
        if not names or len(self.reader.problems) > before:
            return None
        leaves = tuple(HealthyIs(name, slot) for name, slot in zip(names, slots, strict=True))
        return leaves[0] if len(leaves) == 1 else All(leaves)

    def _choices(self, node: Node, key: str, choices: tuple[str, ...]) -> list[str]:
        values = []
        for _, item in self.reader.texts(node, key):
            value = self.reader.choice(item, key, choices)
            if value is None:
                return []
            values.append(value)
        return values

    def _qname(self, node: Node) -> Criterion | None:
        exact: set[Name] = set()
        at_or_below: set[Name] = set()
        below: set[Name] = set()
        patterns = []
        for text, item in self.reader.texts(node, "qname"):
            pattern = text.strip().lower()
            target, body = exact, pattern
            if pattern.startswith("*."):
                target, body = below, pattern[2:]
            elif pattern.startswith(".") and pattern != ".":
                target, body = at_or_below, pattern[1:]
            name = _name_or_none(body)
            if name is None or b"*" in name:
                self.reader.problem(
                    item,
                    f"qname {text!r} is not a name; write www.example.com (exactly), "
                    "*.example.com (strictly below) or .example.com (the name and below)",
                )
                return None
            target.add(name)
            patterns.append(pattern)
        if not patterns:
            return None
        return QnameIs(frozenset(exact), frozenset(at_or_below), frozenset(below), tuple(patterns))

    def _qtype(self, node: Node) -> Criterion | None:
        qtypes: set[int] = set()
        names = []
        for text, item in self.reader.texts(node, "qtype"):
            qtype = qtype_number(text)
            if qtype is None:
                hint = did_you_mean(text.upper(), list(QTYPE.reverse))
                self.reader.problem(item, f"unknown qtype {text!r}{hint}")
                return None
            qtypes.add(qtype)
            names.append(text.upper())
        return QtypeIs(frozenset(qtypes), tuple(names)) if qtypes else None

    def _time(self, node: Node) -> Criterion | None:
        if node.kind == "map":
            items: list[Node] | None = [node]
        else:
            items = self.reader.sequence(node, "time", scalar_ok=False)
        if not items:
            if items is not None:
                self.reader.problem(node, "time needs at least one window")
            return None
        windows = [self._window(item) for item in items]
        if any(window is None for window in windows):
            return None
        return TimeIn(tuple(windows))  # type: ignore[arg-type]

    def _window(self, node: Node) -> TimeWindow | None:
        """One ``{between, days, dates, tz}`` mapping; every bad part is reported."""
        entries = self.reader.mapping(node, "a time window", TIME_KEYS)
        if entries is None:
            return None
        if not {"between", "days", "dates"} & set(entries):
            self.reader.problem(node, "a time window needs 'between', 'days' and/or 'dates'")
            return None
        span = self._between(entries["between"]) if "between" in entries else (0, 1440)
        days = self._days(entries["days"]) if "days" in entries else ALL_DAYS
        dates = self._dates(entries["dates"]) if "dates" in entries else ALL_DATES
        tz = self._tz(entries.get("tz"))
        if span is None or days is None or dates is None or tz is None:
            return None
        return TimeWindow(
            span[0],
            span[1],
            None if days is ALL_DAYS else days,
            None if dates is ALL_DATES else dates,
            tz,
            f"{_window_text(entries)} ({tz.key})",
        )

    def _between(self, node: Node) -> tuple[int, int] | None:
        return self.reader.convert(node, "between", parse_between)

    def _dates(self, node: Node) -> tuple[tuple[dt.date, dt.date], ...] | None:
        items = self.reader.texts(node, "dates")
        ranges = [self.reader.convert(item, "dates", parse_date_range) for _, item in items]
        if not ranges or any(item is None for item in ranges):
            return None
        return tuple(ranges)  # type: ignore[arg-type]

    def _days(self, node: Node) -> frozenset[int] | None:
        texts = [text for text, _ in self.reader.texts(node, "days")]
        if not texts:
            return None
        try:
            return parse_days(texts)
        except ValueError as error:
            self.reader.problem(node, str(error))
            return None

    def _tz(self, node: Node | None) -> zoneinfo.ZoneInfo | None:
        if node is None:
            return self.source.default_tz
        key = self.reader.text(node, "tz")
        if key is None:
            return None
        try:
            return time_zone(key)
        except ValueError as error:
            self.reader.problem(node, str(error))
            return None

    # --- warnings -------------------------------------------------------------------------

    def _warn_names_outside_zone(self, criteria: Criterion, zone: Name, rule: str, node: Node):
        for leaf in _qname_leaves(criteria):
            names = [(n, "") for n in leaf.exact] + [(n, ".") for n in leaf.at_or_below]
            names += [(n, "*.") for n in leaf.below]
            for name, prefix in names:
                if not (is_subdomain(name, zone) or (prefix and is_subdomain(zone, name))):
                    self.source.warnings.append(
                        f"warning: {node.where}: rule {rule!r}: qname {prefix}"
                        f"{to_text(name).rstrip('.')} is outside zone {to_text(zone)}, "
                        "so it never matches there"
                    )


@dataclass(frozen=True, slots=True)
class _CompiledAction:
    action: Action
    scope: str
    weights: tuple[tuple[str, float], ...]
    use_ecs: bool  # the default for the rule: answers follow ECS, refuse/drop do not
    zones: frozenset[Name] | None
    failover: tuple[tuple[str, tuple[int, ...]], ...] = ()
    members: tuple[RecordSet, str] | None = None  # a record-set check and the fallback scope
    weight_checks: tuple[tuple[int, ...], ...] = ()
    check_names: tuple[tuple[str, ...], ...] = ()


ALL_DAYS: frozenset[int] = frozenset(range(7))
ALL_DATES: tuple[tuple[dt.date, dt.date], ...] = ()


def _window_text(entries: dict[str, Node]) -> str:
    """The window as written, for explanations: ``01:00-03:00, sat, sun``."""
    parts = []
    for key in ("between", "days", "dates"):
        if key in entries:
            node = entries[key]
            items = node.value if node.kind == "list" else [node]
            parts.extend(str(item.value) for item in items)  # type: ignore[union-attr]
    return ", ".join(parts)


def _qname_leaves(criterion: Criterion) -> list[QnameIs]:
    if isinstance(criterion, QnameIs):
        return [criterion]
    if isinstance(criterion, All | Any):
        return [leaf for child in criterion.children for leaf in _qname_leaves(child)]
    return []


def _name_or_none(text: str) -> Name | None:
    try:
        return from_text(text)
    except (ValueError, UnicodeError, Exception):  # dnslib raises several kinds
        return None


def qtype_number(text: str) -> int | None:
    """``A``, ``aaaa``, ``TYPE65``, ``65`` → the number; None when unknown."""
    word = text.strip().upper()
    if word in QTYPE.reverse:
        return int(QTYPE.reverse[word])
    if word.startswith("TYPE") and word[4:].isdigit():
        word = word[4:]
    if word.isdigit() and 0 < int(word) < 65536:
        return int(word)
    return None


def time_zone(key: str) -> zoneinfo.ZoneInfo:
    """An IANA time zone; ValueError with a suggestion when unknown."""
    try:
        if key.startswith("/") or ".." in key:
            raise ValueError
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = did_you_mean(key, _available_time_zones())
        hint = hint or " (use an IANA name such as Europe/Berlin)"
        raise ValueError(f"unknown time zone {key!r}{hint}") from None


def _available_time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())
