"""handle(): rcodes, flags and sections per RFC 1034/2308/4592/6891/8482, fast == slow."""

import dataclasses
import random
import struct

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord, EDNSOption

from dnspol.cookies import CookieConfig, address_bytes, make
from dnspol.handler import Clock, Handler, Listener
from dnspol.state import ServerState, Snapshot
from dnspol.zones.loader import load_zone_text
from dnspol.zones.model import ZoneSet

ZONE = """\
$ORIGIN example.com.
$TTL 3600
@       IN SOA ns1 hostmaster 2026112501 7200 900 1209600 300
@       NS    ns1
@       NS    ns2
@       MX    10 mail
ns1     A     192.0.2.1
ns2     A     192.0.2.2
www     A     192.0.2.10
www     AAAA  2001:db8::10
mail    A     192.0.2.20
alias   CNAME www
alias2  CNAME alias
out     CNAME www.example.net.
gone    CNAME missing.c
loop1   CNAME loop2
loop2   CNAME loop1
*       A     192.0.2.99
*.w     CNAME www
*.t     TXT   "text"
a.b.c   A     192.0.2.30
sub     NS    ns.sub
sub     DS    12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE4C3A5C8B5E1D6A7B8C9D0E1F
ns.sub  A     192.0.2.53
_sip._tcp SRV 0 5 5060 www
d       DNAME example.net.
e       DNAME c.example.com.
cnchild CNAME www.child.example.com.
"""
CHILD = """\
$ORIGIN child.example.com.
@ 300 IN SOA ns1 hostmaster 7 7200 900 1209600 60
@ NS ns1
ns1 A 192.0.2.77
www A 192.0.2.78
"""
BIG = "".join(f'big TXT "{"x" * 60}-{i:02d}"\n' for i in range(40))

UDP = Listener("127.0.0.1", 53, "udp")
TCP = Listener("127.0.0.1", 53, "tcp")
PEER = ("127.0.0.1", 40000)


def make_handler(fast=True, chaos=None):
    zones = ZoneSet(
        [
            load_zone_text(ZONE + BIG, "example.com."),
            load_zone_text(CHILD, "child.example.com."),
        ]
    )
    handler = Handler(ServerState(Snapshot(zones=zones, chaos=chaos or {})))
    handler.fast_path = fast
    return handler


@pytest.fixture(scope="module")
def handler():
    return make_handler()


def ask(handler, name, qtype="A", listener=UDP, edns=None, rd=1, qclass="IN", opts=None):
    q = DNSRecord.question(name, qtype, qclass)
    q.header.rd = rd
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, opts=opts or []))
    wire = handler.handle(bytes(q.pack()), PEER, listener)
    return q, (None if wire is None else DNSRecord.parse(wire)), wire


def rrs(section):
    return [
        (str(rr.rname).lower(), QTYPE[rr.rtype], None if rr.rtype == 39 else str(rr.rdata))
        for rr in section
    ]


