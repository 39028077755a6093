"""TCP limits from the configuration: the idle timeout closes a silent connection."""

import socket
import time

from dnspol.testing import Server

ZONE = """\
$ORIGIN example.com.
@ 300 SOA ns1 hostmaster 1 7200 900 1209600 300
@ 300 NS ns1
ns1 300 A 192.0.2.1
"""
CONFIG = """\
server:
  tcp_idle_timeout: 1
zones:
  example.com: example.com.zone
"""


def test_idle_tcp_connection_is_closed_after_the_configured_timeout(tmp_path):
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "dnspol.yaml").write_text(CONFIG)
    with Server(config=tmp_path / "dnspol.yaml") as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as conn:
            started = time.monotonic()
            assert conn.recv(1) == b""  # closed by the server, no bytes sent
            waited = time.monotonic() - started
        assert 0.5 <= waited < 4, waited


def test_a_message_dripped_too_slowly_closes_the_connection(tmp_path):
    """A started message must arrive within 2 s (slow-drip clients cannot hold a slot)."""
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "dnspol.yaml").write_text("zones:\n  example.com: example.com.zone\n")
    with Server(config=tmp_path / "dnspol.yaml") as srv:
        with socket.create_connection((srv.host, srv.port), timeout=6) as conn:
            conn.sendall(b"\x00\x21\x12")  # 33 bytes announced, 1 sent
            started = time.monotonic()
            assert conn.recv(1) == b""
            waited = time.monotonic() - started
        assert 1.5 <= waited < 5, waited  # io timeout (2 s), well before the 10 s idle one
        assert srv.dig("example.com", "SOA", tcp=True).rcode == "NOERROR"
