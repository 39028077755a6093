"""handle() with rules: decisions, ECS scopes, and the fast path byte-identical to the slow."""

import ipaddress
import random
import struct
from datetime import UTC, datetime

import pytest
from dnslib import EDNS0, RCODE, DNSRecord, EDNSOption

from dnspol.config import load_config
from dnspol.handler import Clock, Handler, Listener
from dnspol.state import ServerState, snapshot_from_config

ZONE = """\
$ORIGIN example.com.
$TTL 3600
@    SOA ns1 hostmaster 1 7200 900 1209600 300
@    NS  ns1
ns1  A   192.0.2.1
www  A   192.0.2.10
app  A   192.0.2.20
"""
INTERNAL = """\
$ORIGIN example.com.
www 60 A 10.0.0.10
"""
CONFIG = """\
server:
  trusted_resolvers: [127.0.0.1/32]
subnets:
  corp: [10.0.0.0/8, 198.51.100.0/24, "2001:db8::/32"]
zones:
  example.com:
    file: example.com.zone
    scopes:
      internal: {overlay: internal.zone}
rules:
  - name: blocked
    match: {client: [203.0.113.0/24]}
    action: refuse
  - name: no-any
    match: {qtype: ANY}
    action: drop
  - name: internal
    zone: example.com
    match: {client: corp}
    answer: internal
"""
UDP = Listener("127.0.0.1", 53, "udp")


OFFICE_HOURS = """\
  - name: office-hours
    zone: example.com
    match: {time: {between: '08:00-18:00'}}
    answer: internal
"""


def write_config(tmp_path, first_rule: str = "", internal: str = INTERNAL, server: str = ""):
    """The test config, with ``first_rule`` before the others and ``server`` settings."""
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "internal.zone").write_text(internal)
    text = CONFIG.replace("rules:\n", "rules:\n" + first_rule, 1)
    (tmp_path / "dnspol.yaml").write_text(text.replace("server:\n", "server:\n" + server, 1))
    return tmp_path / "dnspol.yaml"


def handler_for(path, fast: bool = True, clock: Clock | None = None, seed: int = 1) -> Handler:
    snap = snapshot_from_config(load_config(str(path)))
    handler = Handler(ServerState(snap), clock, seed=seed)
    handler.fast_path = fast
    return handler


@pytest.fixture
def make(tmp_path):
    """Handlers on the test config: make(True) with the fast path, make(False) without."""
    path = write_config(tmp_path)
    return lambda fast: handler_for(path, fast)


def wire(name="www.example.com", qtype="A", subnet=None, edns=True):
    q = DNSRecord.question(name, qtype)
    if subnet is not None:
        net = ipaddress.ip_network(subnet)
        data = struct.pack("!HBB", 1 if net.version == 4 else 2, net.prefixlen, 0)
        data += net.network_address.packed[: (net.prefixlen + 7) // 8]
        q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(8, data)]))
    elif edns:
        q.add_ar(EDNS0(udp_len=1232))
    return bytes(q.pack())


def ecs_echo(reply: bytes):
    r = DNSRecord.parse(reply)
    opts = [o for rr in r.ar if rr.rtype == 41 for o in rr.rdata if o.code == 8]
    if not opts:
        return None
    family, source, scope = struct.unpack("!HBB", opts[0].data[:4])
    return source, scope, opts[0].data[4:]