CASES = [
    # qname, qtype, rcode, aa, answer (owner, type, rdata), authority types
    ("www.example.com", "A", "NOERROR", 1, [("www.example.com.", "A", "192.0.2.10")], []),
    ("nope.x.b.c.example.com", "A", "NXDOMAIN", 1, [], ["SOA"]),
    ("www.example.com", "MX", "NOERROR", 1, [], ["SOA"]),  # NODATA
    ("c.example.com", "A", "NOERROR", 1, [], ["SOA"]),  # empty non-terminal
    ("b.c.example.com", "TXT", "NOERROR", 1, [], ["SOA"]),
    ("x.c.example.com", "A", "NXDOMAIN", 1, [], ["SOA"]),  # ENT blocks *.example.com
    ("x.y.example.com", "A", "NOERROR", 1, [("x.y.example.com.", "A", "192.0.2.99")], []),
    ("foo.t.example.com", "A", "NOERROR", 1, [], ["SOA"]),  # wildcard NODATA
    (
        "foo.w.example.com",
        "A",
        "NOERROR",
        1,
        [
            ("foo.w.example.com.", "CNAME", "www.example.com."),
            ("www.example.com.", "A", "192.0.2.10"),
        ],
        [],
    ),
    ("*.example.com", "A", "NOERROR", 1, [("*.example.com.", "A", "192.0.2.99")], []),
    (
        "alias2.example.com",
        "A",
        "NOERROR",
        1,
        [
            ("alias2.example.com.", "CNAME", "alias.example.com."),
            ("alias.example.com.", "CNAME", "www.example.com."),
            ("www.example.com.", "A", "192.0.2.10"),
        ],
        [],
    ),
    (
        "alias.example.com",
        "CNAME",
        "NOERROR",
        1,
        [("alias.example.com.", "CNAME", "www.example.com.")],
        [],
    ),
    ("out.example.com", "A", "NOERROR", 1, [("out.example.com.", "CNAME", "www.example.net.")], []),
    (
        "gone.example.com",
        "A",
        "NXDOMAIN",
        1,
        [("gone.example.com.", "CNAME", "missing.c.example.com.")],
        ["SOA"],
    ),
    (
        "loop1.example.com",
        "A",
        "NOERROR",
        1,
        [
            ("loop1.example.com.", "CNAME", "loop2.example.com."),
            ("loop2.example.com.", "CNAME", "loop1.example.com."),
        ],
        [],
    ),
    ("foo.sub.example.com", "A", "NOERROR", 0, [], ["NS"]),  # referral
    ("sub.example.com", "NS", "NOERROR", 0, [], ["NS"]),
    ("ns.sub.example.com", "A", "NOERROR", 0, [], ["NS"]),  # glue is not an answer
    ("sub.example.com", "DS", "NOERROR", 1, None, []),  # DS from the parent side
    (
        "www.child.example.com",
        "A",
        "NOERROR",
        1,
        [("www.child.example.com.", "A", "192.0.2.78")],
        [],
    ),
    ("www.example.org", "A", "REFUSED", 0, [], []),
    # RFC 6672: DNAME substitution, followed in the zone only
    (
        "foo.d.example.com",
        "A",
        "NOERROR",
        1,
        [("d.example.com.", "DNAME", None), ("foo.d.example.com.", "CNAME", "foo.example.net.")],
        [],
    ),
    (
        "a.b.e.example.com",
        "A",
        "NOERROR",
        1,
        [
            ("e.example.com.", "DNAME", None),
            ("a.b.e.example.com.", "CNAME", "a.b.c.example.com."),
            ("a.b.c.example.com.", "A", "192.0.2.30"),
        ],
        [],
    ),
    # a CNAME into a separately served child zone is not followed (§7.3, §6)
    (
        "cnchild.example.com",
        "A",
        "NOERROR",
        1,
        [("cnchild.example.com.", "CNAME", "www.child.example.com.")],
        [],
    ),
    ("www.example.com", "TYPE65000", "NOERROR", 1, [], ["SOA"]),  # unknown type: NODATA
]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
@pytest.mark.parametrize("qname, qtype, rcode, aa, answer, authority", CASES)
def test_answers(qname, qtype, rcode, aa, answer, authority, fast):
    handler = make_handler(fast)
    for _ in range(2):  # the second time comes from the stored answer
        q, r, _ = ask(handler, qname, qtype)
        assert RCODE[r.header.rcode] == rcode
        assert r.header.aa == aa
        assert r.header.ra == 0 and r.header.qr == 1 and r.header.id == q.header.id
        if answer is not None:
            assert rrs(r.rr) == answer
        assert [QTYPE[rr.rtype] for rr in r.auth] == authority


def test_negative_ttl_is_min_of_soa_ttl_and_minimum(handler):
    _, r, _ = ask(handler, "nope.example.com", "TXT")  # *.example.com has no TXT: NODATA
    assert r.auth[0].ttl == 300
    _, r, _ = ask(handler, "nope.child.example.com")
    assert RCODE[r.header.rcode] == "NXDOMAIN" and r.auth[0].ttl == 60


def test_referral_carries_glue(handler):
    _, r, _ = ask(handler, "foo.sub.example.com")
    assert rrs(r.ar) == [("ns.sub.example.com.", "A", "192.0.2.53")]


def test_mx_and_srv_answers_carry_addresses(handler):
    _, r, _ = ask(handler, "example.com", "MX")
    assert rrs(r.ar) == [("mail.example.com.", "A", "192.0.2.20")]
    _, r, _ = ask(handler, "_sip._tcp.example.com", "SRV")
    assert ("www.example.com.", "A", "192.0.2.10") in rrs(r.ar)


def test_question_keeps_the_clients_spelling(handler):
    for _ in range(2):
        q, r, wire = ask(handler, "WwW.ExAmPlE.cOm")
        assert wire[12 : 12 + len(q.q.qname.label) + 20].startswith(bytes(q.pack())[12:29])
        assert str(r.q.qname) == "WwW.ExAmPlE.cOm."


