"""The bundled policy examples, served for real and asked with dig.

Each case is what the example's README promises: split-horizon by client subnet,
by ECS from a trusted resolver and by the address asked; failover across time
windows on the server's fake clock, with TTLs that never outlive a window; weighted
answers that follow their weights, repeatably with a seed, and the blocking rules;
health-checked failover with checks forced through the control channel.
"""

from __future__ import annotations

import random
import re
import socket
from collections import Counter
from pathlib import Path

import pytest
from dnslib import DNSRecord

from dnspol.testing import Server

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BERLIN_SAT_0130 = "2026-05-09T01:30:00+02:00"


@pytest.fixture(scope="module")
def split():
    with Server(config=POLICIES / "split-horizon" / "dnspol.yaml") as srv:
        yield srv


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    "source, expected",
    [("127.0.0.1", ["192.0.2.10"]), ("127.0.0.2", ["10.0.0.10"]), ("127.0.1.7", ["10.0.0.10"])],
)
def test_split_horizon_by_client(split, source, expected, tcp):
    result = split.dig("www.example.com", "A", source=source, tcp=tcp)
    assert result.rcode == "NOERROR" and result.aa
    assert result.addresses == expected


def test_split_horizon_by_ecs_from_a_trusted_resolver(split):
    inside = split.dig("www.example.com", "A", "+subnet=10.20.30.0/24")
    assert inside.addresses == ["10.0.0.10"]
    assert "10.20.30.0/24/8" in inside.raw  # SCOPE /8: the rule's prefix
    outside = split.dig("www.example.com", "A", "+subnet=203.0.113.0/24")
    assert outside.addresses == ["192.0.2.10"]
    scope = int(outside.raw.split("203.0.113.0/24/")[1].split()[0])
    assert 1 <= scope <= 24  # keeps 203.0.113.0/24 apart from every rule prefix
    plain = split.dig("www.example.com", "A")
    assert "CLIENT-SUBNET" not in plain.raw  # no ECS asked, none sent


def test_split_horizon_ecs_from_an_untrusted_resolver_is_ignored(split):
    result = split.dig("www.example.com", "A", "+subnet=10.20.30.0/24", source="127.0.0.3")
    assert result.addresses == ["192.0.2.10"]
    assert "10.20.30.0/24/0" in result.raw


def test_split_horizon_by_server_address():
    config = POLICIES / "split-horizon" / "dnspol.yaml"
    with Server(config=config, listen="127.0.0.53") as internal:
        assert internal.dig("www.example.com").addresses == ["10.0.0.10"]


@pytest.fixture
def failover():
    with Server(config=POLICIES / "failover" / "dnspol.yaml", fake_time=BERLIN_SAT_0130) as srv:
        yield srv


def answer(result):
    return [(r.type, r.data, r.ttl) for r in result.answer]


def test_failover_maintenance_window_and_ttl_cap(failover):
    app = failover.dig("app.example.org")
    assert app.addresses == ["198.51.100.10"]
    failover.set_time("2026-05-09T02:59:30+02:00")
    app = failover.dig("app.example.org")
    assert app.addresses == ["198.51.100.10"]
    assert all(r.ttl <= 30 for r in app.answer)  # never outlives the window
    failover.advance(60)  # 03:00:30: the window has closed
    app = failover.dig("app.example.org", tcp=True)
    assert app.addresses == ["192.0.2.10"]


def test_failover_business_hours_and_nights(failover):
    failover.set_time("2026-05-06T10:00:00+02:00")  # a Wednesday
    assert sorted(failover.dig("app.example.org").addresses) == ["192.0.2.10", "198.51.100.10"]
    support = failover.dig("support.example.org")
    assert ("CNAME", "helpdesk.example.org.") in [(r.type, r.data) for r in support.answer]
    failover.set_time("2026-05-06T17:59:50+02:00")
    support = failover.dig("support.example.org")
    assert all(r.ttl <= 10 for r in support.answer)  # the window ends at 18:00
    failover.set_time("2026-05-06T21:00:00+02:00")
    assert failover.dig("app.example.org").addresses == ["192.0.2.10"]
    support = failover.dig("support.example.org")
    assert ("CNAME", "oncall.example.org.") in [(r.type, r.data) for r in support.answer]


def test_failover_follows_daylight_saving_time(failover):
    # 2026-10-25: Berlin leaves summer time at 03:00 CEST -> 02:00 CET, a Sunday.
    failover.set_time("2026-10-25T00:30:00+00:00")  # 02:30 CEST, inside 01:00-03:00
    assert failover.dig("app.example.org").addresses == ["198.51.100.10"]
    failover.set_time("2026-10-25T02:30:00+00:00")  # 03:30 CET, after the window
    assert failover.dig("app.example.org").addresses == ["192.0.2.10"]


