"""The checker: each probe kind against real local targets (TCP, HTTP, HTTPS with a
self-signed certificate, DNS), hysteresis, forced states, the files it writes for the
supervisor, and what it costs to run a thousand checks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from dnspol.checker import Checker, http_verdict, probe_dns, probe_http, probe_tcp
from dnspol.checks import Check, HealthBoard
from dnspol.testing.targets import HttpTarget, TcpTarget, free_port


def run(probe, check: Check) -> str:
    async def bounded() -> str:
        try:
            async with asyncio.timeout(check.timeout):
                return await probe(check)
        except TimeoutError:
            return "timeout"
        except ssl.SSLError as exc:
            return f"TLS: {getattr(exc, 'verify_message', '') or exc.reason}"
        except OSError as exc:
            return os.strerror(exc.errno) if exc.errno else str(exc)

    return asyncio.run(bounded())


def tcp_check(target: str, **fields) -> Check:
    host, port = target.rsplit(":", 1)
    return Check("t", "tcp", host, int(port), timeout=fields.pop("timeout", 1.0), **fields)


# --- probes ----------------------------------------------------------------------------------


def test_tcp_up_and_refused() -> None:
    with TcpTarget("127.0.0.2") as target:
        assert run(probe_tcp, tcp_check(target.target)) == ""
    assert run(probe_tcp, tcp_check(target.target)) == "Connection refused"


def test_tcp_from_a_source_address() -> None:
    with TcpTarget("127.0.0.2") as target:
        assert run(probe_tcp, tcp_check(target.target, source="127.0.0.3")) == ""


@pytest.mark.parametrize(
    "status, body, expect_status, expect_body, verdict",
    [
        (200, b"all ok", 200, None, ""),
        (200, b"all ok", 200, "ok", ""),
        (200, b"degraded", 200, "ok", "body does not contain 'ok'"),
        (503, b"ok", 200, None, "HTTP status 503, expected 200"),
        (204, b"", 204, None, ""),
    ],
)
def test_http_status_and_body(status, body, expect_status, expect_body, verdict) -> None:
    with HttpTarget("127.0.0.2") as web:
        web.status, web.body = status, body
        check = Check(
            "h", "http", web.host, web.port, path="/health", status=expect_status,
            body=expect_body, host_header="www.example.com", timeout=2.0,
        )  # fmt: skip
        assert run(probe_http, check) == verdict
        assert web.hosts == ["www.example.com"]


def test_http_answer_that_is_not_http() -> None:
    check = Check("h", "http", "127.0.0.1", 1)
    assert http_verdict(check, b"SSH-2.0-OpenSSH\r\n") == "not an HTTP answer"
    assert http_verdict(check, b"") == "connection closed without an answer"


def test_a_hung_backend_times_out() -> None:
    with TcpTarget("127.0.0.2", hang=True) as target:
        check = Check("h", "http", target.host, target.port, timeout=0.3)
        began = time.monotonic()
        assert run(probe_http, check) == "timeout"
        assert time.monotonic() - began < 1.0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=www.example.com", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def https_server(cert: Path, key: Path) -> tuple[int, threading.Event]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen(8)
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (ssl.SSLError, OSError):
                pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], done


def test_https_with_and_without_verification(certificate) -> None:
    port, done = https_server(*certificate)
    try:
        unverified = Check("s", "https", "127.0.0.2", port, verify=False, body="ok", timeout=3.0)
        assert run(probe_http, unverified) == ""
        verified = Check(
            "s", "https", "127.0.0.2", port, host_header="www.example.com", timeout=3.0
        )
        assert "self-signed certificate" in run(probe_http, verified)
    finally:
        done.set()


def dns_server(answer: str | None, rcode: int = 0) -> tuple[int, threading.Event]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    sock.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            query = DNSRecord.parse(data)
            reply = query.reply()
            reply.header.rcode = rcode
            if answer:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(answer), ttl=60))
            sock.sendto(reply.pack(), peer)
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], done


@pytest.mark.parametrize(
    "served, rcode, expect_rcode, expect_answer, verdict",
    [
        ("192.0.2.1", 0, "NOERROR", "192.0.2.1", ""),
        ("192.0.2.1", 0, "NOERROR", None, ""),
        ("192.0.2.9", 0, "NOERROR", "192.0.2.1", "no A answer holds '192.0.2.1' (192.0.2.9)"),
        (None, 3, "NOERROR", None, "rcode NXDOMAIN, expected NOERROR"),
        (None, 3, "NXDOMAIN", None, ""),
    ],
)
def test_dns(served, rcode, expect_rcode, expect_answer, verdict) -> None:
    port, done = dns_server(served, rcode)
    try:
        check = Check(
            "d", "dns", "127.0.0.2", port, qname="www.example.com", qtype="A",
            rcode=expect_rcode, answer=expect_answer, timeout=2.0,
        )  # fmt: skip
        assert run(probe_dns, check) == verdict
    finally:
        done.set()


# --- hysteresis and forcing -------------------------------------------------------------------


def checker_of(*checks: Check, **options) -> Checker:
    return Checker(HealthBoard(checks, 30), **options)


def test_fall_and_rise_hysteresis() -> None:
    checker = checker_of(Check("w", "tcp", "127.0.0.1", 1, rise=2, fall=3))
    state = checker.states["w"]
    checker._record(state, True, "", 0.001, first=True)
    verdicts = []
    for ok in [False, False, True, False, False, False, True, False, True, True]:
        checker._record(state, ok, "" if ok else "refused", 0.001, first=False)
        checker._publish(state)
        verdicts.append(checker.board.up(0))
    # two failures and a success: still up; three in a row: down; one success between
    # failures: still down; two in a row: up
    assert verdicts == [True, True, True, True, True, False, False, False, False, True]
    assert state.transitions == {"up": 1, "down": 1}


def test_the_first_probe_sets_the_verdict_directly() -> None:
    checker = checker_of(Check("w", "tcp", "127.0.0.1", free_port("127.0.0.1"), timeout=0.5))
    checker.prime()
    assert not checker.board.up(0)
    assert checker.report()[0]["last_error"] == "Connection refused"


def test_forced_states_override_and_are_released(tmp_path: Path) -> None:
    with TcpTarget("127.0.0.2") as target:
        check = Check("w", "tcp", target.host, target.port, timeout=0.5)
        forced = tmp_path / "forced.json"
        state_file = tmp_path / "state.json"
        checker = checker_of(check, forced_file=forced, state_file=state_file)
        checker.prime()
        assert checker.board.up(0)
        forced.write_text(json.dumps({"w": "down"}))
        checker._read_forced_file()
        assert not checker.board.up(0)
        report = checker.report()[0]
        assert (report["state"], report["probed"], report["forced"]) == ("down", "up", "down")
        forced.write_text("{}")
        os.utime(forced, ns=(time.time_ns() + 10**9,) * 2)  # a new stamp even within a tick
        checker._read_forced_file()
        assert checker.board.up(0)
        checker._write_files()
        assert json.loads(state_file.read_text())["checks"][0]["state"] == "up"


def test_the_running_checker_follows_a_target(tmp_path: Path) -> None:
    """Down within interval × fall (+ scheduling), up again within interval × rise."""
    target = TcpTarget("127.0.0.2").start()
    check = Check("w", "tcp", target.host, target.port, interval=0.1, timeout=0.1, fall=2, rise=2)
    checker = checker_of(check)
    checker.prime()
    checker.start()
    try:
        assert checker.board.up(0)
        target.stop()
        assert wait_for(lambda: not checker.board.up(0), 0.1 * 2 + 1.0)
        target.start()
        assert wait_for(lambda: checker.board.up(0), 0.1 * 2 + 1.0)
    finally:
        checker.stop()
        target.stop()


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# --- cost ------------------------------------------------------------------------------------

ACCEPTOR = """
import socket, sys
sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.4", 0)); sock.listen(4096)
print(sock.getsockname()[1], flush=True)
while True:
    conn, _ = sock.accept(); conn.close()