def test_rd_copied_and_ra_never_set(handler):
    for rd in (0, 1):
        _, r, _ = ask(handler, "www.example.com", rd=rd)
        assert r.header.rd == rd and r.header.ra == 0


def test_any_returns_one_rrset(handler):
    _, r, _ = ask(handler, "www.example.com", "ANY")
    assert len({rr.rtype for rr in r.rr}) == 1


def test_edns_echoed_only_when_asked(handler):
    _, r, _ = ask(handler, "www.example.com")
    assert not [rr for rr in r.ar if rr.rtype == 41]
    _, r, _ = ask(handler, "www.example.com", edns=4096)
    opt = [rr for rr in r.ar if rr.rtype == 41]
    assert len(opt) == 1 and opt[0].rclass == 1232


def test_badvers():
    q = DNSRecord.question("www.example.com")
    q.add_ar(EDNS0(version=1))
    r = DNSRecord.parse(make_handler().handle(bytes(q.pack()), PEER, UDP))
    opt = [rr for rr in r.ar if rr.rtype == 41][0]
    assert r.header.rcode == 0 and opt.ttl >> 24 == 1 and not r.rr


@pytest.mark.parametrize(
    "edns, listener, tc", [(None, UDP, 1), (512, UDP, 1), (4096, UDP, 1), (None, TCP, 0)]
)
def test_truncation(handler, edns, listener, tc):
    _, r, wire = ask(handler, "big.example.com", "TXT", listener=listener, edns=edns)
    assert r.header.tc == tc
    if tc:
        assert not r.rr and r.q.qname == "big.example.com"  # question kept, nothing partial
        assert (edns is None) == (not [rr for rr in r.ar if rr.rtype == 41])
    else:
        assert len(r.rr) == 40


def test_additional_dropped_before_truncating():
    zone = ZONE + "".join(f"@ MX 10 m{i}\nm{i} A 192.0.2.{i}\n" for i in range(20))
    handler = Handler(ServerState(Snapshot(zones=ZoneSet([load_zone_text(zone, "example.com.")]))))
    _, r, _ = ask(handler, "example.com", "MX")
    assert r.header.tc == 0 and len(r.rr) == 21 and not r.ar


def test_chaos_is_refused_unless_configured():
    _, r, _ = ask(make_handler(), "version.bind", "TXT", qclass="CH")
    assert RCODE[r.header.rcode] == "REFUSED"
    _, r, _ = ask(
        make_handler(chaos={"version.bind": "dnspol"}), "version.bind", "TXT", qclass="CH"
    )
    assert RCODE[r.header.rcode] == "NOERROR" and str(r.rr[0].rdata) == '"dnspol"'


def test_zone_transfer_refused_over_tcp_and_notimp_over_udp(handler):
    _, r, _ = ask(handler, "example.com", "AXFR", listener=TCP, edns=1232)
    assert RCODE[r.header.rcode] == "REFUSED"
    ede = [o for rr in r.ar if rr.rtype == 41 for o in rr.rdata if o.code == 15]
    assert ede and struct.unpack("!H", ede[0].data[:2])[0] == 18
    _, r, _ = ask(handler, "example.com", "AXFR", listener=UDP)
    assert RCODE[r.header.rcode] == "NOTIMP"


def raw(handler, wire):
    return handler.handle(wire, PEER, UDP)


def test_malformed_packets(handler):
    good = bytes(DNSRecord.question("www.example.com").pack())
    assert raw(handler, b"") is None
    assert raw(handler, good[:11]) is None
    assert raw(handler, good[:2] + bytes([good[2] | 0x80]) + good[3:]) is None  # QR=1
    two = good[:4] + b"\x00\x02" + good[6:] + good[12:]
    assert DNSRecord.parse(raw(handler, two)).header.rcode == RCODE.FORMERR
    r = raw(handler, good[:14])
    assert r[:2] == good[:2] and r[3] & 0xF == RCODE.FORMERR
    opcode3 = good[:2] + bytes([(good[2] & 0x87) | (3 << 3)]) + good[3:]
    r = DNSRecord.parse(raw(handler, opcode3))
    assert r.header.rcode == RCODE.NOTIMP and r.q.qname == "www.example.com"
    assert rrs(ask(handler, "www.example.com")[1].rr)  # still answering