@pytest.mark.parametrize(
    "client, subnet, answer, scope",
    [
        ("127.0.0.1", None, "192.0.2.10", None),  # no ECS: none back
        ("127.0.0.1", "10.1.2.0/24", "10.0.0.10", 8),  # trusted resolver, corp subnet
        ("127.0.0.1", "198.51.100.0/24", "10.0.0.10", 24),
        ("127.0.0.1", "203.0.113.0/24", "192.0.2.10", None),  # ECS never feeds refuse rules
        ("127.0.0.1", "192.0.2.0/24", "192.0.2.10", None),  # outside: scope keeps it apart
        ("127.0.0.9", "10.1.2.0/24", "192.0.2.10", 0),  # untrusted resolver: ECS ignored
        ("10.9.9.9", None, "10.0.0.10", None),  # a corp client asking directly
    ],
)
def test_decisions_and_ecs_scope(make, client, subnet, answer, scope):
    handler = make(True)
    for _ in range(2):  # the second comes from the stored decision and answer
        out = handler.handle(wire(subnet=subnet), (client, 5300), UDP)
        r = DNSRecord.parse(out)
        assert str(r.rr[0].rdata) == answer
        echo = ecs_echo(out)
        if subnet is None:
            assert echo is None
        else:
            net = ipaddress.ip_network(subnet)
            assert echo[0] == net.prefixlen
            assert echo[2] == net.network_address.packed[: (net.prefixlen + 7) // 8]
            assert echo[1] <= net.prefixlen
            if scope is not None:
                assert echo[1] == scope
            else:
                assert echo[1] >= 1  # never 0 when a subnet rule could change the answer


def test_refuse_and_drop(make):
    handler = make(True)
    for _ in range(2):
        out = handler.handle(wire(), ("203.0.113.5", 5300), UDP)
        assert DNSRecord.parse(out).header.rcode == RCODE.REFUSED
        assert handler.handle(wire(qtype="ANY"), ("127.0.0.1", 5300), UDP) is None


@pytest.mark.parametrize("fast", [True, False])
def test_an_nxdomain_rule_answers_nxdomain_with_the_zone_soa(tmp_path, fast):
    rule = "  - name: gone\n    match: {qname: gone.example.com}\n    action: nxdomain\n"
    handler = handler_for(write_config(tmp_path, rule), fast)
    reply = DNSRecord.parse(handler.handle(wire("gone.example.com"), ("192.0.2.7", 5300), UDP))
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert reply.header.aa and not reply.rr
    assert [rr.rtype for rr in reply.auth] == [6]  # SOA


def test_fast_path_with_rules_and_ecs_is_byte_identical_to_slow_path(make):
    fast, slow = make(True), make(False)
    rng = random.Random(7)
    queries = []
    for _ in range(300):
        subnet = rng.choice(
            [
                None,
                f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/24",
                f"198.51.100.{rng.randrange(0, 256, 16)}/28",
                f"192.0.{rng.randrange(256)}.0/24",
                f"2001:db8:{rng.randrange(65536):x}::/48",
                "2001:db9::/32",
                "0.0.0.0/0",
            ]
        )
        name = rng.choice(
            ["www.example.com", "WWW.Example.COM", "app.example.com", "x.example.com"]
        )
        client = rng.choice(["127.0.0.1", "127.0.0.9", "10.1.1.1", "203.0.113.9"])
        qtype = rng.choice(["A", "A", "AAAA", "ANY"])
        queries.append((wire(name, qtype, subnet), (client, 5300)))
    again = [q for data, peer in queries for q in ((data, peer), (b"\xbe\xef" + data[2:], peer))]
    for data, peer in queries + again:
        assert fast.handle(data, peer, UDP) == slow.handle(data, peer, UDP)
    assert fast.stats.reference < slow.stats.reference // 2  # the rest: compiled answers


def test_the_same_bytes_from_another_client_are_decided_for_that_client(make):
    handler = make(True)
    query = wire(edns=False)
    for _ in range(2):
        outside = DNSRecord.parse(handler.handle(query, ("127.0.0.1", 5300), UDP))
        inside = DNSRecord.parse(handler.handle(query, ("10.9.9.9", 5300), UDP))
        refused = DNSRecord.parse(handler.handle(query, ("203.0.113.9", 5300), UDP))
        assert str(outside.rr[0].rdata) == "192.0.2.10"
        assert str(inside.rr[0].rdata) == "10.0.0.10"
        assert refused.header.rcode == RCODE.REFUSED


def test_answers_in_a_time_window_come_from_the_tables_unless_the_ttl_is_capped(tmp_path):
    """A window's answers are the compiled ones while the seconds to its end exceed every
    TTL; near the end, the capped TTLs are built on the reference path."""
    handler = handler_for(write_config(tmp_path, OFFICE_HOURS), clock=Clock(0.0))
    end = datetime(2026, 11, 25, 18, 0, tzinfo=UTC).timestamp()  # the window's end
    handler.clock.set(end - 7200, frozen=True)
    handler.handle(wire(), ("127.0.0.1", 5300), UDP)
    assert handler.stats.reference == 0
    handler.clock.set(end - 2, frozen=True)
    reply = DNSRecord.parse(handler.handle(wire(), ("127.0.0.1", 5300), UDP))
    assert handler.stats.reference == 1 and reply.rr[0].ttl <= 2


def test_decisions_shaped_by_the_clock_are_reused_until_their_time_is_up(tmp_path):
    """Across a window's end, answers from stored decisions equal fresh ones, TTL caps too."""
    path = write_config(tmp_path, OFFICE_HOURS, INTERNAL.replace("www 60 A", "www 3600 A"))
    fast, slow = handler_for(path, True, Clock(0.0)), handler_for(path, False, Clock(0.0))
    queries = [wire(name, qtype, subnet) for name in ("www.example.com", "WWW.example.com")
               for qtype in ("A", "AAAA") for subnet in (None, "10.1.2.0/24")]  # fmt: skip
    clients = [("127.0.0.1", 5300), ("10.9.9.9", 5300)]
    end = datetime(2026, 11, 25, 18, 0, tzinfo=UTC).timestamp()  # the window's end
    answers = set()
    for offset in (-3.0, -2.5, -2.0, -1.2, -1.0, -0.4, 0.0, 0.3, 1.0, 3600.0):
        fast.clock.set(end + offset, frozen=True)
        slow.clock.set(end + offset, frozen=True)
        for data in queries + queries:
            for peer in clients:
                out = fast.handle(data, peer, UDP)
                assert out == slow.handle(data, peer, UDP), offset
                answers.add(out[2:])
    assert len(answers) > 10  # TTL caps 3, 2, 1, 0 and both scopes: really different bytes


def test_weighted_answers_on_the_fast_path_follow_weights_and_seed(tmp_path):
    split = """\
  - name: split
    zone: example.com
    match: {qname: www.example.com}
    answer: {weighted: {default: 3, internal: 1}}
"""
    path = write_config(tmp_path, split)

    def draws(seed: int) -> list[str]:
        handler = handler_for(path, seed=seed)
        out = []
        for _ in range(10_000):
            reply = DNSRecord.parse(handler.handle(wire(edns=False), ("127.0.0.1", 1), UDP))
            out.append(str(reply.rr[0].rdata))
        assert handler.stats.reference == 0  # both scopes' answers are compiled
        return out

    first = draws(5)
    assert abs(first.count("10.0.0.10") / 10_000 - 0.25) <= 0.02
    assert draws(5) == first


def test_weighted_answers_draw_once_a_query_on_either_path(tmp_path):
    """A query the compiled path decides but leaves to the reference path is not decided
    again: with one seed, fast and slow give the same sequence."""
    split = "  - name: split\n    zone: example.com\n"
    split += "    answer: {weighted: {default: 1, internal: 1}}\n"
    path = write_config(tmp_path, split)
    fast, slow = handler_for(path, seed=9), handler_for(path, fast=False, seed=9)
    names = ["www.example.com", "app.example.com", "x.example.com", "WWW.example.com"]
    for i in range(400):
        query = wire(names[i % len(names)], "A" if i % 3 else "AAAA", edns=bool(i % 2))
        assert fast.handle(query, ("127.0.0.1", 5300), UDP) == slow.handle(
            query, ("127.0.0.1", 5300), UDP
        ), i


def test_ecs_subnets_that_lowercase_alike_are_not_confused(make):
    """198.51.68.0/24 is c6 33 44, which lowercases to c6 33 64: 198.51.100.0/24 (corp)."""
    fast, slow = make(True), make(False)
    outside, corp = wire(subnet="198.51.68.0/24"), wire(subnet="198.51.100.0/24")
    for data in (outside, outside, outside, corp, corp, outside):
        out = fast.handle(data, ("127.0.0.1", 5300), UDP)
        assert out == slow.handle(data, ("127.0.0.1", 5300), UDP)
    assert str(DNSRecord.parse(out).rr[0].rdata) == "192.0.2.10"
    answer = fast.handle(corp, ("127.0.0.1", 5300), UDP)
    assert str(DNSRecord.parse(answer).rr[0].rdata) == "10.0.0.10"


def test_queries_from_many_ecs_subnets_share_one_compiled_answer(make):
    """Every subnet that got the same decision is answered from the same compiled answer,
    with its own subnet echoed."""
    fast, slow = make(True), make(False)
    queries = [wire(subnet=f"192.0.{i}.0/24") for i in range(20)]
    for data in queries * 3:
        assert fast.handle(data, ("127.0.0.1", 5300), UDP) == slow.handle(
            data, ("127.0.0.1", 5300), UDP
        )
    assert fast.stats.reference == 0


EXAMPLE_COM = (b"example", b"com")
NO_ANY_RULE = """\
  - name: no-any
    match: {qtype: ANY}
    action: drop
"""


def write_blind_config(tmp_path, first_rule: str = ""):
    """The test config without its qtype rule: no rule reads the name or the type."""
    path = write_config(tmp_path, first_rule)
    path.write_text(path.read_text().replace(NO_ANY_RULE, ""))
    return path


@pytest.mark.parametrize(
    "first_rule, blind",
    [
        ("", True),
        (
            "  - {name: by-name, zone: example.com, match: {qname: app.example.com},"
            " action: refuse}\n",
            False,
        ),
        ("  - {name: by-type, match: {not: {qtype: A}}, action: refuse}\n", False),
        ("  - {name: by-port, match: {transport: tcp}, action: refuse}\n", True),
    ],
    ids=["subnets-only", "zone-qname-rule", "server-qtype-rule-inside-not", "transport-rule"],
)
def test_a_zone_is_question_blind_when_no_rule_it_passes_reads_name_or_type(
    tmp_path, first_rule, blind
):
    snap = handler_for(write_blind_config(tmp_path, first_rule)).state.snapshot
    assert snap.policy.question_blind(EXAMPLE_COM) is blind
    assert (
        handler_for(write_config(tmp_path)).state.snapshot.policy.question_blind(EXAMPLE_COM)
        is False
    )  # the full test config drops qtype ANY everywhere


def test_new_names_from_many_clients_are_decided_and_compiled(tmp_path):
    """A stream of new names from several clients and ECS subnets answers exactly as the
    reference path, every answer from the tables."""
    path = write_blind_config(tmp_path)
    fast, slow = handler_for(path), handler_for(path, fast=False)
    peers = [("10.9.9.9", 1), ("192.0.2.77", 1), ("203.0.113.5", 1), ("127.0.0.1", 1)]
    for i in range(50):
        for peer in peers:
            for query in (wire(f"n{i}.example.com"), wire(subnet=f"10.{i % 3}.0.0/24")):
                assert fast.handle(query, peer, UDP) == slow.handle(query, peer, UDP)
    assert fast.stats.reference == 0  # REFUSED by a rule too
    corp = DNSRecord.parse(fast.handle(wire(), ("10.9.9.9", 1), UDP))
    assert str(corp.rr[0].rdata) == "10.0.0.10"
    refused = DNSRecord.parse(fast.handle(wire("new.example.com"), ("203.0.113.5", 1), UDP))
    assert refused.header.rcode == RCODE.REFUSED


WEEKEND_NIGHTS = """\
  - name: weekend-maintenance
    zone: example.com
    match: {time: {between: '01:00-03:00', days: [sat, sun], tz: Europe/Berlin}}
    answer: internal
"""


def berlin(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
def test_a_real_clock_stepping_back_redecides(tmp_path, monkeypatch, fast):
    """NTP steps and restored VM snapshots move the real clock back: a decision made on
    Sunday inside the window must not be reused on the Wednesday before it."""
    path = write_config(tmp_path, WEEKEND_NIGHTS, INTERNAL.replace("www 60 A", "www 3600 A"))
    handler = handler_for(path, fast, Clock())  # the real clock: time.time()
    now = [berlin("2026-05-10T02:59:30.25+02:00")]  # a Sunday, 30 s before the window ends
    monkeypatch.setattr("time.time", lambda: now[0])

    def ask() -> tuple[str, int]:
        reply = DNSRecord.parse(handler.handle(wire(), ("127.0.0.1", 5300), UDP))
        return str(reply.rr[0].rdata), reply.rr[0].ttl

    assert [ask(), ask()] == [("10.0.0.10", 29)] * 2
    now[0] = berlin("2026-05-06T02:59:30.25+02:00")  # stepped back to the Wednesday before
    assert [ask(), ask()] == [("192.0.2.10", 3600)] * 2
    now[0] = berlin("2026-05-10T02:59:30.5+02:00")  # and forward again
    assert [ask(), ask()] == [("10.0.0.10", 29)] * 2
    now[0] = berlin("2026-05-10T02:59:10.5+02:00")  # 20 s back, inside the window
    assert [ask(), ask()] == [("10.0.0.10", 49)] * 2
