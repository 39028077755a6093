"""Shared pieces of the zone transfer tests: the generated zone, the primary's policies
and keys, and comparing a secondary's answers with dnspol's."""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.tsig

from dnspol.testing import Server

SERIAL = 2026112701
SECRET = base64.b64encode(b"fleet-secret-0123456789abcdef012").decode()
INTERNAL_SECRET = base64.b64encode(b"internal-secret-0123456789abcdef").decode()
KEYS = {
    "fleet": dns.tsig.Key("fleet.", SECRET, dns.tsig.HMAC_SHA256),
    "internal": dns.tsig.Key("internal.", INTERNAL_SECRET, dns.tsig.HMAC_SHA512),
}
TYPES = ["A", "A", "A", "AAAA", "AAAA", "MX", "TXT", "CNAME", "NS", "SOA", "SRV", "CAA"]


def generated_zone(rng: random.Random, names: int = 150) -> str:
    lines = [
        "$ORIGIN example.com.",
        "$TTL 3600",
        f"@ SOA ns1 hostmaster {SERIAL} 7200 900 1209600 300",
        "@ NS ns1",
        "@ NS ns2",
        "@ MX 10 mail",
        "ns1 A 192.0.2.1",
        "ns2 A 192.0.2.2",
        "mail A 192.0.2.25",
        "*.wild A 192.0.2.99",
        "*.wild TXT wildcard",
        "sub NS ns.sub",
        "ns.sub A 192.0.2.53",
        "deep.a.b.c A 192.0.2.7",
    ]
    for i in range(names):
        kind = rng.choice(["A", "AAAA", "MX", "TXT", "CNAME", "SRV", "multi"])
        name = f"h{i}"
        ttl = rng.choice([60, 300, 3600])
        if kind == "A" or kind == "multi":
            for j in range(rng.randrange(1, 4)):
                lines.append(f"{name} {ttl} A 198.51.{i % 250}.{j + 1}")
        if kind == "AAAA" or kind == "multi":
            lines.append(f"{name} {ttl} AAAA 2001:db8::{i:x}")
        if kind == "MX":
            lines.append(f"{name} {ttl} MX {rng.randrange(100)} mail")
        if kind == "TXT":
            lines.append(f'{name} {ttl} TXT "v=spf1 -all" "part {i}"')
        if kind == "CNAME":
            lines.append(f"{name} {ttl} CNAME h{rng.randrange(names)}")
        if kind == "SRV":
            lines.append(f"{name} {ttl} SRV 0 5 5060 ns1")
    return "\n".join(lines) + "\n"


INTERNAL = """\
$ORIGIN example.com.
h1 60 A 10.0.0.1
h2 60 A 10.0.0.2
db A 10.0.0.20
mail A 10.0.0.25
"""
POLICIES = """\
keys:
  fleet: {secret_file: fleet.key}
  internal: {algorithm: hmac-sha512, secret_file: internal.key, scope: internal}
rules:
  - name: internal-clients
    zone: example.com
    match: {client: 127.0.0.2}
    answer: internal
transfers:
  - name: lab-denied
    match: {client: 127.0.0.66}
    action: refuse
  - name: fleet
    match: {client: 127.0.0.0/8, key: [fleet, internal]}
    action: allow
"""


