"""Serving a zone signed by BIND's ``dnssec-signzone``: dnspol, BIND (named) and Knot
(knotd) serve the same signed file and give the same DO=1 answers; BIND's validating
lookup tool ``delv`` and the validating resolver unbound, with the zone's key as trust
anchor, validate every kind of answer dnspol gives, and fail on a tampered signature
(docs/authoritative.md §16).

Three signings of one zone: NSEC, NSEC3 (no salt, no extra iterations, RFC 9276) and
NSEC3 with opt-out (the insecure delegation then has no NSEC3 of its own). The unit
tests are tests/test_dnssec_serve.py (pytest needs the two basenames apart).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from subprocess import STDOUT, Popen

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from itkit import free_port, need, run_named, run_unbound, stop_process, wait_answering

from dnspol.testing import Server
from dnspol.testing.client import query

ORIGIN = "example.test."
ZONE = """$ORIGIN example.test.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ MX 10 mail
ns1 A 192.0.2.1
www A 192.0.2.10
www AAAA 2001:db8::10
mail A 192.0.2.25
alias CNAME www
*.wild A 192.0.2.99
*.wild TXT "wild"
a.b.ent A 192.0.2.3
insecure NS ns.insecure
ns.insecure A 192.0.2.53
secure NS ns.secure
ns.secure A 192.0.2.54
dn DNAME ent
secure DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
"""
SIGNINGS = {"nsec": [], "nsec3": ["-3", "-", "-H", "0"], "optout": ["-3", "-", "-H", "0", "-A"]}

# (name, type, what it shows): every kind of answer RFC 4035 §3.1 and RFC 5155 §7.2 name
CASES = [
    ("www", "A", "NOERROR"),
    ("example.test.", "MX", "NOERROR with additional data"),
    ("www", "MX", "NODATA"),
    ("nope", "A", "NXDOMAIN"),
    ("x.y.nope", "TXT", "NXDOMAIN, two labels below the closest encloser"),
    ("zz.www", "A", "NXDOMAIN below an existing name"),
    ("x.wild", "A", "wildcard answer"),
    ("Deep.X.wild", "TXT", "wildcard answer, two labels below it"),
    ("x.wild", "MX", "wildcard NODATA"),
    ("b.ent", "A", "NODATA at an empty non-terminal"),
    ("alias", "A", "CNAME"),
    ("insecure", "DS", "no DS at an insecure delegation"),
    ("x.insecure", "A", "insecure referral"),
    ("secure", "DS", "DS of a secure delegation"),
    ("x.secure", "A", "secure referral"),
    ("example.test.", "DNSKEY", "DNSKEY"),
    ("example.test.", "NSEC3PARAM", "NSEC3PARAM (NODATA when NSEC)"),
    ("www", "NSEC", "NSEC query"),
    ("www", "RRSIG", "RRSIG query"),
    ("b.dn", "A", "DNAME, to an empty non-terminal"),
    ("x.dn", "A", "DNAME, to a name that does not exist"),
]
# delv would follow a referral, and RRSIGs are not signed
VALIDATED = [case for case in CASES if "referral" not in case[2] and case[1] != "RRSIG"]


def fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}.{ORIGIN}"


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> dict:
    """The zone signed three ways with one new ECDSA P-256 key, and delv's anchor."""
    keygen = need("dnssec-keygen", "bind9-utils")
    signzone = need("dnssec-signzone", "bind9-utils")
    work = tmp_path_factory.mktemp("signed")
    (work / "zone").write_text(ZONE)
    key = subprocess.run(
        [keygen, "-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "-K", str(work), ORIGIN],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    texts = {}
    for kind, flags in SIGNINGS.items():
        out = work / f"{kind}.zone"
        subprocess.run(
            [signzone, "-q", "-z", "-K", str(work), "-S", *flags, "-o", ORIGIN, "-f", str(out)]
            + [str(work / "zone")],
            check=True,
            capture_output=True,
            cwd=work,  # where it writes the dsset- file
        )
        texts[kind] = out.read_text()
    dnskey = (work / f"{key}.key").read_text().split("DNSKEY")[1].split()
    flags, protocol, algorithm, *material = dnskey
    anchor = work / "anchor.conf"
    anchor.write_text(
        f'trust-anchors {{ {ORIGIN} static-key {flags} {protocol} {algorithm} "'
        + "".join(material)
        + '"; };\n'
    )
    return {"texts": texts, "anchor": anchor, "work": work}


def run_knot(workdir: Path, zone_text: str) -> tuple[Popen, int]:
    """Knot DNS serving the zone file as it is (no signing of its own)."""
    knotd = need("knotd", "knot")
    port = free_port()
    (workdir / "zone.db").write_text(zone_text)
    (workdir / "knot.conf").write_text(
        f"""server:
    listen: 127.0.0.1@{port}
    rundir: {workdir}
database:
    storage: {workdir}
zone:
  - domain: {ORIGIN}
    file: {workdir}/zone.db
    storage: {workdir}
    journal-content: none
    zonefile-sync: -1
"""
    )
    with open(workdir / "knot.log", "w") as log:
        proc = Popen(
            [knotd, "-c", str(workdir / "knot.conf")],
            stdout=log,
            stderr=STDOUT,
            start_new_session=True,
        )
    try:
        wait_answering(port, ORIGIN)
    except AssertionError:
        stop_process(proc)
        raise AssertionError((workdir / "knot.log").read_text()[-2000:]) from None
    return proc, port


@pytest.fixture(scope="module", params=sorted(SIGNINGS))
def trio(request, signed, tmp_path_factory):
    """dnspol, BIND and Knot serving one signing of the zone: (kind, dnspol, ports)."""
    kind = request.param
    text = signed["texts"][kind]
    bind_dir = tmp_path_factory.mktemp(f"bind-{kind}")
    knot_dir = tmp_path_factory.mktemp(f"knot-{kind}")
    bind, bind_port = run_named(bind_dir, "minimal-responses yes;", text, ORIGIN)
    try:
        knot, knot_port = run_knot(knot_dir, text)
        try:
            with Server(zone_text=text, origin=ORIGIN) as srv:
                yield kind, srv, {"bind": bind_port, "knot": knot_port}
        finally:
            stop_process(knot)
    finally:
        stop_process(bind)


def sections(reply: dns.message.Message) -> dict:
    """What must agree: rcode, flags, and the answer and authority RRsets (order within
    a section does not matter; names compared in lowercase)."""
    return {
        "rcode": dns.rcode.to_text(reply.rcode()),
        "flags": dns.flags.to_text(reply.flags),
        "do": bool(reply.ednsflags & dns.flags.DO),
        "answer": sorted(rr.to_text().lower() for rr in reply.answer),
        "authority": sorted(rr.to_text().lower() for rr in reply.authority),
    }


@pytest.mark.parametrize(("name", "qtype", "what"), CASES, ids=[c[2] for c in CASES])
def test_dnspol_answers_signed_queries_as_bind_and_knot_do(trio, name, qtype, what) -> None:
    kind, srv, ports = trio
    ours = sections(query("127.0.0.1", srv.port, fqdn(name), qtype, do=True))
    assert ours["do"] and "ad" not in ours["flags"].lower().split()
    for peer, port in ports.items():
        if qtype == "RRSIG" and peer == "knot":
            continue  # Knot answers one RRSIG of the name; BIND and dnspol all (§15)
        theirs = sections(query("127.0.0.1", port, fqdn(name), qtype, do=True))
        assert ours == theirs, f"{kind}: {what}: dnspol and {peer} differ"


def test_without_do_a_signed_zone_answers_without_dnssec_records(trio) -> None:
    _, srv, _ = trio
    for name, qtype, _ in CASES:
        reply = query("127.0.0.1", srv.port, fqdn(name), qtype)
        types = {rrset.rdtype for section in (reply.answer, reply.authority) for rrset in section}
        asked = dns.rdatatype.from_text(qtype)
        assert not types & {46, 47, 50} - {asked}, (name, qtype)


def delv(port: int, anchor: Path, name: str, qtype: str) -> str:
    tool = need("delv", "bind9-dnsutils")
    done = subprocess.run(
        [tool, "@127.0.0.1", "-p", str(port), "-a", str(anchor), f"+root={ORIGIN}"]
        + [fqdn(name), qtype],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout + done.stderr


def test_delv_validates_every_kind_of_answer(signed, trio) -> None:
    kind, srv, _ = trio
    for name, qtype, what in VALIDATED:
        if kind == "optout" and "wildcard" in what and "NODATA" not in what:
            continue  # an opt-out NSEC3 covers the name: validators call it insecure
        out = delv(srv.port, signed["anchor"], name, qtype)
        assert "fully validated" in out, f"{kind}: {what}: {out}"


def tampered(text: str) -> str:
    """The zone with one character of ns1's RRSIG A changed."""
    lines = text.splitlines()
    owner = next(i for i, line in enumerate(lines) if line.startswith("ns1.example.test."))
    at = next(i for i in range(owner, len(lines)) if re.search(r"\sRRSIG\s+A\s", lines[i]))
    sig_line = at + 2  # the RRSIG's signature starts two lines below its type
    original = lines[sig_line].strip()
    changed = ("B" if original[0] != "B" else "C") + original[1:]
    lines[sig_line] = lines[sig_line].replace(original, changed)
    return "\n".join(lines) + "\n"


def test_delv_rejects_a_tampered_signature(signed) -> None:
    """The test can fail: one RRSIG's signature changed, and delv no longer validates."""
    with Server(zone_text=tampered(signed["texts"]["nsec3"]), origin=ORIGIN) as srv:
        out = delv(srv.port, signed["anchor"], "ns1", "A")
        assert "fully validated" not in out and "resolution failed" in out, out
        good = delv(srv.port, signed["anchor"], "www", "A")
        assert "fully validated" in good, good


def dnskey_record(signed: dict) -> str:
    key = next(signed["work"].glob("K*.key")).read_text()
    return next(line for line in key.splitlines() if "DNSKEY" in line and not line.startswith(";"))


def test_unbound_in_front_validates_every_kind_of_answer_as_secure(signed, trio, tmp_path):
    """A validating resolver sets AD on each answer (RFC 4035 §3.2.3): data, NXDOMAIN,
    NODATA, wildcards, CNAME, DNAME, the DS of a secure delegation and its absence."""
    kind, srv, _ = trio
    proc, port = run_unbound(tmp_path, srv.port, ORIGIN, dnskey_record(signed))
    try:
        for name, qtype, what in VALIDATED:
            reply = query("127.0.0.1", port, fqdn(name), qtype, rd=True, do=True, timeout=5)
            assert dns.rcode.to_text(reply.rcode()) in ("NOERROR", "NXDOMAIN"), what
            if kind == "optout" and OPTED_OUT.search(what):
                continue  # RFC 5155 §9.2: an opt-out NSEC3 covers the name: insecure
            assert reply.flags & dns.flags.AD, f"{kind}: {what}: {reply}"
    finally:
        stop_process(proc)


# answers that an opt-out NSEC3 covering a name proves: valid, but not secure
OPTED_OUT = re.compile(r"NXDOMAIN|wildcard|does not exist|no DS")


def test_unbound_answers_servfail_for_a_tampered_signature(signed, tmp_path):
    text = tampered(signed["texts"]["nsec3"])
    with Server(zone_text=text, origin=ORIGIN) as srv:
        proc, port = run_unbound(tmp_path, srv.port, ORIGIN, dnskey_record(signed))
        try:
            bad = query("127.0.0.1", port, fqdn("ns1"), "A", rd=True, do=True, timeout=5)
            assert dns.rcode.to_text(bad.rcode()) == "SERVFAIL"
            good = query("127.0.0.1", port, fqdn("www"), "A", rd=True, do=True, timeout=5)
            assert good.flags & dns.flags.AD
        finally:
            stop_process(proc)
