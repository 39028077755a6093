"""Stand-ins for what health checks (``checks:``) probe, for tests to stop and start: an
HTTP server (stdlib ``http.server``) and a TCP listener on a loopback address, the latter
optionally accepting and never answering (a hung backend). ``srv.set_health`` forces a
check without any target; these are for tests of the checks themselves::

    with HttpTarget("127.0.0.2") as web:      # config: url: http://127.0.0.2:<web.port>/health
        ...
        web.stop()                            # the check fails from now on
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class HttpTarget:
    """``GET /health`` → ``status`` with ``body``; ``start()`` / ``stop()`` as often as
    needed, always on the same address and port. Records the Host headers it saw."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.status = 200
        self.body = b"ok"
        self.hosts: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/health"

    def start(self) -> HttpTarget:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                target.hosts.append(self.headers.get("Host", ""))
                self.send_response(target.status)
                self.send_header("Content-Length", str(len(target.body)))
                self.end_headers()
                self.wfile.write(target.body)

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TcpTarget:
    """A listening TCP port that accepts and closes; ``stop()`` closes the listener (connects
    are then refused)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, hang: bool = False):
        self.host = host
        self.port = port or free_port(host)
        self.hang = hang  # accept, then never answer nor close (a hung backend)
        self._sock: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> TcpTarget:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(4096)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, args=(sock,), daemon=True)
        self._thread.start()
        return self

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if self.hang:
                self._held.append(conn)
            else:
                conn.close()

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        for conn in self._held:
            conn.close()
        self._held.clear()

    def __enter__(self) -> TcpTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
