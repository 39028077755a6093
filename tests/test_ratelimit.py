"""Response-rate limiting: balances, slip order, kinds of answer, bounds, truncated form."""

from __future__ import annotations

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, SOA, A, DNSRecord, EDNSOption

from dnspol.policy.prefixes import PrefixSet, parse_prefix
from dnspol.ratelimit import (
    ERROR,
    NODATA,
    NXDOMAIN,
    REFERRAL,
    RESPONSE,
    Limiter,
    RateLimit,
    Verdict,
    classify,
    slipped,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(name: str = "www.example.com", rcode: int = 0, aa: bool = True, edns: bool = False,
           records: int = 1) -> bytes:  # fmt: skip
    query = DNSRecord.question(name, "A")
    query.header.id = 0x1234
    reply = query.reply(ra=0, aa=int(aa))
    reply.header.rcode = rcode
    for i in range(records):
        reply.add_answer(RR(name, QTYPE.A, rdata=A(f"192.0.2.{i + 1}"), ttl=60))
    if rcode == RCODE.NXDOMAIN or (rcode == 0 and not records and aa):
        soa = SOA("ns.example.com", "hm.example.com", (1, 2, 3, 4, 5))
        reply.add_auth(RR("example.com", QTYPE.SOA, rdata=soa, ttl=60))
    if edns:
        reply.add_ar(EDNS0(udp_len=1232))
    return bytes(reply.pack())


def limiter(share: float = 1.0, **settings) -> tuple[Limiter, FakeClock]:
    clock = FakeClock()
    settings.setdefault("responses_per_second", 5)
    for key in ("nodata", "nxdomains", "referrals", "errors"):
        settings.setdefault(f"{key}_per_second", settings["responses_per_second"])
    return Limiter(RateLimit(**settings), share, clock), clock


FREE = 5  # a flood's first second: this many answers before the prefix is busy (apply)


def verdicts(lim: Limiter, reply: bytes, client: str, count: int) -> list[str]:
    return [lim.judge(reply, client).value for _ in range(count)]


def test_a_flood_gets_its_rate_then_slips_every_other_answer() -> None:
    lim, _ = limiter()
    seen = verdicts(lim, answer(), "198.51.100.7", 11)
    assert seen == ["send"] * 5 + ["slip", "drop", "slip", "drop", "slip", "drop"]


@pytest.mark.parametrize(
    "slip, expected",
    [(0, ["drop"] * 4), (1, ["slip"] * 4), (3, ["slip", "drop", "drop", "slip"])],
)
def test_slip_counts_limited_answers(slip, expected) -> None:
    lim, _ = limiter(slip=slip)
    assert verdicts(lim, answer(), "198.51.100.7", 9)[5:] == expected


def test_a_flood_is_remembered_for_the_window_then_forgotten() -> None:
    lim, clock = limiter(window=15)
    verdicts(lim, answer(), "198.51.100.7", 200)  # far below zero: held at -75
    clock.now += 1  # credit 5: still -70
    assert lim.judge(answer(), "198.51.100.7") is not Verdict.SEND
    clock.now += 16  # longer than the window: full again
    assert verdicts(lim, answer(), "198.51.100.7", 6) == ["send"] * 5 + ["slip"]


def test_credit_accrues_with_time_up_to_the_rate() -> None:
    lim, clock = limiter()
    assert verdicts(lim, answer(), "198.51.100.7", 5) == ["send"] * 5
    clock.now += 0.5  # 2.5 answers earned
    assert verdicts(lim, answer(), "198.51.100.7", 3) == ["send", "send", "slip"]
    clock.now += 100
    assert verdicts(lim, answer(), "198.51.100.7", 6)[-1] == "slip"  # capped at 5


def test_clients_are_counted_per_prefix() -> None:
    lim, _ = limiter()
    verdicts(lim, answer(), "198.51.100.7", 5)
    assert lim.judge(answer(), "198.51.100.200").value == "slip"  # same /24
    assert lim.judge(answer(), "198.51.101.7") is Verdict.SEND
    verdicts(lim, answer(), "2001:db8:0:1::1", 5)
    assert lim.judge(answer(), "2001:db8:0:2::1").value == "slip"  # same /56
    assert lim.judge(answer(), "2001:db8:1::1") is Verdict.SEND


def test_names_and_kinds_have_their_own_balances() -> None:
    lim, _ = limiter()
    verdicts(lim, answer("www.example.com"), "198.51.100.7", 5)
    assert lim.judge(answer("mail.example.com"), "198.51.100.7") is Verdict.SEND
    assert lim.judge(answer("WWW.example.com"), "198.51.100.7") is not Verdict.SEND


def test_random_names_in_one_zone_share_the_nxdomain_balance() -> None:
    lim, _ = limiter()
    seen = [
        lim.judge(answer(f"r{i}.example.com", rcode=3, records=0), "198.51.100.7").value
        for i in range(7)
    ]
    assert seen == ["send"] * 5 + ["slip", "drop"]


def test_errors_share_one_balance_and_rates_are_per_kind() -> None:
    lim, _ = limiter(errors_per_second=1)
    refused = [answer(f"x{i}.example.org", rcode=5, records=0) for i in range(3)]
    assert [lim.judge(r, "198.51.100.7").value for r in refused] == ["send", "slip", "drop"]
    assert lim.judge(answer(), "198.51.100.7") is Verdict.SEND


def test_a_kind_with_rate_zero_is_not_limited() -> None:
    lim, _ = limiter(errors_per_second=0)
    assert set(verdicts(lim, answer(rcode=5, records=0), "198.51.100.7", 50)) == {"send"}


@pytest.mark.parametrize(
    "reply, kind",
    [
        (answer(), RESPONSE),
        (answer(records=0), NODATA),
        (answer(records=0, aa=False), REFERRAL),
        (answer(rcode=3, records=0), NXDOMAIN),
        (answer(rcode=2, records=0), ERROR),
        (b"\x00" * 12, ERROR),
    ],
)
def test_classify(reply, kind) -> None:
    assert classify(reply)[0] == kind


def test_exempt_clients_are_never_limited() -> None:
    exempt = PrefixSet([parse_prefix("198.51.100.0/24")])
    lim, _ = limiter(exempt_clients=exempt)
    assert set(verdicts(lim, answer(), "198.51.100.7", 50)) == {"send"}
    assert verdicts(lim, answer(), "203.0.113.1", 6)[-1] == "slip"


def test_log_only_sends_everything_and_counts_what_it_would_do() -> None:
    lim, _ = limiter(log_only=True)
    sent = [lim.apply(answer(), "198.51.100.7") for _ in range(FREE + 9)]
    assert all(out == answer() for out in sent)
    assert lim.counts == {"would_drop": 2, "would_slip": 2}


def test_apply_counts_and_shapes_what_it_sends() -> None:
    lim, _ = limiter()
    outs = [lim.apply(answer(), "198.51.100.7") for _ in range(FREE + 7)][FREE:]
    assert outs[:5] == [answer()] * 5
    assert outs[5] == slipped(answer()) and outs[6] is None
    assert lim.counts["slip"] == 1 and lim.counts["drop"] == 1


def test_the_table_is_bounded_and_keeps_the_recently_used() -> None:
    lim, _ = limiter(max_entries=1000)
    verdicts(lim, answer(), "198.51.100.7", 5)
    for i in range(5000):
        lim.judge(answer(f"n{i}.example.com"), f"10.{i >> 8 & 255}.{i & 255}.1")
        if i % 100 == 0:
            lim.judge(answer(), "198.51.100.7")  # the flooding client stays in the table
    assert len(lim.entries) == 1000
    assert lim.judge(answer(), "198.51.100.7") is not Verdict.SEND


def test_a_share_divides_every_rate_but_not_the_burst() -> None:
    lim, clock = limiter(share=0.5)  # one of two workers: credited 2.5 a second
    assert verdicts(lim, answer(), "198.51.100.7", 6) == ["send"] * 5 + ["slip"]
    clock.now += 30  # full again: 5
    verdicts(lim, answer(), "198.51.100.7", 5)
    clock.now += 1  # 2.5 credited
    assert verdicts(lim, answer(), "198.51.100.7", 3) == ["send", "send", "slip"]


def test_the_truncated_form_keeps_the_question_and_the_opt_record() -> None:
    full = answer(edns=True, records=3)
    short = DNSRecord.parse(slipped(full))
    assert short.header.tc == 1 and short.header.id == 0x1234
    assert not short.rr and not short.auth
    assert str(short.q.qname) == "www.example.com."
    assert [rr.rtype for rr in short.ar] == [QTYPE.OPT]
    assert DNSRecord.parse(slipped(answer())).ar == []


def test_a_query_that_carried_the_answers_cookie_is_proven() -> None:
    from dnspol.ratelimit import proven_by_cookie

    cookie = bytes(range(24))
    reply = DNSRecord.question("www.example.com", "A").reply()
    reply.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(10, cookie)]))
    wire = bytes(reply.pack())
    assert proven_by_cookie(wire, b"...query..." + cookie)
    assert not proven_by_cookie(wire, b"...query..." + cookie[:8])  # client cookie only
    assert not proven_by_cookie(answer(edns=True), b"anything")
    lim, _ = limiter()
    sent = [lim.apply(wire, "198.51.100.7", b"q" + cookie) for _ in range(20)]
    assert sent == [wire] * 20


def test_a_prefix_under_the_smallest_rate_is_not_counted_one_by_one() -> None:
    lim, clock = limiter()
    for second in range(10):  # 5 answers a second, the rate: never limited, no entries
        clock.now = 1000.0 + second
        assert [lim.apply(answer(), "198.51.100.7") for _ in range(5)] == [answer()] * 5
    assert len(lim.entries) == 0


def test_a_limited_prefix_stays_counted_until_the_window_passes() -> None:
    lim, clock = limiter(window=15)
    sent = [lim.apply(answer(), "198.51.100.7") for _ in range(200)]  # a flood
    assert sent.count(None) > 90
    clock.now += 2  # a quiet client now, but its balance is still far below zero
    assert lim.apply(answer(), "198.51.100.7") != answer()
    clock.now += 20  # the window has passed: answered again
    assert lim.apply(answer(), "198.51.100.7") == answer()
