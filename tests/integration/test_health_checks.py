"""Health checks on a real server against real targets that are stopped and started: an HTTP
server (stdlib http.server) and TCP listeners on 127.0.0.x.

Answers move within interval × fall + 1 s of a target stopping and come back within
interval × rise + 1 s of it starting, with one worker and with two (every worker switches:
the board is shared memory); flapping shorter than the hysteresis moves nothing; a check
that hangs does not delay queries; ``srv.set_health`` / ``dnspol ctl set-health`` force a
check; metrics, status and one log line per transition."""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.message
import pytest

from dnspol.testing import Server
from dnspol.testing.targets import HttpTarget, TcpTarget

ZONE = """\
$ORIGIN example.com.
$TTL 300
@    IN SOA ns1 hostmaster 1 3600 600 604800 300
@    IN NS  ns1
ns1  IN A   192.0.2.53
www  IN A   192.0.2.10
"""
DR = """\
$TTL 300
www  IN A   203.0.113.10
"""
PRIMARY, DR_ADDRESS = "192.0.2.10", "203.0.113.10"


def write_config(tmp_path: Path, check: str, extra: str = "") -> Path:
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "example.com.dr.zone").write_text(DR)
    config = tmp_path / "dnspol.yaml"
    config.write_text(
        f"""\
server:
  health_ttl: 5
zones:
  example.com:
    file: example.com.zone
    scopes:
      dr: {{overlay: example.com.dr.zone}}
checks:
  web: {check}
{extra}
rules:
  - name: www
    zone: example.com
    match: {{qname: www.example.com}}
    answer: {{failover: [{{default: web}}, dr]}}
"""
    )
    return config


def www(srv: Server, source: str | None = None) -> tuple[str, int]:
    reply = srv.query("www.example.com", source=source)
    (rrset,) = reply.answer
    return rrset[0].address, rrset.ttl


def seconds_until(srv: Server, address: str, limit: float) -> float:
    """Asks every 20 ms until the answer is ``address``; the time it took."""
    began = time.monotonic()
    while time.monotonic() - began < limit + 2.0:
        if www(srv)[0] == address:
            return time.monotonic() - began
        time.sleep(0.02)
    raise AssertionError(f"www did not become {address} in {limit + 2.0:.1f} s")


INTERVAL, FALL, RISE = 0.5, 3, 2


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_answers_follow_an_http_target_down_and_up(tmp_path: Path, workers: int) -> None:
    web = HttpTarget("127.0.0.2").start()
    check = (
        f"{{kind: http, url: '{web.url}', body: ok, host: www.example.com, "
        f"interval: {INTERVAL}, timeout: 0.4, fall: {FALL}, rise: {RISE}}}"
    )
    config = write_config(tmp_path, check)
    try:
        with Server(config=config, extra_args=["--workers", str(workers)]) as srv:
            assert www(srv) == (PRIMARY, 5)  # health-dependent: TTL capped at health_ttl
            web.stop()
            down = seconds_until(srv, DR_ADDRESS, INTERVAL * FALL + 1)
            assert down <= INTERVAL * FALL + 1.0
            # every worker answers from the new state (queries from many source ports)
            assert {www(srv)[0] for _ in range(100)} == {DR_ADDRESS}
            web.start()
            up = seconds_until(srv, PRIMARY, INTERVAL * RISE + 1)
            assert up <= INTERVAL * RISE + 1.0
            assert {www(srv)[0] for _ in range(100)} == {PRIMARY}
            print(f"workers={workers}: moved after {down:.2f} s, back after {up:.2f} s")
            log = srv.log
            assert log.count("check web (http http://127.0.0.2") == 2  # one line a transition
            assert "is down after 3 failed probes" in log and "is up after 2 good probes" in log
    finally:
        web.stop()


def test_flapping_shorter_than_the_hysteresis_moves_nothing(tmp_path: Path) -> None:
    """Down for 0.5 s (two probes at most, fall is 3), up for 0.9 s, three times over: the
    answer never leaves the primary."""
    target = TcpTarget("127.0.0.3").start()
    config = write_config(
        tmp_path, f"{{kind: tcp, target: '{target.target}', interval: 0.4, timeout: 0.2, fall: 3}}"
    )
    try:
        with Server(config=config) as srv:
            seen = set()
            for _ in range(3):
                target.stop()
                seen |= answers_for(srv, 0.5)
                target.start()
                seen |= answers_for(srv, 0.9)
            assert seen == {PRIMARY}
            assert srv.checks()["web"]["transitions"] == {"up": 0, "down": 0}
            assert "is down after" not in srv.log
    finally:
        target.stop()


