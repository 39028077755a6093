"""The ``dnspol`` pytest plugin: the server fixtures, and server logs in failing tests' reports.

This module owns what pytest sees of the test kit. Installing dnspol registers
it (entry point ``pytest11``: ``dnspol = "dnspol.testing.plugin"``); from a
bare checkout, register it in a conftest (``pluginmanager.register``) or run
``pytest -p dnspol.testing.plugin``. It provides two factory fixtures, which
take ``Server``'s arguments (with ``zone=`` for ``zone_text=``):

* ``dnspol``: servers stop when the test ends;
* ``dnspol_session``: servers live until the end of the run.

When a test fails, the log each server wrote while it ran (its own servers and
shared ones it used) is added to its report. At the end of the session every
server still running is stopped.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dnspol.testing import process
from dnspol.testing.process import Server

__all__ = ["dnspol", "dnspol_session"]

LOG_SECTION_LINES = 400  # at most this many log lines in a failing test's report

_OFFSETS = pytest.StashKey[dict]()  # id(server) → size of its log when the test began
_SEQ_AT_START = pytest.StashKey[int]()  # servers with this seq or above began in the test


@dataclass
class _Factory:
    """What the ``dnspol`` fixtures return: call it to start a server."""

    base: Path
    servers: list[Server] = field(default_factory=list)

    def __call__(self, zone: str | None = None, **kwargs) -> Server:
        if zone is not None:
            kwargs["zone_text"] = zone
        kwargs.setdefault("workdir", self.base / f"server{len(self.servers) + 1}")
        srv = Server(**kwargs)
        self.servers.append(srv)
        return srv

    def close(self) -> None:
        for srv in reversed(self.servers):
            with contextlib.suppress(Exception):
                srv.stop()


@pytest.fixture
def dnspol(tmp_path_factory):
    """Start dnspol servers for this test: ``srv = dnspol(zone=TEXT)``; they stop after it."""
    factory = _Factory(tmp_path_factory.mktemp("dnspol"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def dnspol_session(tmp_path_factory):
    """Like ``dnspol``, but the servers live until the end of the test run."""
    factory = _Factory(tmp_path_factory.mktemp("dnspol-session"))
    yield factory
    factory.close()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    item.stash[_OFFSETS] = {id(s): s.log_size() for s in process.live_servers()}
    item.stash[_SEQ_AT_START] = process.next_seq()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for title, text in _log_sections(item):
        report.sections.append((title, text))


def pytest_sessionfinish(session, exitstatus) -> None:
    process.stop_all()


def _log_sections(item) -> list[tuple[str, str]]:
    """The log each server wrote while ``item`` ran (servers it started or shared)."""
    offsets: dict[int, int] = item.stash.get(_OFFSETS, {})
    first_new = item.stash.get(_SEQ_AT_START, 1 << 62)
    out = []
    for srv in sorted(process.recent_servers(), key=lambda s: s.seq):
        if id(srv) not in offsets and srv.seq < first_new:
            continue
        text = srv.log_since(offsets.get(id(srv), 0))
        lines = text.splitlines()
        if not lines:
            continue
        if len(lines) > LOG_SECTION_LINES:
            lines = [f"... {len(lines) - LOG_SECTION_LINES} earlier lines omitted"] + lines[
                -LOG_SECTION_LINES:
            ]
        where = srv.address if srv.port else "(never listened)"
        out.append((f"dnspol server {where} log", "\n".join(lines)))
    return out
