"""Decoding queries: strict checks, EDNS and ECS, and the fast-path key."""

import struct

import pytest
from dnslib import EDNS0, DNSRecord, EDNSOption

from dnspol.wire import (
    MAX_PLAIN_QUERY,
    BadVersion,
    FormErr,
    decode,
    read_plain,
    read_qname,
    should_drop,
    udp_limit,
)


def query(name="www.example.com", qtype="A", edns=None, opts=None, **header):
    q = DNSRecord.question(name, qtype)
    for k, v in header.items():
        setattr(q.header, k, v)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, opts=opts or []))
    return bytes(q.pack())


def test_decode_plain_query_normalises_name_and_keeps_spelling():
    wire = query("WwW.Example.COM")
    q = decode(wire)
    assert q.qname == (b"www", b"example", b"com")
    assert q.question == wire[12:]
    assert q.qtype == 1 and q.qclass == 1 and q.edns is None


@pytest.mark.parametrize(
    "wire, dropped",
    [
        (b"", True),
        (b"\x00" * 11, True),
        (query()[:2] + b"\x80\x00" + query()[4:], True),  # QR=1
        (query(), False),
    ],
)
def test_should_drop(wire, dropped):
    assert should_drop(wire) is dropped


def _with_counts(wire: bytes, qd=1, an=0, ns=0, ar=0) -> bytes:
    return wire[:4] + struct.pack("!HHHH", qd, an, ns, ar) + wire[12:]


