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
