"""``checks:`` compiled, the shared board, and the rules that read it: ``healthy:``,
``failover:`` and weighted members with checks — the compiled decider against the reference
``Policy.evaluate`` over every board state, TTL capping, problems with their lines."""

from __future__ import annotations

import ipaddress
import itertools
import os
import random
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from dnspol.checks import HEADER, Check, HealthBoard
from dnspol.config import check_config, load_config
from dnspol.names import from_text
from dnspol.policy import QueryFacts
from dnspol.policy.decide import Decider, source_value

DATA = (Path(__file__).parent / "data" / "policy").resolve()
ZONE = from_text("example.com")
SAT_0130_BERLIN = 1778283000.0  # 2026-05-09T01:30:00+02:00
WED_1000_BERLIN = 1778054400.0  # 2026-05-06T10:00:00+02:00

CONFIG = f"""\
server:
  timezone: Europe/Berlin
  trusted_resolvers: [127.0.0.1]
  health_ttl: 20
subnets:
  corp: [10.0.0.0/8]
zones:
  example.com:
    file: {DATA}/example.com.zone
    scopes:
      internal: {{overlay: {DATA}/example.com.internal.zone}}
      dr: {DATA}/example.com.dr.zone
checks:
  web1: {{kind: tcp, target: "127.0.0.1:9", interval: 1, timeout: 0.5}}
  web2: {{kind: http, url: "http://127.0.0.1:9/health", body: ok, host: www.example.com}}
  ns: {{kind: dns, server: "127.0.0.1:9", name: www.example.com, type: A, answer: 192.0.2.1}}
rules:
  - name: maintenance
    zone: example.com
    match:
      qname: www.example.com
      time: {{between: "01:00-03:00", days: sat}}
    answer: {{failover: [{{internal: web2}}, dr]}}
  - name: corp-healthy
    zone: example.com
    match: {{client: corp, healthy: web1}}
    answer: internal
  - name: www
    zone: example.com
    match: {{qname: www.example.com}}
    answer: {{failover: [{{default: web1}}, {{internal: [web2, ns]}}, dr]}}
  - name: spread
    zone: example.com
    match: {{qname: mail.example.com}}
    answer:
      weighted:
        default: {{weight: 3, check: web1}}
        internal: {{weight: 1, check: web2}}
        dr: 1
  - name: outage-page
    zone: example.com
    match: {{not: {{healthy: [web1, web2]}}}}
    answer: dr
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dnspol.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def config(tmp_path: Path):
    return load_config(write(tmp_path, CONFIG))


def facts(qname: str, client: str = "192.0.2.99", now: float = WED_1000_BERLIN, ecs=None):
    return QueryFacts(
        client=ipaddress.ip_address(client),
        ecs=ipaddress.ip_network(ecs) if ecs else None,
        server=ipaddress.ip_address("127.0.0.1"),
        transport="udp",
        qname=from_text(qname),
        qtype=1,
        zone=ZONE,
        now=now,
    )


def set_board(board: HealthBoard, **states: bool) -> None:
    for name, up in states.items():
        board.set(board.by_name[name].slot, up)


# --- compiling -------------------------------------------------------------------------------


def test_checks_compile_with_their_fields(config) -> None:
    board = config.policy.health
    assert [c.name for c in board.checks] == ["web1", "web2", "ns"]
    web1, web2, ns = board.checks
    assert (web1.kind, web1.host, web1.port, web1.interval, web1.timeout) == (
        "tcp", "127.0.0.1", 9, 1.0, 0.5,
    )  # fmt: skip
    assert (web1.rise, web1.fall) == (2, 3)  # the defaults
    assert (web2.kind, web2.path, web2.body, web2.host_header, web2.status) == (
        "http", "/health", "ok", "www.example.com", 200,
    )  # fmt: skip
    assert web2.target == "http://127.0.0.1:9/health"
    assert (ns.qname, ns.qtype, ns.rcode, ns.answer, ns.target) == (
        "www.example.com", "A", "NOERROR", "192.0.2.1", "127.0.0.1:9",
    )  # fmt: skip
    assert [c.slot for c in board.checks] == [0, 1, 2]
    assert board.health_ttl == 20


@pytest.mark.parametrize(
    "checks, rule, expected",
    [
        ("web: {kind: ftp}", "", "dnspol.yaml:4: check 'web': kind 'ftp' is not one of"),
        ("web: {target: 1.2.3.4:80}", "", "dnspol.yaml:4: check 'web' needs 'kind:"),
        ("web: {kind: tcp, target: nowhere}", "", "dnspol.yaml:4: 'nowhere' is not ADDRESS:PORT"),
        ("web: {kind: tcp, target: 1.2.3.4:80, rise: 0}", "", "rise must be between 1 and 100"),
        (
            "web: {kind: tcp, target: 1.2.3.4:80, interval: 1, timeout: 2}",
            "",
            "timeout must not be longer than interval",
        ),
        ("web: {kind: tcp, target: 1.2.3.4:80, port: 5}", "", "'port' goes with 'records'"),
        ("web: {kind: http, url: http://www.example.com/}", "", "give the address"),
        ("web: {kind: https, url: http://1.2.3.4/}", "", "must start with https://"),
        ("web: {kind: dns, server: 1.2.3.4, name: x., type: BOGUS}", "", "unknown type 'BOGUS'"),
        (
            "web: {kind: tcp, target: 1.2.3.4:80}",
            "match: {healthy: wbe}",
            "dnspol.yaml:8: unknown check 'wbe' (did you mean 'web'?)",
        ),
        (
            "web: {kind: tcp, target: 1.2.3.4:80}",
            "answer: {failover: [dr]}",
            "failover needs two or more scopes",
        ),
        (
            "web: {kind: tcp, target: 1.2.3.4:80}",
            "answer: {failover: [default, dr]}",
            "at least one with checks",
        ),
        (
            "web: {kind: tcp, target: 1.2.3.4:80}",
            "answer: {failover: [{default: web}, nope]}",
            "zone example.com. has no scope 'nope'",
        ),
        (
            "web: {kind: tcp, target: 1.2.3.4:80}",
            "answer: {weighted: {default: {weight: 1, check: nope}, dr: 1}}",
            "unknown check 'nope'",
        ),
    ],
)
def test_problems_name_the_line(tmp_path: Path, checks: str, rule: str, expected: str) -> None:
    rule = rule or "answer: dr"
    text = (
        f"zones:\n  example.com: {{file: {DATA}/example.com.zone, scopes: {{dr: "
        f"{DATA}/example.com.dr.zone}}}}\nchecks:\n  {checks}\nrules:\n"
        f"  - name: r\n    zone: example.com\n    {rule}\n"
    )
    problems = check_config(write(tmp_path, text))
    assert any(expected in problem for problem in problems), problems


def test_a_config_without_checks_has_no_board(tmp_path: Path) -> None:
    text = CONFIG.split("checks:")[0] + "rules:\n  - {name: r, match: {client: corp}, answer: dr}\n"
    config = load_config(write(tmp_path, text))
    assert config.policy.health is None
    decider = Decider.build(config.policy)
    assert decider.clock.counter is None  # the hot path never reads a board


# --- the board -------------------------------------------------------------------------------


def test_the_board_starts_up_and_counts_each_change() -> None:
    board = HealthBoard([Check("a", "tcp", "127.0.0.1", 1, slot=0)], 30)
    assert board.up(0) and board.version() == 0
    assert board.set(0, False) and board.version() == 1 and not board.up(0)
    assert not board.set(0, False) and board.version() == 1  # no change, no new version
    assert board.set(0, True) and board.version() == 2


def test_a_forked_process_writes_what_this_one_decides_from(config) -> None:
    """The board is shared memory: a verdict written in another process (a generation's
    checker) switches the decisions of this one (a worker) at its next query."""
    board = config.policy.health
    decider = Decider.build(config.policy)

    def scope() -> str:
        return decide(decider, facts("www.example.com")).scope

    assert scope() == "default"
    pid = os.fork()
    if pid == 0:  # the child: the checker's side
        board.set(board.by_name["web1"].slot, False)
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.page[HEADER + board.by_name["web1"].slot] == 0
    assert scope() == "internal"


# --- decisions -------------------------------------------------------------------------------


def decide(decider: Decider, f: QueryFacts, rng: random.Random | None = None):
    ecs = None
    if f.ecs is not None:
        network = f.ecs
        family = 1 if network.version == 4 else 2
        length = (network.prefixlen + 7) // 8
        ecs = (
            family.to_bytes(2, "big")
            + bytes((network.prefixlen, 0))
            + network.network_address.packed[:length]
        )
    assert source_value(str(f.client))
    return decider.decide(
        str(f.client), ecs, f.server, f.transport, f.qname, f.qtype, f.zone, f.now,
        rng or random.Random(1),
    )  # fmt: skip


QUERIES = [
    ("www.example.com", "192.0.2.99", WED_1000_BERLIN, None),
    ("www.example.com", "192.0.2.99", SAT_0130_BERLIN, None),
    ("www.example.com", "10.1.2.3", WED_1000_BERLIN, None),
    ("mail.example.com", "192.0.2.99", WED_1000_BERLIN, None),
    ("mail.example.com", "127.0.0.1", WED_1000_BERLIN, "10.9.0.0/16"),
    ("other.example.com", "127.0.0.1", SAT_0130_BERLIN, "10.9.0.0/16"),
    ("other.example.com", "192.0.2.99", WED_1000_BERLIN, None),
    ("www.example.com", "127.0.0.1", SAT_0130_BERLIN, "192.0.2.0/24"),
]


def test_the_decider_equals_the_reference_in_every_board_state(config) -> None:
    """Every combination of the three checks, queries through every kind of rule (weighted
    draws included, rng for rng), the board flipped under a decider that has seen the
    previous state: the compiled decision is the reference's."""
    policy = config.policy
    board = policy.health
    decider = Decider.build(policy)
    states = list(itertools.product((True, False), repeat=3))
    for web1, web2, ns in states + states[::-1]:
        set_board(board, web1=web1, web2=web2, ns=ns)
        for qname, client, now, ecs in QUERIES:
            f = facts(qname, client, now, ecs)
            seed = random.randrange(1 << 30)
            expected = policy.evaluate(f, random.Random(seed))
            assert decide(decider, f, random.Random(seed)) == expected, (web1, web2, ns, f)