@pytest.mark.parametrize(
    "wire, why",
    [
        (_with_counts(query(), qd=0), "no question"),
        (_with_counts(query(), qd=2) + query()[12:], "more than one question"),
        (query()[:20], "past the end"),
        (query()[:-2], "past the end"),
        (query()[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01", "compressed"),
        (query()[:12] + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", "reserved"),
    ],
)
def test_decode_rejects_malformed(wire, why):
    with pytest.raises(FormErr, match=why):
        decode(wire)


def test_name_longer_than_255_octets_is_formerr():
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"
    with pytest.raises(FormErr, match="255"):
        read_qname(b"\x00" * 12 + name, 12)


def test_edns_fields():
    q = decode(query(edns=4096))
    assert q.edns is not None and q.edns.payload == 4096 and q.edns.version == 0


def test_two_opt_records_are_formerr():
    wire = query(edns=1232)
    opt = wire[-11:]
    with pytest.raises(FormErr, match="more than one OPT"):
        decode(_with_counts(wire + opt, ar=2))


def test_edns_version_1_is_badvers():
    q = DNSRecord.question("www.example.com")
    q.add_ar(EDNS0(version=1))
    with pytest.raises(BadVersion):
        decode(bytes(q.pack()))


def test_option_running_past_the_opt_is_formerr():
    wire = query(edns=1232)
    # claim a 4-byte RDATA holding an option header that announces 10 bytes
    bad = wire[:-2] + b"\x00\x04" + b"\x00\x0a\x00\x0a"
    with pytest.raises(FormErr, match="runs past"):
        decode(bad)


def ecs(family, source, address, scope=0):
    return EDNSOption(8, struct.pack("!HBB", family, source, scope) + address)


@pytest.mark.parametrize(
    "option, why",
    [
        (EDNSOption(8, b"\x00\x01"), "too short"),
        (ecs(3, 8, b"\x0a"), "family"),
        (ecs(1, 33, b"\x0a" * 5), "longer than the address"),
        (ecs(1, 24, b"\x0a\x00"), "length"),
        (ecs(1, 24, b"\x0a\x00\x00", scope=24), "scope"),
        (ecs(1, 23, b"\x0a\x00\x01"), "beyond the source"),
        (EDNSOption(10, b"\x01\x02\x03"), "COOKIE"),
        (EDNSOption(11, b"\x00\x10"), "keepalive"),
    ],
)
def test_malformed_options_are_formerr(option, why):
    with pytest.raises(FormErr, match=why):
        decode(query(edns=1232, opts=[option]))


def test_valid_ecs_is_decoded():
    q = decode(query(edns=1232, opts=[ecs(1, 24, b"\xc6\x33\x64")]))
    assert q.edns.ecs is not None
    assert str(q.edns.ecs.network) == "198.51.100.0/24"
    assert q.edns.ecs.to_option(16) == struct.pack("!HBB", 1, 24, 16) + b"\xc6\x33\x64"


@pytest.mark.parametrize(
    "payload, limit", [(None, 512), (100, 512), (1232, 1232), (4096, 1232), (800, 800)]
)
def test_udp_limit(payload, limit):
    edns = None if payload is None else decode(query(edns=payload)).edns
    assert udp_limit(edns, 1232) == limit


def test_read_plain_ignores_case_but_not_type():
    one = read_plain(query("WWW.example.com"), False, 1232)
    two = read_plain(query("www.EXAMPLE.com"), False, 1232)
    other = read_plain(query("www.example.com", "AAAA"), False, 1232)
    assert one.qkey == two.qkey and one.qkey != other.qkey
    assert one.qend == len(query("www.example.com"))


def test_read_plain_tells_edns_do_size_and_transport_apart():
    assert read_plain(query(), False, 1232)[2:4] == (None, 512)
    assert read_plain(query(edns=1232), False, 1232)[2:4] == (0, 1232)
    assert read_plain(query(edns=4096), False, 4096).limit == 4096
    assert read_plain(query(edns=4096), False, 1232).limit == 1232  # our maximum
    assert read_plain(query(edns=100), False, 1232).limit == 512  # RFC 6891 §6.2.5
    assert read_plain(query(), True, 1232).limit == 65535
    do = DNSRecord.question("www.example.com")
    do.add_ar(EDNS0(udp_len=1232, flags="do"))
    assert read_plain(bytes(do.pack()), False, 1232).do == 0x8000


@pytest.mark.parametrize(
    "wire",
    [
        query(edns=1232, opts=[ecs(1, 23, b"\xc6\x33\x65")]),  # malformed ECS
        query(edns=1232, opts=[EDNSOption(3, b"")]),  # NSID: not handled on the fast path
        query()[:2] + b"\x18\x00" + query()[4:],  # opcode 3
        _with_counts(query(), qd=2),
        query() + b"trailing",
    ],
)
def test_uncommon_queries_take_the_slow_path(wire):
    assert read_plain(wire, False, 1232) is None


def test_ecs_stays_on_the_fast_path_with_its_data():
    read = read_plain(query(edns=1232, opts=[ecs(1, 24, b"\xc6\x33\x64")]), False, 1232)
    assert read.ecs == struct.pack("!HBB", 1, 24, 0) + b"\xc6\x33\x64"
    assert not read.cookie


def test_cookie_stays_on_the_fast_path_marked_when_cookies_are_on():
    wire = query(edns=1232, opts=[EDNSOption(10, b"12345678")])
    assert read_plain(wire, False, 1232, cookies=True).cookie
    assert not read_plain(wire, False, 1232, cookies=False).cookie


# one well-formed instance of each option a message may carry at most once
SINGLE_USE_OPTIONS = {
    "NSID": EDNSOption(3, b""),
    "ECS": ecs(1, 24, b"\xc6\x33\x64"),
    "EXPIRE": EDNSOption(9, b""),
    "COOKIE": EDNSOption(10, b"12345678"),
    "edns-tcp-keepalive": EDNSOption(11, b""),
    "PADDING": EDNSOption(12, b"\x00" * 16),
    "CHAIN": EDNSOption(13, b"\x00"),
    "edns-key-tag": EDNSOption(14, b"\x4f\x66"),
}


@pytest.mark.parametrize("name", sorted(SINGLE_USE_OPTIONS))
def test_an_option_allowed_once_is_decoded_once_and_formerr_twice(name):
    option = SINGLE_USE_OPTIONS[name]
    assert decode(query(edns=1232, opts=[option])).edns is not None
    twice = query(edns=1232, opts=[option, EDNSOption(10, b"abcdefgh"), option])
    if name == "COOKIE":
        twice = query(edns=1232, opts=[option, option])
    with pytest.raises(FormErr, match="more than one"):
        decode(twice)


def test_many_cookies_are_formerr_and_leave_the_fast_path():
    padded = query(edns=1232, opts=[EDNSOption(10, b"%08d" % i) for i in range(1480)])
    with pytest.raises(FormErr, match="more than one"):
        decode(padded)
    assert read_plain(padded, True, 1232) is None
    two = query(edns=1232, opts=[EDNSOption(10, b"12345678"), EDNSOption(10, b"12345678")])
    assert read_plain(two, False, 1232) is None


def test_the_longest_query_the_fast_path_takes_fits_its_bound():
    """A 255-octet name, one ECS (/128) and one 40-octet COOKIE: the bound on what the
    fast path reads (MAX_PLAIN_QUERY) costs no query it can answer."""
    name = ".".join(["a" * 63] * 3 + ["a" * 61])
    longest = query(name, edns=1232, opts=[ecs(2, 128, b"\x20" * 16), EDNSOption(10, b"c" * 40)])
    assert read_plain(longest, True, 1232) is not None
    assert len(longest) <= MAX_PLAIN_QUERY
