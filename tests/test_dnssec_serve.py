"""Serving signed zones (dnspol.dnssec): the chains' order and hashes, and the DO=1
answers' rules that a comparison with BIND and Knot does not show on its own (RFC 4035
§3.1, RFC 5155 §7.2). Zones are signed by BIND's dnssec-signzone."""

from __future__ import annotations

import atexit
import base64
import functools
import os
import random
import shutil
import subprocess
import tempfile

import dns.name
import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from dnspol.dnssec.denial import Chain
from dnspol.handler import Handler, Listener
from dnspol.names import from_text, to_wire
from dnspol.state import ServerState, Snapshot
from dnspol.zones.loader import load_zone_text
from dnspol.zones.model import Zone, ZoneSet
from dnspol.zones.rdata import pack_uncompressed, to_name

UDP = Listener("127.0.0.1", 53, "udp")
PEER = ("192.0.2.9", 5353)
ZONE = """$ORIGIN example.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ MX 10 mail
ns1 A 192.0.2.1
mail A 192.0.2.25
mail A 192.0.2.26
mail AAAA 2001:db8::25
mail AAAA 2001:db8::26
mail AAAA 2001:db8::27
mail AAAA 2001:db8::28
mail AAAA 2001:db8::29
mail AAAA 2001:db8::30
www A 192.0.2.10
*.wild A 192.0.2.99
dn DNAME www
insecure NS ns.insecure
ns.insecure A 192.0.2.53
secure NS ns.secure
ns.secure A 192.0.2.54
secure DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
big TXT "{text}0" "{text}1"
""".replace("{text}", "x" * 180)
NSEC3 = ("-3", "-", "-H", "0")


