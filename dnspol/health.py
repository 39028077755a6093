"""The operations port: ``/metrics`` for Prometheus, ``/health`` and ``/ready`` for orchestrators.

As CoreDNS's ``health`` and ``ready`` plugins do: ``/health`` answers 200 while
the process runs; ``/ready`` answers 200 once a good configuration is loaded
and the DNS listeners are bound (with several workers: once every worker is),
and 503 with the reason until then. ``/metrics`` is the Prometheus text (or
OpenMetrics, when asked for) exposition of one registry.

The server runs in its own daemon thread, one short-lived thread per request,
so a slow scraper never touches the DNS transports.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("dnspol.health")

# ready() returns (True, "") or (False, why not)
Readiness = Callable[[], tuple[bool, str]]


class OpsServer:
    """``/metrics``, ``/health`` and ``/ready`` on one address; port 0 picks a free one."""

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry | None,
        ready: Readiness,
    ) -> None:
        self.registry = registry  # None: no /metrics (health and readiness only)
        self.ready = ready
        self._httpd = _HTTPServer(address, _make_handler(self))
        self.address: tuple[str, int] = self._httpd.server_address[:2]  # type: ignore[assignment]
        self._thread: threading.Thread | None = None

    @property
    def socket(self):
        """The listening socket (a forked worker closes its inherited copy)."""
        return self._httpd.socket

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> OpsServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True
        )
        self._thread.name = "ops-http"
        self._thread.start()
        log.info("metrics and health on %s (/metrics, /health, /ready)", self.url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=2)
        self._httpd.server_close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def _make_handler(ops: OpsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "dnspol"

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
