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


def _framed_query(ident: int = 1) -> bytes:
    header = ident.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    message = header + b"\x07example\x03com\x00\x00\x06\x00\x01"  # example.com SOA
    return len(message).to_bytes(2, "big") + message


def _answer(conn: socket.socket, timeout: float = 1.0) -> bytes | None:
    """One framed answer, or None if the server ends the connection first."""
    conn.settimeout(timeout)
    got = b""
    try:
        while len(got) < 2 or len(got) < 2 + int.from_bytes(got[:2], "big"):
            chunk = conn.recv(4096)
            if not chunk:
                return None
            got += chunk
    except ConnectionResetError:
        return None
    return got[2:]


def _ended_within(conn: socket.socket, seconds: float) -> bool:
    conn.settimeout(seconds)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_message_must_arrive_whole_within_its_deadline_from_the_first_byte(tmp_path):
    """A byte every 0.3 s does not extend the 2 s deadline (it used to restart it,
    so one byte a second held a slot forever)."""
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "dnspol.yaml").write_text("zones:\n  example.com: example.com.zone\n")
    with Server(config=tmp_path / "dnspol.yaml") as srv:
        with socket.create_connection((srv.host, srv.port), timeout=6) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            wire = _framed_query()
            started, ended_at = time.monotonic(), None
            for byte in wire[:15]:  # 4.5 s of dripping at most
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    ended_at = time.monotonic()
                    break
                if _ended_within(conn, 0.3):
                    ended_at = time.monotonic()
                    break
        assert ended_at is not None, "a message dripped for 4.5 s was still being read"
        assert 1.5 <= ended_at - started < 3.5, ended_at - started


def test_at_the_cap_the_connection_with_the_least_progress_makes_room(tmp_path):
    """At the cap a newcomer is served; the connection that has gone longest without
    completing a message is closed, even when every connection is mid-message (the
    newcomer used to be closed then)."""
    (tmp_path / "example.com.zone").write_text(ZONE)
    config = "server:\n  tcp_max_connections: 4\nzones:\n  example.com: example.com.zone\n"
    (tmp_path / "dnspol.yaml").write_text(config)
    with Server(config=tmp_path / "dnspol.yaml") as srv:
        target = (srv.host, srv.port)
        held = []
        for ident in range(4):  # the oldest first; each answered, then one byte of the next
            conn = socket.create_connection(target, timeout=2)
            conn.sendall(_framed_query(ident))
            assert _answer(conn) is not None
            conn.sendall(_framed_query(ident)[:1])
            held.append(conn)
            time.sleep(0.05)
        try:
            with socket.create_connection(target, timeout=2) as newcomer:
                newcomer.sendall(_framed_query(9))
                assert _answer(newcomer) is not None, "the newcomer was turned away"
            assert _ended_within(held[0], 1.0), "the connection with least progress is open"
            for conn in held[1:]:
                conn.sendall(_framed_query()[1:])
                assert _answer(conn) is not None
        finally:
            for conn in held:
                conn.close()


def test_tcp_limits_take_effect_on_reload(tmp_path):
    """A reloaded tcp_idle_timeout applies (it used to be read from the first config only)."""
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "dnspol.yaml").write_text(
        CONFIG.replace("tcp_idle_timeout: 1", "tcp_idle_timeout: 30")
    )
    with Server(config=tmp_path / "dnspol.yaml") as srv:
        (tmp_path / "dnspol.yaml").write_text(CONFIG)  # tcp_idle_timeout: 1
        assert srv.reload() == "ok"
        with socket.create_connection((srv.host, srv.port), timeout=5) as conn:
            started = time.monotonic()
            assert _ended_within(conn, 4.0), "the idle connection outlived the reloaded timeout"
            assert time.monotonic() - started >= 0.5
