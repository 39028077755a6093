"""The operations port: ``/metrics`` for Prometheus, ``/health`` and ``/ready`` for orchestrators.

As CoreDNS's ``health`` and ``ready`` plugins do: ``/health`` answers 200 while
the process runs; ``/ready`` answers 200 once a good configuration is loaded
and the DNS listeners are bound (with several workers: once every worker is),
and 503 with the reason until then. ``/metrics`` is the Prometheus text (or
OpenMetrics, when asked for) exposition of one registry.

The port is reachable by whoever can reach it, so every resource it spends is
bounded. One daemon thread accepts connections and reads each request's header
without blocking; a header must be complete within ``header_timeout`` (5 s from
the connection, however slowly it trickles) and ``MAX_HEADER_BYTES``, else the
connection is answered 414/431 or closed. Only complete requests reach a pool of
``HANDLER_THREADS`` threads, so a hundred stalled connections cost a hundred file
descriptors (at most ``MAX_CONNECTIONS``; the oldest goes first), not a hundred
threads, and a scrape is still answered at once. Nothing here touches the DNS
transports.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import selectors
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("dnspol.health")

# ready() returns (True, "") or (False, why not)
Readiness = Callable[[], tuple[bool, str]]

HEADER_TIMEOUT = 5.0  # seconds from a connection to the end of its request's header
WRITE_TIMEOUT = 5.0  # seconds a reply may wait for the client to read
MAX_REQUEST_LINE = 4096  # bytes; longer: 414
MAX_HEADER_BYTES = 8192  # bytes of request line and headers; more: 431
MAX_CONNECTIONS = 256  # connections still sending their header; a new one closes the oldest
HANDLER_THREADS = 16  # threads answering complete requests
MAX_QUEUED = 64  # complete requests answered or waiting for a thread; then none is accepted
BACKLOG = 128  # connections the kernel queues before the port accepts them
_TICK = 0.25  # seconds between looks for overdue headers and for stop()


class OpsServer:
    """``/metrics``, ``/health`` and ``/ready`` on one address; port 0 picks a free one."""

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry | None,
        ready: Readiness,
        *,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.registry = registry  # None: no /metrics (health and readiness only)
        self.ready = ready
        self._listener = _listen(address)
        self._port = _Port(self._listener, _make_handler(self), header_timeout)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._thread: threading.Thread | None = None

    @property
    def socket(self) -> socket.socket:
        """The listening socket (a forked worker closes its inherited copy)."""
        return self._listener

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> OpsServer:
        self._thread = threading.Thread(target=self._port.serve, name="ops-http", daemon=True)
        self._thread.start()
        log.info("metrics and health on %s (/metrics, /health, /ready)", self.url)
        return self

    def stop(self) -> None:
        self._port.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._port.close()
        self._listener.close()


def _listen(address: tuple[str, int]) -> socket.socket:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class _Port:
    """Accepts connections and reads their headers in one thread; a pool answers them."""

    def __init__(
        self,
        listener: socket.socket,
        handler: type[BaseHTTPRequestHandler],
        header_timeout: float,
    ) -> None:
        self.listener = listener
        self.handler = handler
        self.header_timeout = header_timeout
        self.stopping = threading.Event()
        self.selector = selectors.DefaultSelector()
        # connections still sending their header, oldest first: socket → (deadline, bytes)
        self.reading: OrderedDict[socket.socket, tuple[float, bytearray]] = OrderedDict()
        self.pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="ops-http")
        self.answering: set[socket.socket] = set()  # handed to the pool
        self.accepting = False
        _PORTS.add(self)

    def close_in_child(self) -> None:
        """In a forked child: close its copies of the connections, so that closing them
        here closes them. The selector (shared with this process) is left alone."""
        for sock in [*self.reading, *self.answering]:
            sock.close()

    def serve(self) -> None:
        self.listener.setblocking(False)
        while not self.stopping.is_set():
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - nothing may end the port's loop
                log.exception("metrics port")
                time.sleep(_TICK)

    def _tick(self) -> None:
        # with the pool's queue full, new connections wait in the kernel's backlog
        self._accept_new(len(self.answering) < MAX_QUEUED)
        for key, _ in self.selector.select(_TICK):
            if key.fileobj is self.listener:
                self._accept()
            elif key.fileobj in self.reading:  # not closed earlier in this round
                self._read(key.fileobj)  # type: ignore[arg-type]
        self._close_overdue()

    def close(self) -> None:
        for sock in list(self.reading):
            self._forget(sock)
            sock.close()
        self.selector.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _accept_new(self, accept: bool) -> None:
        """Watch the listener, or stop watching it (until a later tick says otherwise)."""
        if accept and not self.accepting:
            self.selector.register(self.listener, selectors.EVENT_READ)
        elif not accept and self.accepting:
            self.selector.unregister(self.listener)
        self.accepting = accept

    def _accept(self) -> None:
        for _ in range(64):  # what is queued now, a bounded batch at a time
            try:
                sock, _address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: try again next tick
                log.warning("metrics port cannot accept: %s", exc)
                self._accept_new(False)
                return
            if len(self.reading) >= MAX_CONNECTIONS:
                oldest = next(iter(self.reading))
                self._forget(oldest)
                oldest.close()
            sock.setblocking(False)
            self.reading[sock] = (time.monotonic() + self.header_timeout, bytearray())
            self.selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> None:
        _, received = self.reading[sock]
        try:
            chunk = sock.recv(MAX_HEADER_BYTES + 1 - len(received))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._forget(sock)
            sock.close()
            return
        received += chunk
        refusal = _refusal(received)
        if refusal is not None:
            self._forget(sock)
            self.answering.add(sock)
            self.pool.submit(self._refuse, sock, refusal)
        elif received.find(b"\r\n\r\n") >= 0 or received.find(b"\n\n") >= 0:
            self._forget(sock)
            self.answering.add(sock)
            self.pool.submit(self._answer, sock, bytes(received))

    def _forget(self, sock: socket.socket) -> None:
        del self.reading[sock]
        self.selector.unregister(sock)

    def _close_overdue(self) -> None:
        now = time.monotonic()
        while self.reading:
            sock, (deadline, _) = next(iter(self.reading.items()))
            if deadline > now:  # deadlines grow with the order of arrival
                return
            self._forget(sock)
            sock.close()

    def _answer(self, sock: socket.socket, head: bytes) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(WRITE_TIMEOUT)
            address = sock.getpeername()
            self.handler((sock, head), address, self)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - one request must not take the port down
            log.debug("metrics port request failed", exc_info=True)
        finally:
            self.answering.discard(sock)
            sock.close()

    def _refuse(self, sock: socket.socket, status: bytes) -> None:
        try:
            _refuse(sock, status)
        finally:
            self.answering.discard(sock)


_PORTS: weakref.WeakSet[_Port] = weakref.WeakSet()


def _close_connections_in_child() -> None:
    for port in list(_PORTS):
        port.close_in_child()


os.register_at_fork(after_in_child=_close_connections_in_child)


def _refusal(received: bytearray) -> bytes | None:
    """414 or 431 for a request line or a header too long to read; None: fine so far."""
    line_end = received.find(b"\n")
    if len(received) > MAX_REQUEST_LINE and (line_end < 0 or line_end > MAX_REQUEST_LINE):
        return b"414 URI Too Long"
    if len(received) > MAX_HEADER_BYTES:
        return b"431 Request Header Fields Too Large"
    return None


def _refuse(sock: socket.socket, status: bytes) -> None:
    """Answer ``status`` and close; the rest of the request is read (a little, briefly) so
    that closing with it unread does not reset the connection before the answer arrives."""
    reply = b"HTTP/1.0 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    try:
        sock.setblocking(True)
        sock.settimeout(WRITE_TIMEOUT)
        sock.sendall(reply)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        for _ in range(16):
            if not sock.recv(65536):
                break
    except OSError:
        pass
    finally:
        sock.close()


def _make_handler(ops: OpsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """One request whose header ``_Port`` has read: ``request`` is (socket, header)."""

        server_version = "dnspol"

        def setup(self) -> None:
            self.connection, head = self.request  # type: ignore[misc]
            self.rfile = io.BytesIO(head)
            self.wfile = self.connection.makefile("wb")

        def finish(self) -> None:
            with contextlib.suppress(OSError):
                self.wfile.flush()
            self.wfile.close()

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._reply(200, b"OK\n")
            elif path == "/ready":
                ok, why = ops.ready()
                if ok:
                    self._reply(200, b"OK\n")
                else:
                    self._reply(503, f"not ready: {why}\n".encode())
            elif path == "/metrics" and ops.registry is not None:
                self._metrics()
            else:
                self._reply(404, b"not found: try /metrics, /health or /ready\n")

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def _metrics(self) -> None:
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            try:
                body = encoder(ops.registry)
            except Exception:  # noqa: BLE001 - a scrape must not take the port down
                log.exception("building /metrics failed")
                self._reply(500, b"metrics failed; see the server log\n")
                return
            self._reply(200, body, content_type)

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's signature
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
