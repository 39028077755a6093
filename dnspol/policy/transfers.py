"""Transfer policies: which zone transfer requests are allowed, refused or dropped.

The ``transfers:`` list of the configuration, compiled by ``TransferCompiler`` (the rule
language's ``match:``, with ``key:`` for the TSIG key the request was signed with, and
without the keys that mean nothing for a transfer) into a ``TransferPolicy``. Order is
that of query rules: server-wide rules first, then the zone's, each as written; the first
match decides. **No match refuses**: a zone is given to no one unless a rule says so.

The scope a secondary receives is not decided here but by its key (``keys: NAME: scope:``,
``dnspol.transfer``), so one allow rule serves every view of a fleet.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dnspol.names import Name
from dnspol.policy.compiler import RuleCompiler, RuleSource
from dnspol.policy.criteria import ALWAYS, Context, Criterion, KeyIs
from dnspol.policy.model import QueryFacts
from dnspol.policy.yamlnodes import Node, Reader, did_you_mean

TRANSFER_RULE_KEYS = ("name", "description", "zone", "enabled", "match", "action")
TRANSFER_MATCH_KEYS = ("client", "server", "key", "qtype", "time", "any", "all", "not")


class TransferAction(enum.Enum):
    ALLOW = "allow"
    REFUSE = "refuse"  # REFUSED with EDE 18 (Prohibited)
    DROP = "drop"  # no answer; the connection stays open


@dataclass(frozen=True, slots=True)
class TransferRule:
    name: str
    where: str  # file:line
    zone: Name | None  # None: server-wide
    action: TransferAction
    criteria: Criterion = ALWAYS
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TransferDecision:
    action: TransferAction
    rule: str | None  # None: no rule matched (refused by default)


DEFAULT_DENY = TransferDecision(TransferAction.REFUSE, None)


class TransferPolicy:
    """The compiled ``transfers:`` rules; immutable once built."""

    def __init__(self, rules: Iterable[TransferRule] = ()) -> None:
        self.rules = tuple(rules)
        active = [rule for rule in self.rules if rule.enabled]
        self._server = tuple(rule for rule in active if rule.zone is None)
        by_zone: dict[Name, list[TransferRule]] = {}
        for rule in active:
            if rule.zone is not None:
                by_zone.setdefault(rule.zone, []).append(rule)
        self._zones: Mapping[Name, tuple[TransferRule, ...]] = {
            zone: tuple(rules) for zone, rules in by_zone.items()
        }

    def decide(self, facts: QueryFacts) -> TransferDecision:
        """The first rule that matches a transfer request for ``facts.zone``; else refuse."""
        ctx = Context(facts, trusted_ecs=False)  # ECS plays no part in a transfer
        zone_rules = self._zones.get(facts.zone, ()) if facts.zone is not None else ()
        for rule in self._server + zone_rules:
            if rule.criteria.test(ctx):
                return TransferDecision(rule.action, rule.name)
        return DEFAULT_DENY

    def may_allow(self, zone: Name) -> bool:
        """Whether some rule could allow a transfer of ``zone`` (its transfer messages
        are then compiled at load, ``dnspol.transfer.compile_transfers``)."""
        rules = self._server + self._zones.get(zone, ())
        return any(rule.action is TransferAction.ALLOW for rule in rules)

    def explain(self, facts: QueryFacts) -> list[str]:
        """Why each rule did or did not match, in order (for tests and logs)."""
        ctx = Context(facts, trusted_ecs=False)
        zone_rules = self._zones.get(facts.zone, ()) if facts.zone is not None else ()
        lines = []
        for rule in self._server + zone_rules:
            failures = rule.criteria.failures(ctx)
            lines.append(f"{rule.name}: " + ("; ".join(failures) or rule.action.value))
        return lines


class TransferCompiler(RuleCompiler):
    """``transfers:`` items: ``name``, optional ``zone``, ``match`` and ``action``."""

    match_keys = TRANSFER_MATCH_KEYS

    def __init__(self, source: RuleSource, reader: Reader, files: list[str], keys) -> None:
        super().__init__(source, reader, files)
        self.keys = keys  # name (lowercase, trailing dot) → TsigKey
        self.transfer_rules: list[TransferRule] = []

    def compile_transfers(self, node: Node | None) -> TransferPolicy:
        if node is not None and not node.is_null:
            for item in self.reader.sequence(node, "transfers", scalar_ok=False) or ():
                rule = self._transfer_rule(item)
                if rule is not None:
                    self.transfer_rules.append(rule)
        return TransferPolicy(self.transfer_rules)

    def _transfer_rule(self, node: Node) -> TransferRule | None:
        reader = self.reader
        before = len(reader.problems)
        entries = reader.mapping(node, "a transfer rule", TRANSFER_RULE_KEYS, ("name", "action"))
        if entries is None:
            return None
        name = self._rule_name(entries.get("name"))
        zone = self._zone(entries.get("zone"))
        enabled = reader.boolean(entries["enabled"], "enabled") if "enabled" in entries else True
        criteria = self.compile_match(entries["match"]) if "match" in entries else ALWAYS
        word = None
        if "action" in entries:
            choices = tuple(action.value for action in TransferAction)
            word = reader.choice(entries["action"], "action", choices)
        if len(reader.problems) > before or None in (name, criteria, word) or zone is False:
            return None
        return TransferRule(
            name=name,  # type: ignore[arg-type]
            where=node.where,
            zone=zone,  # type: ignore[arg-type]
            action=TransferAction(word),
            criteria=criteria,  # type: ignore[arg-type]
            enabled=enabled is not False,
        )

    def _criterion(self, key: str, node: Node) -> Criterion | None:
        if key != "key":
            return super()._criterion(key, node)
        names, labels = [], []
        for text, item in self.reader.texts(node, "key"):
            name = text.lower().rstrip(".") + "."
            if name not in self.keys:
                known = [k.rstrip(".") for k in self.keys]
                hint = did_you_mean(text, known) or f"; keys: {', '.join(known) or 'none'}"
                self.reader.problem(item, f"unknown key {text!r}{hint}")
                return None
            names.append(name)
            labels.append(text)
        return KeyIs(frozenset(names), tuple(labels)) if names else None


def transfer_facts(
    client: str, server: object, qname: Name, qtype: int, zone: Name, now: float, key: str | None
) -> QueryFacts:
    """The facts a transfer rule reads."""
    return QueryFacts(
        client=ipaddress.ip_address(client.split("%")[0]),
        ecs=None,
        server=server,  # type: ignore[arg-type]
        transport="tcp",
        qname=qname,
        qtype=qtype,
        zone=zone,
        now=now,
        key=key,
    )