def test_formerr_keeps_opt_when_query_had_one(handler):
    q = DNSRecord.question("www.example.com")
    q.add_ar(EDNS0(opts=[EDNSOption(8, b"\x00\x01")]))
    r = DNSRecord.parse(raw(handler, bytes(q.pack())))
    assert r.header.rcode == RCODE.FORMERR and [rr for rr in r.ar if rr.rtype == 41]


def mixed_queries():
    """Every case above, in several spellings, with and without EDNS, RD and CD."""
    for qname, qtype, *_ in CASES + [("big.example.com", "TXT", 0, 0, 0, 0)]:
        for spelling in (qname, qname.upper(), qname.title()):
            for edns in (None, 512, 1232, 4096, "ecs4", "ecs6"):
                for rd, cd in ((0, 0), (1, 0), (1, 1)):
                    q = DNSRecord.question(spelling, qtype)
                    q.header.rd, q.header.cd = rd, cd
                    if edns == "ecs4":
                        subnet = struct.pack("!HBB", 1, 24, 0) + bytes((10, rd, cd))
                        q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(8, subnet)]))
                    elif edns == "ecs6":
                        subnet = struct.pack("!HBB", 2, 56, 0) + bytes(range(rd, rd + 7))
                        q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(8, subnet)]))
                    elif edns is not None:
                        q.add_ar(EDNS0(udp_len=edns))
                    yield bytes(q.pack())


def with_id(wire: bytes, ident: int) -> bytes:
    return ident.to_bytes(2, "big") + wire[2:]


def test_fast_path_answers_byte_identical_to_slow_path():
    fast, slow = make_handler(True), make_handler(False)
    queries = list(mixed_queries())
    # each query twice more, the second time with another ID
    replay = queries + [q for w in queries for q in (w, with_id(w, 0xBEEF))]
    for listener in (UDP, TCP):
        for wire in replay:
            assert fast.handle(wire, PEER, listener) == slow.handle(wire, PEER, listener)
    assert slow.stats.reference == 2 * len(replay)
    assert fast.stats.reference < len(replay) // 2  # most came from the compiled tables


def test_a_repeated_query_is_answered_with_its_own_id_and_counted():
    handler = make_handler()
    q = DNSRecord.question("www.example.com")
    first = handler.handle(with_id(bytes(q.pack()), 1), PEER, UDP)
    for ident in (2, 3, 4):  # stored from its second time, a repeat from its third
        again = handler.handle(with_id(bytes(q.pack()), ident), PEER, UDP)
        assert again == with_id(first, ident)
    assert sum(handler.stats.answers.values()) == 4


def test_repeats_are_kept_apart_by_listener():
    handler = make_handler()
    wire = bytes(DNSRecord.question("big.example.com", "TXT").pack())
    over_udp = DNSRecord.parse(handler.handle(wire, PEER, UDP))
    over_tcp = DNSRecord.parse(handler.handle(wire, PEER, TCP))
    assert over_udp.header.tc and not over_tcp.header.tc
    assert DNSRecord.parse(handler.handle(wire, PEER, UDP)).header.tc
    assert not DNSRecord.parse(handler.handle(wire, PEER, TCP)).header.tc


def table_sizes(snap) -> tuple[int, int, int]:
    """Exact answers, names, and tails kept per offset, over every view."""
    views = [v for zone in snap.tables.zones.values() for v in zone.views.values()]
    memos = set()
    for view in views:
        for place in view.names.values():
            for prepared in (place.other, place.below, *(place.below_types or {}).values()):
                if prepared is not None and prepared.by_offset is not None:
                    memos.add(id(prepared.by_offset))
                    assert len(prepared.by_offset) <= 256  # one per offset in a name
    exact = sum(len(v.exact) for v in views)
    return exact, sum(len(v.names) for v in views), len(memos)


def test_a_flood_of_new_names_and_types_grows_nothing_and_is_compiled():
    """A random-subdomain flood: every name new, at every depth, any type, with and
    without EDNS: answered from the tables, which traffic never adds to."""
    handler, slow = make_handler(), make_handler(False)
    before = table_sizes(handler.state.snapshot)
    rng = random.Random(7)
    for i in range(2000):
        labels = ".".join(f"r{rng.randrange(10**9)}" for _ in range(rng.randrange(1, 4)))
        parent = rng.choice(["example.com", "www.example.com", "a.b.ent.example.com"])
        q = DNSRecord.question(f"{labels}.{parent}", rng.choice(["A", "AAAA", "MX", "TXT"]))
        q.q.qtype = rng.choice([q.q.qtype, rng.randrange(1, 65535)])
        if i % 2:
            q.add_ar(EDNS0(udp_len=1232))
        wire = bytes(q.pack())
        assert handler.handle(wire, PEER, UDP) == slow.handle(wire, PEER, UDP)
    assert table_sizes(handler.state.snapshot) == before
    assert handler.stats.reference < 2000 * 3 // 100  # DS, ANY, AXFR, IXFR only


