"""Signing with the real tools: BIND's dnssec-verify accepts each scope's signed zone as
``dnspol dump`` writes it, and a running server signs again before its signatures expire."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dns.rdatatype
import pytest

from dnspol.testing import Server

KEYS = Path(__file__).parents[1] / "data" / "dnssec"
KSK, ZSK = "Kexample.com.+013+34096", "Kexample.com.+013+14727"
CSK = "Kexample.com.+015+23388"  # ED25519, flags 257, alone
ROOT = Path(__file__).parents[2]

ZONE = """\
$ORIGIN example.com.
$TTL 300
@       SOA   ns1 hostmaster 1 3600 600 604800 120
@       NS    ns1
ns1     A     192.0.2.53
www     A     192.0.2.10
www     AAAA  2001:db8::10
alias   CNAME www
*.wild  TXT   "anything"
deep.a.b TXT  "two empty non-terminals above"
insecure NS   ns.insecure
ns.insecure A 192.0.2.99
secure  NS    ns.elsewhere.net.
secure  DS    12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
"""
OVERLAY = """\
$ORIGIN example.com.
$TTL 60
www     A     10.0.0.10
alias   A     10.0.0.11
intra   A     10.0.0.80
"""


def signed_config(
    tmp_path: Path, denial: str = "nsec", extra: str = "", keys: tuple[str, ...] = (KSK, ZSK)
) -> Path:
    for name in keys:
        for suffix in (".key", ".private"):
            shutil.copy(KEYS / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    (tmp_path / "example.com.zone").write_text(ZONE)
    (tmp_path / "internal.zone").write_text(OVERLAY)
    config = tmp_path / "dnspol.yaml"
    config.write_text(
        f"""\
zones:
  example.com:
    file: example.com.zone
    scopes:
      internal: {{overlay: internal.zone}}
    dnssec:
      keys: [{", ".join(keys)}]
      denial: {denial}
{extra}"""
    )
    return config


def dump(config: Path, scope: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "dnspol", "dump", "-c", str(config), "example.com"]
    done = subprocess.run(
        [*argv, "--scope", scope], capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def dnssec_verify(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    verify = shutil.which("dnssec-verify")
    assert verify, "dnssec-verify (bind9-utils) is needed: scripts/test.sh installs it"
    return subprocess.run(
        [verify, *options, "-o", "example.com.", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
@pytest.mark.parametrize("scope", ["default", "internal"])
def test_dnssec_verify_accepts_each_scope_as_dumped(
    tmp_path: Path, denial: str, scope: str
) -> None:
    config = signed_config(tmp_path, denial)
    path = tmp_path / f"{scope}.signed"
    path.write_text(dump(config, scope))
    checked = dnssec_verify(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Zone fully signed" in checked.stdout + checked.stderr


def test_dnssec_verify_accepts_a_csk_signed_scope(tmp_path: Path) -> None:
    """One ED25519 key with flags 257 signs everything; dnssec-verify wants -z for that
    (it would otherwise look for a ZSK), as for a zone dnssec-signzone signs with a CSK."""
    config = signed_config(tmp_path, "nsec3", keys=(CSK,))
    path = tmp_path / "internal.signed"
    path.write_text(dump(config, "internal"))
    checked = dnssec_verify(path, "-z")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dnssec_verify_refuses_a_changed_record(tmp_path: Path) -> None:
    """The check above can fail: one address changed after signing."""
    config = signed_config(tmp_path)
    path = tmp_path / "tampered.signed"
    path.write_text(dump(config, "internal").replace("10.0.0.80", "10.0.0.81"))
    checked = dnssec_verify(path)
    assert checked.returncode != 0
    assert "intra.example.com" in checked.stdout + checked.stderr


def rrsig_inception(srv: Server) -> int:
    reply = srv.query("example.com.", "RRSIG")
    inceptions = {rd.inception for rrset in reply.answer for rd in rrset}
    assert len(inceptions) == 1 and all(r.rdtype == dns.rdatatype.RRSIG for r in reply.answer)
    return inceptions.pop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_server_signs_again_at_the_refresh_point(tmp_path: Path, workers: str) -> None:
    """Signatures valid for 20 s, refreshed 16 s before they expire: signed again after
    about 4 s, without a restart, in one process and under the supervisor."""
    extra = "      validity: 20\n      refresh: 16\n      jitter: 0\n      inception: 0\n"
    config = signed_config(tmp_path, extra=extra)
    with Server(config=config, extra_args=["--workers", workers]) as srv:
        keys = srv.query("example.com.", "DNSKEY").answer
        assert sum(len(rrset) for rrset in keys) == 2
        first = rrsig_inception(srv)
        deadline = time.monotonic() + 12  # due after 4 s; a loaded machine takes longer
        while rrsig_inception(srv) == first:
            assert time.monotonic() < deadline, "not signed again within 12 s:\n" + srv.log
            time.sleep(0.2)
        assert rrsig_inception(srv) > first
        assert "signatures reach their refresh point; signing again" in srv.log


# --- end to end: dnspol signs, dnspol serves (DO=1), delv validates ---------------------

CASES = [  # (name, type, client, what the answer must hold)
    ("www.example.com.", "A", "127.0.0.1", "192.0.2.10"),
    ("www.example.com.", "A", "127.0.0.2", "10.0.0.10"),  # the internal scope's own data
    ("intra.example.com.", "A", "127.0.0.2", "10.0.0.80"),  # a name only internal has
    ("alias.example.com.", "A", "127.0.0.1", "192.0.2.10"),  # CNAME, then its target
    ("alias.example.com.", "A", "127.0.0.2", "10.0.0.11"),  # the overlay's A replaces it
    ("x.wild.example.com.", "TXT", "127.0.0.1", "anything"),  # a wildcard answer
    ("www.example.com.", "MX", "127.0.0.2", "NODATA"),
    ("intra.example.com.", "A", "127.0.0.1", "NXDOMAIN"),  # denied where the scope lacks it
    ("nothere.example.com.", "A", "127.0.0.2", "NXDOMAIN"),
    ("b.example.com.", "TXT", "127.0.0.1", "NODATA"),  # an empty non-terminal
]
RULES = """\
rules:
  - name: internal
    zone: example.com
    match: {client: 127.0.0.2/32}
    answer: internal