def ask_many(srv, name: str, count: int, source: str = "127.0.0.1") -> list[str]:
    """Plain UDP queries from one socket: dig per query would take minutes."""
    seen: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2)
        for i in range(count):
            query = DNSRecord.question(name)
            query.header.id = i & 0xFFFF
            sock.sendto(bytes(query.pack()), (srv.host, srv.port))
            reply = DNSRecord.parse(sock.recv(4096))
            seen.append(str(reply.rr[0].rdata))
    return seen


def test_weighted_answers_follow_their_weights_repeatably():
    config = POLICIES / "weighted" / "dnspol.yaml"
    with Server(config=config, seed=42) as first, Server(config=config, seed=42) as second:
        draws = ask_many(first, "www.example.net", 200)
        assert draws == ask_many(second, "www.example.net", 200)  # same seed, same draws
        counts = Counter(ask_many(first, "www.example.net", 10_000))
        share_b = counts["198.51.100.10"] / 10_000
        assert abs(share_b - 0.25) <= 0.02, counts  # weights 3:1
        second_counts = Counter(ask_many(second, "www.example.net", 10_000))
        assert second_counts == counts
        sequence = [first.dig("api.example.net").addresses for _ in range(3)]
        assert sequence == [second.dig("api.example.net").addresses for _ in range(3)]


def test_weighted_example_blocking_rules():
    blocked = (POLICIES / "weighted" / "lists" / "blocked.txt").read_text().split()
    loopback = [line for line in blocked if line.startswith("127.")]
    with Server(config=POLICIES / "weighted" / "dnspol.yaml", seed=1) as srv:
        assert srv.dig("www.example.net", "ANY").rcode == "REFUSED"
        if loopback:
            source = loopback[0].split("/")[0]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((source, 0))
                sock.settimeout(0.5)
                sock.sendto(
                    bytes(DNSRecord.question("www.example.net").pack()), (srv.host, srv.port)
                )
                with pytest.raises(TimeoutError):
                    sock.recv(4096)  # dropped: no answer at all
        assert srv.dig("www.example.net").rcode == "NOERROR"


def test_bundled_example_refuses_listed_clients_with_ede():
    with Server(config=POLICIES / "dnspol.yaml") as srv:
        result = srv.dig("www.example.com", source="127.0.0.66")
        assert result.rcode == "REFUSED"
        assert "EDE: 18" in result.raw
        assert srv.dig("www.example.com", source="127.0.0.2").addresses == ["10.0.0.10"]


def test_random_sources_never_crash_the_policy_path(split):
    rng = random.Random(3)
    for _ in range(5):
        source = f"127.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        assert split.dig("www.example.com", source=source).rcode == "NOERROR"


HEALTH = POLICIES / "health-failover"
HEALTH_ROW = re.compile(
    r"^\| (up|down) \| (up|down) \| \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d) "
    r"\|([^|]*)\|([^|]*)\|([^|]*)\|$"
)


def health_table() -> list[tuple[bool, bool, str, list[str], set[str], list[str]]]:
    """The "Ask it" table of policies/health-failover/README.md: the checks as forced, the
    Berlin time, and www's, api's (every address seen) and status's addresses."""
    rows = []
    for line in (HEALTH / "README.md").read_text().splitlines():
        m = HEALTH_ROW.match(line)
        if m:
            www, api, status = (re.findall(r"`([\d.]+)`", cell) for cell in m.groups()[3:])
            rows.append((m[1] == "up", m[2] == "up", m[3], www, set(api), status))
    return rows


def test_health_failover_table_is_what_the_server_answers():
    """Each row: the checks forced through the control channel (``srv.set_health``), the
    clock set; www and status answer exactly so, api draws only the listed addresses over
    200 queries, and every TTL is capped at server.health_ttl (20)."""
    rows = health_table()
    assert len(rows) == 6
    with Server(config=HEALTH / "dnspol.yaml", fake_time="2026-05-06T10:00:00+02:00") as srv:
        for primary, secondary, when, www, api, status in rows:
            srv.set_health("primary", primary)
            srv.set_health("secondary", secondary)
            srv.set_time(f"{when.replace(' ', 'T')}:00+02:00")
            case = (primary, secondary, when)
            for name, expected in (("www", www), ("status", status)):
                result = srv.dig(f"{name}.example.net")
                assert result.addresses == expected, (case, name)
                assert all(record.ttl <= 20 for record in result.answer), (case, name)
            seen = {srv.query("api.example.net").answer[0][0].address for _ in range(200)}
            assert seen == api, case


def test_health_failover_checks_start_from_their_probes():
    """Nothing listens on the example's ports: both checks start down (the first probe
    decides), so www answers from the DR site, and status says why."""
    with Server(config=HEALTH / "dnspol.yaml") as srv:
        checks = srv.checks()
        assert {name: c["state"] for name, c in checks.items()} == {
            "primary": "down",
            "secondary": "down",
        }
        assert checks["secondary"]["last_error"] == "Connection refused"
        assert srv.dig("www.example.net").addresses == ["203.0.113.10"]
