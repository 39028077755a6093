"""The test kit's errors: one root, ``TestingError``, and what each part of the kit raises.

``DigError`` and ``QueryError`` come from the client (``dnspol.testing.client``); ``StartError``,
``ServerError``, ``ControlError`` and ``ReloadError`` from a running server
(``dnspol.testing.process``).
"""

from __future__ import annotations

__all__ = [
    "ControlError",
    "DigError",
    "QueryError",
    "ReloadError",
    "ServerError",
    "StartError",
    "TestingError",
]


class TestingError(Exception):
    """Root of the errors the test kit raises."""

    __test__ = False  # not a test class, whatever pytest's name patterns say


class StartError(TestingError):
    """The server did not start; the message ends with its log."""


class ServerError(TestingError):
    """The server is not running or answered a control query unexpectedly."""


class ControlError(ServerError):
    """A clock or reload control query was not answered as expected."""


class ReloadError(ControlError):
    """The server rejected the new configuration and kept the old one."""


class DigError(TestingError):
    """``dig`` got no answer (timeout, connection refused) or could not run."""

    def __init__(self, message: str, raw: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.returncode = returncode


class QueryError(TestingError):
    """``query`` got no answer in time, or the reply was not a DNS message."""
