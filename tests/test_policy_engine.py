"""Policy.evaluate and Policy.explain: every criterion, composition, order, actions, weights."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from dnspol.config import Config, load_config
from dnspol.names import from_text
from dnspol.policy import Action, Outcome, QueryFacts

DATA = Path(__file__).parent / "data" / "policy"
ZONES = f"""
zones:
  example.com:
    file: {DATA}/example.com.zone
    scopes:
      internal: {{overlay: {DATA}/example.com.internal.zone}}
      dr: {DATA}/example.com.dr.zone
  example.org: {DATA}/example.org.zone
"""
SUBNETS = """
subnets:
  corp: [10.0.0.0/8, "2001:db8:1000::/36"]
  lab: [127.0.1.0/24]
"""
NOW = dt.datetime(2026, 5, 6, 12, 0, tzinfo=dt.UTC).timestamp()  # a Wednesday


def make_config(tmp_path: Path, body: str, *, subnets: str = SUBNETS) -> Config:
    path = tmp_path / "dnspol.yaml"
    path.write_text(textwrap.dedent(body) + subnets + ZONES)
    return load_config(path)


def facts(
    qname: str = "www.example.com",
    qtype: int = 1,
    client: str = "192.0.2.1",
    ecs: str | None = None,
    server: str = "127.0.0.1",
    transport: str = "udp",
    now: float = NOW,
) -> QueryFacts:
    name = from_text(qname)
    zone = next(
        (from_text(z) for z in ("example.com", "example.org") if name[-2:] == from_text(z)),
        None,
    )
    return QueryFacts(
        client=ipaddress.ip_address(client),
        ecs=ipaddress.ip_network(ecs) if ecs else None,
        server=ipaddress.ip_address(server),
        transport=transport,
        qname=name,
        qtype=qtype,
        zone=zone,
        now=now,
    )


def one_rule(tmp_path: Path, match: str) -> Config:
    return make_config(
        tmp_path,
        f"""
        rules:
          - name: r
            match: {match}
            action: refuse
        """,
    )


CRITERIA = [
    # (match, facts, matches?)
    ("{client: corp}", {"client": "10.9.8.7"}, True),
    ("{client: corp}", {"client": "192.0.2.1"}, False),
    ("{client: corp}", {"client": "2001:db8:1234::1"}, True),
    ("{client: corp}", {"client": "2001:db8:2000::1"}, False),
    ("{client: corp}", {"client": "::ffff:10.1.2.3"}, True),  # IPv4-mapped counts as IPv4
    ("{client: [lab, 203.0.113.0/24]}", {"client": "203.0.113.9"}, True),
    ("{client: [lab, 203.0.113.0/24]}", {"client": "127.0.1.200"}, True),
    ("{client: 192.0.2.1}", {"client": "192.0.2.1"}, True),
    ("{client: 192.0.2.1}", {"client": "192.0.2.2"}, False),
    ("{source: corp}", {"client": "10.0.0.1"}, True),
    ("{server: 127.0.0.53}", {"server": "127.0.0.53"}, True),
    ("{server: 127.0.0.53}", {"server": "127.0.0.1"}, False),
    ("{server: ['::1']}", {"server": "::1"}, True),
    ("{transport: tcp}", {"transport": "tcp"}, True),
    ("{transport: tcp}", {"transport": "udp"}, False),
    ("{transport: [udp, tcp]}", {"transport": "udp"}, True),
    ("{family: ipv6}", {"client": "2001:db8::1"}, True),
    ("{family: ipv6}", {"client": "192.0.2.1"}, False),
    ("{family: ipv4}", {"client": "::ffff:192.0.2.1"}, True),
    ("{qname: www.example.com}", {"qname": "www.example.com"}, True),
    ("{qname: www.example.com}", {"qname": "WWW.Example.COM"}, True),
    ("{qname: WWW.Example.com.}", {"qname": "www.example.com"}, True),
    ("{qname: www.example.com}", {"qname": "a.www.example.com"}, False),
    ("{qname: '*.example.com'}", {"qname": "www.example.com"}, True),
    ("{qname: '*.example.com'}", {"qname": "a.b.example.com"}, True),
    ("{qname: '*.example.com'}", {"qname": "example.com"}, False),
    ("{qname: .example.com}", {"qname": "example.com"}, True),
    ("{qname: .example.com}", {"qname": "deep.www.example.com"}, True),
    ("{qname: .example.com}", {"qname": "www.example.org"}, False),
    ("{qname: .example.com}", {"qname": "notexample.com"}, False),
    ("{qname: [mail.example.com, '*.example.org']}", {"qname": "www.example.org"}, True),
    ("{qtype: ANY}", {"qtype": 255}, True),
    ("{qtype: ANY}", {"qtype": 1}, False),
    ("{qtype: [a, AAAA]}", {"qtype": 28}, True),
    ("{qtype: TYPE65}", {"qtype": 65}, True),
    ("{qtype: 99}", {"qtype": 99}, True),
    ("{time: {between: '11:00-13:00'}}", {}, True),
    ("{time: {between: '13:00-11:00'}}", {}, False),
    ("{time: {days: wed}}", {}, True),
    ("{time: {days: [mon-tue, thu-sun]}}", {}, False),
    ("{time: {dates: '2026-05-06'}}", {}, True),
    ("{time: [{days: mon}, {between: '11:59-12:01'}]}", {}, True),
    ("{not: {client: corp}}", {"client": "10.0.0.1"}, False),
    ("{not: {client: corp}}", {"client": "192.0.2.1"}, True),
    ("{any: [{qtype: MX}, {client: corp}]}", {"client": "10.0.0.1"}, True),
    ("{any: [{qtype: MX}, {client: corp}]}", {"qtype": 15}, True),
    ("{any: [{qtype: MX}, {client: corp}]}", {}, False),
    ("{all: [{qtype: A}, {client: corp}]}", {"client": "10.0.0.1"}, True),
    ("{all: [{qtype: A}, {client: corp}]}", {"client": "10.0.0.1", "qtype": 28}, False),
    ("{client: corp, transport: tcp}", {"client": "10.0.0.1", "transport": "udp"}, False),
    ("{client: corp, transport: tcp}", {"client": "10.0.0.1", "transport": "tcp"}, True),
    ("{}", {}, True),
]


@pytest.mark.parametrize(("match", "query", "expected"), CRITERIA)
def test_each_criterion(tmp_path: Path, match: str, query: dict, expected: bool) -> None:
    policy = one_rule(tmp_path, match).policy
    decision = policy.evaluate(facts(**query), random.Random(1))
    assert (decision.action is Action.REFUSE) is expected, decision
    assert decision.rule == ("r" if expected else None)


ORDERED = """
rules:
  - name: zone-first-in-text
    zone: example.com
    match: {qname: www.example.com}
    answer: dr
  - name: off
    enabled: false
    answer: internal
  - name: server-wide
    match: {client: corp}
    answer: internal
  - name: zone-second
    zone: example.com
    answer: internal
  - name: org-only
    zone: example.org
    action: nxdomain