@pytest.mark.parametrize(
    "web1, web2, ns, scope",
    [
        (True, True, True, "default"),
        (False, True, True, "internal"),
        (False, True, False, "dr"),  # internal needs both of its checks
        (False, False, False, "dr"),
        (True, False, False, "default"),
    ],
)
def test_failover_answers_the_first_scope_whose_checks_pass(config, web1, web2, ns, scope):
    set_board(config.policy.health, web1=web1, web2=web2, ns=ns)
    decision = config.policy.evaluate(facts("www.example.com"), random.Random(1))
    assert (decision.rule, decision.scope) == ("www", scope)
    assert decision.ttl_cap == 20  # server.health_ttl


def test_failover_with_nothing_passing_answers_the_last_scope(tmp_path: Path) -> None:
    text = CONFIG.replace("[{internal: web2}, dr]", "[{internal: web2}, {dr: web1}]")
    config = load_config(write(tmp_path, text))
    set_board(config.policy.health, web1=False, web2=False)
    decision = config.policy.evaluate(
        facts("www.example.com", now=SAT_0130_BERLIN), random.Random()
    )
    assert (decision.rule, decision.scope) == ("maintenance", "dr")


def test_the_health_cap_and_a_time_window_take_the_lower(config) -> None:
    """In the maintenance window (Saturday 01:00-03:00) the window closes in 90 minutes:
    the health cap (20 s) is lower; 10 s before the end, the window's is."""
    policy = config.policy
    decision = policy.evaluate(facts("www.example.com", now=SAT_0130_BERLIN), random.Random())
    assert (decision.rule, decision.ttl_cap) == ("maintenance", 20)
    late = SAT_0130_BERLIN + 90 * 60 - 10
    assert policy.evaluate(facts("www.example.com", now=late), random.Random()).ttl_cap == 10


