"""What the server keeps of attacker-sized queries, measured on the real server.

A query may be 64 KB over TCP. Padded with COOKIE options (8 octets each, all
different) and sent twice, it used to be kept whole as a repeat, twice over: a
key and a value of about 60 KB each. Now a second COOKIE is FORMERR and no query
is stored (answers are compiled at load), so the server's memory stays flat.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from dnslib import DNSRecord

from dnspol.testing import Server

ZONE = """\
$ORIGIN example.com.
@ 300 SOA ns1 hostmaster 1 7200 900 1209600 300
@ 300 NS ns1
ns1 300 A 192.0.2.1
www 300 A 192.0.2.10
"""
QUERY_SIZE = 60_000
DISTINCT = 800  # each sent twice: about 96 MB kept before the fix
ALLOWED_GROWTH_KB = 24_000


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


COOKIES = QUERY_SIZE // 12
QUESTION = bytes(DNSRecord.question("www.example.com").pack())[12:]
INDEXES = [i.to_bytes(4, "big") for i in range(COOKIES)]


def padded(salt: int) -> bytes:
    """One query padded with COOKIE options whose client cookies all differ."""
    prefix = b"\x00\x0a\x00\x08" + salt.to_bytes(4, "big")
    options = b"".join(prefix + index for index in INDEXES)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + len(options).to_bytes(2, "big")
    return b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01" + QUESTION + opt + options


def exchange(conn: socket.socket, wire: bytes) -> bytes:
    conn.sendall(len(wire).to_bytes(2, "big") + wire)
    head = conn.recv(2, socket.MSG_WAITALL)
    return conn.recv(int.from_bytes(head, "big"), socket.MSG_WAITALL)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
def test_padded_queries_sent_twice_over_tcp_do_not_grow_the_server():
    with Server(ZONE, origin="example.com.") as srv:
        with socket.create_connection((srv.host, srv.port), timeout=10) as conn:

            def send_pairs(first: int, count: int) -> list[int]:
                rcodes = []
                for salt in range(first, first + count):
                    wire = padded(salt)
                    for _ in range(2):
                        rcodes.append(exchange(conn, wire)[3] & 0x0F)
                return rcodes

            send_pairs(1, 50)  # warm up: buffers, the first allocations
            before = rss_kb(srv.pid)
            rcodes = send_pairs(100, DISTINCT)
            grown = rss_kb(srv.pid) - before
        assert grown < ALLOWED_GROWTH_KB, f"RSS grew by {grown} kB"
        assert set(rcodes) == {1}  # FORMERR: more than one COOKIE
        assert srv.dig("www.example.com", tcp=True).addresses == ["192.0.2.10"]
