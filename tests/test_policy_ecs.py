"""ECS (RFC 7871 §7.2.1): which address rules see, and the SCOPE a decision carries."""

from __future__ import annotations

import ipaddress
import random
import textwrap
from pathlib import Path

import pytest

from dnspol.config import load_config
from dnspol.names import from_text
from dnspol.policy import Action, Policy, QueryFacts, Rule
from dnspol.policy.criteria import AddressIn, Any, Not, QtypeIs
from dnspol.policy.prefixes import Prefix, PrefixSet

DATA = Path(__file__).parent / "data" / "policy"
RESOLVER = "127.0.0.1"  # trusted below
RULES = """
server:
  trusted_resolvers: [127.0.0.1/32, "::1"]
rules:
  - name: carve-out
    zone: example.com
    match: {qname: www.example.com, client: 198.51.100.0/24}
    answer: dr
  - name: wide
    zone: example.com
    match: {qname: www.example.com, client: 198.51.0.0/16}
    answer: internal
  - name: corp
    zone: example.com
    match: {qname: mail.example.com, client: 10.0.0.0/8}
    answer: internal
  - name: halves
    zone: example.com
    match: {qname: half.example.com, client: 192.0.2.0/25}
    answer: internal
  - name: v6
    zone: example.com
    match: {qname: v6.example.com, client: "2001:db8::/32"}
    answer: internal
  - name: block
    match: {qname: blocked.example.com, client: 203.0.113.0/24}
    action: refuse
  - name: block-by-ecs
    match: {qname: ecs-blocked.example.com, client: 203.0.113.0/24}
    use_ecs: true
    action: refuse
  - name: no-address
    zone: example.com
    match: {qname: plain.example.com}
    answer: dr
"""
RULE_PREFIXES = ["198.51.100.0/24", "198.51.0.0/16", "10.0.0.0/8", "192.0.2.0/25", "2001:db8::/32"]


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("ecs") / "dnspol.yaml"
    zones = f"""
    zones:
      example.com:
        file: {DATA}/example.com.zone
        scopes:
          internal: {{overlay: {DATA}/example.com.internal.zone}}
          dr: {DATA}/example.com.dr.zone
    """
    path.write_text(RULES + textwrap.dedent(zones))
    return load_config(path).policy


def ask(policy: Policy, qname: str, ecs: str | None, client: str = RESOLVER):
    facts = QueryFacts(
        client=ipaddress.ip_address(client),
        ecs=ipaddress.ip_network(ecs) if ecs is not None else None,
        server=ipaddress.ip_address("127.0.0.1"),
        transport="udp",
        qname=from_text(qname),
        qtype=1,
        zone=from_text("example.com"),
        now=0.0,
    )
    return policy.evaluate(facts, random.Random(0))


SCOPES = [
    # (qname, ECS, expected scope name, expected SCOPE, clamped to SOURCE?)
    # a rule on 198.51.0.0/16 with a /24 carved out: /18 is the shortest prefix around
    # 198.51.7.0 that holds no part of 198.51.100.0/24 (RFC 7871 §7.2.1 carve-outs)
    ("www.example.com", "198.51.7.0/24", "internal", 18, False),
    ("www.example.com", "198.51.100.0/24", "dr", 24, False),
    ("www.example.com", "198.51.101.0/24", "internal", 24, False),  # borders the carve-out
    ("www.example.com", "198.51.128.0/24", "internal", 17, False),  # /16 holds the carve-out
    ("www.example.com", "198.51.0.0/16", "internal", 16, True),  # /18 wanted, SOURCE is 16
    # no rule matched; SCOPE keeps the client apart from 10.0.0.0/8 (first bit differs)
    ("mail.example.com", "203.0.113.0/24", "default", 1, False),
    ("mail.example.com", "11.0.0.0/24", "default", 8, False),  # 11/8 and 10/8 share 7 bits
    ("mail.example.com", "10.20.30.0/24", "internal", 8, False),
    # SCOPE is never longer than SOURCE: the /25 rule would want 25
    ("half.example.com", "192.0.2.0/24", "internal", 24, True),
    ("half.example.com", "192.0.2.0/28", "internal", 25, False),
    ("half.example.com", "192.0.2.128/28", "default", 25, False),
    # IPv6
    ("v6.example.com", "2001:db8:aabb:cc00::/56", "internal", 32, False),
    ("v6.example.com", "2001:db9::/48", "default", 32, False),
    ("v6.example.com", "192.0.2.0/24", "default", 0, False),  # no IPv4 prefix in the rule
    # no address criterion for this name: the answer holds for everyone
    ("plain.example.com", "198.51.100.0/24", "dr", 0, False),
    # SOURCE 0: the client opted out; nothing narrower than /0 may be claimed
    ("www.example.com", "0.0.0.0/0", "default", 0, True),
]


@pytest.mark.parametrize(("qname", "ecs", "scope", "ecs_scope", "clamped"), SCOPES)
def test_ecs_scope(
    policy: Policy, qname: str, ecs: str, scope: str, ecs_scope: int, clamped: bool
) -> None:
    decision = ask(policy, qname, ecs)
    assert (decision.scope, decision.ecs_scope) == (scope, ecs_scope)


