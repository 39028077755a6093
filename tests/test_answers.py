"""The compiled answer tables give the reference path's bytes, over random zones.

Random zones (delegations with glue, CNAME chains, wildcards, DNAME, empty
non-terminals, names in data that own nothing), a second random scope chosen by a
weighted rule, and random queries (letter case, types, EDNS sizes, DO, CD, RD, ECS,
COOKIE, UDP and TCP): a handler answering from the tables and one answering every
query on the reference path must send the same bytes.
"""

from __future__ import annotations

import atexit
import functools
import os
import random
import shutil
import struct
import subprocess
import tempfile

from dnslib import EDNS0, DNSRecord, EDNSOption
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnspol.answers import compile_tables
from dnspol.cookies import CookieConfig
from dnspol.errors import ZoneError
from dnspol.handler import Handler, Listener
from dnspol.names import from_text
from dnspol.policy.engine import Policy, Rule
from dnspol.state import ServerState, Snapshot
from dnspol.zones.loader import load_zone_text
from dnspol.zones.model import Zone, ZoneSet

EXAMPLES = int(os.environ.get("DNSPOL_ANSWERS_EXAMPLES", "60"))
ORIGIN = "zone.test."
UDP = Listener("127.0.0.1", 53, "udp")
TCP = Listener("127.0.0.1", 53, "tcp")
LABELS = ["a", "b", "www", "mail", "ns1", "sub", "deep", "x", "*", "wild", "Mixed"]
TYPES = [1, 28, 15, 16, 2, 5, 6, 33, 12, 39, 43, 255, 99, 65280, 64]


def random_zone(rng: random.Random, big_txt: bool) -> str:
    """A zone text with a bit of everything, every name under ``ORIGIN``."""
    mname = rng.choice(["ns1", "ns9", "ns1.sub", "ns.elsewhere.test."])
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 300", f"@ SOA {mname} host.master 1 3600 600 86400 60"]
    lines += ["@ NS ns1", "ns1 A 192.0.2.1"]
    names = set()
    for _ in range(rng.randrange(4, 14)):
        depth = rng.randrange(1, 4)
        names.add(".".join(rng.choice(LABELS) for _ in range(depth)))
    cuts = set()
    for name in sorted(names):
        if any(name.endswith("." + cut) or name == cut for cut in cuts):
            continue  # nothing but glue below a delegation
        kind = rng.choice(["a", "a", "aaaa", "mx", "txt", "cname", "ns", "srv", "dname", "big"])
        if kind == "a":
            lines.append(f"{name} A 192.0.2.{rng.randrange(1, 255)}")
        elif kind == "aaaa":
            lines.append(f"{name} AAAA 2001:db8::{rng.randrange(1, 65535):x}")
        elif kind == "mx":
            target = rng.choice(["mail", "ns1", "nothere", "mx.elsewhere.test."])
            lines.append(f"{name} MX {rng.randrange(0, 20)} {target}")
        elif kind == "txt":
            text = "x" * 250 if big_txt else "hello"
            for i in range(rng.randrange(1, 4 if not big_txt else 6)):
                lines.append(f'{name} TXT "{text}{i}"')
        elif kind == "cname" and "*" not in name.split(".")[1:]:
            target = rng.choice(sorted(names) + ["out.elsewhere.test.", "nothere"])
            lines.append(f"{name} CNAME {target}")
        elif kind == "ns" and "*" not in name:
            cuts.add(name)
            lines.append(f"{name} NS ns.{name}")
            lines.append(f"ns.{name} A 192.0.2.{rng.randrange(1, 255)}")
            lines.append(f"{name} NS ns.elsewhere.test.")
        elif kind == "big" and "*" not in name:  # a referral whose glue overflows 512
            cuts.add(name)
            for i in range(rng.randrange(6, 14)):
                lines.append(f"{name} NS ns{i}.{name}")
                lines.append(f"ns{i}.{name} A 192.0.2.{i + 1}")
                lines.append(f"ns{i}.{name} AAAA 2001:db8::{i + 1}")
            lines.append(f"www MX 10 ns0.{name}")  # glue is not additional data for MX
        elif kind == "srv":
            lines.append(f"{name} SRV 0 5 5060 {rng.choice(['mail', 'nothere'])}")
        elif kind == "dname" and "*" not in name:
            lines.append(f"{name} DNAME {rng.choice(['www', 'elsewhere.test.'])}")
        else:
            lines.append(f"{name} A 192.0.2.250")
    if rng.random() < 0.5:
        lines.append("mail A 192.0.2.25")
        lines.append("mail AAAA 2001:db8::25")
    return "\n".join(lines) + "\n"


def valid_zone(rng: random.Random, scope: str) -> Zone:
    """The first random zone the loader accepts (some break its rules: CNAME and other
    data, data below a DNAME)."""
    while True:
        try:
            text = random_zone(rng, big_txt=rng.random() < 0.3)
            return load_zone_text(text, ORIGIN, scope=scope)
        except ZoneError:
            continue