def test_answers_that_read_no_check_are_not_capped(tmp_path: Path) -> None:
    """A rule decided before any check was read: no cap. A query that read a ``healthy:``
    verdict on its way (matched or not) is capped. Address tests run before health tests."""
    text = CONFIG.split("rules:")[0] + textwrap.dedent("""\
        rules:
          - {name: plain, zone: example.com, match: {qname: mail.example.com}, answer: dr}
          - {name: checked, zone: example.com, match: {healthy: web1, client: corp}, answer: dr}
        """)
    policy = load_config(write(tmp_path, text)).policy
    assert policy.evaluate(facts("mail.example.com"), random.Random()).ttl_cap is None
    outside = policy.evaluate(facts("www.example.com"), random.Random())
    assert outside.rule is None and outside.ttl_cap is None  # not corp: web1 never read
    inside = policy.evaluate(facts("www.example.com", "10.0.0.1"), random.Random())
    assert inside.rule == "checked" and inside.ttl_cap == 20
    set_board(policy.health, web1=False)
    missed = policy.evaluate(facts("www.example.com", "10.0.0.1"), random.Random())
    assert missed.rule is None and missed.ttl_cap == 20  # the default, after reading web1


def test_a_criterion_on_a_check(config) -> None:
    policy = config.policy
    board = policy.health
    assert policy.evaluate(facts("other.example.com", "10.1.2.3"), random.Random()).rule == (
        "corp-healthy"
    )
    set_board(board, web1=False)
    decision = policy.evaluate(facts("other.example.com", "10.1.2.3"), random.Random())
    assert decision.rule == "outage-page" and decision.scope == "dr"