@pytest.mark.parametrize(
    ("qname", "ecs", "scope", "ecs_scope"),
    [row[:4] for row in SCOPES if not row[4]],
)
def test_every_address_inside_scope_gets_the_same_answer(
    policy: Policy, qname: str, ecs: str, scope: str, ecs_scope: int
) -> None:
    """The SCOPE is sound: any client inside the /SCOPE network gets the same decision."""
    network = ipaddress.ip_network(ecs).supernet(new_prefix=ecs_scope)
    rng = random.Random(ecs)
    full = 32 if network.version == 4 else 128
    size = network.num_addresses
    for _ in range(200):
        address = network.network_address + rng.randrange(size)
        other = ask(policy, qname, f"{address}/{full}")
        assert other.scope == scope, (address, other)


@pytest.mark.parametrize(
    ("qname", "ecs", "ecs_scope"),
    [(row[0], row[1], row[3]) for row in SCOPES if not row[4] and row[3] > 0],
)
def test_scope_is_minimal(policy: Policy, qname: str, ecs: str, ecs_scope: int) -> None:
    """One bit shorter, and some address in that network gets another answer."""
    expected = ask(policy, qname, ecs).scope
    wider = ipaddress.ip_network(ecs).supernet(new_prefix=ecs_scope - 1)
    full = 32 if wider.version == 4 else 128
    probes = [wider.network_address, wider.broadcast_address]
    for prefix in map(ipaddress.ip_network, RULE_PREFIXES):
        if prefix.version == wider.version and prefix.overlaps(wider):
            probes += [prefix.network_address, prefix.broadcast_address]
            probes += [a for a in (prefix.broadcast_address + 1,) if a in wider]
    answers = {ask(policy, qname, f"{address}/{full}").scope for address in probes}
    assert answers - {expected}, (wider, answers)


def test_no_ecs_means_no_scope(policy: Policy) -> None:
    decision = ask(policy, "www.example.com", None, client="198.51.100.1")
    assert (decision.scope, decision.ecs_scope) == ("dr", None)


def test_untrusted_ecs_is_ignored(policy: Policy) -> None:
    decision = ask(policy, "www.example.com", "198.51.100.0/24", client="192.0.2.200")
    assert (decision.scope, decision.rule, decision.ecs_scope) == ("default", None, None)
    decision = ask(policy, "www.example.com", "192.0.2.0/24", client="198.51.100.7")
    assert (decision.scope, decision.ecs_scope) == ("dr", None)  # the real source decides


def test_trusted_ipv6_resolver_sending_ipv4_ecs(policy: Policy) -> None:
    decision = ask(policy, "www.example.com", "198.51.100.0/24", client="::1")
    assert (decision.scope, decision.ecs_scope) == ("dr", 24)


def test_refuse_rules_match_the_real_source_not_ecs(policy: Policy) -> None:
    spoofed = ask(policy, "blocked.example.com", "203.0.113.0/24")
    assert spoofed.action is Action.ANSWER  # the resolver itself is not blocked
    assert spoofed.ecs_scope == 0  # and no address rule was consulted for this answer
    direct = ask(policy, "blocked.example.com", None, client="203.0.113.5")
    assert direct.action is Action.REFUSE


def test_use_ecs_true_lets_a_refuse_rule_see_ecs(policy: Policy) -> None:
    decision = ask(policy, "ecs-blocked.example.com", "203.0.113.0/24")
    assert (decision.action, decision.ecs_scope) == (Action.REFUSE, 24)
    assert ask(policy, "ecs-blocked.example.com", "198.18.0.0/24").action is Action.ANSWER


def random_policy(rng: random.Random) -> Policy:
    """Rules on random IPv4 prefixes inside 10.0.0.0/8, some negated or ORed."""

    def prefixes() -> PrefixSet:
        chosen = []
        for _ in range(rng.randint(1, 3)):
            length = rng.randint(8, 20)
            value = (10 << 24 | rng.getrandbits(24)) >> (32 - length) << (32 - length)
            chosen.append(Prefix(32, value, length))
        return PrefixSet(chosen)

    def criterion():
        leaf = AddressIn("client", prefixes(), ("p",))
        shape = rng.random()
        if shape < 0.2:
            return Not(leaf)
        if shape < 0.4:
            return Any((leaf, AddressIn("client", prefixes(), ("q",))))
        if shape < 0.5:
            return Any((QtypeIs(frozenset({28}), ("AAAA",)), leaf))
        return leaf

    rules = [
        Rule(name=f"r{i}", where="t", criteria=criterion(), scope=rng.choice(["a", "b", "c"]))
        for i in range(rng.randint(1, 6))
    ]
    return Policy(rules, PrefixSet([Prefix(32, int(ipaddress.IPv4Address(RESOLVER)), 32)]))


def test_scope_is_sound_for_random_rule_sets() -> None:
    rng = random.Random(2024)
    for _ in range(150):
        policy = random_policy(rng)
        client = ipaddress.IPv4Address((10 << 24) | rng.getrandbits(24))
        decision = ask(policy, "www.example.com", f"{client}/32")
        network = ipaddress.ip_network(f"{client}/{decision.ecs_scope}", strict=False)
        for _ in range(30):
            other = network.network_address + rng.randrange(network.num_addresses)
            assert ask(policy, "www.example.com", f"{other}/32").scope == decision.scope