def make_snapshot(seed: int) -> Snapshot:
    rng = random.Random(seed)
    default = valid_zone(rng, "default")
    alt = valid_zone(rng, "alt")
    origin = from_text(ORIGIN)
    zones = ZoneSet([default])
    policy = None
    variants = {}
    if rng.random() < 0.5:
        variants = {(origin, "default"): default, (origin, "alt"): alt}
        rule = Rule(
            "split",
            "test:1",
            zone=origin,
            weights=(("default", 1.0), ("alt", 1.0)),
            zones=frozenset({origin}),
        )
        policy = Policy([rule])
    cookies = CookieConfig((bytes(range(16)),)) if rng.random() < 0.5 else None
    return Snapshot(zones=zones, variants=variants, policy=policy, cookies=cookies)


def random_queries(seed: int, snap: Snapshot) -> list[bytes]:
    rng = random.Random(seed)
    zone = next(iter(snap.zones))
    known = [".".join(label.decode() for label in name) for name in zone.nodes]
    known += ["nothere.zone.test", "a.b.c.zone.test", "zone.test", "elsewhere.test"]
    out = []
    for _ in range(60):
        name = rng.choice(known)
        if rng.random() < 0.4:
            name = f"{rng.choice(LABELS + ['q', 'zz'])}.{name}".replace("*.", "s.")
        name = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
        query = DNSRecord.question(name)
        query.q.qtype = rng.choice(TYPES)
        query.header.id = rng.randrange(65536)
        query.header.rd = rng.random() < 0.5
        query.header.cd = rng.random() < 0.2
        if rng.random() < 0.7:
            opts = []
            if rng.random() < 0.3:
                data = struct.pack("!HBB", 1, 24, 0) + bytes((10, rng.randrange(256), 3))
                opts.append(EDNSOption(8, data))
            if rng.random() < 0.3:
                opts.append(EDNSOption(10, bytes(rng.randrange(256) for _ in range(8))))
            flags = "do" if rng.random() < 0.5 else ""
            size = rng.choice([512, 600, 1232, 4096])
            query.add_ar(EDNS0(udp_len=size, flags=flags, opts=opts))
        out.append(bytes(query.pack()))
    return out


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_compiled_answers_equal_the_reference_paths(seed):
    snap = make_snapshot(seed)
    fast = Handler(ServerState(snap), seed=seed)
    slow = Handler(ServerState(snap), seed=seed)
    slow.fast_path = False
    fast.cookie_clock = slow.cookie_clock = lambda: 1_800_000_000  # one second for both
    for wire in random_queries(seed, snap):
        for listener in (UDP, TCP):
            peer = ("192.0.2.9", 5353)
            assert fast.handle(wire, peer, listener) == slow.handle(wire, peer, listener), (
                DNSRecord.parse(wire).q
            )


def test_most_random_queries_are_answered_from_the_tables():
    """The differential test above is not vacuous: the tables answer most queries."""
    compiled = total = 0
    for seed in range(20):
        snap = make_snapshot(seed)
        fast = Handler(ServerState(snap), seed=seed)
        for wire in random_queries(seed, snap):
            fast.handle(wire, ("192.0.2.9", 5353), UDP)
            total += 1
        compiled += 60 - fast.stats.reference
    assert compiled > total * 0.6


def test_tables_are_built_once_and_not_grown_by_queries():
    snap = make_snapshot(3)
    tables = snap.tables
    sizes = tables.sizes()
    fast = Handler(ServerState(snap))
    for seed in range(30):
        for wire in random_queries(seed, snap):
            fast.handle(wire, ("192.0.2.9", 5353), UDP)
    assert snap.tables is tables and tables.sizes() == sizes
    again = compile_tables(snap.zones, snap.variants)
    assert again.sizes() == sizes  # the same zones compile to the same tables


def test_a_child_zone_served_here_answers_its_names_not_the_parent():
    """Names under a served child zone are the child's, even where the parent holds data
    for them (no delegation): the merged tables leave the parent's out."""
    parent = load_zone_text(
        "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"
        "a.sub A 192.0.2.50\nb.sub A 192.0.2.51\nwww A 192.0.2.80\n",
        "example.test.",
    )
    child = load_zone_text(
        "$ORIGIN sub.example.test.\n$TTL 60\n@ SOA ns1 h 7 2 3 4 5\n@ NS ns1\n"
        "ns1 A 192.0.2.9\nb A 192.0.2.99\n",
        "sub.example.test.",
    )
    snap = Snapshot(zones=ZoneSet([parent, child]))
    fast, slow = Handler(ServerState(snap)), Handler(ServerState(snap))
    slow.fast_path = False
    answers = {}
    for name in (
        "a.sub.example.test",
        "b.sub.example.test",
        "www.example.test",
        "x.sub.example.test",
    ):
        wire = bytes(DNSRecord.question(name).pack())
        out = fast.handle(wire, ("192.0.2.9", 5353), UDP)
        assert out == slow.handle(wire, ("192.0.2.9", 5353), UDP)
        answers[name] = DNSRecord.parse(out)
    assert answers["a.sub.example.test"].header.rcode == 3  # the child has no a.sub
    assert str(answers["b.sub.example.test"].rr[0].rdata) == "192.0.2.99"
    assert str(answers["www.example.test"].rr[0].rdata) == "192.0.2.80"
    assert fast.stats.reference == 0


