"""TCP per RFC 7766: length framing, pipelining, deadlines and bounded resources.

Each connection is an asyncio ``Protocol``; ``Connections`` owns them all. The
promises this module keeps, whatever a client does:

* **Bounded memory per connection.** Pipelined queries are answered in batches
  only while the connection's unsent answers are under ``WRITE_HIGH``; past it
  the rest stay unread and reading pauses, so a client that never reads holds
  at most one read (256 KiB), one partial message and one batch of answers. A
  connection whose answers stay stuck past ``message_timeout`` is aborted
  (reset), never closed: ``close()`` would wait for the unsent data forever.
* **Deadlines, not per-byte timers.** A message must arrive whole within
  ``message_timeout`` of its first byte, and a connection must complete a
  message within ``idle_timeout`` of its previous one (or of connecting). A byte
  trickling in extends neither. Together they are the minimum throughput: a
  connection keeps its slot only by completing a message at least every
  ``idle_timeout``, each within ``message_timeout`` of its first byte.
* **A cap that protects newcomers.** At ``max_connections`` a new connection
  ends the one that has gone longest without completing a message (connecting
  counts as progress): a fresh client is never the one turned away, and
  drippers, idlers and slow pipeliners age out first.
* **Per-source limits.** At most ``max_per_source`` connections per IPv4 address
  or IPv6 /64 (a single IPv6 host picks any address in its /64, so /128 would
  limit nothing) and ``max_per_network`` per IPv4 /24 or IPv6 /56 (a typical
  site's delegation). A connection over either limit is closed at once. Trusted
  PROXY v2 senders are exempt: one proxy carries many clients.
* **A connection counts until its socket is gone**: it leaves the count (and
  ``dnspol_tcp_open_connections``) only in ``connection_lost``.
* **A zone transfer is a stream, not a block.** A ``Transfer`` (``dnspol.transfer``)
  is written a message (``TRANSFER_BATCH``) at a time, the event loop
  running other connections and UDP between batches; its connection reads nothing more
  until the last message is out, and each batch counts as progress for the deadlines.

Limits come from the current snapshot (looked at for every new connection and
every sweep, so a reload applies them to new and open connections alike). The configured
``tcp_max_connections`` and per-source limits are the server's totals: each of
``workers`` processes (one SO_REUSEPORT listener each) takes its share, rounded
up. The kernel spreads connections over the listeners by a hash of the
addresses and ports, so one worker may refuse a source slightly before the
source reaches its total; no state is shared, so a killed worker wedges nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import math
import os
import resource
import socket
import struct
import termios
import time
from collections import OrderedDict
from dataclasses import dataclass

from dnspol.handler import Handler, Listener
from dnspol.settings import DEFAULTS
from dnspol.state import ServerState, Snapshot
from dnspol.transfer import Transfer
from dnspol.transport import proxy

log = logging.getLogger("dnspol.tcp")

WRITE_HIGH = 64 * 1024  # unsent answers past which no more are made and reading pauses
WRITE_LOW = 16 * 1024  # ... until they drain below this
# a zone transfer writes about this much between two turns of the event loop: one
# message (``dnspol.transfer.MESSAGE_TARGET``), compiled at load, so copying it and its
# TSIG are all another client's query may wait behind
TRANSFER_BATCH = 16 * 1024
# connections the kernel completes before we accept them. asyncio listens again with the
# number of connections it accepts per pass of its loop; left at that (100), a connection
# flood overflows the queue, SYNs are dropped and a legitimate client waits a whole second
# for its retransmission. Passes stay short, so answering interleaves with accepting.
LISTEN_BACKLOG = 1024
ACCEPTS_PER_PASS = 100
READ_SIZE = 256 * 1024  # what asyncio reads at a time
FILES_BESIDES_CONNECTIONS = 64  # listeners, UDP sockets, logs, zone files being read
SWEEP_INTERVAL = 0.5  # deadlines are checked this often (they may run over by as much)
WARN_INTERVAL = 60.0


@dataclass(frozen=True)
class TcpLimits:
    """The limits of one process (its share of the server's, see ``share``)."""

    # without a completed message (Knot: 10 s; RFC 7766 §6.2.3 asks for seconds)
    idle_timeout: float = DEFAULTS.tcp_idle_timeout
    message_timeout: float = DEFAULTS.tcp_message_timeout  # from its first byte; answers unread
    max_connections: int = DEFAULTS.tcp_max_connections
    max_per_source: int = DEFAULTS.tcp_max_per_source  # per IPv4 address / IPv6 /64; 0: no limit
    max_per_network: int = DEFAULTS.tcp_max_per_network  # per IPv4 /24 / IPv6 /56; 0: no limit

    @classmethod
    def share(cls, snapshot: Snapshot | None, workers: int) -> TcpLimits:
        """One worker's share of the server-wide limits in ``snapshot`` (rounded up)."""
        if snapshot is None:
            return cls()

        def part(total: int) -> int:
            return math.ceil(total / workers) if total else 0

        return cls(
            idle_timeout=snapshot.tcp_idle_timeout,
            message_timeout=snapshot.tcp_message_timeout,
            max_connections=part(snapshot.tcp_max_connections),
            max_per_source=part(snapshot.tcp_max_per_source),
            max_per_network=part(snapshot.tcp_max_per_network),
        )


def source_keys(host: str) -> tuple[object, object]:
    """The keys a peer counts under: (its address or /64, its /24 or /56)."""
    if ":" not in host:
        return host, host.rpartition(".")[0]
    packed = ipaddress.IPv6Address(host.split("%")[0]).packed
    return packed[:8], packed[:7]


class Connections:
    """The open connections of one process: the count, the cap, per-source counts,
    the order in which they made progress (for eviction), the sweeper and draining."""

    def __init__(self, state: ServerState, workers: int = 1) -> None:
        self.state = state  # its current snapshot carries the limits
        self.workers = max(1, workers)
        self.limits = TcpLimits()
        self._limits_of: Snapshot | None = None  # the snapshot ``limits`` was read from
        self.open: set[DnsOverTcp] = set()  # every connection whose socket still exists
        # the admitted connections that are not ending, least recent progress first
        self.by_progress: OrderedDict[DnsOverTcp, None] = OrderedDict()
        self.per_source: dict[object, int] = {}
        self._said_at: dict[str, float] = {}  # when each warning was last logged

    def current_limits(self) -> TcpLimits:
        snapshot = self.state.snapshot
        if snapshot is not self._limits_of:
            self.limits = TcpLimits.share(snapshot, self.workers)
            self._limits_of = snapshot
            _warn_if_short_of_files(self.limits.max_connections)
        return self.limits

    # -- admission -------------------------------------------------------------
    def admit(self, conn: DnsOverTcp, keys: tuple[object, object] | None) -> bool:
        """Count a new connection; False: over a per-source limit (the caller ends it).
        At the cap, the connection with the least recent progress is ended for it."""
        limits = self.current_limits()
        self.open.add(conn)
        if keys is not None and self._over_source_limits(keys, limits):
            self._warn("a source reached tcp_max_per_source or tcp_max_per_network")
            return False
        while len(self.by_progress) >= limits.max_connections:
            self._warn("tcp_max_connections reached: ending the least active connections")
            victim = next(iter(self.by_progress))
            victim.end()
        self.by_progress[conn] = None
        if keys is not None:
            for key in keys:
                self.per_source[key] = self.per_source.get(key, 0) + 1
            conn.counted_under = keys
        return True

    def _over_source_limits(self, keys: tuple[object, object], limits: TcpLimits) -> bool:
        source, network = keys
        sources = self.per_source.get(source, 0)
        networks = self.per_source.get(network, 0)
        return 0 < limits.max_per_source <= sources or 0 < limits.max_per_network <= networks

    def progressed(self, conn: DnsOverTcp) -> None:
        if conn in self.by_progress:
            self.by_progress.move_to_end(conn)

    def ending(self, conn: DnsOverTcp) -> None:
        """``conn`` is closing: no longer a candidate for eviction (it still counts)."""
        self.by_progress.pop(conn, None)

    def lost(self, conn: DnsOverTcp) -> None:
        """The socket is gone: only now does the connection leave the count."""
        self.by_progress.pop(conn, None)
        self.open.discard(conn)
        for key in conn.counted_under:
            left = self.per_source[key] - 1
            if left:
                self.per_source[key] = left
            else:
                del self.per_source[key]
        conn.counted_under = ()

    def _warn(self, text: str) -> None:
        """Log ``text`` at most once a minute: under a flood it would come per connection."""
        now = time.monotonic()
        if now - self._said_at.get(text, -WARN_INTERVAL) >= WARN_INTERVAL:
            self._said_at[text] = now
            log.warning("%s (said at most once a minute)", text)

    # -- time ------------------------------------------------------------------
    def sweep(self) -> None:
        limits = self.current_limits()
        now = time.monotonic()
        for conn in list(self.open):
            conn.end_if_overdue(now, limits)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()

    def close_all(self) -> None:
        """Shutdown: close every connection once its answers are out (bounded by exit)."""
        for conn in list(self.open):
            conn.close()


class DnsOverTcp(asyncio.Protocol):
    def __init__(self, handler: Handler, listener: Listener, conns: Connections) -> None:
        self.handler = handler
        self.listener = listener
        self.conns = conns
        self.transport: asyncio.Transport | None = None
        self.peer: tuple = ("", 0)
        self.buffer = bytearray()  # received, not yet answered
        self.counted_under: tuple[object, ...] = ()  # per-source keys, while counted
        now = time.monotonic()
        self.progress_at = now  # connected, or last completed a message
        self.message_started: float | None = None  # first byte of the incomplete message
        self.blocked_since: float | None = None  # answers over WRITE_HIGH since then
        self.awaiting_proxy_header = False
        self.stream: Transfer | None = None  # a zone transfer being sent
        self._pump_scheduled = False

    # -- asyncio callbacks ---------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.peer = transport.get_extra_info("peername") or ("", 0)
        snap = self.handler.state.snapshot
        trust = snap.proxy if snap is not None else None
        self.awaiting_proxy_header = bool(trust) and trust.trusts(self.peer[0])
        keys = None if self.awaiting_proxy_header or not self.peer[0] else source_keys(self.peer[0])
        if not self.conns.admit(self, keys):
            self.end()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._read_what_came_with_the_connection(sock.fileno())

    def _read_what_came_with_the_connection(self, fd: int) -> None:
        """Answer a query that arrived with the connection now, in the step that admits
        it: asyncio would read it only after the next batch of accepted connections,
        and in a connection flood each of those may end the oldest to make room."""
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:  # nothing yet (or an error the transport's own read will see)
            return
        if data:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.message_started is None:
            self.message_started = time.monotonic()
        if self.awaiting_proxy_header and not self._take_proxy_header():
            return
        self._answer_ready_messages()

    def pause_writing(self) -> None:
        """Answers pile up unread: stop answering and reading until they drain."""
        self.blocked_since = time.monotonic()
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.blocked_since = None
        if self.transport is None or self.transport.is_closing():
            return
        if self._pump_scheduled:
            return  # the transfer's next batch is already on its way
        self._answer_ready_messages()  # what was read but left unanswered
        if self.blocked_since is None and self.stream is None:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close once our writes are flushed

    def connection_lost(self, exc) -> None:
        self.conns.lost(self)
        if self.stream is not None:
            self.stream.finish("aborted")
            self.stream = None

    # -- answering -----------------------------------------------------------------
    def _take_proxy_header(self) -> bool:
        """From a trusted proxy the connection starts with PROXY v2; no header, no service."""
        parsed = proxy.parse(bytes(self.buffer[: proxy.HEADER_LEN + 536]))
        if parsed is proxy.NEED_MORE:
            return False
        if parsed is None:
            self.handler.stats.drop("proxy")
            self.end()
            return False
        source, length = parsed
        if source is not None:
            self.peer = source
        del self.buffer[:length]
        self.awaiting_proxy_header = False
        self.message_started = time.monotonic() if self.buffer else None
        return True

    def _answer_ready_messages(self) -> None:
        """Answer the complete messages in the buffer, in batches of about WRITE_HIGH,
        until none is left or the answers stop draining (``pause_writing``)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.stream is not None:  # the next answers wait for the transfer's end
            if not self._pump_scheduled and self.blocked_since is None:
                self._send_transfer()
            return
        buf = self.buffer
        out: list[bytes] = []
        pending = pos = 0
        while len(buf) - pos >= 2 and self.blocked_since is None and self.stream is None:
            size = (buf[pos] << 8) | buf[pos + 1]
            if size < 12:  # framing in doubt (RFC 7766 §8): end, after the answers made
                if out:
                    transport.write(b"".join(out))
                self.close()
                return
            if len(buf) - pos - 2 < size:
                break
            message = bytes(buf[pos + 2 : pos + 2 + size])
            pos += 2 + size
            reply = self.handler.handle(message, self.peer, self.listener)
            if type(reply) is bytes:
                out.append(len(reply).to_bytes(2, "big") + reply)
                pending += 2 + len(reply)
            elif reply is not None:  # a zone transfer: sent after the answers before it
                self.stream = reply
            if pending >= WRITE_HIGH:
                transport.write(b"".join(out))  # may call pause_writing, ending the loop
                out, pending = [], 0
        if out:
            transport.write(b"".join(out))
        if pos:
            del buf[:pos]
            self.progress_at = time.monotonic()
            self.conns.progressed(self)
            # what is left is the start of a message that came after the last answered one
            self.message_started = self.progress_at if buf else None
        if self.stream is not None:
            transport.pause_reading()  # until the transfer is out (``_send_transfer``)
            self._send_transfer()

    def _send_transfer(self) -> None:
        """Write the transfer's next batch of messages; then let the event loop run the
        other clients before the next batch (or, when the client reads slowly, wait for
        ``resume_writing``). After the last message, answer what came after it."""
        self._pump_scheduled = False
        stream, transport = self.stream, self.transport
        if stream is None or transport is None:
            return
        if transport.is_closing():
            stream.finish("aborted")
            self.stream = None
            return
        written = 0
        try:
            while self.blocked_since is None and written < TRANSFER_BATCH:
                message = stream.next_message()
                if message is None:
                    break
                transport.write(len(message).to_bytes(2, "big") + message)
                written += 2 + len(message)
            else:  # a full batch, or the client stopped reading: more to come
                self._progressed()
                if self.blocked_since is None:
                    self._pump_scheduled = True
                    asyncio.get_running_loop().call_soon(self._send_transfer)
                return
        except Exception:  # noqa: BLE001 - a transfer that cannot go on ends its connection
            log.exception("zone transfer to %s failed", self.peer[0])
            stream.finish("failed")
            self.stream = None
            self.end()
            return
        stream.finish("ok")
        self.stream = None
        self._progressed()
        if self.blocked_since is None:
            transport.resume_reading()
        self._answer_ready_messages()

    def _progressed(self) -> None:
        self.progress_at = time.monotonic()
        self.conns.progressed(self)

    # -- ending --------------------------------------------------------------------
    def end_if_overdue(self, now: float, limits: TcpLimits) -> None:
        if self.blocked_since is not None:
            if now - self.blocked_since > limits.message_timeout:
                self.end()  # the client does not read its answers
        elif self.stream is not None:  # what is unread waits for the transfer, not the client
            if now - self.progress_at > limits.idle_timeout:
                self.end()
        elif self.message_started is not None and not self._holds_whole_message():
            if now - self.message_started > limits.message_timeout:
                self.end()  # a message dripped too slowly
        elif now - self.progress_at > limits.idle_timeout:
            self.end()

    def _holds_whole_message(self) -> bool:
        buf = self.buffer
        return len(buf) >= 2 and len(buf) - 2 >= (buf[0] << 8) | buf[1]

    def end(self) -> None:
        """Close when nothing is left to send; else abort (reset): a close would wait
        for a client that does not read. The connection counts until ``connection_lost``."""
        self.conns.ending(self)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() or _unsent_in_kernel(transport):
            _reset(transport)
        else:
            transport.close()

    def close(self) -> None:
        """Close after the answers already made are sent (shutdown's drain)."""
        self.conns.ending(self)
        if self.transport is not None:
            self.transport.close()


def _unsent_in_kernel(transport: asyncio.Transport) -> int:
    """Bytes the kernel still holds for the peer (Linux SIOCOUTQ; 0 where unknown)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return struct.unpack("i", raw)[0]


def _reset(transport: asyncio.Transport) -> None:
    """End the connection with RST, dropping what is unsent in our buffer and the
    kernel's: a FIN would queue behind answers the peer does not read, leaving the
    kernel to hold them (and the peer its slot) for minutes."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _warn_if_short_of_files(connections: int) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < connections + FILES_BESIDES_CONNECTIONS:
        log.warning(
            "open files limit %d is below tcp_max_connections (this process's share: %d)"
            " plus %d: raise it (ulimit -n, LimitNOFILE=) or accepting will stall",
            soft,
            connections,
            FILES_BESIDES_CONNECTIONS,
        )


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (as servers do), so
    the connection cap is not cut short by a default of 1,024. Returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def open_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


async def start(
    sock: socket.socket, handler: Handler, listener: Listener, conns: Connections
) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: DnsOverTcp(handler, listener, conns), sock=sock, backlog=ACCEPTS_PER_PASS
    )
    sock.listen(LISTEN_BACKLOG)  # asyncio listened again with its accept batch
    return server
