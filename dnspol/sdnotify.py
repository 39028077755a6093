"""Telling systemd how the server is: the ``sd_notify(3)`` protocol, spoken directly.

When systemd starts a service with ``Type=notify`` or ``Type=notify-reload`` it
sets ``NOTIFY_SOCKET``: a Unix datagram socket, a path or an abstract name
(``@name``). The service sends it newline-separated ``KEY=VALUE`` lines:

* ``READY=1``: started (systemd holds back units ordered after it until then),
  and again when a reload has finished;
* ``RELOADING=1`` with ``MONOTONIC_USEC=`` (the ``CLOCK_MONOTONIC`` time, in µs):
  a reload began. ``Type=notify-reload`` (systemd 253) sends SIGHUP for
  ``systemctl reload`` and waits for this, then for ``READY=1``;
* ``STOPPING=1``: shutting down;
* ``STATUS=``: one line ``systemctl status`` shows.

dnspol sends these from the one process that decides: the single server, or the
supervisor when there are workers (systemd's default ``NotifyAccess=main``
accepts only the main process, which both are). This module owns the socket and
the message format; when ``NOTIFY_SOCKET`` is unset it does nothing. A message
that cannot be sent is logged once and never stops the server.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("dnspol.sdnotify")

ENVIRONMENT = "NOTIFY_SOCKET"
SEND_TIMEOUT = 1.0  # seconds; systemd reads at once, a stuck reader must not stop us


def socket_address(value: str | None) -> str | bytes | None:
    """Where ``NOTIFY_SOCKET`` points: a path, or an abstract name (``@name`` → ``\\0name``).
    None when unset, empty or another kind (``vsock:``, which a host uses for a VM)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, the clock systemd compares a reload with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends state changes to systemd's notification socket (none: does nothing)."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None) -> Notifier:
        """From ``environ``'s ``NOTIFY_SOCKET`` (``os.environ``); None: a notifier that
        does nothing (a process that does not decide, such as a supervisor's worker)."""
        value = environ.get(ENVIRONMENT) if environ is not None else None
        address = socket_address(value)
        if value and address is None:
            log.warning("%s=%s: not a socket path or @name; not notifying", ENVIRONMENT, value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        self.send("READY=1", _status(status))

    def reloading(self, status: str) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", _status(status))

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", _status(status))

    def status(self, status: str) -> None:
        self.send(_status(status))

    def send(self, *lines: str) -> bool:
        """One datagram of ``KEY=VALUE`` lines; True when it was sent."""
        if self.address is None:
            return False
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:  # once: a socket that went away would fill the log
                self._failed = True
                log.warning("cannot notify systemd at %s: %s", self._shown(), exc)
            return False
        return True

    def _shown(self) -> str:
        address = self.address
        if isinstance(address, bytes):
            return "@" + address[1:].decode(errors="replace")
        return str(address)


def _status(text: str) -> str:
    """A STATUS= line: one line, whatever the text holds."""
    return "STATUS=" + " ".join(text.split())
