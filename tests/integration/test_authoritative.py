"""The authoritative core through real dig, over UDP and TCP, table-driven.

Each case is one query against the shared ``core`` server (zones ``example.``
and ``sub2.example.`` in tests/integration/data) and the whole expected
response: rcode, AA, and every record of every section (owner, TTL, type,
data). The rules are written out in docs/authoritative.md; section
numbers in the comments point there.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

SOA = "ns1.example. hostmaster.example. 2024010101 7200 900 1209600 300"
SOA2 = "ns1.sub2.example. hostmaster.sub2.example. 2024020202 7200 900 1209600 600"
NEG = ("example.", 300, "SOA", SOA)  # min(SOA TTL 3600, MINIMUM 300)
NEG2 = ("sub2.example.", 120, "SOA", SOA2)  # min(SOA TTL 120, MINIMUM 600)
DS = "12345 13 2 2BB183AF5F22588179A53B0A98631FAD1A292118D4BC4E91C61D7E53 00DA17D0"
SUB_NS = (
    ("sub.example.", 3600, "NS", "ns.sub.example."),
    ("sub.example.", 3600, "NS", "ns.elsewhere.net."),
)
SUB_GLUE = (
    ("ns.sub.example.", 3600, "A", "192.0.2.200"),
    ("ns.sub.example.", 3600, "AAAA", "2001:db8::200"),
)
WWW_A = ("www.example.", 3600, "A", "192.0.2.1")

Row = tuple[str, int, str, str]


@dataclass(frozen=True)
class Case:
    qname: str
    qtype: str
    rcode: str
    answer: tuple[Row, ...] = ()
    authority: tuple[Row, ...] | None = ()  # None: not checked
    additional: tuple[Row, ...] | None = ()
    aa: bool = True
    why: str = ""


CASES = [
    # §7.2 exact match
    Case("www.example.", "A", "NOERROR", (WWW_A,), why="plain A"),
    Case("www.example.", "AAAA", "NOERROR", (("www.example.", 3600, "AAAA", "2001:db8::1"),)),
    Case(
        "example.",
        "SOA",
        "NOERROR",
        (("example.", 3600, "SOA", SOA),),
        why="apex SOA keeps its own TTL in the answer",
    ),
    Case("www.example.", "TXT", "NOERROR", (), (NEG,), why="NODATA: SOA TTL min(TTL, MINIMUM)"),
    Case(
        "www.example.", "TYPE65000", "NOERROR", (), (NEG,), why="unknown type: NODATA, not NOTIMP"
    ),
    # §7.2 / §8 empty non-terminals
    Case("c.example.", "A", "NOERROR", (), (NEG,), why="ENT is NODATA"),
    Case("b.c.example.", "TXT", "NOERROR", (), (NEG,), why="ENT is NODATA"),
    Case("a.b.c.example.", "A", "NOERROR", (("a.b.c.example.", 3600, "A", "192.0.2.77"),)),
    Case("x.c.example.", "A", "NXDOMAIN", (), (NEG,), why="ENT c blocks *.example"),
    # §8 wildcards
    Case(
        "x.y.example.",
        "A",
        "NOERROR",
        (("x.y.example.", 3600, "A", "192.0.2.99"),),
        why="multi-label wildcard match, owner = qname",
    ),
    Case("foo.t.example.", "A", "NOERROR", (), (NEG,), why="wildcard NODATA"),
    Case("foo.t.example.", "TXT", "NOERROR", (("foo.t.example.", 3600, "TXT", '"wild text"'),)),
    Case(
        "foo.w.example.",
        "A",
        "NOERROR",
        (("foo.w.example.", 3600, "CNAME", "www.example."), WWW_A),
        why="wildcard CNAME is followed",
    ),
    Case(
        "foo.w.example.",
        "CNAME",
        "NOERROR",
        (("foo.w.example.", 3600, "CNAME", "www.example."),),
        why="QTYPE CNAME: the synthesized CNAME only",
    ),
    Case(
        "*.example.",
        "A",
        "NOERROR",
        (("*.example.", 3600, "A", "192.0.2.99"),),
        why="literal * is an exact match",
    ),
    Case("*.example.", "TXT", "NOERROR", (), (NEG,)),
    # §7.1 delegations: referral, and DS at the cut from the parent
    Case("foo.sub.example.", "A", "NOERROR", (), SUB_NS, SUB_GLUE, aa=False, why="referral"),
    Case("sub.example.", "NS", "NOERROR", (), SUB_NS, SUB_GLUE, aa=False, why="NS at cut"),
    Case("sub.example.", "A", "NOERROR", (), SUB_NS, SUB_GLUE, aa=False),
    Case("ns.sub.example.", "A", "NOERROR", (), SUB_NS, SUB_GLUE, aa=False, why="glue"),
    Case("deep.ns.sub.example.", "A", "NOERROR", (), SUB_NS, SUB_GLUE, aa=False),
    Case("x.y.sub.example.", "DS", "NOERROR", (), SUB_NS, SUB_GLUE, aa=False, why="DS below cut"),
    Case("sub.example.", "DS", "NOERROR", (("sub.example.", 3600, "DS", DS),), why="DS at cut"),
    Case("nods.example.", "DS", "NOERROR", (), (NEG,), why="DS NODATA at cut, parent SOA"),
    Case(
        "nods.example.",
        "A",
        "NOERROR",
        (),
        (("nods.example.", 3600, "NS", "ns.elsewhere.net."),),
        aa=False,
        why="referral without glue",
    ),
    # §10 additional section for NS, MX, SRV targets
    Case(
        "example.",
        "NS",
        "NOERROR",
        (("example.", 3600, "NS", "ns1.example."), ("example.", 3600, "NS", "ns2.example.")),
        (),
        (
            ("ns1.example.", 3600, "A", "192.0.2.53"),
            ("ns1.example.", 3600, "AAAA", "2001:db8::53"),
            ("ns2.example.", 3600, "A", "192.0.2.54"),
        ),
    ),
    Case(
        "example.",
        "MX",
        "NOERROR",
        (("example.", 3600, "MX", "10 mail.example."),),
        (),
        (("mail.example.", 3600, "A", "192.0.2.25"),),
    ),
    Case(
        "_sip._udp.example.",
        "SRV",
        "NOERROR",
        (("_sip._udp.example.", 3600, "SRV", "0 5 5060 sip.example."),),
        (),
        (("sip.example.", 3600, "A", "192.0.2.60"), ("sip.example.", 3600, "AAAA", "2001:db8::60")),
    ),
    # §7.3 CNAME chains
    Case(
        "cn1.example.",
        "A",
        "NOERROR",
        (
            ("cn1.example.", 3600, "CNAME", "cn2.example."),
            ("cn2.example.", 3600, "CNAME", "www.example."),
            WWW_A,
        ),
        why="chain followed in zone",
    ),
    Case(
        "cn1.example.",
        "CNAME",
        "NOERROR",
        (("cn1.example.", 3600, "CNAME", "cn2.example."),),
        why="QTYPE CNAME: not followed",
    ),
    Case(
        "cn1.example.",
        "MX",
        "NOERROR",
        (
            ("cn1.example.", 3600, "CNAME", "cn2.example."),
            ("cn2.example.", 3600, "CNAME", "www.example."),
        ),
        (NEG,),
        why="chain ending in NODATA",
    ),
    Case(
        "cnout.example.",
        "A",
        "NOERROR",
        (("cnout.example.", 3600, "CNAME", "www.example.net."),),
        why="out-of-zone target not followed",
    ),
    Case(
        "cnsub2.example.",
        "A",
        "NOERROR",
        (("cnsub2.example.", 3600, "CNAME", "www.sub2.example."),),
        why="target in another served zone not followed",
    ),
    Case(
        "cnwild.example.",
        "A",
        "NOERROR",
        (
            ("cnwild.example.", 3600, "CNAME", "some.where.example."),
            ("some.where.example.", 3600, "A", "192.0.2.99"),
        ),
        why="CNAME target answered from a wildcard",
    ),
    Case(
        "loop1.example.",
        "A",
        "NOERROR",
        (
            ("loop1.example.", 3600, "CNAME", "loop2.example."),
            ("loop2.example.", 3600, "CNAME", "loop1.example."),
        ),
        why="loop bounded, NOERROR with the chain",
    ),
    Case(
        "self.example.",
        "A",
        "NOERROR",
        (("self.example.", 3600, "CNAME", "self.example."),),
        why="CNAME to itself",
    ),
    # §7.4 DNAME
    Case("d.example.", "DNAME", "NOERROR", (("d.example.", 3600, "DNAME", "example.net."),)),
    Case(
        "foo.d.example.",
        "A",
        "NOERROR",
        (
            ("d.example.", 3600, "DNAME", "example.net."),
            ("foo.d.example.", 3600, "CNAME", "foo.example.net."),
        ),
        why="DNAME redirects names below it (RFC 6672)",
    ),
    # §5 ANY at names without data
    Case("c.example.", "ANY", "NOERROR", (), (NEG,), why="ANY at an ENT: NODATA"),
    # §6 zone selection: the child zone sub2.example. answers for its names
    Case("www.sub2.example.", "A", "NOERROR", (("www.sub2.example.", 3600, "A", "192.0.2.81"),)),
    Case("sub2.example.", "SOA", "NOERROR", (("sub2.example.", 120, "SOA", SOA2),)),
    Case("nope.sub2.example.", "A", "NXDOMAIN", (), (NEG2,), why="NXDOMAIN, child's SOA"),
    Case("nope.sub2.example.", "ANY", "NXDOMAIN", (), (NEG2,)),
    Case("www.sub2.example.", "MX", "NOERROR", (), (NEG2,)),
    Case(
        "cnx.sub2.example.",
        "A",
        "NXDOMAIN",
        (("cnx.sub2.example.", 3600, "CNAME", "missing.sub2.example."),),
        (NEG2,),
        why="CNAME to a missing name: NXDOMAIN with the CNAME (RFC 6604)",
    ),
    Case(
        "cnz.sub2.example.",
        "A",
        "NOERROR",
        (("cnz.sub2.example.", 3600, "CNAME", "www.example."),),
        why="target in the parent zone not followed",
    ),
    Case(
        "cnnodata.sub2.example.",
        "MX",
        "NOERROR",
        (("cnnodata.sub2.example.", 3600, "CNAME", "www.sub2.example."),),
        (NEG2,),
    ),
    # §6 names in no served zone
    Case("www.example.org.", "A", "REFUSED", aa=False, why="not served"),
    Case("org.", "SOA", "REFUSED", aa=False),
    Case(".", "NS", "REFUSED", aa=False, why="no upward referral to the root"),
]


def _rows(records) -> list[Row]:
    return sorted((r.name.lower(), r.ttl, r.type, r.data) for r in records)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qname}{c.qtype}")
def test_answer(core, case: Case, transport: str) -> None:
    res = core.dig(case.qname, case.qtype, tcp=transport == "tcp")
    assert res.transport == transport.upper()
    assert res.rcode == case.rcode, res.raw
    assert res.aa is case.aa, res.raw
    assert not res.ra and not res.tc, res.raw
    assert res.rd, res.raw  # dig sets RD by default; the server copies it
    assert res.question[0].name == case.qname, res.raw
    assert _rows(res.answer) == sorted(case.answer), res.raw
    if case.authority is not None:
        assert _rows(res.authority) == sorted(case.authority), res.raw
    if case.additional is not None:
        assert _rows(res.additional) == sorted(case.additional), res.raw


def test_chain_order(core) -> None:
    """The CNAME chain comes in order: each RR's data is the next RR's owner."""
    res = core.dig("cn1.example.", "A")
    assert [r.name for r in res.answer] == ["cn1.example.", "cn2.example.", "www.example."]


# -- header bits -------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_rd_copied_ra_never_set(core, transport) -> None:
    tcp = transport == "tcp"
    with_rd = core.dig("www.example.", "A", tcp=tcp)
    without = core.dig("www.example.", "A", "+norec", tcp=tcp)
    assert with_rd.rd and not with_rd.ra
    assert not without.rd and not without.ra
    assert without.aa and with_rd.aa
    nx = core.dig("nope.sub2.example.", "A", "+norec", tcp=tcp)
    assert not nx.rd and not nx.ra and nx.aa


def test_cd_copied_ad_cleared(core) -> None:
    res = core.dig("www.example.", "A", "+cdflag", "+adflag")
    assert "cd" in res.flags
    assert "ad" not in res.flags


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_question_echoed_with_client_case(core, transport) -> None:
    res = core.dig("WwW.ExAmPlE.", "A", tcp=transport == "tcp")
    assert res.question[0].name == "WwW.ExAmPlE."
    assert [r.data for r in res.answer] == ["192.0.2.1"]
    assert res.answer[0].name.lower() == "www.example."


def test_wildcard_owner_is_query_spelling(core) -> None:
    res = core.dig("FoO.bAr.example.", "A")
    assert res.question[0].name == "FoO.bAr.example."
    assert [(r.name, r.data) for r in res.answer] == [("FoO.bAr.example.", "192.0.2.99")]


def test_mixed_case_negative_and_referral(core) -> None:
    assert core.dig("X.C.Example.", "A").rcode == "NXDOMAIN"
    ref = core.dig("Foo.SUB.example.", "A")
    # names in RDATA may come back in the query's spelling (compressed against the
    # question); DNS names compare case-insensitively (RFC 4343)
    rows = sorted((n, ttl, t, d.lower()) for n, ttl, t, d in _rows(ref.authority))
    assert not ref.aa and rows == sorted(SUB_NS)
    assert core.dig("WWW.SUB2.EXAMPLE.", "A").addresses == ["192.0.2.81"]


# -- EDNS ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_edns_echoed_only_when_asked(core, transport) -> None:
    tcp = transport == "tcp"
    with_edns = core.dig("www.example.", "A", tcp=tcp)
    assert with_edns.edns is not None and with_edns.edns.version == 0
    assert with_edns.edns.udp == 1232  # our own maximum, whatever the client sent
    without = core.dig("www.example.", "A", "+noedns", tcp=tcp)
    assert without.edns is None
    assert without.addresses == ["192.0.2.1"]
    for qname in ("nope.sub2.example.", "www.example.org."):  # negative and REFUSED too
        assert core.dig(qname, "A", tcp=tcp).edns is not None
        assert core.dig(qname, "A", "+noedns", tcp=tcp).edns is None


def test_edns_payload_advertised_is_server_max(core) -> None:
    for size in (512, 1232, 4096):
        assert core.dig("www.example.", "A", f"+bufsize={size}").edns.udp == 1232


def test_do_bit_copied(core) -> None:
    assert "do" in core.dig("www.example.", "A", "+dnssec").edns.flags
    assert "do" not in core.dig("www.example.", "A").edns.flags


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_edns_version_1_is_badvers(core, transport) -> None:
    res = core.dig("www.example.", "A", "+edns=1", "+noednsnegotiation", tcp=transport == "tcp")
    assert res.rcode == "BADVERS"
    assert res.edns is not None and res.edns.version == 0
    assert res.answer == () and res.authority == ()
    assert res.question[0].name == "www.example."


# -- sizes and truncation (§10) ------------------------------------------------------


def test_bufsize_512_truncates_what_1232_carries(core) -> None:
    small = core.dig("mid.example.", "TXT", "+bufsize=512", "+ignore")
    assert small.tc and small.answer == () and small.size <= 512
    assert small.edns is not None  # the OPT stays in a truncated reply
    assert small.question[0].name == "mid.example."
    whole = core.dig("mid.example.", "TXT", "+bufsize=1232", "+ignore")
    assert not whole.tc and len(whole.answer) == 10
    assert 512 < whole.size <= 1232


def test_big_answer_truncates_over_udp(core) -> None:
    res = core.dig("big.example.", "TXT", "+ignore", "+bufsize=4096")
    assert res.tc and res.answer == ()
    assert res.rcode == "NOERROR" and res.aa
    assert res.size <= 1232


def test_big_answer_dig_retries_over_tcp(core) -> None:
    res = core.dig("big.example.", "TXT")
    assert res.truncated_retry and res.transport == "TCP"
    assert len(res.answer) == 40 and not res.tc


def test_big_answer_whole_over_tcp(core) -> None:
    res = core.dig("big.example.", "TXT", tcp=True)
    assert not res.tc and len(res.answer) == 40
    assert sorted(res.texts)[0].startswith("big-01 ")
    assert res.size > 1232


def test_no_edns_limit_is_512(core) -> None:
    res = core.dig("mid.example.", "TXT", "+noedns", "+ignore")
    assert res.tc and res.answer == () and res.edns is None
    assert res.size <= 512
    tcp = core.dig("mid.example.", "TXT", "+noedns", tcp=True)
    assert len(tcp.answer) == 10 and not tcp.tc


def test_additional_dropped_without_tc(core) -> None:
    """RFC 2181 §9: additional data that does not fit is left out, without TC."""
    small = core.dig("manymx.example.", "MX", "+noedns", "+ignore")
    assert not small.tc and len(small.answer) == 12 and small.size <= 512
    assert len(small.additional) < 24
    whole = core.dig("manymx.example.", "MX")
    assert not whole.tc and len(whole.answer) == 12 and len(whole.additional) == 24


def test_referral_glue_that_does_not_fit_sets_tc(core) -> None:
    """RFC 9471 §3.1: in-domain glue is required; if it does not fit, TC=1."""
    small = core.dig("www.bigdel.example.", "A", "+noedns", "+ignore")
    assert small.tc and small.size <= 512 and not small.aa
    whole = core.dig("www.bigdel.example.", "A")
    assert not whole.tc and len(whole.authority) == 15 and len(whole.additional) == 30
    tcp = core.dig("www.bigdel.example.", "A", "+noedns", tcp=True)
    assert not tcp.tc and len(tcp.additional) == 30


# -- ANY (RFC 8482) ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("qname", ["any.example.", "example.", "www.example."])
def test_any_returns_one_rrset(core, qname, transport) -> None:
    res = core.dig(qname, "ANY", tcp=transport == "tcp")
    assert res.rcode == "NOERROR" and res.aa and not res.tc
    assert res.answer, res.raw
    assert len({(r.name.lower(), r.type) for r in res.answer}) == 1, res.raw


# -- classes -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["version.bind.", "hostname.bind.", "id.server."])
def test_chaos_builtins_refused_by_default(core, name) -> None:
    res = core.dig(name, "TXT", "-c", "CH")
    assert res.rcode == "REFUSED" and not res.aa and res.answer == ()


def test_other_classes_refused(core) -> None:
    res = core.dig("www.example.", "A", "-c", "HS")
    assert res.rcode == "REFUSED" and not res.aa
