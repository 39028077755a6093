"""TCP per RFC 7766: length framing, pipelining, timeouts and a connection cap.

Each connection is an asyncio ``Protocol``: bytes are buffered until whole
messages are present, every complete message is answered at once (so pipelined
queries are answered as they complete), and a slow reader only pauses its own
connection. A sweeper closes connections that sit idle or drip a message too
slowly, so half-open clients cannot hold slots.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass

from dnspol.handler import Handler, Listener
from dnspol.transport import proxy

log = logging.getLogger("dnspol.tcp")


@dataclass(frozen=True)
class TcpLimits:
    idle_timeout: float = 10.0  # between messages (Knot: 10 s; RFC 7766 §6.2.3 asks for seconds)
    io_timeout: float = 2.0  # to receive the rest of a message once it started
    max_connections: int = 150  # BIND's tcp-clients default
    max_buffer: int = 256 * 1024  # unanswered bytes from a client before reading pauses


class Connections:
    """The open connections of one server, for the cap, the sweeper and draining."""

    def __init__(self, limits: TcpLimits) -> None:
        self.limits = limits
        self.open: set[DnsOverTcp] = set()

    def sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.open):
            conn.close_if_stale(now)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.sweep()

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.close()


class DnsOverTcp(asyncio.Protocol):
    def __init__(self, handler: Handler, listener: Listener, conns: Connections) -> None:
        self.handler = handler
        self.listener = listener
        self.conns = conns
        self.transport: asyncio.Transport | None = None
        self.peer: tuple = ("", 0)
        self.buffer = bytearray()
        self.last_activity = time.monotonic()
        self.message_started: float | None = None
        self.awaiting_proxy_header = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("", 0)
        snap = self.handler.state.snapshot
        trust = snap.proxy if snap is not None else None
        self.awaiting_proxy_header = bool(trust) and trust.trusts(self.peer[0])
        if len(self.conns.open) >= self.conns.limits.max_connections:
            self._close_idlest_or(transport)
        self.conns.open.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _close_idlest_or(self, transport) -> None:
        """RFC 7766 §6.2.2: under pressure, close idle connections first."""
        idle = [c for c in self.conns.open if not c.buffer]
        if idle:
            min(idle, key=lambda c: c.last_activity).close()
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.last_activity = time.monotonic()
        if self.awaiting_proxy_header and not self._take_proxy_header():
            return
        self._answer_complete_messages()
        if len(self.buffer) > self.conns.limits.max_buffer:
            self.close()

    def _take_proxy_header(self) -> bool:
        """From a trusted proxy the connection starts with PROXY v2; no header, no service."""
        parsed = proxy.parse(bytes(self.buffer[: proxy.HEADER_LEN + 536]))
        if parsed is proxy.NEED_MORE:
            self.message_started = self.message_started or self.last_activity
            return False
        if parsed is None:
            self.handler.stats.drop("proxy")
            self.close()
            return False
        source, length = parsed
        if source is not None:
            self.peer = source
        del self.buffer[:length]
        self.awaiting_proxy_header = False
        self.message_started = None
        return True

    def _answer_complete_messages(self) -> None:
        buf = self.buffer
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            if size < 12:
                self.close()  # framing in doubt (RFC 7766 §8)
                return
            if len(buf) - pos - 2 < size:
                break
            message = bytes(buf[pos + 2 : pos + 2 + size])
            pos += 2 + size
            reply = self.handler.handle(message, self.peer, self.listener)
            if reply is not None:
                out.append(len(reply).to_bytes(2, "big") + reply)
        del buf[:pos]
        self.message_started = self.last_activity if buf else None
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # a slow reader stops being read from

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close once our writes are flushed

    def connection_lost(self, exc) -> None:
        self.conns.open.discard(self)

    def close_if_stale(self, now: float) -> None:
        limits = self.conns.limits
        dripping = self.message_started is not None and (
            now - self.message_started > limits.io_timeout
        )
        if dripping or now - self.last_activity > limits.idle_timeout:
            self.close()

    def close(self) -> None:
        self.conns.open.discard(self)
        if self.transport is not None:
            self.transport.close()


def open_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start(
    sock: socket.socket, handler: Handler, listener: Listener, conns: Connections
) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: DnsOverTcp(handler, listener, conns), sock=sock)
