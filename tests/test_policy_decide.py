"""Decider.decide against Policy.evaluate: equal decisions (and rng draws) for random rule sets
and queries; the time-window epoch across forward and backward clock steps; address forms."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import struct
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dnspol.names import Name, from_text
from dnspol.policy import Action, Policy, QueryFacts, Rule
from dnspol.policy.criteria import (
    AddressIn,
    All,
    Any,
    Criterion,
    FamilyIs,
    Not,
    QnameIs,
    QtypeIs,
    TimeIn,
    TransportIs,
)
from dnspol.policy.decide import (
    Decider,
    address_table,
    ecs_scope_length,
    ecs_value,
    lookup,
    scope_table,
    source_value,
)
from dnspol.policy.prefixes import Prefix, PrefixSet, address_value
from dnspol.policy.timewindow import TimeWindow

ZONES: tuple[Name, ...] = (from_text("example.com"), from_text("example.org"))
UNNAMED_ZONE = from_text("example.net")
NAMES = tuple(
    from_text(text)
    for text in (
        "example.com",
        "www.example.com",
        "a.b.example.com",
        "mail.example.org",
        "example.org",
        "host.example.net",
        "x.y.z.example.net",
    )
)
QTYPES = (1, 28, 15, 16, 255)
SERVERS = ("127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.53", "192.0.2.53")
TIME_ZONES = (ZoneInfo("UTC"), ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"))
# instants near DST changes (Berlin: 2026-03-29 01:00 UTC and 2026-10-25 01:00 UTC,
# New York: 2026-03-08 07:00 UTC and 2026-11-01 06:00 UTC) and around midnights
BASES = tuple(
    dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()
    for text in (
        "2026-03-29 00:30",
        "2026-10-25 00:30",
        "2026-03-08 06:30",
        "2026-11-01 05:30",
        "2026-05-06 21:45",
        "2026-12-31 23:30",
    )
)
V4_ROOT = 10 << 24  # prefixes and clients mostly inside 10.0.0.0/16 ...
V6_ROOT = 0x20010DB8 << 96  # ... and 2001:db8::/112, so that they meet
LOW_BITS = 16


# --- strategies ------------------------------------------------------------------------------


@st.composite
def prefixes(draw: st.DrawFn) -> PrefixSet:
    chosen = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            length = draw(st.sampled_from((0, 8, 16, 20, 22, 24, 26, 28, 31, 32)))
            value = V4_ROOT | draw(st.integers(0, 2**LOW_BITS - 1))
            if draw(st.integers(0, 9)) == 0:
                value = draw(st.integers(0, 2**32 - 1))
            bits = 32
        else:
            length = draw(st.sampled_from((0, 32, 48, 64, 112, 116, 120, 124, 127, 128)))
            value = V6_ROOT | draw(st.integers(0, 2**LOW_BITS - 1))
            bits = 128
        value = value >> (bits - length) << (bits - length) if length else 0
        chosen.append(Prefix(bits, value, length))
    return PrefixSet(chosen)


@st.composite
def windows(draw: st.DrawFn) -> TimeWindow:
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(1, 1440))
    if start == end % 1440:
        start, end = 0, 1440
    days = draw(st.none() | st.frozensets(st.integers(0, 6), min_size=1))
    dates = None
    if draw(st.integers(0, 3)) == 0:
        first = dt.date(2026, draw(st.integers(1, 12)), draw(st.integers(1, 28)))
        dates = ((first, first + dt.timedelta(days=draw(st.integers(0, 3)))),)
    return TimeWindow(start, end, days, dates, draw(st.sampled_from(TIME_ZONES)))


@st.composite
def qname_leaves(draw: st.DrawFn) -> QnameIs:
    names = st.frozensets(st.sampled_from(NAMES), max_size=2)
    return QnameIs(draw(names), draw(names), draw(names), ("q",))


ADDRESS_LEAVES = st.builds(
    AddressIn,
    st.sampled_from(("client", "client", "client", "source", "server")),
    prefixes(),
    st.just(("p",)),
)
LEAVES = st.one_of(
    ADDRESS_LEAVES,  # the most common criterion, and the subtle one with ECS
    ADDRESS_LEAVES,
    ADDRESS_LEAVES,
    st.builds(TransportIs, st.frozensets(st.sampled_from(("udp", "tcp")), min_size=1)),
    st.builds(FamilyIs, st.frozensets(st.sampled_from((32, 128)), min_size=1)),
    st.builds(QtypeIs, st.frozensets(st.sampled_from(QTYPES), min_size=1), st.just(("t",))),
    qname_leaves(),
    st.builds(TimeIn, st.tuples(windows()) | st.tuples(windows(), windows())),
)


def criteria() -> st.SearchStrategy[Criterion]:
    return st.recursive(
        LEAVES,
        lambda children: st.one_of(
            st.builds(All, st.lists(children, max_size=3).map(tuple)),
            st.builds(Any, st.lists(children, min_size=1, max_size=3).map(tuple)),
            st.builds(Not, children),
        ),
        max_leaves=5,
    )


@st.composite
def rules(draw: st.DrawFn, number: int) -> Rule:
    zone = draw(st.none() | st.sampled_from(ZONES))
    action = draw(st.sampled_from(tuple(Action)))
    weights: tuple[tuple[str, float], ...] = ()
    if action is Action.ANSWER and draw(st.booleans()):
        scopes = draw(
            st.lists(st.sampled_from(("a", "b", "c")), min_size=1, max_size=3, unique=True)
        )
        weights = tuple((scope, draw(st.floats(0.5, 10))) for scope in scopes)
    zones = None
    if draw(st.integers(0, 3)) == 0:
        zones = draw(st.frozensets(st.sampled_from((*ZONES, UNNAMED_ZONE)), max_size=2))
    return Rule(
        name=f"r{number}",
        where=f"t:{number}",
        zone=zone,
        action=action,
        scope=draw(st.sampled_from(("default", "a", "b"))),
        weights=weights,
        criteria=draw(criteria()),
        enabled=draw(st.integers(0, 7)) > 0,
        use_ecs=draw(st.integers(0, 3)) > 0,
        zones=zones,
    )


TRUST_ALL = PrefixSet([Prefix(32, 0, 0), Prefix(128, 0, 0)])


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    count = draw(st.integers(0, 6))
    trusted = draw(st.sampled_from((TRUST_ALL, PrefixSet())) | prefixes())
    return Policy([draw(rules(number)) for number in range(count)], trusted)


@st.composite
def clients(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return str(ipaddress.IPv4Address(V4_ROOT | draw(st.integers(0, 2**LOW_BITS - 1))))
    if kind == 1:
        return str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    if kind == 2:
        return str(ipaddress.IPv6Address(V6_ROOT | draw(st.integers(0, 2**LOW_BITS - 1))))
    if kind == 3:  # IPv4-mapped: counts as IPv4
        low = draw(st.integers(0, 2**LOW_BITS - 1))
        return "::ffff:" + str(ipaddress.IPv4Address(V4_ROOT | low))
    if kind == 4:
        return "fe80::" + format(draw(st.integers(1, 0xFFFF)), "x") + "%eth0"
    return draw(st.sampled_from(("127.0.0.1", "::1", "0.0.0.0")))


@st.composite
def ecs_options(draw: st.DrawFn, present: bool = False) -> bytes | None:
    """ECS option data (None: no option); ``present``: an option with SOURCE > 0."""
    kind = draw(st.integers(1 if present else 0, 3))
    if kind == 0:
        return None
    family = 1 if kind < 3 else 2
    bits = 32 if family == 1 else 128
    lengths = (0, 8, 16, 20, 24, 25, 32) if family == 1 else (0, 32, 48, 56, 64, 120, 128)
    source = draw(st.sampled_from(lengths) | st.integers(0, bits))
    if present and source == 0:
        source = bits
    root = V4_ROOT if family == 1 else V6_ROOT
    value = (root | draw(st.integers(0, 2**LOW_BITS - 1))) >> (bits - source) << (bits - source)
    if source == 0:
        value = 0
    address = value.to_bytes(bits // 8, "big")[: (source + 7) // 8]
    return struct.pack("!HBB", family, source, 0) + address


@st.composite
def queries(draw: st.DrawFn) -> dict:
    base = draw(st.sampled_from(BASES))
    return {
        "client": draw(clients()),
        "ecs": draw(ecs_options()),
        "server": ipaddress.ip_address(draw(st.sampled_from(SERVERS))),
        "transport": draw(st.sampled_from(("udp", "tcp"))),
        "qname": draw(st.sampled_from(NAMES)),
        "qtype": draw(st.sampled_from(QTYPES)),
        "zone": draw(st.none() | st.sampled_from((*ZONES, UNNAMED_ZONE))),
        "now": base + draw(st.integers(-2 * 86400, 2 * 86400)) + draw(st.sampled_from((0, 0.5))),
    }


def facts_of(query: dict) -> QueryFacts:
    """QueryFacts as the handler builds them: ``%scope`` dropped, ECS SOURCE 0 is no ECS."""
    ecs = query["ecs"]
    network = None
    if ecs is not None and ecs[2] > 0:
        family, source = struct.unpack_from("!HB", ecs)
        width = 4 if family == 1 else 16
        value = int.from_bytes(ecs[4:].ljust(width, b"\x00"), "big")
        kind = ipaddress.IPv4Network if width == 4 else ipaddress.IPv6Network
        network = kind((value, source))
    return QueryFacts(
        client=ipaddress.ip_address(query["client"].split("%")[0]),
        ecs=network,
        server=query["server"],
        transport=query["transport"],
        qname=query["qname"],
        qtype=query["qtype"],
        zone=query["zone"],
        now=query["now"],
    )


# --- the differential test -------------------------------------------------------------------


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy=policies(), asked=st.lists(queries(), min_size=1, max_size=8), seed=st.integers())
def test_decide_equals_evaluate(policy: Policy, asked: list[dict], seed: int) -> None:
    decider = Decider.build(policy)
    for query in asked:  # in order: the clock goes forward and back between them
        ours, theirs = random.Random(seed), random.Random(seed)
        decided = decider.decide(**query, rng=ours)
        assert decided == policy.evaluate(facts_of(query), theirs), query
        assert ours.random() == theirs.random()  # the same draws
        event(
            f"rule {decided.rule is not None}, ecs {decided.ecs_scope is not None}, "
            f"scope>0 {bool(decided.ecs_scope)}, timed {decided.ttl_cap is not None}, "
            f"weighted {decided.weighted}"
        )
    for zone in (*ZONES, UNNAMED_ZONE):
        assert decider.question_blind(zone) == policy.question_blind(zone)


@settings(max_examples=150, deadline=None)
@given(policy=policies(), query=queries())
def test_decide_equals_evaluate_many_times_in_one_epoch(policy: Policy, query: dict) -> None:
    """The second and later queries of an epoch take the compiled paths, not the first."""
    decider = Decider.build(policy)
    for step in (0, 1, 1, 30, 0.25):
        query = {**query, "now": query["now"] + step}
        decided = decider.decide(**query, rng=random.Random(7))
        assert decided == policy.evaluate(facts_of(query), random.Random(7))


CLIENT_LEAVES = st.builds(AddressIn, st.just("client"), prefixes(), st.just(("p",)))


@st.composite
def ecs_rules(draw: st.DrawFn, number: int) -> Rule:
    """Rules on the client address only: every rule reads the ECS address."""
    tree = st.recursive(
        CLIENT_LEAVES,
        lambda children: st.one_of(
            st.builds(All, st.lists(children, min_size=1, max_size=3).map(tuple)),
            st.builds(Any, st.lists(children, min_size=1, max_size=3).map(tuple)),
            st.builds(Not, children),
        ),
        max_leaves=4,
    )
    return Rule(name=f"r{number}", where="t", criteria=draw(tree), scope=f"s{number}")


@settings(max_examples=200, deadline=None)
@given(
    rules=st.lists(st.integers(), min_size=1, max_size=5).flatmap(
        lambda numbers: st.tuples(*(ecs_rules(number) for number in range(len(numbers))))
    ),
    asked=st.lists(queries(), min_size=1, max_size=6),
    ecs=st.lists(ecs_options(present=True), min_size=6, max_size=6),
)
def test_decide_equals_evaluate_with_trusted_ecs(rules, asked: list[dict], ecs) -> None:
    """ECS from a trusted resolver on rules that read the client address: the SCOPE."""
    policy = Policy(rules, TRUST_ALL)
    decider = Decider.build(policy)
    for query, data in zip(asked, ecs, strict=False):
        query = {**query, "ecs": data}
        decided = decider.decide(**query, rng=random.Random(3))
        assert decided == policy.evaluate(facts_of(query), random.Random(3)), query
        event(f"ECS scope > 0: {bool(decided.ecs_scope)}")


# --- the address tables ----------------------------------------------------------------------


@st.composite
def dense_sets(draw: st.DrawFn, bits: int) -> PrefixSet:
    """Up to 60 prefixes of one family, crowded into a small corner so that buckets hold
    several ranges, blocks touch and some fill whole buckets."""
    chosen = []
    for _ in range(draw(st.integers(0, 60))):
        length = draw(st.integers(bits - 20, bits)) if draw(st.integers(0, 9)) else 0
        value = draw(st.integers(0, 2**20 - 1)) << (bits - 24)
        chosen.append(Prefix(bits, value >> (bits - length) << (bits - length), length))
    return PrefixSet(chosen)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), bits=st.sampled_from((32, 128)))
def test_tables_agree_with_prefix_sets(data: st.DataObject, bits: int) -> None:
    first, second = data.draw(dense_sets(bits)), data.draw(dense_sets(bits))
    table = address_table(bits, [(1, first), (2, second)])
    scopes = (scope_table(32, first), scope_table(128, first))
    edges = [p.value + delta for p in first for delta in (-1, 0, 1)]
    edges += [p.value + (1 << (bits - p.length)) + delta for p in second for delta in (-1, 0)]
    anywhere = st.integers(0, 2**bits - 1)
    nearby = st.integers(0, 2**20 - 1).map(lambda value: value << (bits - 24))
    for _ in range(20):
        value = data.draw(st.sampled_from(edges) | anywhere | nearby if edges else anywhere)
        value %= 1 << bits
        expected = first.contains(value, bits) | second.contains(value, bits) << 1
        assert lookup(table, value) == expected
        assert ecs_scope_length(scopes, value, bits) == first.scope_length(value, bits)


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["192.0.2.1", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::1", "::ffff:10.1.2.3", "::"],
)
def test_source_value_is_address_value(text: str) -> None:
    assert source_value(text) == address_value(ipaddress.ip_address(text))


def test_source_value_drops_the_scope() -> None:
    assert source_value("fe80::1%eth0") == (int(ipaddress.IPv6Address("fe80::1")), 128)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes.fromhex("00011800c63364"), (0xC6336400, 32, 24)),
        (bytes.fromhex("00012000c0000201"), (0xC0000201, 32, 32)),
        (bytes.fromhex("0002300020010db80001"), (0x20010DB80001 << 80, 128, 48)),
        (bytes.fromhex("00010000"), None),  # SOURCE 0: no client information
        (bytes.fromhex("00020000"), None),
    ],
)
def test_ecs_value(data: bytes, expected: tuple | None) -> None:
    assert ecs_value(data) == expected


# --- the epoch -------------------------------------------------------------------------------

UTC = ZoneInfo("UTC")
DAY = dt.datetime(2026, 5, 8, tzinfo=dt.UTC).timestamp()  # a Friday, 00:00 UTC
HOUR = 3600.0


@pytest.fixture()
def timed() -> tuple[Policy, Decider]:
    """Refuse from 01:00 to 03:00 UTC."""
    window = TimeIn((TimeWindow(60, 180, None, None, UTC),))
    policy = Policy([Rule(name="night", where="t:1", action=Action.REFUSE, criteria=window)])
    return policy, Decider.build(policy)


def ask(decider: Decider, now: float):
    return decider.decide(
        "192.0.2.1",
        None,
        ipaddress.ip_address("127.0.0.1"),
        "udp",
        from_text("www.example.com"),
        1,
        None,
        now,
        random.Random(1),
    )


def test_an_epoch_spans_until_the_next_boundary(timed: tuple[Policy, Decider]) -> None:
    _, decider = timed
    decision = ask(decider, DAY)
    assert (decision.action, decision.valid_until, decision.ttl_cap) == (
        Action.ANSWER,
        DAY + HOUR,
        3600,
    )
    epoch = decider.clock.epoch
    assert (epoch.since, epoch.until) == (DAY, DAY + HOUR)


def test_no_window_is_read_inside_the_epoch(
    timed: tuple[Policy, Decider], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, decider = timed
    ask(decider, DAY)
    calls = []
    real = TimeIn.verdict
    monkeypatch.setattr(TimeIn, "verdict", lambda self, now: calls.append(now) or real(self, now))
    for second in range(0, 3600, 60):
        decision = ask(decider, DAY + second)
        assert decision.ttl_cap == 3600 - second
        assert decision.valid_from == DAY + second
    assert calls == []


def test_forward_step_past_a_boundary_opens_a_new_epoch(timed: tuple[Policy, Decider]) -> None:
    policy, decider = timed
    ask(decider, DAY)
    decision = ask(decider, DAY + 2 * HOUR)  # 02:00: inside the window
    assert (decision.action, decision.valid_until) == (Action.REFUSE, DAY + 3 * HOUR)
    assert (decider.clock.epoch.since, decider.clock.epoch.until) == (
        DAY + 2 * HOUR,
        DAY + 3 * HOUR,
    )


def test_backward_step_opens_a_new_epoch(timed: tuple[Policy, Decider]) -> None:
    _, decider = timed
    assert ask(decider, DAY + 2 * HOUR).action is Action.REFUSE
    decision = ask(decider, DAY + 0.5 * HOUR)  # the clock stepped back to 00:30
    assert (decision.action, decision.valid_until, decision.ttl_cap) == (
        Action.ANSWER,
        DAY + HOUR,
        1800,
    )
    assert decider.clock.epoch.since == DAY + 0.5 * HOUR
    # and a day back, to the window of the day before
    assert ask(decider, DAY - 22 * HOUR).action is Action.REFUSE  # 02:00 the day before


def test_exact_boundary_belongs_to_the_next_epoch(timed: tuple[Policy, Decider]) -> None:
    _, decider = timed
    assert ask(decider, DAY + HOUR - 0.001).action is Action.ANSWER
    assert ask(decider, DAY + HOUR).action is Action.REFUSE
    assert ask(decider, DAY + 3 * HOUR).action is Action.ANSWER


def test_valid_until_is_the_earliest_flip_of_the_windows_tested() -> None:
    """Two rules' windows are tested (neither matches): the decision holds until the first
    of them opens; a third rule's window, never reached, does not count."""
    early = TimeIn((TimeWindow(60, 120, None, None, UTC),))
    late = TimeIn((TimeWindow(240, 300, None, None, UTC),))
    unread = TimeIn((TimeWindow(30, 50, None, None, UTC),))
    policy = Policy(
        [
            Rule(name="late", where="t:1", action=Action.REFUSE, criteria=late),
            Rule(name="early", where="t:2", action=Action.DROP, criteria=early),
            Rule(name="never", where="t:3", criteria=All((Not(All(())), unread))),
        ]
    )
    decider = Decider.build(policy)
    decision = ask(decider, DAY)
    assert (decision.action, decision.valid_until) == (Action.ANSWER, DAY + HOUR)
    assert decision == policy.evaluate(_facts(DAY), random.Random(1))