def test_class_any_and_unknown_classes_are_refused(handler):
    q = DNSRecord.question("www.example.com")
    q.q.qclass = 255
    assert DNSRecord.parse(raw(handler, bytes(q.pack()))).header.rcode == RCODE.REFUSED
    q.q.qclass = 5
    assert DNSRecord.parse(raw(handler, bytes(q.pack()))).header.rcode == RCODE.REFUSED


def test_queries_in_varying_letter_case_share_one_repeat_and_keep_their_spelling():
    """0x20 resolvers randomise the case: one stored repeat answers every spelling."""
    fast, slow = make_handler(), make_handler(False)
    spellings = ["www.example.com", "WWW.example.com", "wWw.EXAMPLE.com", "www.Example.Com"]
    for _ in range(3):
        for name in spellings:
            wire = bytes(DNSRecord.question(name).pack())
            reply = fast.handle(wire, PEER, UDP)
            assert reply == slow.handle(wire, PEER, UDP)
            assert str(DNSRecord.parse(reply).q.qname) == name + "."
    assert fast.stats.reference == 0


@pytest.mark.parametrize(
    "first, second",
    [
        (b"\x00\x41", b"\x00\x61"),  # qtypes 65 and 97: equal once lowered
        (b"\x00\x01\x00\x01\x00\x00\x29\x04\x41", b"\x00\x01\x00\x01\x00\x00\x29\x04\x61"),
    ],
)
def test_repeats_never_confuse_bytes_that_lowercase_alike_outside_the_name(first, second):
    fast, slow = make_handler(), make_handler(False)

    def query(rest: bytes) -> bytes:
        opt = b"\x00\x00\x00\x00\x00\x00" if len(rest) > 4 else b""
        arcount = b"\x00\x01" if opt else b"\x00\x00"
        header = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00" + arcount
        rest = rest if len(rest) > 2 else rest + b"\x00\x01"
        return header + b"\x03www\x07example\x03com\x00" + rest + opt

    for wire in (query(first), query(first), query(first), query(second), query(second)):
        assert fast.handle(wire, PEER, UDP) == slow.handle(wire, PEER, UDP)


@pytest.mark.parametrize(
    "name",
    [
        b"\x02a\x00\x07example\x03com\x00",  # a zero byte inside a label
        b"\x03www\x00\x07example\x03com\x00",  # ... that ends a name we serve
        b"\x01\x00\x03www\x07example\x03com\x00",
    ],
)
def test_zero_bytes_inside_labels_get_the_slow_paths_answer(name):
    fast, slow = make_handler(True), make_handler(False)
    stored = make_handler(True)
    ask(stored, "www.example.com")  # "www.example.com" is in the answer store
    for handler in (fast, stored):
        for ident in (1, 2, 3):
            wire = ident.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            wire += name + b"\x00\x01\x00\x01"
            assert handler.handle(wire, PEER, UDP) == slow.handle(wire, PEER, UDP)


def test_names_alike_up_to_a_zero_byte_inside_a_label_are_not_confused():
    fast, slow = make_handler(True), make_handler(False)
    header = b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    first = header + b"\x02a\x00\x07example\x03com\x00\x00\x01\x00\x01"
    second = header + b"\x02a\x00\x07exampld\x03com\x00\x00\x01\x00\x01"  # same up to "exa"
    for wire in (first, first, second, first, second):
        assert fast.handle(wire, PEER, UDP) == slow.handle(wire, PEER, UDP)


def padded_with_cookies(name: str, size: int, salt: int = 0) -> bytes:
    """A query padded to about ``size`` bytes with 8-octet COOKIE options, all different."""
    cookies = [EDNSOption(10, (salt * 100_000 + i).to_bytes(8, "big")) for i in range(size // 12)]
    q = DNSRecord.question(name)
    q.add_ar(EDNS0(udp_len=1232, opts=cookies))
    return bytes(q.pack())


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "slow"])
def test_two_cookies_are_formerr(fast):
    handler = make_handler(fast)
    cookie = EDNSOption(10, b"12345678")
    _, once, _ = ask(handler, "www.example.com", edns=1232, opts=[cookie])
    _, twice, _ = ask(handler, "www.example.com", edns=1232, opts=[cookie, cookie])
    assert once.header.rcode == RCODE.NOERROR
    assert twice.header.rcode == RCODE.FORMERR and twice.q.qname == "www.example.com"


