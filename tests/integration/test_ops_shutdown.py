"""SIGTERM as an orchestrator sends it: stop accepting, answer what is in flight, exit 0."""

from __future__ import annotations

import signal
import socket
import time

import pytest
from itkit import EXAMPLE, header, make_query


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def read_message(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection without answering"
        data += chunk
    return data[2:]


def test_query_sent_just_before_sigterm_is_answered(dnspol) -> None:
    srv = dnspol(zone=EXAMPLE)
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(framed(make_query(ident=0x5151)))
        srv.signal(signal.SIGTERM)
        reply = read_message(sock)
    assert header(reply)["id"] == 0x5151 and header(reply)["rcode"] == 0
    assert srv.proc.wait(10) == 0


def test_half_received_query_is_finished_and_answered_after_sigterm(dnspol) -> None:
    srv = dnspol(zone=EXAMPLE)
    message = framed(make_query("www.example.", ident=0x7272))
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(message[:9])  # in flight: the rest is still on its way
        time.sleep(0.1)
        srv.signal(signal.SIGTERM)
        srv.wait_for_log("shutting down")
        time.sleep(0.3)  # the listeners close once queued connections were taken in
        with pytest.raises(OSError):  # no new connections while draining
            socket.create_connection((srv.host, srv.port), timeout=1).close()
        assert srv.running
        sock.sendall(message[9:])
        reply = read_message(sock)
    assert header(reply)["id"] == 0x7272 and header(reply)["an"] == 1
    assert srv.proc.wait(10) == 0