def test_dst_spring_forward_window_in_the_skipped_hour() -> None:
    """Berlin 2026-03-29: 02:00 local does not happen; a 02:30-03:30 window opens at 03:00
    local (01:00 UTC), as ``evaluate`` has it."""
    berlin = ZoneInfo("Europe/Berlin")
    window = TimeIn((TimeWindow(150, 210, None, None, berlin),))
    policy = Policy([Rule(name="w", where="t:1", action=Action.DROP, criteria=window)])
    decider = Decider.build(policy)
    start = dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC).timestamp()
    for minutes in range(0, 240, 7):
        now = start + minutes * 60
        assert ask(decider, now) == policy.evaluate(_facts(now), random.Random(1))


def _facts(now: float) -> QueryFacts:
    return QueryFacts(
        client=ipaddress.ip_address("192.0.2.1"),
        ecs=None,
        server=ipaddress.ip_address("127.0.0.1"),
        transport="udp",
        qname=from_text("www.example.com"),
        qtype=1,
        zone=None,
        now=now,
    )


# --- the split-horizon shape -----------------------------------------------------------------


def test_split_horizon_with_many_prefixes_from_many_clients() -> None:
    """Thousands of prefixes, a server-wide refuse rule and zone rules on the listener and
    the client; every client gets what ``evaluate`` gives, ECS from the trusted resolver too."""
    rng = random.Random(2026)
    blocks = []
    for _ in range(3000):
        length = rng.choice((12, 16, 20, 24, 28, 32))
        blocks.append(Prefix(32, rng.getrandbits(32) >> (32 - length) << (32 - length), length))
    for _ in range(500):
        length = rng.choice((32, 48, 64))
        value = (0x2 << 124 | rng.getrandbits(124)) >> (128 - length) << (128 - length)
        blocks.append(Prefix(128, value, length))
    internal = PrefixSet(blocks)
    zone = from_text("example.com")
    policy = Policy(
        [
            Rule(
                name="blocked",
                where="t:1",
                action=Action.REFUSE,
                criteria=AddressIn("client", PrefixSet([Prefix(32, 0xC6336400, 24)]), ("b",)),
                use_ecs=False,
            ),
            Rule(
                name="listener",
                where="t:2",
                zone=zone,
                scope="internal",
                criteria=AddressIn(
                    "server", PrefixSet([Prefix(32, 0x7F000035, 32)]), ("127.0.0.53",)
                ),
            ),
            Rule(
                name="clients",
                where="t:3",
                zone=zone,
                scope="internal",
                criteria=AddressIn("client", internal, ("internal",)),
            ),
        ],
        PrefixSet([Prefix(32, 0x7F000001, 32)]),
    )
    decider = Decider.build(policy)
    server = ipaddress.ip_address("127.0.0.1")
    name = from_text("www.example.com")
    addresses = [str(ipaddress.ip_address(block.value + rng.randrange(4))) for block in blocks]
    addresses += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(2000)]
    internal_seen = 0
    for address in addresses:
        query = {
            "client": address,
            "ecs": None,
            "server": server,
            "transport": "udp",
            "qname": name,
            "qtype": 1,
            "zone": zone,
            "now": DAY,
        }
        decided = decider.decide(**query, rng=random.Random(1))
        assert decided == policy.evaluate(facts_of(query), random.Random(1))
        internal_seen += decided.scope == "internal"
        if ":" not in address:  # the same address as ECS /24 from the trusted resolver
            data = struct.pack("!HBB", 1, 24, 0) + ipaddress.IPv4Address(address).packed[:3]
            query = {**query, "client": "127.0.0.1", "ecs": data}
            decided = decider.decide(**query, rng=random.Random(1))
            assert decided == policy.evaluate(facts_of(query), random.Random(1))
            assert decided.ecs_scope is not None
    assert internal_seen > 3000