# --- signed zones: DO=1 answers (RRSIGs, NSEC/NSEC3 proofs) on both paths -------------

SIGNINGS = ([], ["-3", "-", "-H", "0"], ["-3", "-", "-H", "0", "-A"])  # NSEC, NSEC3, opt-out


@functools.cache
def signing_key() -> str:
    """A key directory with one ECDSA key, made once (BIND's dnssec-keygen)."""
    folder = tempfile.mkdtemp(prefix="dnspol-test-keys-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # made once for the run
    subprocess.run(
        ["dnssec-keygen", "-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "-K", folder, ORIGIN],
        check=True,
        capture_output=True,
    )
    return folder


def signed_zone(rng: random.Random, scope: str) -> Zone:
    """A random zone the loader accepts, signed by dnssec-signzone with NSEC, NSEC3 or
    NSEC3 opt-out."""
    keys = signing_key()
    while True:
        text = random_zone(rng, big_txt=rng.random() < 0.3)
        try:
            load_zone_text(text, ORIGIN)
        except ZoneError:
            continue
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "zone")
            with open(path, "w") as file:
                file.write(text)
            signed = subprocess.run(
                ["dnssec-signzone", "-q", "-z", "-K", keys, "-S", *rng.choice(SIGNINGS)]
                + ["-o", ORIGIN, "-f", "-", path],
                capture_output=True,
                text=True,
                cwd=work,
            )
        if signed.returncode == 0:
            return load_zone_text(signed.stdout, ORIGIN, scope=scope)


def signed_snapshot(seed: int) -> Snapshot:
    rng = random.Random(seed)
    default = signed_zone(rng, "default")
    zones = ZoneSet([default])
    if rng.random() < 0.5:
        return Snapshot(zones=zones)
    origin = from_text(ORIGIN)
    alt = signed_zone(rng, "alt")
    rule = Rule(
        "split", "test:1", zone=origin, weights=(("default", 1.0), ("alt", 1.0)),
        zones=frozenset({origin}),
    )  # fmt: skip
    variants = {(origin, "default"): default, (origin, "alt"): alt}
    return Snapshot(zones=zones, variants=variants, policy=Policy([rule]))


def dnssec_queries(seed: int, snap: Snapshot) -> list[bytes]:
    """``random_queries``, most with DO, and some for the DNSSEC types."""
    rng = random.Random(seed)
    out = []
    for wire in random_queries(seed, snap):
        query = DNSRecord.parse(wire)
        if rng.random() < 0.3:
            query.q.qtype = rng.choice([43, 46, 47, 48, 50, 51])
        query.ar = [ar for ar in query.ar if ar.rtype != 41]
        if rng.random() < 0.9:
            size = rng.choice([512, 1232, 1232, 4096])
            query.add_ar(EDNS0(udp_len=size, flags="do" if rng.random() < 0.8 else ""))
        out.append(bytes(query.pack()))
    return out


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32))
def test_signed_zones_compiled_answers_equal_the_reference_paths(seed):
    """DO=1 answers of signed zones, and answers without DO, byte for byte."""
    snap = signed_snapshot(seed)
    fast = Handler(ServerState(snap), seed=seed)
    slow = Handler(ServerState(snap), seed=seed)
    slow.fast_path = False
    for wire in dnssec_queries(seed, snap):
        for listener in (UDP, TCP):
            peer = ("192.0.2.9", 5353)
            assert fast.handle(wire, peer, listener) == slow.handle(wire, peer, listener), (
                DNSRecord.parse(wire).q
            )


def test_signed_zones_most_do_queries_are_answered_from_the_tables():
    """The differential test above is not vacuous for DO=1."""
    compiled = total = signed = 0
    for seed in range(8):
        snap = signed_snapshot(seed)
        fast = Handler(ServerState(snap), seed=seed)
        queries = dnssec_queries(seed, snap)
        for wire in queries:
            out = fast.handle(wire, ("192.0.2.9", 5353), TCP)
            signed += b"\x00\x2e\x00\x01" in out  # an RRSIG record (type 46, class IN)
        total += len(queries)
        compiled += len(queries) - fast.stats.reference
    assert signed > total * 0.5
    assert compiled > total * 0.6
