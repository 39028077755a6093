"""What happened to queries, counted in plain dicts on the hot path.

Recording a query is one dict increment keyed by an ``AnswerLabel`` (built once
per kind of answer and stored beside the packed answer), the listener's
transport and family, and the two message sizes. Exporters (``dnspol.metrics``)
turn the counts into Prometheus series off the hot path. Every label value comes
from a bounded set: served zone names, a fixed list of query types, rcodes, rule
and scope names from the configuration — never a query name or an address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnspol.codes import Rcode, RRType

COMMON_TYPES = frozenset(
    [
        "A",
        "AAAA",
        "CNAME",
        "MX",
        "NS",
        "PTR",
        "SOA",
        "SRV",
        "TXT",
        "CAA",
        "DS",
        "DNSKEY",
        "HTTPS",
        "SVCB",
        "NAPTR",
        "RRSIG",
        "NSEC",
        "NSEC3",
        "ANY",
        "AXFR",
        "IXFR",
    ]
)


QTYPE_LABELS = {RRType[name]: name for name in COMMON_TYPES}  # the rest: "other"


def qtype_label(qtype: int) -> str:
    return QTYPE_LABELS.get(qtype, "other")


def rcode_label(rcode: int) -> str:
    return Rcode.label(rcode)


def scope_label(zone: str, action: str, scope: str) -> str:
    """The scope whose data answered: "" when none did (REFUSED outside every zone, a
    refuse, nxdomain or drop rule, FORMERR and other errors), never "default" for those."""
    return scope if zone and action == "answer" else ""


@dataclass(frozen=True, slots=True)
class AnswerLabel:
    """The bounded description of one kind of answer, for counting.

    Hashing ten fields per query would cost more than answering, so labels are
    interned (``Stats.intern``) and counted under ``key``, a small int.
    """

    zone: str = ""  # served zone, "" when none
    qtype: str = "other"
    rcode: str = "NOERROR"
    rule: str = ""  # "" when no rule matched (or no rules)
    action: str = "answer"
    scope: str = ""  # the scope whose data answered (``scope_label``)
    weighted: bool = False
    ecs: bool = False
    truncated: bool = False
    dropped: str = ""  # reason when no answer was sent: malformed, policy


@dataclass
class Stats:
    """Counters of one process. Increments happen under the GIL; exporters copy."""

    # (label key, Listener.tag, request bytes, response bytes) -> queries
    answers: dict = field(default_factory=dict)
    labels: list[AnswerLabel] = field(default_factory=list)  # label key -> label
    _keys: dict = field(default_factory=dict)
    _fields: dict = field(default_factory=dict)  # AnswerLabel fields as a tuple -> key
    # (Listener.tag, label key or None, seconds bucket index or DURATION_SUM) -> queries
    # (the sum: seconds), sampled (``dnspol.observe``)
    durations: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)  # reason -> packets
    rule_drops: dict = field(default_factory=dict)  # rule name -> packets dropped by it
    # response-rate limiting: action (slip, drop, would_slip, would_drop) -> answers
    rate_limited: dict = field(default_factory=dict)
    # "reference" -> queries the reference path answered (the compiled tables left them out)
    paths: dict = field(default_factory=dict)
    # zone transfers (``dnspol.transfer``): (zone, scope, AXFR|IXFR, result) -> requests
    transfers: dict = field(default_factory=dict)
    # NOTIFY (``dnspol.notify``, the single server process): (zone, result) -> NOTIFYs
    notifies: dict = field(default_factory=dict)

    @property
    def reference(self) -> int:
        return self.paths.get("reference", 0)

    def intern(self, label: AnswerLabel) -> int:
        """The small int that stands for ``label`` in ``answers``."""
        key = self._keys.get(label)
        if key is None:
            key = self._keys[label] = len(self.labels)
            self.labels.append(label)
        return key

    def intern_fields(self, fields: tuple) -> int:
        """``intern(AnswerLabel(*fields))``, without building the label once it is known:
        a tuple of ten strings and flags hashes in a fraction of the dataclass's time."""
        key = self._fields.get(fields)
        if key is None:
            key = self._fields[fields] = self.intern(AnswerLabel(*fields))
        return key

    def count(self, label: int, tag: tuple[str, ...], size_in: int, size_out: int) -> None:
        key = (label, tag, size_in, size_out)
        answers = self.answers
        answers[key] = answers.get(key, 0) + 1

    def drop(self, reason: str, rule: str | None = None) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if rule:
            self.rule_drops[rule] = self.rule_drops.get(rule, 0) + 1
