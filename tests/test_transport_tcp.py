"""dnspol.transport.tcp without sockets: bounded output, deadlines, the cap and its
eviction order, per-source limits, each worker's share, the settings behind them."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from dnspol.config import check_config, load_config
from dnspol.state import ServerState, Snapshot, snapshot_from_config
from dnspol.transport import tcp
from dnspol.transport.proxy import ProxyTrust
from dnspol.zones.model import ZoneSet

ANSWER = b"A" * 4000  # what the fake handler answers to every query
QUERY = b"\x12\x34" + b"\x00" * 10 + b"\x00\x00\x01\x00\x01"  # 17 bytes, enough to frame


def framed(message: bytes = QUERY) -> bytes:
    return len(message).to_bytes(2, "big") + message


class FakeHandler:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.stats = SimpleNamespace(drop=lambda reason: None)
        self.answered = 0

    def handle(self, wire: bytes, peer: tuple, listener: object) -> bytes:
        self.answered += 1
        return ANSWER


class FakeTransport:
    """Buffers what is written, as asyncio's transport does when the peer does not
    read, and calls pause_writing / resume_writing at its marks."""

    def __init__(self, protocol: tcp.DnsOverTcp, peer: str = "192.0.2.1") -> None:
        self.protocol = protocol
        self.peer = peer
        self.unsent = 0
        self.sent = 0
        self.high = self.low = 0
        self.paused = self.reading_paused = False
        self.ended: str | None = None  # "close" | "abort"

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.high, self.low = high, low

    def get_extra_info(self, name: str) -> object:
        return (self.peer, 4242) if name == "peername" else None

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.ended is not None

    def write(self, data: bytes) -> None:
        self.unsent += len(data)
        if self.unsent > self.high and not self.paused:
            self.paused = True
            self.protocol.pause_writing()

    def peer_reads(self, size: int) -> None:
        taken = min(size, self.unsent)
        self.unsent -= taken
        self.sent += taken
        if self.paused and self.unsent <= self.low:
            self.paused = False
            self.protocol.resume_writing()

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def close(self) -> None:
        self.ended = "close"

    def abort(self) -> None:
        self.ended = "abort"


def server(**limits: object) -> tuple[FakeHandler, tcp.Connections]:
    state = ServerState(Snapshot(zones=ZoneSet(()), **limits))  # type: ignore[arg-type]
    return FakeHandler(state), tcp.Connections(state)


def connect(
    handler: FakeHandler, conns: tcp.Connections, peer: str = "192.0.2.1"
) -> tuple[tcp.DnsOverTcp, FakeTransport]:
    conn = tcp.DnsOverTcp(handler, None, conns)  # type: ignore[arg-type]
    transport = FakeTransport(conn, peer)
    conn.connection_made(transport)
    return conn, transport


# --- bounded output ----------------------------------------------------------------------------


def test_a_client_that_does_not_read_gets_no_more_answers_than_the_high_mark() -> None:
    handler, conns = server()
    conn, transport = connect(handler, conns)
    conn.data_received(framed() * 1000)  # 4 MB of answers asked for
    assert transport.paused and transport.reading_paused
    assert transport.unsent <= tcp.WRITE_HIGH + tcp.WRITE_HIGH + len(ANSWER) + 2
    assert handler.answered < 40
    assert len(conn.buffer) > 900 * len(framed())  # the rest waits, unread and unanswered


def test_answering_resumes_as_the_client_reads_until_every_query_is_answered() -> None:
    handler, conns = server()
    conn, transport = connect(handler, conns)
    conn.data_received(framed() * 1000)
    for _ in range(1000):
        transport.peer_reads(32 * 1024)
        if handler.answered == 1000 and not transport.unsent:
            break
    assert handler.answered == 1000
    assert transport.sent == 1000 * (2 + len(ANSWER))
    assert not transport.reading_paused and not conn.buffer


def test_a_connection_whose_answers_stay_unread_is_aborted_and_counts_until_lost() -> None:
    handler, conns = server(tcp_message_timeout=2.0)
    conn, transport = connect(handler, conns)
    conn.data_received(framed() * 100)
    assert conn.blocked_since is not None
    conns.sweep()
    assert transport.ended is None
    conn.blocked_since -= 2.5
    conns.sweep()
    assert transport.ended == "abort"  # a close would wait for the unsent answers
    assert len(conns.open) == 1  # until the socket is gone
    conn.connection_lost(None)
    assert len(conns.open) == 0 and not conns.per_source


# --- deadlines ---------------------------------------------------------------------------------


def test_a_message_has_its_deadline_from_its_first_byte() -> None:
    handler, conns = server(tcp_message_timeout=2.0)
    conn, transport = connect(handler, conns)
    wire = framed()
    conn.data_received(wire[:1])
    started = conn.message_started
    assert started is not None
    for byte in wire[1:5]:
        conn.data_received(bytes([byte]))
    assert conn.message_started == started  # bytes trickling in do not move it
    conn.message_started = started - 2.5
    conns.sweep()
    assert transport.ended == "close"


def test_the_next_message_starts_its_own_deadline() -> None:
    handler, conns = server()
    conn, _ = connect(handler, conns)
    conn.data_received(framed()[:5])
    conn.message_started = 0.0  # long ago
    conn.data_received(framed()[5:] + framed()[:1])
    assert handler.answered == 1
    assert conn.message_started is not None and conn.message_started > 0.0


def test_an_idle_connection_ends_with_a_fin() -> None:
    handler, conns = server(tcp_idle_timeout=1.0)
    conn, transport = connect(handler, conns)
    conn.progress_at -= 1.5
    conns.sweep()
    assert transport.ended == "close"


# --- the cap and per-source limits -------------------------------------------------------------


def test_at_the_cap_the_least_recent_progress_makes_room_never_the_newcomer() -> None:
    handler, conns = server(tcp_max_connections=3)
    (a, ta), (b, tb), (c, tc) = (connect(handler, conns, f"192.0.2.{i}") for i in (1, 2, 3))
    a.data_received(framed())  # a completes a message: now the most recent progress
    b.data_received(framed()[:3])  # b is mid-message: no progress
    d, td = connect(handler, conns, "192.0.2.4")
    assert (ta.ended, tb.ended, tc.ended, td.ended) == (None, "close", None, None)
    e, te = connect(handler, conns, "192.0.2.5")
    assert (ta.ended, tc.ended, td.ended, te.ended) == (None, "close", None, None)


def test_per_address_and_per_24_limits() -> None:
    handler, conns = server(tcp_max_per_source=2, tcp_max_per_network=3)
    ends = [connect(handler, conns, "192.0.2.1")[1].ended for _ in range(3)]
    assert ends == [None, None, "close"]
    assert connect(handler, conns, "192.0.2.2")[1].ended is None  # third in the /24
    assert connect(handler, conns, "192.0.2.3")[1].ended == "close"  # fourth in the /24
    assert connect(handler, conns, "192.0.3.1")[1].ended is None


def test_a_refused_connection_frees_nothing_it_did_not_take() -> None:
    handler, conns = server(tcp_max_per_source=1)
    first, _ = connect(handler, conns, "192.0.2.1")
    refused, _ = connect(handler, conns, "192.0.2.1")
    refused.connection_lost(None)
    assert conns.per_source == {"192.0.2.1": 1, "192.0.2": 1}
    first.connection_lost(None)
    assert conns.per_source == {}


def test_trusted_proxies_are_not_held_to_per_source_limits() -> None:
    """One proxy carries many clients; it must send PROXY v2, so it cannot pass for them."""
    handler, conns = server(tcp_max_per_source=2, proxy=ProxyTrust(["192.0.2.0/24"]))
    assert all(connect(handler, conns, "192.0.2.1")[1].ended is None for _ in range(5))
    assert connect(handler, conns, "198.51.100.1")[1].ended is None


def test_zero_means_no_per_source_limit() -> None:
    handler, conns = server(tcp_max_per_source=0, tcp_max_per_network=0)
    assert all(connect(handler, conns)[1].ended is None for _ in range(50))


@pytest.mark.parametrize(
    ("host", "keys"),
    [
        ("192.0.2.77", ("192.0.2.77", "192.0.2")),
        ("2001:db8:1:2:3::9", (bytes.fromhex("20010db800010002"), bytes.fromhex("20010db8000100"))),
    ],
)
def test_source_keys_are_the_address_or_64_and_the_24_or_56(host: str, keys: tuple) -> None:
    assert tcp.source_keys(host) == keys


def test_limits_follow_the_current_snapshot() -> None:
    handler, conns = server(tcp_idle_timeout=10.0)
    assert conns.current_limits().idle_timeout == 10.0
    handler.state.swap(Snapshot(zones=ZoneSet(()), tcp_idle_timeout=1.0))
    assert conns.current_limits().idle_timeout == 1.0


@pytest.mark.parametrize(
    ("workers", "expected"),
    [(1, (1000, 10, 64)), (2, (500, 5, 32)), (3, (334, 4, 22)), (2000, (1, 1, 1))],
)
def test_each_worker_takes_its_share_of_the_limits_rounded_up(workers: int, expected) -> None:
    limits = tcp.TcpLimits.share(Snapshot(zones=ZoneSet(())), workers)
    assert (limits.max_connections, limits.max_per_source, limits.max_per_network) == expected
    unlimited = Snapshot(zones=ZoneSet(()), tcp_max_per_source=0, tcp_max_per_network=0)
    assert tcp.TcpLimits.share(unlimited, workers).max_per_source == 0


# --- the settings ------------------------------------------------------------------------------


def _config(tmp_path: Path, server_text: str) -> Path:
    (tmp_path / "example.com.zone").write_text(
        "$ORIGIN example.com.\n@ 300 SOA ns1 hostmaster 1 7200 900 1209600 300\n@ 300 NS ns1\n"
    )
    path = tmp_path / "dnspol.yaml"
    path.write_text(
        "server:\n"
        + textwrap.indent(textwrap.dedent(server_text), "  ")
        + "zones:\n  example.com: example.com.zone\n"
    )
    return path


def test_the_tcp_settings_reach_the_snapshot(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """\
        tcp_message_timeout: 1.5
        tcp_max_per_source: 4
        tcp_max_per_network: 0
        """,
    )
    snap = snapshot_from_config(load_config(path))
    assert (snap.tcp_message_timeout, snap.tcp_max_per_source, snap.tcp_max_per_network) == (
        1.5,
        4,
        0,
    )


def test_the_tcp_settings_have_defaults(tmp_path: Path) -> None:
    snap = snapshot_from_config(load_config(_config(tmp_path, "seed: 1\n")))
    assert (snap.tcp_message_timeout, snap.tcp_max_per_source, snap.tcp_max_per_network) == (
        2.0,
        10,
        64,
    )


@pytest.mark.parametrize(
    "line",
    ["tcp_message_timeout: 0", "tcp_message_timeout: 61", "tcp_max_per_source: -1"],
)
def test_bad_tcp_settings_are_problems(tmp_path: Path, line: str) -> None:
    problems = check_config(_config(tmp_path, line + "\n"))
    assert any(line.split(":")[0] in problem for problem in problems), problems
