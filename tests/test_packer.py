"""dnspol.packer: the same bytes as dnslib's ``DNSRecord.pack``, and pointers that fit."""

import dns.message
import pytest
from dnslib import QTYPE, RR, TXT, A, DNSHeader, DNSQuestion, DNSRecord, EDNSOption
from test_handler import PEER, TCP, UDP, make_handler, mixed_queries

from dnspol import answer
from dnspol.handler import Handler
from dnspol.names import to_label
from dnspol.packer import POINTER_LIMIT, pack_message
from dnspol.state import ServerState
from dnspol.zones.model import Rec


def dnslib_pack(query, flags, answer_rrs, authority, additional, opt) -> bytes:
    """How answer._pack packed before dnspol.packer: the reference."""

    def dnslib_rrs(recs):
        return [RR(to_label(r.owner), r.rtype, r.rclass, r.ttl, r.rdata) for r in recs]

    record = DNSRecord(
        DNSHeader(id=query.id, bitmap=flags),
        q=DNSQuestion(to_label(query.qname), query.qtype, query.qclass),
        rr=dnslib_rrs(answer_rrs),
        auth=dnslib_rrs(authority),
        ar=dnslib_rrs(additional) + ([opt] if opt is not None else []),
    )
    wire = bytes(record.pack())
    return wire[:12] + query.question + wire[12 + len(query.question) :]


@pytest.fixture
def reference(monkeypatch):
    """A handler packing through dnslib, on the same zones as make_handler()."""
    ours = make_handler(fast=False)
    theirs = Handler(ServerState(ours.state.snapshot))
    theirs.fast_path = False

    def handle_with_dnslib(wire, peer, listener):
        with monkeypatch.context() as patch:
            patch.setattr(answer, "_pack", dnslib_pack)
            return theirs.handle(wire, peer, listener)

    return ours, handle_with_dnslib


def test_every_answer_is_packed_as_dnslib_packs_it(reference):
    """Every record type of the test zones (SOA, NS, MX, CNAME chains, wildcards, DS, SRV,
    DNAME, TXT, glue, truncation, EDNS, ECS, errors) in three letter cases."""
    ours, dnslib_handle = reference
    compared = 0
    for wire in mixed_queries():
        for listener in (UDP, TCP):
            mine = ours.handle(wire, PEER, listener)
            assert mine == dnslib_handle(wire, PEER, listener), DNSRecord.parse(wire).q
            compared += mine is not None
    assert compared > 1000


def test_names_beyond_a_pointers_reach_are_not_offered_for_compression():
    """Over 16 KB (TCP), dnslib would point at offsets a 14-bit pointer cannot hold."""
    qname = (b"big", b"example")
    question = b"\x03big\x07example\x00\x00\x10\x00\x01"
    texts = [Rec(qname, QTYPE.TXT, 1, 60, TXT(["x" * 250])) for _ in range(80)]
    late = (b"late", b"example")
    extra = [Rec(late, QTYPE.A, 1, 60, A("192.0.2.1")) for _ in range(2)]
    wire = pack_message(7, 0x8400, qname, question, texts, [], extra)
    assert len(wire) > POINTER_LIMIT
    parsed = dns.message.from_wire(wire)  # dnspython checks every pointer
    assert [str(rrset.name) for rrset in parsed.additional] == ["late.example."]
    assert len(parsed.additional[0]) == 1  # the two identical A records, one rdata


def test_opt_record_and_options():
    qname = (b"example",)
    question = b"\x07example\x00\x00\x01\x00\x01"
    opt = RR(rtype=41, rclass=1232, ttl=0x8000, rdata=[EDNSOption(15, b"\x00\x12")])
    wire = pack_message(1, 0x8000, qname, question, [], [], [], opt)
    assert wire.endswith(b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x06\x00\x0f\x00\x02\x00\x12")
    assert wire[10:12] == b"\x00\x01"  # ARCOUNT counts the OPT record
