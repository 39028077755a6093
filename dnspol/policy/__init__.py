"""Policy: per-query rules that pick a zone scope, refuse, drop or answer NXDOMAIN.

Rules are written in YAML (``policies/README.md`` is the reference), compiled once by
``dnspol.config.load_config`` and evaluated per query by ``Policy.evaluate``. Modules:

- ``model``: the values crossing the boundary (QueryFacts in, Decision out, Explanation);
- ``engine``: compiled ``Rule`` and ``Policy`` (evaluate, explain): the reference;
- ``decide``: ``Decider``, ``Policy.evaluate`` compiled to lookups for the per-query path;
- ``criteria``: compiled match criteria and the per-query context;
- ``prefixes``: longest-prefix sets of CIDRs, and ECS scope lengths;
- ``timewindow``: wall-clock windows in IANA time zones;
- ``compiler``: YAML rules and subnets → compiled values, with every problem located;
- ``coverage``: warnings for rules an earlier rule always beats;
- ``scopes``: whole-file and overlay zone scopes;
- ``yamlnodes``: YAML with line numbers;
- ``schema``: the JSON Schema of the files.
"""

from dnspol.policy.decide import Decider
from dnspol.policy.engine import Policy, Rule, empty_policy
from dnspol.policy.model import (
    Action,
    Decision,
    Explanation,
    Outcome,
    QueryFacts,
    RuleTrace,
)

__all__ = [
    "Action",
    "Decider",
    "Decision",
    "Explanation",
    "Outcome",
    "Policy",
    "QueryFacts",
    "Rule",
    "RuleTrace",
    "empty_policy",
]
