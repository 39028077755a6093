"""UDP: one plain blocking receive/answer loop per socket, in its own thread.

A blocking ``recvfrom``/``sendto`` loop costs a few µs per packet, less than an
asyncio ``DatagramProtocol`` (measured when the transports were chosen), and the
GIL is released while it waits, so TCP and housekeeping run in the main thread.

A receive gives up after ``WAKE_SECONDS`` (``SO_RCVTIMEO``) so the loop can see
that it is asked to stop: it stops between two packets, never with one read and
unanswered. That matters when the socket is shared: a supervisor's worker that
is being replaced stops reading, and what it did not read waits in the socket
for its successor. (A read timeout, not a non-blocking socket: the blocking mode
belongs to the open file, which the other processes holding it share.) The loop
also reads its ``Turn`` (``dnspol.handover``) once per packet: a worker whose
generation has been replaced stops at once under load.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading

from dnspol.handler import Handler, Listener
from dnspol.handover import Always, Turn
from dnspol.transport import proxy

log = logging.getLogger("dnspol.udp")

RECV_SIZE = 65535
RCVBUF = 4 * 1024 * 1024
WAKE_SECONDS = 0.02  # bounds how long a switch-over waits for an idle socket's reader


def open_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    with contextlib.suppress(OSError):  # a smaller buffer still works
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    wake = struct.pack("ll", 0, int(WAKE_SECONDS * 1_000_000))  # struct timeval
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wake)
    sock.bind((host, port))
    return sock


def serve(
    sock: socket.socket,
    handler: Handler,
    listener: Listener,
    stop: threading.Event,
    turn: Turn | Always,
) -> None:
    """Answer datagrams until ``stop`` is set, the turn passes to another generation,
    or the socket is closed. No exception ends the loop."""
    page, mark = turn.page, turn.mark
    recvfrom = sock.recvfrom
    sendto = sock.sendto
    handle = handler.handle
    state = handler.state
    stopping = stop.is_set
    while page[0] == mark and not stopping():
        try:
            data, peer = recvfrom(RECV_SIZE)
        except OSError:  # the read timeout (EAGAIN), or the socket closed
            if sock.fileno() == -1:
                return
            continue
        try:
            client = peer
            snap = state.snapshot
            if snap.proxied and snap.proxy.trusts(peer[0]):
                data, client = _unwrap(data, peer, handler)
                if data is None:
                    continue
            out = handle(data, client, listener)
            if out is not None and snap.rate_limit is not None:  # the one UDP-only stage
                out = handler.rate_limit(out, client[0], snap.rate_limit, data)
            if out is not None:
                sendto(out, peer)
        except OSError:
            pass  # the client went away; nothing to do
        except Exception:  # noqa: BLE001 - never let one packet end the loop
            log.exception("UDP answer failed")


def _unwrap(data: bytes, peer: tuple, handler: Handler):
    """A datagram from a trusted proxy: strip its PROXY v2 header, or drop it."""
    parsed = proxy.parse(data)
    if parsed is None or parsed is proxy.NEED_MORE:
        handler.stats.drop("proxy")
        return None, peer
    source, length = parsed
    return data[length:], source or peer


def start(
    sock: socket.socket,
    handler: Handler,
    listener: Listener,
    stop: threading.Event,
    turn: Turn | Always,
) -> threading.Thread:
    thread = threading.Thread(
        target=serve,
        args=(sock, handler, listener, stop, turn),
        name=f"udp-{listener.port}",
        daemon=True,
    )
    thread.start()
    return thread
