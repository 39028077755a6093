"""A validating resolver in front of dnspol's own signatures, with policies deciding.

dnspol signs every scope of a zone (``dnssec:``); rules pick the scope by the resolver's
address, by the ECS address a trusted resolver forwards, by a time window (the fake
clock) and by weight. unbound, validating with the zone's KSK as its trust anchor,
must find each of those answers secure (AD), with the scope's own data; and a
resolver anchored to another key must not (the test can fail).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dns.flags
import dns.rcode
import pytest
from itkit import need, run_unbound, stop_process

from dnspol.testing import Server
from dnspol.testing.client import query

KEYS = Path(__file__).parents[1] / "data" / "dnssec"
KSK, ZSK = "Kexample.com.+013+34096", "Kexample.com.+013+14727"
ORIGIN = "example.com."

ZONE = """\
$ORIGIN example.com.
$TTL 300
@    SOA ns1 hostmaster 1 3600 600 604800 120
@    NS  ns1
ns1  A   192.0.2.53
www  A   192.0.2.10
svc  A   192.0.2.30
lb   A   192.0.2.40
"""
INTERNAL = """\
$ORIGIN example.com.
$TTL 60
www   A 10.0.0.10
intra A 10.0.0.80
"""
DR = """\
$ORIGIN example.com.
$TTL 60
svc A 198.51.100.30
lb  A 198.51.100.40
"""
CONFIG = f"""\
server:
  trusted_resolvers: [127.0.0.3/32]
zones:
  example.com:
    file: example.com.zone
    scopes:
      internal: {{overlay: internal.zone}}
      dr: {{overlay: dr.zone}}
    dnssec:
      keys: [{KSK}, {ZSK}]
      denial: nsec3
rules:
  - name: internal-resolver
    zone: example.com
    match: {{client: 127.0.0.2/32}}
    answer: internal
  - name: office-by-ecs
    zone: example.com
    match: {{client: 10.1.0.0/16}}
    answer: internal
  - name: maintenance
    zone: example.com
    match: {{qname: svc.example.com, time: {{between: "01:00-03:00"}}}}
    answer: dr
  - name: balance
    zone: example.com
    match: {{qname: lb.example.com}}
    answer: {{weighted: {{default: 1, dr: 1}}}}
"""


def anchor(key: str = KSK) -> str:
    text = (KEYS / f"{key}.key").read_text()
    return next(line for line in text.splitlines() if "DNSKEY" in line and line[0] != ";")


def ask(port: int, name: str, ecs: str | None = None):
    return query("127.0.0.1", port, name, "A", rd=True, do=True, ecs=ecs, timeout=5)


def addresses(reply) -> set[str]:
    return {rdata.to_text() for rrset in reply.answer if rrset.rdtype == 1 for rdata in rrset}


@pytest.fixture
def signed_server(tmp_path):
    for name in (KSK, ZSK):
        for suffix in (".key", ".private"):
            shutil.copy(KEYS / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "internal.zone").write_text(INTERNAL)
    (tmp_path / "dr.zone").write_text(DR)
    (tmp_path / "dnspol.yaml").write_text(CONFIG)
    # 02:00 UTC: inside the maintenance window (signatures use the real clock)
    with Server(config=tmp_path / "dnspol.yaml", fake_time="2026-11-27T02:00:00+00:00") as srv:
        yield srv


def test_every_scope_a_rule_picks_validates_as_secure(signed_server, tmp_path) -> None:
    srv = signed_server
    cases = [  # (resolver's address, forwards ECS, name, client ECS, wanted addresses)
        ("127.0.0.1", False, "www.example.com.", None, {"192.0.2.10"}),  # default scope
        ("127.0.0.1", False, "svc.example.com.", None, {"198.51.100.30"}),  # time window: dr
        ("127.0.0.2", False, "www.example.com.", None, {"10.0.0.10"}),  # internal by address
        ("127.0.0.2", False, "intra.example.com.", None, {"10.0.0.80"}),  # internal's own
        ("127.0.0.3", True, "www.example.com.", "10.1.2.0/24", {"10.0.0.10"}),  # by ECS
    ]
    for n, (outgoing, ecs, name, client_ecs, wanted) in enumerate(cases):
        proc, port = run_unbound(
            tmp_path / f"u{n}", srv.port, "example.com.", anchor(), outgoing, ecs
        )
        try:
            reply = ask(port, name, client_ecs)
        finally:
            stop_process(proc)
        what = f"{name} via {outgoing} (ECS {client_ecs}): {reply}"
        assert reply.rcode() == dns.rcode.NOERROR, what
        assert reply.flags & dns.flags.AD, what
        assert addresses(reply) == wanted, what


def test_weighted_answers_and_denials_in_each_scope_validate(signed_server, tmp_path) -> None:
    srv = signed_server
    proc, port = run_unbound(tmp_path / "u", srv.port, ORIGIN, anchor())
    try:
        balanced = ask(port, "lb.example.com.")
        denied = ask(port, "intra.example.com.")  # only the internal scope has it
    finally:
        stop_process(proc)
    assert balanced.flags & dns.flags.AD, balanced
    assert addresses(balanced) in ({"192.0.2.40"}, {"198.51.100.40"})
    assert denied.rcode() == dns.rcode.NXDOMAIN and denied.flags & dns.flags.AD, denied


def test_a_resolver_anchored_to_another_key_finds_nothing_secure(signed_server, tmp_path):
    srv = signed_server
    wrong = anchor().replace(anchor().split()[-1][:8], "AAAAAAAA")
    proc, port = run_unbound(tmp_path / "u", srv.port, ORIGIN, wrong)
    try:
        reply = ask(port, "www.example.com.")
    finally:
        stop_process(proc)
    assert reply.rcode() == dns.rcode.SERVFAIL or not reply.flags & dns.flags.AD, reply


def test_expired_signatures_are_servfail_at_a_validating_resolver(tmp_path) -> None:
    """A zone whose signatures expired (signed by dnssec-signzone for January 2020) is
    served as it is; unbound, anchored to its KSK, answers SERVFAIL (RFC 4035 §5.3.1)."""
    signzone = need("dnssec-signzone", "bind9-utils")
    for name in (KSK, ZSK):
        for suffix in (".key", ".private"):
            shutil.copy(KEYS / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    (tmp_path / "zone").write_text(ZONE)
    signed = tmp_path / "zone.signed"
    subprocess.run(  # -P: its own check after signing would refuse expired signatures
        [signzone, "-q", "-P", "-K", str(tmp_path), "-S", "-s", "20200101000000"]
        + ["-e", "20200201000000", "-o", "example.com.", "-f", str(signed), "zone"],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    with Server(zone_text=signed.read_text(), origin="example.com.") as srv:
        proc, port = run_unbound(
            tmp_path / "u", srv.port, "example.com.", anchor(), "127.0.0.1", False
        )
        try:
            reply = ask(port, "www.example.com.")
        finally:
            stop_process(proc)
    assert reply.rcode() == dns.rcode.SERVFAIL, reply