"""


@pytest.mark.parametrize(
    ("query", "rule", "scope", "action"),
    [
        ({"client": "10.0.0.1"}, "server-wide", "internal", Action.ANSWER),  # before zone rules
        ({}, "zone-first-in-text", "dr", Action.ANSWER),
        ({"qname": "mail.example.com"}, "zone-second", "internal", Action.ANSWER),
        ({"qname": "www.example.org"}, "org-only", "default", Action.NXDOMAIN),
        # server-wide "answer: internal" cannot act in example.org (no such scope there)
        (
            {"qname": "www.example.org", "client": "10.0.0.1"},
            "org-only",
            "default",
            Action.NXDOMAIN,
        ),
        ({"qname": "www.example.net"}, None, "default", Action.ANSWER),
    ],
)
def test_processing_order(tmp_path: Path, query: dict, rule, scope, action) -> None:
    decision = make_config(tmp_path, ORDERED).policy.evaluate(facts(**query), random.Random(1))
    assert (decision.rule, decision.scope, decision.action) == (rule, scope, action)


def test_disabled_rule_is_kept_but_skipped(tmp_path: Path) -> None:
    policy = make_config(tmp_path, ORDERED).policy
    assert "off" in policy.rule_names
    assert all(rule.name != "off" for rule in policy.rules_for(from_text("example.com")))


ACTIONS = """
rules:
  - name: drop-lab
    match: {client: lab}
    action: drop
  - name: refuse-any
    match: {qtype: ANY}
    action: refuse
  - name: hide-mail
    zone: example.com
    match: {qname: mail.example.com}
    action: nxdomain
  - name: internal
    zone: example.com
    match: {client: corp}
    answer: internal