def answers_for(srv: Server, seconds: float) -> set[str]:
    out = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.add(www(srv)[0])
        time.sleep(0.02)
    return out


def p99_side_by_side(first: Server, second: Server, count: int) -> tuple[float, float]:
    """Sequential UDP queries for www, alternating between the two servers (so whatever
    else the machine does falls on both alike); the 99th percentile of each one's round
    trips."""
    wire = dns.message.make_query("www.example.com", "A").to_wire()
    times: tuple[list[float], list[float]] = ([], [])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        for _ in range(count):
            for server, kept in zip((first, second), times, strict=True):
                began = time.perf_counter()
                sock.sendto(wire, (server.host, server.port))
                sock.recv(4096)
                kept.append(time.perf_counter() - began)
    return statistics.quantiles(times[0], n=100)[98], statistics.quantiles(times[1], n=100)[98]


def test_a_hanging_check_does_not_delay_queries(tmp_path: Path) -> None:
    """50 HTTP checks against a backend that accepts and never answers (each probe waits
    its whole timeout), beside the same server with a healthy TCP target only: p99 of
    2,000 sequential queries to each, alternating, stays within noise."""
    hung = TcpTarget("127.0.0.5", hang=True).start()
    healthy = TcpTarget("127.0.0.6").start()
    hanging = "\n".join(
        f"  hung{i}: {{kind: http, url: 'http://{hung.target}/', interval: 1, timeout: 0.9}}"
        for i in range(50)
    )
    try:
        hung_dir, plain_dir = tmp_path / "hung", tmp_path / "plain"
        hung_dir.mkdir(), plain_dir.mkdir()
        tcp = f"{{kind: tcp, target: '{healthy.target}', interval: 1, timeout: 0.5}}"
        with (
            Server(config=write_config(plain_dir, tcp)) as plain_srv,
            Server(config=write_config(hung_dir, tcp, hanging)) as hung_srv,
        ):
            assert hung_srv.checks()["hung0"]["last_error"] == "no answer in 0.9 s"
            p99_side_by_side(plain_srv, hung_srv, 300)  # warm up
            plain, with_hung = p99_side_by_side(plain_srv, hung_srv, 2000)
            assert www(hung_srv)[0] == PRIMARY
        print(f"p99: {plain * 1e3:.3f} ms without, {with_hung * 1e3:.3f} ms with 50 hung checks")
        assert with_hung < max(1.5 * plain, plain + 0.001)
    finally:
        hung.stop()
        healthy.stop()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_set_health_forces_a_check_through_the_control_channel(tmp_path: Path, workers) -> None:
    target = TcpTarget("127.0.0.7").start()
    config = write_config(tmp_path, f"{{kind: tcp, target: '{target.target}', interval: 1}}")
    try:
        with Server(config=config, extra_args=["--workers", str(workers)]) as srv:
            assert www(srv)[0] == PRIMARY
            state = srv.set_health("web", False)
            assert (state["state"], state["forced"], state["probed"]) == ("down", "down", "up")
            assert {www(srv)[0] for _ in range(50)} == {DR_ADDRESS}  # at once, every worker
            status = ctl(srv, "status")
            assert re.search(
                r"web down \(tcp 127\.0\.0\.7:\d+\), forced down; probes say up", status
            )
            assert "forced up" in ctl(srv, "set-health", "web", "up")
            assert www(srv)[0] == PRIMARY
            srv.set_health("web", None)  # the probes decide again
            assert srv.checks()["web"]["forced"] is None
            with pytest.raises(Exception, match="no check 'nope'"):
                srv.set_health("nope", False)
    finally:
        target.stop()


