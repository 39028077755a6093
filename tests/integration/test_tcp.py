"""TCP behaviour (RFC 7766, reference §13): pipelining, partial reads, idle clients."""

from __future__ import annotations

import socket
import time

from dnslib import DNSRecord
from itkit import header, make_query


def _connect(srv) -> socket.socket:
    sock = socket.create_connection((srv.host, srv.port), timeout=3)
    return sock


def _read_message(sock: socket.socket) -> bytes:
    size = int.from_bytes(_read_exact(sock, 2), "big")
    return _read_exact(sock, size)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def _framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def test_pipelined_queries_on_one_connection(core) -> None:
    names = [
        "www.example.",
        "mail.example.",
        "nope.sub2.example.",
        "www.sub2.example.",
        "x.y.example.",
    ]
    queries = {100 + i: make_query(name, ident=100 + i) for i, name in enumerate(names)}
    with _connect(core) as sock:
        sock.sendall(b"".join(_framed(q) for q in queries.values()))  # all in one write
        replies = {}
        for _ in queries:
            reply = _read_message(sock)
            replies[header(reply)["id"]] = DNSRecord.parse(reply)
    assert set(replies) == set(queries)  # every query answered; order may differ
    for ident, name in zip(queries, names, strict=True):
        msg = replies[ident]
        assert str(msg.q.qname) == name
    assert replies[102].header.rcode == 3
    assert str(replies[104].rr[0].rdata) == "192.0.2.99"


def test_connection_stays_open_between_queries(core) -> None:
    with _connect(core) as sock:
        for i in range(5):
            sock.sendall(_framed(make_query(ident=i)))
            assert header(_read_message(sock))["id"] == i
            time.sleep(0.05)


def test_message_split_across_writes(core) -> None:
    wire = _framed(make_query(ident=0xABCD))
    with _connect(core) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in wire:
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        assert header(_read_message(sock))["id"] == 0xABCD


def test_idle_connection_does_not_block_others(core) -> None:
    idle = [_connect(core) for _ in range(3)]
    half = _connect(core)
    try:
        half.sendall(b"\x00\x40\x12\x34")  # a frame header that promises 64 bytes, then silence
        started = time.monotonic()
        assert core.dig("www.example.", "A", tcp=True).addresses == ["192.0.2.1"]
        assert core.dig("www.example.", "A", tcp=False).addresses == ["192.0.2.1"]
        assert header(core.exchange(make_query(), tcp=True))["an"] == 1
        assert time.monotonic() - started < 5
    finally:
        for sock in [*idle, half]:
            sock.close()


def test_large_answer_over_tcp_is_whole(core) -> None:
    reply = core.exchange(make_query("big.example.", 16), tcp=True)
    msg = DNSRecord.parse(reply)
    assert len(msg.rr) == 40 and not msg.header.tc


def test_client_closing_early_is_harmless(core) -> None:
    for _ in range(5):
        with _connect(core) as sock:
            sock.sendall(_framed(make_query("big.example.", 16))[:10])
    assert header(core.exchange(make_query(), tcp=True))["an"] == 1


def test_many_pipelined_queries_with_big_answers_are_all_answered(core) -> None:
    """Answers past 64 KB unsent pause answering until the client reads: none is lost."""
    count = 3000
    queries = b"".join(_framed(make_query("big.example.", 16, ident=i)) for i in range(count))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel keeps little
        sock.settimeout(3)
        sock.connect((core.host, core.port))
        sock.sendall(queries)
        time.sleep(0.3)  # let answers pile up unread for a while
        idents = {header(_read_message(sock))["id"] for _ in range(count)}
    assert idents == set(range(count))


def test_answers_made_before_a_broken_frame_are_sent_then_the_connection_closes(core) -> None:
    """A frame too short for a DNS header puts the framing in doubt (RFC 7766 §8): the
    connection ends, but the answers to the queries before it still go out first."""
    queries = [make_query("www.example.", ident=200 + i) for i in range(3)]
    with _connect(core) as sock:
        sock.sendall(b"".join(_framed(q) for q in queries) + _framed(b"\x00" * 5))
        replies = [_read_message(sock) for _ in queries]
        assert [header(r)["id"] for r in replies] == [200, 201, 202]
        assert sock.recv(1) == b""  # then closed, not reset