"""


def anchor_file(tmp_path: Path) -> Path:
    flags, protocol, algorithm, *material = (
        (KEYS / f"{KSK}.key").read_text().split("DNSKEY")[1].split()
    )
    anchor = tmp_path / "anchor.conf"
    anchor.write_text(
        f'trust-anchors {{ example.com. static-key {flags} {protocol} {algorithm} "'
        + "".join(material)
        + '"; };\n'
    )
    return anchor


def delv(port: int, anchor: Path, name: str, qtype: str, client: str) -> str:
    tool = shutil.which("delv")
    assert tool, "delv (bind9-dnsutils) is needed: scripts/test.sh installs it"
    done = subprocess.run(
        [tool, "@127.0.0.1", "-p", str(port), "-b", client, "-a", str(anchor)]
        + ["+root=example.com.", name, qtype],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_delv_validates_what_dnspol_signed_in_every_scope(tmp_path: Path, denial: str) -> None:
    config = signed_config(tmp_path, denial)
    config.write_text(config.read_text() + RULES)
    anchor = anchor_file(tmp_path)
    with Server(config=config, extra_args=["--workers", "1"]) as srv:
        for name, qtype, client, want in CASES:
            out = delv(srv.port, anchor, name, qtype, client)
            assert "fully validated" in out, f"{name} {qtype} from {client}: {out}"
            if want == "NXDOMAIN":
                assert "ncache nxdomain" in out or "NXDOMAIN" in out.upper(), out
            elif want == "NODATA":
                assert "ncache nxrrset" in out or "NXRRSET" in out.upper(), out
            else:
                assert want in out, out


def test_delv_refuses_a_scope_signed_with_another_key(tmp_path: Path) -> None:
    """The check above can fail: anchored to a key that did not sign the zone."""
    config = signed_config(tmp_path)
    anchor = anchor_file(tmp_path)
    text = anchor.read_text()
    anchor.write_text(text.replace(text.split('"')[1][:8], "AAAAAAAA"))
    with Server(config=config, extra_args=["--workers", "1"]) as srv:
        out = delv(srv.port, anchor, "www.example.com.", "A", "127.0.0.1")
    assert "fully validated" not in out, out