"""


@pytest.mark.parametrize(
    ("query", "action", "scope"),
    [
        ({"client": "127.0.1.5"}, Action.DROP, "default"),
        ({"client": "127.0.1.5", "qname": "www.example.net"}, Action.DROP, "default"),
        ({"qtype": 255, "qname": "unserved.test"}, Action.REFUSE, "default"),
        ({"qname": "mail.example.com"}, Action.NXDOMAIN, "default"),
        ({"client": "10.0.0.1"}, Action.ANSWER, "internal"),
        ({}, Action.ANSWER, "default"),
    ],
)
def test_each_action(tmp_path: Path, query: dict, action: Action, scope: str) -> None:
    decision = make_config(tmp_path, ACTIONS).policy.evaluate(facts(**query), random.Random(1))
    assert (decision.action, decision.scope) == (action, scope)


def test_server_wide_nxdomain_needs_a_served_zone(tmp_path: Path) -> None:
    policy = one_rule(tmp_path, "{}").policy  # refuse: applies to unserved names too
    assert policy.evaluate(facts(qname="x.test"), random.Random()).action is Action.REFUSE
    config = make_config(tmp_path, "rules: [{name: nx, action: nxdomain}]\n")
    decision = config.policy.evaluate(facts(qname="x.test"), random.Random())
    assert decision.action is Action.ANSWER and decision.rule is None


WEIGHTED = """
server: {seed: 7}
rules:
  - name: balance
    zone: example.com
    answer: {weighted: {default: 3, dr: 1}}
  - name: three-way
    zone: example.org
    answer: {weighted: {default: 1}}
