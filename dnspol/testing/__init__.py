"""Real dnspol servers for other people's tests: the ``dnspol`` pytest fixtures and ``Server``.

The test kit runs a dnspol server as a child process for a test and talks to
it the way the code under test will: with real ``dig`` (parsed into
``DigResult``), dnspython (``Server.query``, a ``dns.message.Message``), raw
wire bytes (``Server.exchange``), the test clock (``set_time`` / ``advance``)
and reloads with new zones or rules.

With pytest nothing needs importing: installing dnspol registers the plugin
(entry point ``pytest11``), which provides two factory fixtures, ``dnspol``
(servers stop when the test ends) and ``dnspol_session`` (servers live for the
whole run), and attaches each server's log to the report of a failing test::

    def test_www(dnspol):
        srv = dnspol(zone=ZONE_TEXT)
        assert srv.dig("www.example.com").addresses == ["192.0.2.1"]

Without pytest (unittest, scripts)::

    with dnspol.testing.Server(zone_text=ZONE_TEXT) as srv:
        srv.dig("www.example.com")

The parts, each in its own module (this package re-exports their public names):

* ``process``: ``Server``, the server's child process from start to stop, its
  log, its clock and reloads through its control socket;
* ``files``: what a server serves, written to its work directory;
* ``client``: ``dig`` and ``DigResult``, ``query`` (dnspython), and raw messages
  (``exchange``);
* ``plugin``: the pytest fixtures and failure reports (imported by pytest only,
  so the rest works without pytest installed);
* ``errors``: ``TestingError`` and the errors under it;
* ``targets``: ``HttpTarget`` and ``TcpTarget``, what health checks probe, to stop and
  start (``Server.set_health`` forces a check without one).
"""

from __future__ import annotations

from dnspol.testing.client import (
    DigResult,
    Edns,
    Question,
    Record,
    dig,
    exchange,
    parse_dig,
    query,
    txt_strings,
)
from dnspol.testing.errors import (
    ControlError,
    DigError,
    QueryError,
    ReloadError,
    ServerError,
    StartError,
    TestingError,
)
from dnspol.testing.process import Server

__all__ = [
    "ControlError",
    "DigError",
    "DigResult",
    "Edns",
    "QueryError",
    "Question",
    "Record",
    "ReloadError",
    "Server",
    "ServerError",
    "StartError",
    "TestingError",
    "dig",
    "exchange",
    "parse_dig",
    "query",
    "txt_strings",
]