def test_weighted_members_with_a_check_down_are_skipped(config) -> None:
    policy = config.policy
    board = policy.health
    rng = random.Random(7)
    decider = Decider.build(policy)

    def counts() -> Counter:
        return Counter(decide(decider, facts("mail.example.com"), rng).scope for _ in range(5000))

    every = counts()
    assert 0.56 < every["default"] / 5000 < 0.64  # 3 of 5
    set_board(board, web1=False)
    without = counts()
    assert without["default"] == 0 and 0.4 < without["internal"] / 5000 < 0.6
    set_board(board, web2=False)
    assert set(counts()) == {"dr"}  # the member without a check is always healthy


def test_weighted_with_every_member_down_draws_among_all(tmp_path: Path) -> None:
    text = CONFIG.replace("        dr: 1\n", "        dr: {weight: 1, check: ns}\n")
    config = load_config(write(tmp_path, text))
    set_board(config.policy.health, web1=False, web2=False, ns=False)
    rng = random.Random(3)
    drawn = Counter(
        config.policy.evaluate(facts("mail.example.com"), rng).scope for _ in range(500)
    )
    assert set(drawn) == {"default", "internal", "dr"}


def test_explain_shows_the_checks_a_decision_read(config) -> None:
    set_board(config.policy.health, web1=False)
    text = str(config.policy.explain(facts("www.example.com"), random.Random()))
    assert "failover: default [web1], internal [web2, ns], dr" in text
    assert "scope default: web1 down" in text
    assert "scope internal: web2 up, ns up" in text
    assert "decision: answer from scope 'internal', by rule 'www'; TTLs capped at 20s" in text
    page = str(config.policy.explain(facts("other.example.com"), random.Random()))
    assert "by rule 'outage-page'" in page and "- check web1 is down" in page


