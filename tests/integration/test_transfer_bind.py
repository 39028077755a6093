"""BIND 9 as a secondary of dnspol: it loads the zone by AXFR with TSIG and then answers
as dnspol does, for the default scope and, through two TSIG-keyed views, for the
``internal`` scope; requests the policy does not allow get no zone at all."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from subprocess import STDOUT, Popen

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest
from itkit import free_port, need, stop_process
from xfrkit import (
    INTERNAL_SECRET,
    KEYS,
    SECRET,
    SERIAL,
    ask,
    compare,
    generated_zone,
    notifying_primary,
    reload_and_wait,
    start_primary,
    wait_loaded,
)

from dnspol.testing import Server


@pytest.fixture(scope="module")
def zone_text() -> str:
    return generated_zone(random.Random(15))


@pytest.fixture(scope="module")
def primary(zone_text):
    with start_primary(zone_text) as server:
        yield server


def run_secondary(workdir: Path, body: str, port: int | None = None) -> tuple[Popen, int]:
    """BIND 9 with ``body`` after its options (zones, views, keys), on ``port`` (or a
    free one)."""
    named = shutil.which("named") or need("named", "bind9")
    port = port or free_port()
    (workdir / "named.conf").write_text(
        f"""options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    listen-on port {port} {{ 127.0.0.1; 127.0.0.2; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    minimal-responses no;
}};
controls {{ }};
key "fleet" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
key "internal" {{ algorithm hmac-sha512; secret "{INTERNAL_SECRET}"; }};
{body}
"""
    )
    log = open(workdir / "named.log", "w")  # noqa: SIM115 - closed with the process
    proc = Popen(
        [named, "-g", "-n", "1", "-c", str(workdir / "named.conf")],
        stdout=log,
        stderr=STDOUT,
        start_new_session=True,
    )
    return proc, port


def test_bind_loads_the_zone_by_signed_axfr_and_answers_as_dnspol(primary, zone_text, tmp_path):
    proc, port = run_secondary(
        tmp_path,
        f"""zone "example.com" {{
    type secondary;
    primaries {{ 127.0.0.1 port {primary.port} key "fleet"; }};
}};""",
    )
    try:
        wait_loaded(port)
        assert compare(primary, port, zone_text, "127.0.0.1") >= 200
        log = (tmp_path / "named.log").read_text()
        assert "Transfer status: success" in log and "TSIG fleet" in log, log[-2000:]
    finally:
        stop_process(proc)
    assert "transfer ok: AXFR example.com. scope default" in primary.log


def test_bind_with_two_keyed_views_replicates_the_split_horizon(primary, zone_text, tmp_path):
    proc, port = run_secondary(
        tmp_path,
        f"""view "internal" {{
    match-clients {{ key "internal"; 127.0.0.2; }};
    server 127.0.0.1 {{ keys {{ "internal"; }}; }};
    zone "example.com" {{
        type secondary;
        primaries {{ 127.0.0.1 port {primary.port} key "internal"; }};
    }};
}};
view "default" {{
    match-clients {{ key "fleet"; any; }};
    zone "example.com" {{
        type secondary;
        primaries {{ 127.0.0.1 port {primary.port} key "fleet"; }};
    }};
}};""",
    )
    try:
        wait_loaded(port, "127.0.0.1")
        wait_loaded(port, "127.0.0.2")
        internal = ask(port, "db.example.com.", "A", "127.0.0.2")
        assert [r.to_text() for r in internal.answer[0]] == ["10.0.0.20"]
        assert ask(port, "db.example.com.", "A", "127.0.0.1").rcode() == dns.rcode.NXDOMAIN
        compare(primary, port, zone_text, "127.0.0.1", count=200)
        compare(primary, port, zone_text, "127.0.0.2", count=200)
    finally:
        stop_process(proc)
    assert "transfer ok: AXFR example.com. scope internal" in primary.log


def first_reply(primary: Server, name: str, key=None, source="127.0.0.1", keyring=None):
    """The first message the server sends for an AXFR (TSIG not checked: errors are
    themselves unsigned), and whether any record at all came."""
    query = dns.message.make_query(name, "AXFR")
    if key is not None:
        query.use_tsig(key)
    reply, _ = dns.query.receive_tcp(
        _connected(primary.port, source, query.to_wire()), time.time() + 3, keyring=False
    )
    return reply


def _connected(port: int, source: str, wire: bytes):
    import socket

    sock = socket.socket()
    sock.settimeout(3)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(len(wire).to_bytes(2, "big") + wire)
    return sock


@pytest.mark.parametrize(
    "case, name, key, source, rcode",
    [
        ("no key", "example.com.", None, "127.0.0.1", dns.rcode.REFUSED),
        (
            "unknown key",
            "example.com.",
            dns.tsig.Key("stranger.", SECRET, dns.tsig.HMAC_SHA256),
            "127.0.0.1",
            dns.rcode.NOTAUTH,
        ),
        (
            "wrong secret",
            "example.com.",
            dns.tsig.Key("fleet.", INTERNAL_SECRET, dns.tsig.HMAC_SHA256),
            "127.0.0.1",
            dns.rcode.NOTAUTH,
        ),
        ("unknown zone", "example.net.", KEYS["fleet"], "127.0.0.1", dns.rcode.NOTAUTH),
        ("denied subnet", "example.com.", KEYS["fleet"], "127.0.0.66", dns.rcode.REFUSED),
    ],
)
def test_requests_that_may_not_transfer_get_no_record(primary, case, name, key, source, rcode):
    reply = first_reply(primary, name, key, source)
    assert reply.rcode() == rcode, case
    assert not reply.answer, case


def test_after_a_reload_with_a_new_serial_notify_brings_bind_up_to_date(zone_text, tmp_path):
    """dnspol notifies BIND (signed); BIND asks by IXFR, gets the difference from the
    journal, and serves the new serial within 5 s, answering as dnspol does. Without
    NOTIFY it would wait for the SOA refresh (2 h)."""
    port = free_port()
    primary_dir = tmp_path / "primary"
    with notifying_primary(primary_dir, zone_text, port) as primary:
        secondary_dir = tmp_path / "secondary"
        secondary_dir.mkdir()
        proc, _ = run_secondary(
            secondary_dir,
            f"""zone "example.com" {{
    type secondary;
    primaries {{ 127.0.0.1 port {primary.port} key "fleet"; }};
}};""",
            port=port,
        )
        try:
            wait_loaded(port)
            new, seconds = reload_and_wait(primary, primary_dir, zone_text, port)
            print(f"BIND: serial {SERIAL + 1} {seconds:.2f} s after the reload")
            fresh = ask(port, "fresh.example.com.", "A")
            assert [r.to_text() for r in fresh.answer[0]] == ["192.0.2.123"]
            compare(primary, port, new, "127.0.0.1", count=200)
        finally:
            stop_process(proc)
        log = (secondary_dir / "named.log").read_text()
        assert "notify from 127.0.0.1" in log and "TSIG fleet" in log, log[-3000:]
        # the difference alone: our SOA, the old SOA and mail, the new SOA, fresh and mail, SOA
        assert "Transfer completed: 1 messages, 7 records" in log, log[-3000:]
        acked = f"NOTIFY example.com. serial {SERIAL + 1} to 127.0.0.1:{port}: acked"
        primary.wait_for_log(acked)
        assert "transfer incremental: IXFR example.com." in primary.log
