"""Signals from the first instant: what arrives before the server's own handlers.

``dnspol serve`` spends its first fraction of a second importing and loading
the configuration, before the supervisor or the server installs the handlers
that reload and stop. A SIGHUP's default action would end the process there,
and a SIGTERM would end it with a signal status instead of a clean exit. So the
command's entry point calls ``hold()`` before importing anything else: from
then on SIGHUP is remembered (and applied once the first configuration serves),
and SIGTERM/SIGINT are remembered too, or, while ``interruptible()`` loading
runs, end that loading at once (nothing is serving yet, nothing is lost).

The server and the supervisor ``take()`` what was remembered when they install
their own handlers; this module owns nothing after that.

Before ``hold()`` runs (the Python interpreter starting, ~40 ms) a signal has
its default action. A launcher that blocks HUP, TERM and INT across ``exec``
closes that window too: ``hold()`` unblocks them once its handlers are in place,
so one sent earlier is delivered then (the test kit launches servers this way).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

HELD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(BaseException):
    """SIGTERM or SIGINT during interruptible loading: stop, exit 0."""


class _Latch:
    def __init__(self) -> None:
        self.stop = False
        self.reload = False
        self.loading = False

    def on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
            return
        self.stop = True
        if self.loading:
            self.loading = False
            raise Stopped


_latch = _Latch()


def hold() -> None:
    """Remember HUP, TERM and INT from now on; deliver any a launcher blocked."""
    for signum in HELD:
        signal.signal(signum, _latch.on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)


def take() -> tuple[bool, bool]:
    """(stop wanted, reload wanted) since ``hold()``; forgotten once taken."""
    wanted = (_latch.stop, _latch.reload)
    _latch.stop = _latch.reload = False
    return wanted


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within this block SIGTERM/SIGINT raise ``Stopped`` (when ``hold()`` is active)."""
    if _latch.stop:
        raise Stopped
    _latch.loading = True
    try:
        yield
    finally:
        _latch.loading = False