def wait_loaded(
    port: int, source: str = "127.0.0.1", timeout: float = 12.0, serial: int = SERIAL
) -> None:
    """Until the secondary answers the zone's SOA with ``serial``, authoritatively."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = ask(port, "example.com.", "SOA", source)
        except dns.exception.Timeout:
            continue
        if reply.rcode() == 0 and reply.answer and reply.answer[0][0].serial == serial:
            return
        time.sleep(0.05)
    raise AssertionError(f"no serial {serial} for example.com. from {source} within {timeout} s")


def ask(port: int, name: str, qtype: str, source: str = "127.0.0.1") -> dns.message.Message:
    query = dns.message.make_query(name, qtype, use_edns=False)
    query.flags &= ~dns.flags.RD
    return dns.query.udp(query, "127.0.0.1", timeout=1.0, port=port, source=source)


def answer_of(reply: dns.message.Message) -> tuple:
    """What a secondary must reproduce: rcode, AA, and the answer section (order of
    records inside an RRset aside)."""
    answer = sorted(
        (rrset.name.to_text().lower(), rrset.ttl, rdata.to_text().lower())
        + (dns.rdatatype.to_text(rrset.rdtype),)
        for rrset in reply.answer
        for rdata in rrset
    )
    return reply.rcode(), bool(reply.flags & dns.flags.AA), answer


def questions(zone_text: str, rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Names of the zone (most often with a type they own), names below the wildcard,
    the delegation and an empty non-terminal, and names that do not exist."""
    owned: dict[str, set[str]] = {}
    for line in zone_text.splitlines()[3:]:
        fields = line.split()
        if fields and fields[0][0] not in "$@*":
            owned.setdefault(fields[0], set()).add(next(f for f in fields[1:] if f.isalpha()))
    names = {f"{owner}.example.com.": types for owner, types in owned.items()}
    for extra in (
        "example.com.",
        "x.wild.example.com.",
        "a.b.c.example.com.",
        "www.sub.example.com.",
    ):
        names.setdefault(extra, set())
    out = []
    for _ in range(count):
        if rng.random() < 0.2:
            name, types = f"nx{rng.randrange(10**6)}.example.com.", set()
        else:
            name, types = rng.choice(sorted(names.items()))
        if types and rng.random() < 0.6:
            out.append((name, rng.choice(sorted(types))))
        else:
            out.append((name, rng.choice(TYPES)))
    return out


def compare(primary: Server, port: int, zone_text: str, source: str, count: int = 220) -> int:
    """Ask BIND and dnspol the same questions from ``source``; every difference fails."""
    differences, answered = [], 0
    for name, qtype in questions(zone_text, random.Random(count), count):
        ours = answer_of(ask(primary.port, name, qtype, source))
        theirs = answer_of(ask(port, name, qtype, source))
        answered += bool(ours[2])
        if ours != theirs:
            differences.append((name, qtype, ours, theirs))
    assert not differences, differences[:5]
    assert answered > count // 2  # most questions have records to compare
    return count


def start_primary(zone_text: str) -> Server:
    """dnspol serving the generated zone, its internal scope, the keys and the rules."""
    return Server(
        zones={"example.com.": zone_text},
        scopes={"example.com.": {"internal": INTERNAL}},
        policies=POLICIES,
        files={"fleet.key": SECRET, "internal.key": INTERNAL_SECRET},
    )


def notifying_primary(workdir: Path, zone_text: str, port: int) -> Server:
    """dnspol as ``start_primary``, with an IXFR journal, notifying 127.0.0.1:``port``
    (signed with the fleet key); its files in ``workdir``, so a test can change them."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "example.com.zone").write_text(zone_text)
    (workdir / "internal.zone").write_text(INTERNAL)
    (workdir / "fleet.key").write_text(SECRET)
    (workdir / "internal.key").write_text(INTERNAL_SECRET)
    zones = f"""server:
  journal: journal
zones:
  example.com:
    file: example.com.zone
    scopes:
      internal: {{overlay: internal.zone}}
    notify: [{{address: "127.0.0.1:{port}", key: fleet}}]
"""
    (workdir / "dnspol.yaml").write_text(zones + POLICIES)
    return Server(config=workdir / "dnspol.yaml")


def bumped(zone_text: str) -> str:
    """The next version: serial + 1, one record changed, one added (7 records by IXFR)."""
    text = zone_text.replace(str(SERIAL), str(SERIAL + 1)) + "fresh A 192.0.2.123\n"
    text = text.replace("mail A 192.0.2.25\n", "mail A 192.0.2.26\n")
    assert text.count("192.0.2.26") == 1
    return text


def reload_and_wait(primary: Server, workdir: Path, zone_text: str, port: int) -> tuple[str, float]:
    """Reload the primary with the next version; the seconds until the secondary on
    ``port`` serves it (at most 5)."""
    new = bumped(zone_text)
    (workdir / "example.com.zone").write_text(new)
    primary.reload()
    began = time.monotonic()
    wait_loaded(port, serial=SERIAL + 1, timeout=5)
    return new, time.monotonic() - began