"""


def test_a_thousand_checks_a_second_cost_a_small_share_of_a_core() -> None:
    """1,000 TCP checks at 1 s against a listener in another process, for 4 s: this
    process's CPU time (the checker thread; the main thread sleeps) over wall time.

    Issue 14 asks for under 5% of a core in all; measured on a quiet machine: user 4.0%,
    system 3.7% (on loopback each connect runs both ends of the TCP handshake in this
    process's system call, ~55 µs), and user 5.7% with system 6.2% while CI's other
    work shared the cores. So the floor is not met yet (the README's Status says so);
    this test guards against getting worse, with room for a busy machine."""
    acceptor = subprocess.Popen([sys.executable, "-c", ACCEPTOR], stdout=subprocess.PIPE)
    try:
        port = int(acceptor.stdout.readline())  # type: ignore[union-attr]
        checks = [
            Check(f"c{i}", "tcp", "127.0.0.4", port, slot=i, interval=1.0, timeout=0.5)
            for i in range(1000)
        ]
        checker = checker_of(*checks)
        checker.start()
        time.sleep(1.0)  # every check has started (they are spread over their interval)
        before, began = os.times(), time.monotonic()
        time.sleep(4.0)
        after, took = os.times(), time.monotonic() - began
        checker.stop()
        probes = sum(state.probes for state in checker.states.values())
        user = (after.user - before.user) / took
        system = (after.system - before.system) / took
        print(
            f"1,000 checks at 1 s: user {user:.1%}, system {system:.1%} of a core, {probes} probes"
        )
        assert probes >= 4000
        assert all(state.last_ok for state in checker.states.values())
        assert user < 0.10
        assert user + system < 0.20
    finally:
        acceptor.kill()
        acceptor.wait()


def test_the_first_round_waits_five_seconds_at_most(monkeypatch) -> None:
    """A start or reload is not held up by a slow first probe: past ``PRIME_LIMIT`` the
    check starts up, and its own probes decide from then on."""
    from dnspol import checker as module

    monkeypatch.setattr(module, "PRIME_LIMIT", 0.3)
    with TcpTarget("127.0.0.2", hang=True) as target:
        check = Check("h", "http", target.host, target.port, interval=60, timeout=30)
        checker = checker_of(check)
        began = time.monotonic()
        checker.prime()
        assert time.monotonic() - began < 1.0
        assert checker.board.up(0) and checker.states["h"].probes == 0