def test_explain_probes_the_checks_or_takes_them_forced(tmp_path: Path) -> None:
    from dnspol.explain import explain
    from dnspol.state import snapshot_loader

    snap = snapshot_loader(config=str(write(tmp_path, CONFIG)), zone_args=[])()
    text = explain(snap, "www.example.com", "A", "192.0.2.99", when=WED_1000_BERLIN)
    assert "checks (each probed once now):" in text
    assert "  web1: down (tcp 127.0.0.1:9); last error: Connection refused" in text
    assert "decision: answer from scope 'dr', by rule 'www'" in text  # every check down
    forced = explain(
        snap, "www.example.com", "A", "192.0.2.99", when=WED_1000_BERLIN, health={"web1": True}
    )
    assert "  web1: up (tcp 127.0.0.1:9), forced up by --health" in forced
    assert "decision: answer from scope 'default', by rule 'www'" in forced
    with pytest.raises(ValueError, match="no check 'nope'"):
        explain(snap, "www.example.com", "A", "192.0.2.99", health={"nope": True})


# --- record-set checks (``records:``, PowerDNS's ifportup) ------------------------------------

MEMBERS_ZONE = """\
$ORIGIN example.com.
$TTL 300
@    IN SOA ns1 hostmaster 1 3600 600 604800 300
@    IN NS  ns1
ns1  IN A   192.0.2.53
www  IN A   192.0.2.1
www  IN A   192.0.2.2
www  IN A   192.0.2.3
www  IN AAAA 2001:db8::1
www  IN TXT "kept whatever the checks say"
api  IN A   192.0.2.20
"""
MEMBERS_CONFIG = """\
zones:
  example.com:
    file: example.com.zone
    scopes:
      sorry: {overlay: sorry.zone}
checks:
  www-443: {kind: tcp, records: www.example.com, port: 443, interval: 1}
rules:
  - name: www
    zone: example.com
    match: {qname: www.example.com, qtype: [A, AAAA]}
    answer: {members: www-443}
  - name: api
    zone: example.com
    match: {qname: api.example.com}
    answer: {members: www-443, fallback: sorry}
"""


@pytest.fixture
def members(tmp_path: Path):
    (tmp_path / "example.com.zone").write_text(MEMBERS_ZONE)
    (tmp_path / "sorry.zone").write_text("$TTL 60\napi IN A 203.0.113.9\nwww IN A 203.0.113.9\n")
    return load_config(write(tmp_path, MEMBERS_CONFIG))


def addresses(config, scope: str, name: str = "www.example.com") -> list[str]:
    zone = config.variants[(ZONE, scope)]
    node = zone.nodes[from_text(name)]
    return sorted(str(rd) for rtype in (1, 28) if node.get(rtype) for rd in node.get(rtype).rdatas)


def test_a_record_set_check_has_a_check_per_address(members) -> None:
    board = members.policy.health
    assert [(c.name, c.host, c.port) for c in board.checks] == [
        ("www-443@192.0.2.1", "192.0.2.1", 443),
        ("www-443@192.0.2.2", "192.0.2.2", 443),
        ("www-443@192.0.2.3", "192.0.2.3", 443),
        ("www-443@2001:db8::1", "2001:db8::1", 443),
    ]
    assert board.checks[3].target == "[2001:db8::1]:443"


