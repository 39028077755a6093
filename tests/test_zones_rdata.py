"""Tests for dnspol.zones.rdata: dnslib objects that pack to exactly the bytes dnspython reads."""

from __future__ import annotations

import struct

import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.zone
import pytest
from dnslib import QTYPE, RD, DNSBuffer, DNSRecord
from dnslib import dns as dnslib_dns
from zonekit import FEATURES, packed, rrset

from dnspol.names import from_text, to_wire
from dnspol.packer import pack_message
from dnspol.zones.loader import load_zone_file, read_records
from dnspol.zones.model import Rec, Record, Zone


@pytest.fixture(scope="module")
def features() -> Zone:
    return load_zone_file(FEATURES)


# --------------------------------------------------------------------------- dnslib fidelity


@pytest.fixture(scope="module")
def reference() -> dns.zone.Zone:
    """The features zone as dnspython itself builds it."""
    return dns.zone.from_file(str(FEATURES), origin="features.test.", relativize=False)


def loaded_records() -> list[Record]:
    return read_records(FEATURES, from_text("features.test."), str(FEATURES))


@pytest.mark.parametrize(
    ("rtype", "rd_class"),
    [
        ("SOA", dnslib_dns.SOA), ("NS", dnslib_dns.NS), ("CNAME", dnslib_dns.CNAME),
        ("MX", dnslib_dns.MX), ("TXT", dnslib_dns.TXT), ("SRV", dnslib_dns.SRV),
        ("CAA", dnslib_dns.CAA), ("PTR", dnslib_dns.PTR), ("DS", dnslib_dns.DS),
        ("DNSKEY", dnslib_dns.DNSKEY), ("A", dnslib_dns.A), ("AAAA", dnslib_dns.AAAA),
        # raw RDATA: dnslib has no class, or would compress names it must not
        ("NAPTR", RD), ("HINFO", RD), ("DNAME", RD), ("TYPE65280", RD),
    ],
)  # fmt: skip
def test_dnslib_class_per_type(rtype: str, rd_class: type):
    rdtype = dns.rdatatype.from_text(rtype)
    classes = {type(r.rdata) for r in loaded_records() if r.rtype == rdtype}
    assert classes == {rd_class}


def test_every_rdata_packs_to_dnspythons_bytes(reference: dns.zone.Zone):
    for record in loaded_records():
        name = dns.name.Name([*record.name, b""])
        expected = {rd.to_wire() for rd in reference.find_rdataset(name, record.rtype)}
        assert packed(record.rdata) in expected, record.where


@pytest.mark.parametrize(
    "rtype", ["TXT", "CAA", "NAPTR", "SRV", "DS", "DNSKEY", "HINFO", "DNAME", "TYPE65280"]
)
def test_packs_byte_identical_with_compression_on(reference: dns.zone.Zone, rtype: str):
    rdtype = dns.rdatatype.from_text(rtype)
    for record in (r for r in loaded_records() if r.rtype == rdtype):
        buf = DNSBuffer()
        record.rdata.pack(buf)
        name = dns.name.Name([*record.name, b""])
        (expected,) = reference.find_rdataset(name, rdtype)
        assert bytes(buf.data) == expected.to_wire()


def test_a_message_of_every_record_reads_back_in_dnspython(
    features: Zone, reference: dns.zone.Zone
):
    message = DNSRecord()
    for node in features.nodes.values():
        for rrs in node.values():
            for rr in rrs.to_rrs():
                message.add_answer(rr)
    parsed = dns.message.from_wire(bytes(message.pack()))  # dnslib's pack gives a bytearray
    assert len(parsed.answer) == sum(len(node) for node in features.nodes.values())
    for rrset_ in parsed.answer:
        expected = reference.find_rdataset(rrset_.name, rrset_.rdtype)
        assert set(rrset_) == set(expected), rrset_.name


@pytest.mark.parametrize("owner", ["naptr.features.test.", "_sip._tcp.features.test."])
def test_names_that_must_not_be_compressed_are_not(features: Zone, owner: str):
    """RFC 2782 (SRV target) and RFC 3403 §4.1 (NAPTR replacement) forbid compression, also
    where the message already holds the name: as the server packs (``dnspol.packer``), not as
    dnslib's own ``RR.pack`` would (which compresses SRV targets before dnslib 0.9.25)."""
    rtype = "NAPTR" if owner.startswith("naptr") else "SRV"
    (rr,) = rrset(features, owner, rtype).records()
    target = Rec(from_text("sip.features.test."), QTYPE.A, 1, 60, dnslib_dns.A("192.0.2.1"))
    question = to_wire(rr.owner) + struct.pack("!HH", rr.rtype, 1)
    wire = pack_message(0, 0x8400, rr.owner, question, [target, rr], [], [])
    rdata = wire[-len(packed(rr.rdata)) :]  # the SRV or NAPTR is the last record
    assert rdata == packed(rr.rdata)
    assert b"\xc0" not in rdata


def test_why_naptr_is_kept_raw():
    """dnslib's own NAPTR compresses its replacement name (RFC 3403 §4.1 forbids it)."""
    naptr = dnslib_dns.NAPTR(100, 10, b"u", b"E2U+sip", b"", "naptr.example.")
    buf = DNSBuffer()
    buf.encode_name(dnslib_dns.DNSLabel("naptr.example."))
    naptr.pack(buf)
    assert bytes(buf.data).endswith(b"\xc0\x00")


def test_generic_rd_packs_its_bytes_unchanged():
    buf = DNSBuffer()
    RD(b"\x0a\x00\x00\x01").pack(buf)
    assert bytes(buf.data) == b"\x0a\x00\x00\x01"
