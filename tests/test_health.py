"""The operations port under abuse: slow headers, huge headers, many connections."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from dnspol import health
from dnspol.health import OpsServer

HALF_A_HEADER = b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: slow"


@pytest.fixture
def ops() -> Iterator[OpsServer]:
    registry = CollectorRegistry()
    Counter("dnspol_test_total", "a counter to show", registry=registry).inc()
    server = OpsServer(("127.0.0.1", 0), registry, lambda: (True, ""), header_timeout=1.0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def ask(ops: OpsServer, request: bytes) -> bytes:
    """Send raw bytes; everything the server sends back before it closes."""
    with socket.create_connection(ops.address, timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def stalled(ops: OpsServer, count: int) -> list[socket.socket]:
    connections = []
    for _ in range(count):
        sock = socket.create_connection(ops.address, timeout=5)
        sock.sendall(HALF_A_HEADER)
        connections.append(sock)
    return connections


def test_health_ready_metrics_and_head(ops: OpsServer) -> None:
    assert get(ops.url + "/health") == (200, "OK\n")
    assert get(ops.url + "/ready") == (200, "OK\n")
    status, body = get(ops.url + "/metrics")
    assert status == 200 and "dnspol_test_total 1.0" in body
    assert get(ops.url + "/nope")[0] == 404
    reply = ask(ops, b"HEAD /health HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 200 ") and reply.endswith(b"\r\n\r\n")


def test_a_hundred_stalled_connections_neither_block_a_scrape_nor_hold_threads(
    ops: OpsServer,
) -> None:
    threads_before = threading.active_count()
    connections = stalled(ops, 100)
    try:
        time.sleep(0.2)  # let the server accept them all
        started = time.monotonic()
        status, body = get(ops.url + "/metrics", timeout=1)
        assert status == 200 and "dnspol_test_total" in body
        assert time.monotonic() - started < 1.0
        assert threading.active_count() - threads_before <= health.HANDLER_THREADS
    finally:
        for sock in connections:
            sock.close()


def test_a_stalled_connection_is_closed_after_the_header_timeout(ops: OpsServer) -> None:
    [sock] = stalled(ops, 1)
    with sock:
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(1024) == b""  # closed by the server, nothing sent
        assert 0.9 < time.monotonic() - started < 3


def test_a_forked_child_does_not_hold_a_stalled_connection_open(ops: OpsServer) -> None:
    # the supervisor forks generations while its port has connections open
    [sock] = stalled(ops, 1)
    time.sleep(0.2)  # accepted
    started = time.monotonic()
    child = os.fork()
    if child == 0:
        time.sleep(4)
        os._exit(0)
    try:
        with sock:
            sock.settimeout(5)
            assert sock.recv(1024) == b""
            assert time.monotonic() - started < 3
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_beyond_the_connection_limit_the_oldest_waiting_connection_goes(
    ops: OpsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "MAX_CONNECTIONS", 4)
    connections = stalled(ops, 10)
    try:
        assert get(ops.url + "/health", timeout=1) == (200, "OK\n")
        first = connections[0]
        first.settimeout(0.5)  # the header timeout is 1 s
        with contextlib.suppress(ConnectionResetError):  # closed with its header unread
            assert first.recv(100) == b""
    finally:
        for sock in connections:
            sock.close()


def test_with_the_answering_queue_full_new_connections_wait_in_the_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health, "MAX_QUEUED", 2)
    release = threading.Event()

    class Slow:
        def collect(self):
            release.wait(5)
            return []

    registry = CollectorRegistry()
    registry.register(Slow())  # type: ignore[arg-type]
    ops = OpsServer(("127.0.0.1", 0), registry, lambda: (True, "")).start()
    port = ops._port
    scrapes, waiting = [], []
    try:
        scrapes = [socket.create_connection(ops.address, timeout=5) for _ in range(2)]
        for sock in scrapes:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        deadline = time.monotonic() + 2
        while len(port.answering) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        waiting = [socket.create_connection(ops.address, timeout=5) for _ in range(5)]
        for sock in waiting:
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        waiting[0].settimeout(0.5)
        with pytest.raises(TimeoutError):  # not accepted: no answer yet
            waiting[0].recv(100)
        assert (len(port.reading), len(port.answering)) == (0, 2)
        release.set()
        for sock in waiting:
            sock.settimeout(5)
            assert sock.recv(100).startswith(b"HTTP/1.0 200 ")
    finally:
        release.set()
        for sock in scrapes + waiting:
            sock.close()
        ops.stop()


def test_a_slow_trickle_does_not_extend_the_timeout(ops: OpsServer) -> None:
    with socket.create_connection(ops.address, timeout=5) as sock:
        started = time.monotonic()
        with pytest.raises(OSError):  # noqa: PT012 - the trickle ends when the server closes
            for byte in HALF_A_HEADER:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
            assert sock.recv(1024) == b""
            raise ConnectionResetError
        assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n", b"431"),
        (b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 2_000 + b"\r\n", b"431"),
    ],
    ids=["request line", "one header", "many headers"],
)
def test_oversized_requests_are_answered_and_closed(
    ops: OpsServer, request_bytes: bytes, status: bytes
) -> None:
    reply = ask(ops, request_bytes)
    assert reply.split(b" ", 2)[1] == status, reply[:200]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_the_listen_backlog_is_not_five(ops: OpsServer) -> None:
    port = ops.address[1]
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(listing[2]) >= 128  # Send-Q of a listening socket: its backlog