@pytest.mark.parametrize(
    "down, www_answer, api_scope",
    [
        ((), ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"], "default"),
        (("192.0.2.2",), ["192.0.2.1", "192.0.2.3", "2001:db8::1"], "www-443~13"),
        (("192.0.2.1", "2001:db8::1"), ["192.0.2.2", "192.0.2.3"], "www-443~6"),
        (
            ("192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"),
            ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"],  # none up: all of them
            "sorry",  # or the fallback
        ),
    ],
)
def test_members_answers_the_healthy_addresses(members, down, www_answer, api_scope) -> None:
    board = members.policy.health
    for address in down:
        board.set(board.by_name[f"www-443@{address}"].slot, False)
    decision = members.policy.evaluate(facts("www.example.com"), random.Random())
    assert addresses(members, decision.scope) == www_answer
    assert decision.ttl_cap == 30  # the default health_ttl
    txt = members.variants[(ZONE, decision.scope)].nodes[from_text("www.example.com")].get(16)
    assert txt is not None  # the rest of the name is left alone
    assert members.policy.evaluate(facts("api.example.com"), random.Random()).scope == api_scope


def test_members_decider_equals_the_reference(members) -> None:
    policy = members.policy
    board = policy.health
    decider = Decider.build(policy)
    for states in itertools.product((True, False), repeat=4):
        for check, up in zip(board.checks, states, strict=True):
            board.set(check.slot, up)
        for qname in ("www.example.com", "api.example.com", "ns1.example.com"):
            f = facts(qname)
            assert decide(decider, f) == policy.evaluate(f, random.Random(1)), (states, qname)


def test_members_in_explain(members) -> None:
    board = members.policy.health
    board.set(board.by_name["www-443@192.0.2.2"].slot, False)
    text = str(members.policy.explain(facts("www.example.com"), random.Random()))
    assert "members: www-443 (healthy addresses of www.example.com.)" in text
    assert "members: 192.0.2.1 up, 192.0.2.2 down, 192.0.2.3 up, 2001:db8::1 up" in text


@pytest.mark.parametrize(
    "check, answer, expected",
    [
        ("{kind: tcp, records: nope.example.com, port: 443}", "default", "has no A or AAAA"),
        ("{kind: tcp, records: www.example.org, port: 443}", "default", "is in no served zone"),
        ("{kind: tcp, records: www.example.com}", "default", "records: needs 'port:'"),
        ("{kind: tcp, records: www.example.com, port: 1}", "{members: web}", "checks: www-443)"),
        ("{kind: tcp, target: 192.0.2.1:1}", "{members: www-443}", "no check 'www-443' with rec"),
        ("{kind: tcp, records: www.example.com, port: 1}", "{members: www-443, fallback: x}",
         "has no scope 'x'"),
    ],
)  # fmt: skip
def test_record_set_problems(tmp_path: Path, check: str, answer: str, expected: str) -> None:
    (tmp_path / "example.com.zone").write_text(MEMBERS_ZONE)
    text = (
        "zones:\n  example.com: example.com.zone\n"
        f"checks:\n  www-443: {check}\n"
        f"rules:\n  - {{name: r, zone: example.com, answer: {answer}}}\n"
    )
    problems = check_config(write(tmp_path, text))
    assert any(expected in problem for problem in problems), problems


def test_at_most_eight_members(tmp_path: Path) -> None:
    many = "".join(f"www IN A 192.0.2.{i}\n" for i in range(1, 10))
    (tmp_path / "example.com.zone").write_text(MEMBERS_ZONE.split("www")[0] + many)
    text = (
        "zones:\n  example.com: example.com.zone\n"
        "checks:\n  w: {kind: tcp, records: www.example.com, port: 1}\n"
    )
    problems = check_config(write(tmp_path, text))
    assert any("has 9 addresses; at most 8" in problem for problem in problems), problems


def test_check_warns_of_a_rule_behind_the_same_health_test(tmp_path: Path) -> None:
    text = CONFIG.split("rules:")[0] + textwrap.dedent("""\
        rules:
          - {name: first, zone: example.com, match: {healthy: web1}, answer: dr}
          - {name: again, zone: example.com, match: {healthy: web1, qtype: A}, answer: internal}
          - {name: other, zone: example.com, match: {healthy: web2}, answer: internal}
        """)
    warnings = check_config(write(tmp_path, text))
    assert len(warnings) == 1 and "rule 'again'" in warnings[0], warnings


def test_a_bare_failover_scope_is_checked_by_the_check_of_its_name(tmp_path: Path) -> None:
    text = CONFIG.replace("  ns: {", "  internal: {kind: tcp, target: '127.0.0.1:9'}\n  ns: {")
    text = text.replace("[{default: web1}, {internal: [web2, ns]}, dr]", "[internal, dr]")
    config = load_config(write(tmp_path, text))
    board = config.policy.health
    rule = next(rule for rule in config.policy.rules if rule.name == "www")
    assert rule.failover == (("internal", (board.by_name["internal"].slot,)), ("dr", ()))
    assert config.policy.evaluate(facts("www.example.com"), random.Random()).scope == "internal"
    set_board(board, internal=False)
    assert config.policy.evaluate(facts("www.example.com"), random.Random()).scope == "dr"