"""


def test_weights_followed_within_two_percent(tmp_path: Path) -> None:
    config = make_config(tmp_path, WEIGHTED)
    rng = random.Random(config.seed)
    counts = Counter(config.policy.evaluate(facts(), rng).scope for _ in range(10_000))
    assert abs(counts["default"] / 10_000 - 0.75) < 0.02
    assert abs(counts["dr"] / 10_000 - 0.25) < 0.02


def test_three_way_weights(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        "rules: [{name: w, zone: example.com,\n"
        "         answer: {weighted: {default: 5, dr: 3, internal: 2}}}]\n",
    )
    rng = random.Random(12345)
    counts = Counter(config.policy.evaluate(facts(), rng).scope for _ in range(10_000))
    for scope, share in (("default", 0.5), ("dr", 0.3), ("internal", 0.2)):
        assert abs(counts[scope] / 10_000 - share) < 0.02, counts


def test_weighted_draws_repeat_with_the_same_seed(tmp_path: Path) -> None:
    policy = make_config(tmp_path, WEIGHTED).policy

    def draws(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [policy.evaluate(facts(), rng).scope for _ in range(200)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    decision = policy.evaluate(facts(), random.Random(7))
    assert decision.weighted and decision.rule == "balance"


def test_single_weight_always_picks_it(tmp_path: Path) -> None:
    policy = make_config(tmp_path, WEIGHTED).policy
    rng = random.Random(1)
    assert {policy.evaluate(facts(qname="www.example.org"), rng).scope for _ in range(50)} == {
        "default"
    }


def test_no_rules_means_default_and_has_rules_false(tmp_path: Path) -> None:
    config = make_config(tmp_path, "rules: []\n")
    assert not config.policy.has_rules
    decision = config.policy.evaluate(facts(), random.Random())
    assert (decision.action, decision.scope, decision.rule) == (Action.ANSWER, "default", None)
    assert decision.ttl_cap is None and decision.ecs_scope is None


def test_only_disabled_rules_means_no_rules(tmp_path: Path) -> None:
    config = make_config(tmp_path, "rules: [{name: a, enabled: false, action: drop}]\n")
    assert not config.policy.has_rules


def test_explain_lists_rules_in_processing_order_with_reasons(tmp_path: Path) -> None:
    policy = make_config(tmp_path, ORDERED).policy
    explanation = policy.explain(facts(qname="mail.example.com"), random.Random(1))
    outcomes = [(trace.name, trace.outcome) for trace in explanation.rules]
    assert outcomes == [
        ("off", Outcome.DISABLED),
        ("server-wide", Outcome.NO_MATCH),
        ("zone-first-in-text", Outcome.NO_MATCH),
        ("zone-second", Outcome.MATCHED),
    ]
    reasons = {trace.name: trace.reasons for trace in explanation.rules}
    assert reasons["server-wide"] == ("client 192.0.2.1 is not in corp",)
    assert reasons["zone-first-in-text"] == (
        "qname mail.example.com. does not match www.example.com",
    )
    assert explanation.decision.rule == "zone-second"
    text = str(explanation)
    assert "zone-second (zone example.com., " in text
    assert "decision: answer from scope 'internal', by rule 'zone-second'" in text


def test_explain_marks_rules_after_the_match_not_reached(tmp_path: Path) -> None:
    policy = make_config(tmp_path, ORDERED).policy
    explanation = policy.explain(facts(client="10.1.1.1"), random.Random(1))
    assert [trace.outcome for trace in explanation.rules] == [
        Outcome.DISABLED,
        Outcome.MATCHED,
        Outcome.NOT_REACHED,
        Outcome.NOT_REACHED,
    ]
    matched = explanation.rules[1]
    assert matched.reasons == ("answer: internal", "client matched corp")


def test_explain_says_which_criteria_failed(tmp_path: Path) -> None:
    policy = one_rule(
        tmp_path,
        "{client: corp, qtype: [MX, TXT], transport: tcp, time: {between: '01:00-02:00', "
        "tz: Europe/Berlin}}",
    ).policy
    trace = policy.explain(facts(), random.Random()).rules[0]
    assert trace.outcome is Outcome.NO_MATCH
    assert trace.reasons == (
        "client 192.0.2.1 is not in corp",
        "qtype A is not MX, TXT",
        "transport udp is not tcp",
        "time wed 2026-05-06 14:00 CEST is outside 01:00-02:00 (Europe/Berlin)",
    )


def test_explain_composition_and_scope_reasons(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        """
        rules:
          - name: either
            match: {any: [{qtype: MX}, {client: corp}]}
            action: refuse
          - name: negated
            match: {not: {qtype: A}}
            action: refuse
          - name: dr-anywhere
            answer: dr
        """,
    )
    explanation = config.policy.explain(facts(qname="www.example.org"), random.Random())
    reasons = {trace.name: trace.reasons for trace in explanation.rules}
    assert reasons["either"] == ("none of: qtype A is not MX; client 192.0.2.1 is not in corp",)
    assert reasons["negated"] == ("matches not: qtype A",)
    assert reasons["dr-anywhere"] == ("zone example.org. has no scope 'dr'",)


def test_explain_describes_ecs_trust(tmp_path: Path) -> None:
    config = make_config(tmp_path, "server: {trusted_resolvers: [127.0.0.1]}\nrules: []\n")
    trusted = config.policy.explain(facts(client="127.0.0.1", ecs="10.1.0.0/16"), random.Random())
    assert trusted.addresses.startswith("ECS 10.1.0.0/16 from trusted resolver 127.0.0.1")
    other = config.policy.explain(facts(client="192.0.2.1", ecs="10.1.0.0/16"), random.Random())
    assert "ignored" in other.addresses


def test_is_trusted_resolver(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, "server: {trusted_resolvers: [lab, '2001:db8::53']}\nrules: []\n"
    )
    check = config.policy.is_trusted_resolver
    assert check(ipaddress.ip_address("127.0.1.9"))
    assert check(ipaddress.ip_address("2001:db8::53"))
    assert not check(ipaddress.ip_address("127.0.0.1"))


def test_policy_is_immutable(tmp_path: Path) -> None:
    policy = make_config(tmp_path, ORDERED).policy
    with pytest.raises(AttributeError, match="immutable"):
        policy.has_rules = False