def ctl(srv: Server, *words: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dnspol", "ctl", "--control", str(srv.control_path), *words],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_metrics_show_each_check(tmp_path: Path, workers: int) -> None:
    """With workers the generation's checker writes its series to a file the supervisor
    adds up (once a second): the scrape is polled until it shows the change."""
    target = TcpTarget("127.0.0.8").start()
    config = write_config(
        tmp_path, f"{{kind: tcp, target: '{target.target}', interval: 0.2, timeout: 0.1, fall: 1}}"
    )
    args = ["--metrics-listen", "127.0.0.1:0", "--workers", str(workers)]
    try:
        with Server(config=config, extra_args=args) as srv:
            found = re.search(r"metrics and health on (http://\S+) ", srv.wait_for_log("metrics"))
            url = found.group(1)  # type: ignore[union-attr]
            label = f'check="web",target="{target.target}"'
            assert scraped(url, f"dnspol_health_check_up{{{label}}} 1.0")
            target.stop()
            seconds_until(srv, DR_ADDRESS, 1.0)
            text = scraped(url, f"dnspol_health_check_up{{{label}}} 0.0")
            assert 'dnspol_health_check_transitions_total{check="web",to="down"} 1.0' in text
            count = re.search(
                r'dnspol_health_check_duration_seconds_count\{check="web"\} (\S+)', text
            )
            assert count and float(count.group(1)) >= 2
    finally:
        target.stop()


def scraped(url: str, line: str, seconds: float = 3.0) -> str:
    """/metrics once it holds ``line`` (AssertionError with the last text if it never does)."""
    deadline = time.monotonic() + seconds
    while True:
        text = scrape(url)
        if line in text or time.monotonic() > deadline:
            assert line in text, text
            return text
        time.sleep(0.1)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_forced_state_outlives_a_reload(tmp_path: Path, workers: int) -> None:
    """A reload probes every check again before it serves, and keeps what was forced."""
    target = TcpTarget("127.0.0.9").start()
    config = write_config(tmp_path, f"{{kind: tcp, target: '{target.target}', interval: 1}}")
    try:
        with Server(config=config, extra_args=["--workers", str(workers)]) as srv:
            srv.set_health("web", False)
            srv.reload()
            assert {www(srv)[0] for _ in range(50)} == {DR_ADDRESS}
            state = srv.checks()["web"]
            assert (state["forced"], state["probed"]) == ("down", "up")
            srv.set_health("web", None)
            assert www(srv)[0] == PRIMARY
            target.stop()
            srv.reload()  # the new configuration's first probe finds the target gone
            assert {www(srv)[0] for _ in range(50)} == {DR_ADDRESS}
    finally:
        target.stop()


def test_members_answers_the_addresses_that_accept(tmp_path: Path) -> None:
    """PowerDNS's ifportup: www's three addresses each checked on one port; the answer holds
    those that accept, and all three when none does."""
    hosts = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    first = TcpTarget(hosts[0]).start()
    targets = [first] + [TcpTarget(host, first.port).start() for host in hosts[1:]]
    zone = ZONE.replace("www  IN A   192.0.2.10\n", "".join(f"www IN A {h}\n" for h in hosts))
    (tmp_path / "example.com.zone").write_text(zone)
    (tmp_path / "dnspol.yaml").write_text(
        f"""\
zones:
  example.com: example.com.zone
checks:
  www-port: {{kind: tcp, records: www.example.com, port: {first.port}, interval: 0.3,
              timeout: 0.2, fall: 1, rise: 1}}
rules:
  - name: www
    zone: example.com
    match: {{qname: www.example.com}}
    answer: {{members: www-port}}
"""
    )

    def answered() -> set[str]:
        (rrset,) = srv.query("www.example.com").answer
        return {rr.address for rr in rrset}

    def becomes(expected: set[str]) -> None:
        deadline = time.monotonic() + 0.3 + 1.0
        while answered() != expected:
            assert time.monotonic() < deadline, (answered(), expected)
            time.sleep(0.02)

    try:
        with Server(config=tmp_path / "dnspol.yaml", extra_args=["--workers", "2"]) as srv:
            assert answered() == set(hosts)
            targets[1].stop()
            becomes({hosts[0], hosts[2]})
            targets[0].stop()
            becomes({hosts[2]})
            targets[2].stop()
            becomes(set(hosts))  # none accepts: every address
            targets[1].start()
            becomes({hosts[1]})
            assert srv.checks()[f"www-port@{hosts[0]}"]["last_error"] == "Connection refused"
    finally:
        for target in targets:
            target.stop()


def test_a_restarted_worker_reads_the_same_board(tmp_path: Path) -> None:
    """A worker forked again (its predecessor killed) while the checker thread runs in its
    generation's process answers from the shared board like the others."""
    target = TcpTarget("127.0.0.10").start()
    config = write_config(tmp_path, f"{{kind: tcp, target: '{target.target}', interval: 0.5}}")
    try:
        with Server(config=config, extra_args=["--workers", "2"]) as srv:
            before = [w["pid"] for w in srv.ctl("status")["workers"]]
            os.kill(before[0], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while True:
                workers = srv.ctl("status")["workers"]
                pids = [w["pid"] for w in workers]
                if before[0] not in pids and all(w["state"] == "listening" for w in workers):
                    break
                assert time.monotonic() < deadline, workers
                time.sleep(0.05)
            srv.set_health("web", False)
            assert {www(srv)[0] for _ in range(100)} == {DR_ADDRESS}
            srv.set_health("web", None)
            assert {www(srv)[0] for _ in range(100)} == {PRIMARY}
    finally:
        target.stop()