def test_a_query_padded_to_64_kb_sent_twice_changes_no_table():
    handler = make_handler()
    wire = padded_with_cookies("www.example.com", 65_000)
    before = table_sizes(handler.state.snapshot)
    replies = [handler.handle(wire, PEER, TCP) for _ in range(2)]
    assert table_sizes(handler.state.snapshot) == before
    assert [DNSRecord.parse(r).header.rcode for r in replies] == [RCODE.FORMERR] * 2


@pytest.mark.parametrize(
    "when, why",
    [
        (float("nan"), "not a number"),
        (float("inf"), "not a finite"),
        (float("-inf"), "not a finite"),
        (-1.0, "1970"),  # 1969-12-31T23:59:59Z
        (253402300800.0, "9999"),  # 10000-01-01T00:00:00Z
        (1e300, "9999"),
    ],
)
@pytest.mark.parametrize("frozen", [False, True])
def test_the_clock_refuses_times_it_cannot_show(when, why, frozen):
    clock = Clock(1_800_000_000.0)
    with pytest.raises(ValueError, match=why):
        clock.set(when, frozen=frozen)
    assert abs(clock.now() - 1_800_000_000.0) < 60  # unchanged


@pytest.mark.parametrize("when", [0.0, 253402300799.0, 1_800_000_000.5])
def test_the_clock_takes_every_time_from_1970_to_9999(when):
    clock = Clock()
    clock.set(when, frozen=True)
    assert clock.now() == when


def cookie_handler(fast: bool, require: bool = False, clock=lambda: 1_800_000_000):
    handler = make_handler(fast)
    snap = handler.state.snapshot
    config = CookieConfig((bytes(range(16)),), require=require)
    handler.state.swap(dataclasses.replace(snap, cookies=config))
    handler.cookie_clock = clock
    return handler


def cookie_queries(peers):
    """The mix with cookies: a client cookie alone, a good server cookie, a stale one, a
    foreign one; with and without ECS; from several clients."""
    good = {p: make(bytes(range(16)), b"client%02d" % i, address_bytes(p[0]), 1_800_000_000 - 60)
            for i, p in enumerate(peers)}  # fmt: skip
    for i, peer in enumerate(peers):
        client = b"client%02d" % i
        kinds = [client, client + good[peer], client + bytes(16), client + b"x" * 24]
        for qname, qtype, *_ in CASES[:12]:
            for cookie in kinds:
                for ecs in (False, True):
                    q = DNSRecord.question(qname.upper() if ecs else qname, qtype)
                    opts = [EDNSOption(10, cookie)]
                    if ecs:
                        opts.insert(0, EDNSOption(8, struct.pack("!HBB", 1, 24, 0) + b"\x0a\1\2"))
                    q.add_ar(EDNS0(udp_len=1232, opts=opts))
                    yield bytes(q.pack()), peer


@pytest.mark.parametrize("require", [False, True])
def test_cookie_answers_are_byte_identical_on_both_paths(require):
    fast, slow = cookie_handler(True, require), cookie_handler(False, require)
    peers = [("127.0.0.1", 40000), ("198.51.100.7", 5300), ("2001:db8::9", 5301)]
    queries = list(cookie_queries(peers))
    for listener in (UDP, TCP):
        for wire, peer in queries + queries:
            assert fast.handle(wire, peer, listener) == slow.handle(wire, peer, listener)
    assert fast.stats.reference < slow.stats.reference  # good cookies: from the tables


def test_each_client_gets_its_own_cookie_from_a_stored_answer():
    handler = cookie_handler(True)
    q = DNSRecord.question("www.example.com", "A")
    q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(10, b"clientAA")]))
    wire = bytes(q.pack())
    first = handler.handle(wire, ("192.0.2.1", 1), UDP)
    second = handler.handle(wire, ("192.0.2.2", 1), UDP)
    assert first[:-16] == second[:-16] and first[-16:] != second[-16:]
    for peer, out in ((("192.0.2.1", 1), first), (("192.0.2.2", 1), second)):
        expected = make(bytes(range(16)), b"clientAA", address_bytes(peer[0]), 1_800_000_000)
        assert out[-16:] == expected
