"""What dig cannot send: raw and malformed messages over UDP and TCP (reference §1-§5).

After every bad packet the server must still answer a normal query; the
``still_answers`` check runs at the end of each test.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest
from dnslib import DNSRecord
from itkit import edns_option, header, make_query, opt_rr, qname_wire

FORMERR, NOTIMP, REFUSED = 1, 4, 5


def still_answers(srv) -> None:
    for tcp in (False, True):
        reply = srv.exchange(make_query("www.example.", ident=0x7777), tcp=tcp)
        assert reply is not None, "the server stopped answering"
        h = header(reply)
        assert h["id"] == 0x7777 and h["rcode"] == 0 and h["an"] == 1


@pytest.fixture
def srv(core):
    yield core
    still_answers(core)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("ident", [0, 1, 0x1234, 0xFFFF])
def test_id_copied(srv, ident, tcp) -> None:
    reply = srv.exchange(make_query(ident=ident), tcp=tcp)
    assert header(reply)["id"] == ident


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_question_bytes_echoed(srv, tcp) -> None:
    query = make_query("wWw.EXAMPLE.", ident=9)
    reply = srv.exchange(query, tcp=tcp)
    end = 12 + len(qname_wire("wWw.EXAMPLE.")) + 4
    assert reply[12:end] == query[12:end]


def test_z_bit_ignored_and_cleared(srv) -> None:
    reply = srv.exchange(make_query(flags=0x0100 | 0x0040))
    h = header(reply)
    assert h["rcode"] == 0 and h["an"] == 1
    assert not struct.unpack("!H", reply[2:4])[0] & 0x0040


def test_garbage_gets_formerr(srv) -> None:
    wire = b"\xbe\xef\x00\x00" + b"\xff" * 40
    reply = srv.exchange(wire)
    h = header(reply)
    assert h["id"] == 0xBEEF and h["qr"] and h["rcode"] == FORMERR


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes_never_break_it(srv, seed) -> None:
    rnd = __import__("random").Random(seed)
    wire = bytes(rnd.randrange(256) for _ in range(rnd.randrange(12, 200)))
    for tcp in (False, True):
        reply = srv.exchange(wire, tcp=tcp, timeout=0.2)
        if reply is not None:
            assert reply[:2] == wire[:2]
            assert header(reply)["qr"]
            assert header(reply)["rcode"] != 2  # SERVFAIL here means an internal error


@pytest.mark.parametrize("size", [0, 1, 11])
def test_short_packet_gets_no_answer(srv, size) -> None:
    assert srv.exchange(os.urandom(size) if size else b"", timeout=0.3) is None


def test_short_message_over_tcp_closes(srv) -> None:
    assert srv.exchange(b"\x12\x34" + b"\x00" * 9, tcp=True, timeout=1.0) is None


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_response_gets_no_answer(srv, tcp) -> None:
    assert srv.exchange(make_query(flags=0x8100), tcp=tcp, timeout=0.3) is None


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_qdcount_2_is_formerr(srv, tcp) -> None:
    q = make_query(qdcount=2)
    q += qname_wire("mail.example.") + struct.pack("!HH", 1, 1)
    h = header(srv.exchange(q, tcp=tcp))
    assert h["rcode"] == FORMERR and h["an"] == 0 and not h["aa"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_qdcount_0_is_formerr(srv, tcp) -> None:
    q = struct.pack("!HHHHHH", 0x4321, 0x0100, 0, 0, 0, 0)
    h = header(srv.exchange(q, tcp=tcp))
    assert h["id"] == 0x4321 and h["rcode"] == FORMERR and h["qd"] == 0


@pytest.mark.parametrize("cut", [2, 5, 13], ids=["in-first-label", "mid-name", "in-qtype"])
def test_truncated_question_is_formerr(srv, cut) -> None:
    q = make_query("www.example.")
    wire = q[: 12 + cut] if cut < 13 else q[:-2]
    h = header(srv.exchange(wire))
    assert h["rcode"] == FORMERR and h["an"] == 0


def test_qdcount_larger_than_packet_is_formerr(srv) -> None:
    q = make_query(qdcount=3)
    assert header(srv.exchange(q))["rcode"] == FORMERR


@pytest.mark.parametrize("opcode", [1, 2, 3, 6, 15])
def test_unknown_opcode_is_notimp_with_question(srv, opcode) -> None:
    q = make_query("www.example.", flags=(opcode << 11) | 0x0100, ident=77)
    reply = srv.exchange(q)
    h = header(reply)
    assert h["rcode"] == NOTIMP and h["opcode"] == opcode and h["id"] == 77
    assert h["qd"] == 1 and h["an"] == 0 and not h["aa"]
    assert reply[12 : len(q)] == q[12:]


def test_notimp_over_tcp(srv) -> None:
    h = header(srv.exchange(make_query(flags=3 << 11), tcp=True))
    assert h["rcode"] == NOTIMP and h["opcode"] == 3


def test_two_opt_records_are_formerr_without_opt(srv) -> None:
    q = make_query(opt=opt_rr() + opt_rr(), extra_additional=1)
    reply = srv.exchange(q)
    h = header(reply)
    assert h["rcode"] == FORMERR and h["ar"] == 0


@pytest.mark.parametrize(
    "ecs",
    [
        b"\x00\x01\x18",  # shorter than 4 bytes
        b"\x00\x03\x18\x00\xc0\x00\x02",  # family 3
        b"\x00\x01\x21\x00\xc0\x00\x02\x00\x00",  # IPv4 /33
        b"\x00\x01\x18\x00\xc0\x00",  # /24 with 2 address bytes
        b"\x00\x01\x18\x00\xc0\x00\x02\x01",  # /24 with 4 address bytes
        b"\x00\x01\x17\x00\xc0\x00\x03",  # bits set past /23
        b"\x00\x01\x18\x10\xc0\x00\x02",  # scope != 0 in a query
    ],
    ids=["short", "family", "prefix", "too-few", "too-many", "stray-bits", "scope"],
)
def test_malformed_ecs_is_formerr(srv, ecs) -> None:
    q = make_query(opt=opt_rr(options=edns_option(8, ecs)))
    h = header(srv.exchange(q))
    assert h["rcode"] == FORMERR and h["an"] == 0


def test_valid_ecs_is_answered_and_echoed(srv) -> None:
    q = make_query(opt=opt_rr(options=edns_option(8, b"\x00\x01\x18\x00\xc0\x00\x02")))
    reply = srv.exchange(q)
    msg = DNSRecord.parse(reply)
    assert msg.header.rcode == 0 and len(msg.rr) == 1
    opt = [rr for rr in msg.ar if rr.rtype == 41]
    assert len(opt) == 1


def test_option_running_past_opt_is_formerr(srv) -> None:
    bad = struct.pack("!HH", 65001, 10) + b"abc"  # says 10 bytes, has 3
    q = make_query(opt=opt_rr(options=bad))
    h = header(srv.exchange(q))
    assert h["rcode"] == FORMERR


def test_truncated_option_header_is_formerr(srv) -> None:
    q = make_query(opt=opt_rr(options=b"\x00\x08\x00"))
    assert header(srv.exchange(q))["rcode"] == FORMERR


def test_opt_rdata_past_packet_is_formerr(srv) -> None:
    q = make_query(opt=opt_rr())
    q = q[:-2] + b"\x00\x20"  # RDLENGTH 32, no bytes follow
    assert header(srv.exchange(q))["rcode"] == FORMERR


@pytest.mark.parametrize("length", [7, 41])
def test_malformed_cookie_is_formerr(srv, length) -> None:
    q = make_query(opt=opt_rr(options=edns_option(10, b"c" * length)))
    assert header(srv.exchange(q))["rcode"] == FORMERR


def test_unknown_option_ignored_not_echoed(srv) -> None:
    q = make_query(opt=opt_rr(options=edns_option(65001, b"hello")))
    msg = DNSRecord.parse(srv.exchange(q))
    assert msg.header.rcode == 0 and len(msg.rr) == 1
    (opt,) = [rr for rr in msg.ar if rr.rtype == 41]
    assert all(o.code != 65001 for o in opt.rdata)


def test_badvers_has_opt_version_0(srv) -> None:
    q = make_query(opt=opt_rr(version=1, do=True))
    msg = DNSRecord.parse(srv.exchange(q))
    (opt,) = [rr for rr in msg.ar if rr.rtype == 41]
    assert msg.header.rcode == 0 and (opt.ttl >> 24) == 1  # extended rcode 16 = BADVERS
    assert (opt.ttl >> 16) & 0xFF == 0
    assert opt.ttl & 0x8000  # DO echoed
    assert msg.rr == []


def test_client_payload_below_512_counts_as_512(srv) -> None:
    q = make_query("mid.example.", 16, opt=opt_rr(payload=100))
    reply = srv.exchange(q)
    assert header(reply)["tc"] and len(reply) <= 512
    q = make_query("www.example.", 1, opt=opt_rr(payload=100))
    assert header(srv.exchange(q))["an"] == 1


def test_axfr_over_udp_is_notimp(srv) -> None:
    h = header(srv.exchange(make_query("example.", 252)))
    assert h["rcode"] == NOTIMP and h["an"] == 0


def test_axfr_over_tcp_is_refused_with_ede_18(srv) -> None:
    q = make_query("example.", 252, opt=opt_rr())
    msg = DNSRecord.parse(srv.exchange(q, tcp=True))
    assert msg.header.rcode == REFUSED and msg.rr == []
    (opt,) = [rr for rr in msg.ar if rr.rtype == 41]
    assert [(o.code, o.data[:2]) for o in opt.rdata] == [(15, b"\x00\x12")]


def test_ixfr_over_tcp_is_refused(srv) -> None:
    assert header(srv.exchange(make_query("example.", 251), tcp=True))["rcode"] == REFUSED


@pytest.mark.parametrize("qclass", [255, 5, 254])
def test_unserved_classes_refused(srv, qclass) -> None:
    h = header(srv.exchange(make_query(qclass=qclass)))
    assert h["rcode"] in (REFUSED, FORMERR) and h["an"] == 0 and not h["aa"]


def test_compression_pointer_in_question_is_formerr(srv) -> None:
    wire = struct.pack("!HHHHHH", 5, 0, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    assert header(srv.exchange(wire))["rcode"] == FORMERR


def test_name_longer_than_255_is_formerr(srv) -> None:
    name = ".".join(["a" * 63] * 4) + "."
    h = header(srv.exchange(make_query(name)))
    assert h["rcode"] == FORMERR


def test_trailing_bytes_are_tolerated(srv) -> None:
    reply = srv.exchange(make_query() + b"\x00\x00junk")
    assert header(reply)["rcode"] in (0, FORMERR)


def test_udp_socket_survives_a_burst_of_junk(srv) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(200):
            sock.sendto(os.urandom(i % 64), (srv.host, srv.port))
