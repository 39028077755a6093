"""The values that cross the policy boundary: what a query looked like, what to do with it.

The server builds a ``QueryFacts`` per query, hands it to ``Policy.evaluate`` and acts on the
``Decision``. ``Explanation`` is the same evaluation written out for people (``dnspol explain``).
Everything here is frozen: a decision can be cached, logged or compared without surprises.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from dataclasses import dataclass

from dnslib import QTYPE

from dnspol.names import Name, to_text

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Action(enum.Enum):
    """What the server does with the query."""

    ANSWER = "answer"  # answer from ``Decision.scope`` of the query's zone
    REFUSE = "refuse"  # REFUSED, with EDE 18 (Prohibited) when the query had EDNS
    DROP = "drop"  # send nothing
    NXDOMAIN = "nxdomain"  # NXDOMAIN with the zone's SOA, whatever the zone holds


@dataclass(frozen=True, slots=True)
class QueryFacts:
    """Everything a rule may look at. Built once per query by the server."""

    client: IPAddress  # real packet source (or the PROXY-carried source)
    ecs: IPNetwork | None  # ECS network from the query (validated), None if absent
    server: IPAddress  # local address the query arrived on
    transport: str  # "udp" | "tcp"
    qname: Name
    qtype: int
    zone: Name | None  # origin of the served zone holding qname; None: not served
    now: float  # epoch seconds
    key: str | None = None  # the TSIG key a transfer request was signed with (checked)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of evaluating the rules for one query.

    ``ttl_cap``: seconds until the next boundary of a time window that was evaluated; no TTL in
    the answer may exceed it. None when no time window was evaluated.
    ``ecs_scope``: the ECS SCOPE PREFIX-LENGTH to echo (RFC 7871 §7.2.1); None when the query
    had no ECS from a trusted resolver.
    ``valid_from``, ``valid_until``: the interval [from, until) of epoch seconds on which the
    same facts give the same decision: from the time it was made (an earlier time may lie in
    another window) to the next boundary; (-inf, inf) when no time window was evaluated. A
    clock stepped outside it (back or forward) must decide again. ``weighted`` decisions were
    drawn at random: do not cache the scope they name.
    """

    action: Action
    scope: str = "default"
    rule: str | None = None
    ttl_cap: int | None = None
    ecs_scope: int | None = None
    valid_until: float = math.inf
    weighted: bool = False
    valid_from: float = -math.inf

    def describe(self) -> str:
        """One line for logs and ``dnspol explain``."""
        if self.action is Action.ANSWER:
            drawn = " (weighted draw)" if self.weighted else ""
            what = f"answer from scope {self.scope!r}{drawn}"
        else:
            what = self.action.value
        by = f"rule {self.rule!r}" if self.rule else "no rule matched (default)"
        extras = []
        if self.ecs_scope is not None:
            extras.append(f"ECS scope /{self.ecs_scope}")
        if self.ttl_cap is not None:
            extras.append(f"TTLs capped at {self.ttl_cap}s")
        tail = f"; {', '.join(extras)}" if extras else ""
        return f"{what}, by {by}{tail}"


class Outcome(enum.Enum):
    """How one rule fared in an explanation."""

    MATCHED = "matched"
    NO_MATCH = "no match"
    DISABLED = "disabled"
    NOT_REACHED = "not reached"


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One rule in processing order, and why it did or did not match."""

    name: str
    where: str  # file:line of the rule
    zone: Name | None  # None: a server-wide rule
    outcome: Outcome
    reasons: tuple[str, ...] = ()  # for NO_MATCH: every criterion that failed, in words

    @property
    def matched(self) -> bool:
        return self.outcome is Outcome.MATCHED


@dataclass(frozen=True, slots=True)
class Explanation:
    """The decision for a query, with every rule the query passed through."""

    facts: QueryFacts
    decision: Decision
    addresses: str  # which client address the rules saw, in words
    rules: tuple[RuleTrace, ...]

    def lines(self) -> list[str]:
        facts = self.facts
        zone = to_text(facts.zone) if facts.zone is not None else "(not served)"
        out = [
            f"query: {to_text(facts.qname)} {QTYPE[facts.qtype]} over {facts.transport} "
            f"to {facts.server}, zone {zone}",
            f"client: {self.addresses}",
        ]
        if not self.rules:
            out.append("rules: none apply to this query")
        for number, trace in enumerate(self.rules, 1):
            where = "server-wide" if trace.zone is None else f"zone {to_text(trace.zone)}"
            out.append(f"{number:>3}. {trace.name} ({where}, {trace.where}): {trace.outcome.value}")
            out.extend(f"       - {reason}" for reason in trace.reasons)
        out.append(f"decision: {self.decision.describe()}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())