@functools.cache
def key_folder() -> str:
    folder = tempfile.mkdtemp(prefix="dnspol-test-keys-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # made once for the run
    subprocess.run(
        ["dnssec-keygen", "-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "-K", folder, "example."],
        check=True,
        capture_output=True,
    )
    return folder


def signed(text: str, *flags: str) -> Zone:
    """``text`` signed by dnssec-signzone with ``flags``, loaded."""
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "zone")
        with open(path, "w") as file:
            file.write(text)
        done = subprocess.run(
            ["dnssec-signzone", "-q", "-z", "-K", key_folder(), "-S", *flags]
            + ["-o", "example.", "-f", "-", path],
            check=True,
            capture_output=True,
            text=True,
            cwd=work,
        )
    return load_zone_text(done.stdout, "example.")


def handlers(zone: Zone) -> tuple[Handler, Handler]:
    """A handler answering from the tables, and one on the reference path only."""
    snap = Snapshot(zones=ZoneSet([zone]))
    fast, slow = Handler(ServerState(snap)), Handler(ServerState(snap))
    slow.fast_path = False
    return fast, slow


def ask(pair, name: str, qtype: str = "A", do: bool = True, size: int = 1232, **bits):
    """The reply of both paths (which must be the same bytes), parsed."""
    query = DNSRecord.question(name, qtype)
    query.add_ar(EDNS0(udp_len=size, flags="do" if do else ""))
    for bit, value in bits.items():
        setattr(query.header, bit, value)
    wire = bytes(query.pack())
    fast, slow = pair
    out = fast.handle(wire, PEER, UDP)
    assert out == slow.handle(wire, PEER, UDP)
    return DNSRecord.parse(out)


def types(records) -> list[str]:
    return [QTYPE[rr.rtype] for rr in records]


@pytest.fixture(scope="module")
def nsec():
    return handlers(signed(ZONE))


@pytest.fixture(scope="module")
def nsec3():
    return handlers(signed(ZONE, *NSEC3))


def test_nsec3_hash_is_rfc_5155s():
    """RFC 5155 Appendix A: H(example) with salt aabbccdd and 12 iterations."""
    chain = Chain(True, [], [], {})
    chain.salt, chain.iterations = bytes.fromhex("aabbccdd"), 12
    digest = chain.hash(to_wire(from_text("example.")))
    assert base64.b32hexencode(digest) == b"0P9MHAVEQVM6T7VBL5LOP2U3T2RP3TOM"


def test_the_nsec_chain_is_in_canonical_order_as_the_signer_links_it():
    """RFC 4034 §6.1's example names, sorted as the RFC lists them, each NSEC naming the
    next entry as dnssec-signzone linked them."""
    names = ["a", "yljkjljk.a", "Z.a", "zABC.a", "z", "\\001.z", "*.z", "\\200.z"]
    text = "$ORIGIN example.\n$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"
    text += "".join(f"{name} A 192.0.2.2\n" for name in names)
    chain = signed(text).signatures.chain
    owners = [entry.rrset.name for entry in chain.entries]
    expected = [(), (b"a",), (b"yljkjljk", b"a"), (b"z", b"a"), (b"zabc", b"a"), (b"ns1",)]
    expected += [(b"z",), (b"\x01", b"z"), (b"*", b"z"), (b"\xc8", b"z")]
    assert owners == [(*name, b"example") for name in expected]
    following = chain.entries[1:] + chain.entries[:1]
    for entry, after in zip(chain.entries, following, strict=True):
        next_name = dns.name.from_wire(pack_uncompressed(entry.rrset.rdatas[0]), 0)[0]
        assert to_name(next_name) == after.rrset.name


def test_nsec3_owners_are_not_names_of_the_zone(nsec3):
    zone = nsec3[0].state.snapshot.zones.get(from_text("example."))
    hashed = next(iter(zone.nsec3))
    name = b".".join(hashed).decode() + "."
    for do in (False, True):
        reply = ask(nsec3, name, "NSEC3", do=do)
        assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr
    reply = ask(nsec3, name, "A")
    assert types(reply.auth).count("NSEC3") >= 2  # the closest encloser proof


def test_do_answers_carry_rrsigs_in_every_section_and_no_ad(nsec):
    reply = ask(nsec, "example.", "MX", ad=1, cd=1)
    assert types(reply.rr) == ["MX", "RRSIG"]
    assert types(reply.ar)[:-1] == ["A", "A", "RRSIG"] + ["AAAA"] * 6 + ["RRSIG"]  # then OPT
    assert reply.header.ad == 0 and reply.header.cd == 1 and reply.header.aa == 1
    assert reply.ar[-1].edns_do


def test_without_do_a_signed_zone_answers_as_before(nsec):
    unsigned = handlers(load_zone_text(ZONE, "example."))
    for name, qtype in [("www.example.", "A"), ("example.", "MX"), ("nope.example.", "A")]:
        assert ask(nsec, name, qtype, do=False).rr == ask(unsigned, name, qtype, do=False).rr
        assert types(ask(nsec, name, qtype, do=False).auth) in ([], ["SOA"])


def test_a_dname_is_signed_and_its_synthesized_cname_is_not(nsec):
    reply = ask(nsec, "x.dn.example.", "A")
    assert types(reply.rr) == ["DNAME", "RRSIG", "CNAME"]


def test_delegations_carry_ds_or_the_proof_there_is_none(nsec, nsec3):
    secure = ask(nsec, "a.secure.example.", "A")
    assert reply_flags(secure) == "" and types(secure.auth) == ["NS", "DS", "RRSIG"]
    insecure = ask(nsec, "a.insecure.example.", "A")
    assert types(insecure.auth) == ["NS", "NSEC", "RRSIG"]
    assert str(insecure.auth[1].rname) == "insecure.example."
    insecure3 = ask(nsec3, "a.insecure.example.", "A")
    assert types(insecure3.auth) == ["NS", "NSEC3", "RRSIG"]


def reply_flags(reply) -> str:
    return "aa" if reply.header.aa else ""


def test_an_answer_that_does_not_fit_is_truncated_never_sent_without_rrsigs(nsec):
    """RFC 4035 §3.1.1: the TXT fits 512 bytes, not with its RRSIG: TC, nothing
    partial; the MX answer's additional records go first, without TC."""
    whole = ask(nsec, "big.example.", "TXT")
    assert types(whole.rr) == ["TXT", "RRSIG"] and not whole.header.tc
    small = ask(nsec, "big.example.", "TXT", size=512)
    assert small.header.tc and not small.rr and not small.auth
    without_do = ask(nsec, "big.example.", "TXT", do=False, size=512)
    assert not without_do.header.tc  # the unsigned answer fits
    mx = ask(nsec, "example.", "MX", size=512)
    assert not mx.header.tc and types(mx.rr) == ["MX", "RRSIG"]
    assert types(mx.ar) == ["OPT"]  # the additional records went, without TC


@pytest.mark.parametrize("flags", [(), NSEC3, (*NSEC3, "-A")], ids=["nsec", "nsec3", "optout"])
def test_a_random_subdomain_flood_is_compiled_and_grows_nothing(flags):
    """New names at every depth, with DO: answered from the tables (the covering NSEC
    or NSEC3 found by bisection), as the reference path answers them, and every table
    and memo stays as large as it was or within its bound."""
    fast, slow = handlers(signed(ZONE, *flags))
    rng = random.Random(5)
    memos_before = memo_sizes(fast)
    for _ in range(400):
        labels = ".".join(f"r{rng.randrange(10**9)}" for _ in range(rng.randrange(1, 4)))
        parent = rng.choice(["example.", "www.example.", "wild.example.", "mail.example."])
        reply = ask((fast, slow), f"{labels}.{parent}", rng.choice(["A", "MX", "TXT"]))
        assert "RRSIG" in types(reply.auth) + types(reply.rr)
    assert fast.stats.reference == 0
    memos = memo_sizes(fast)
    assert memos.keys() == memos_before.keys()
    assert all(size <= 256 for size in memos.values())


def memo_sizes(handler: Handler) -> dict:
    """Every template memo of the tables (tails by offset, headers by added count)."""
    sizes = {}
    for tables in handler.state.snapshot.tables.zones.values():
        for view in tables.views.values():
            for part in (view, view.secure):
                for place in part.names.values():
                    for prepared in (place.below, *(place.below_types or {}).values()):
                        if prepared is not None and prepared.by_offset is not None:
                            sizes[id(prepared.by_offset)] = len(prepared.by_offset)
    return sizes
