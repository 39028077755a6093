"""Time windows: parsing, wall-clock matching with DST, next boundary, and the TTL cap."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
from zoneinfo import ZoneInfo

import pytest

from dnspol.names import from_text
from dnspol.policy import Action, Policy, QueryFacts, Rule
from dnspol.policy.criteria import All, QtypeIs, TimeIn
from dnspol.policy.timewindow import (
    HORIZON_DAYS,
    TimeWindow,
    parse_between,
    parse_date_range,
    parse_days,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


def ts(text: str) -> float:
    """'2026-03-29 00:45' in UTC → epoch seconds."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def window(between: str | None = None, days=None, dates=None, tz: ZoneInfo = BERLIN):
    start, end = parse_between(between) if between else (0, 1440)
    return TimeWindow(
        start,
        end,
        parse_days(days) if days else None,
        tuple(parse_date_range(d) for d in dates) if dates else None,
        tz,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01:00-03:00", (60, 180)),
        ("22:00-06:00", (1320, 360)),
        ("00:00-24:00", (0, 1440)),
        (" 8:30 - 17:45 ", (510, 1065)),
        ("23:00-24:00", (1380, 1440)),
    ],
)
def test_parse_between(text: str, expected: tuple[int, int]) -> None:
    assert parse_between(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("01:00", "must look like HH:MM-HH:MM"),
        ("1-3", "is not a time of day"),
        ("25:00-26:00", "00:00 to 23:59"),
        ("10:60-11:00", "00:00 to 23:59"),
        ("24:00-01:00", "00:00 to 23:59"),
        ("03:00-03:00", "starts where it ends"),
        ("00:00-00:00", "starts where it ends"),
    ],
)
def test_parse_between_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_between(text)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["mon"], {0}),
        (["Sat", "sunday"], {5, 6}),
        (["mon-fri"], {0, 1, 2, 3, 4}),
        (["fri-mon"], {4, 5, 6, 0}),
        (["weekend"], {5, 6}),
        (["weekdays", "sun"], {0, 1, 2, 3, 4, 6}),
    ],
)
def test_parse_days(items: list[str], expected: set[int]) -> None:
    assert parse_days(items) == expected


def test_parse_days_error() -> None:
    with pytest.raises(ValueError, match="'tues' is not a day"):
        parse_days(["tues"])


def test_parse_dates() -> None:
    assert parse_date_range("2026-12-24") == (dt.date(2026, 12, 24), dt.date(2026, 12, 24))
    assert parse_date_range("2026-12-30..2027-01-02") == (
        dt.date(2026, 12, 30),
        dt.date(2027, 1, 2),
    )
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_date_range("2026-12-24..2026-12-01")
    with pytest.raises(ValueError, match="not a date"):
        parse_date_range("24.12.2026")


# 2026-05-08 is a Friday; Berlin is UTC+2 in summer, UTC+1 in winter.
MATCHES = [
    # (window, UTC instant, inside?)
    (window("01:00-03:00"), "2026-05-08 23:30", True),  # 01:30 Saturday Berlin
    (window("01:00-03:00"), "2026-05-09 01:00", False),  # 03:00 Berlin: end is exclusive
    (window("01:00-03:00"), "2026-05-08 22:59", False),
    (window("01:00-03:00", tz=UTC), "2026-05-09 01:00", True),
    # across midnight: "fri 22:00-06:00" is Friday night, and includes Saturday 03:00
    (window("22:00-06:00", ["fri"]), "2026-05-08 20:00", True),  # Fri 22:00
    (window("22:00-06:00", ["fri"]), "2026-05-09 01:00", True),  # Sat 03:00
    (window("22:00-06:00", ["fri"]), "2026-05-09 03:59", True),  # Sat 05:59
    (window("22:00-06:00", ["fri"]), "2026-05-09 04:00", False),  # Sat 06:00
    (window("22:00-06:00", ["fri"]), "2026-05-08 01:00", False),  # Fri 03:00: Thursday's night
    (window("22:00-06:00", ["fri"]), "2026-05-09 21:00", False),  # Sat 23:00
    (window(days=["weekend"]), "2026-05-08 22:30", True),  # Sat 00:30 Berlin, Fri in UTC
    (window(days=["weekend"]), "2026-05-08 21:30", False),
    (window("08:00-18:00", ["mon-fri"]), "2026-05-08 06:00", True),
    (window("08:00-18:00", ["mon-fri"]), "2026-05-09 06:00", False),
    (window(dates=["2026-12-24..2026-12-26"]), "2026-12-23 23:00", True),  # 24th, 00:00 CET
    (window(dates=["2026-12-24..2026-12-26"]), "2026-12-26 23:00", False),
    (window("23:00-01:00", dates=["2026-12-31"]), "2027-01-01 23:30", False),
    (window("23:00-01:00", dates=["2026-12-31"]), "2026-12-31 23:30", True),  # Jan 1, 00:30
    # DST starts 2026-03-29: 02:00 CET jumps to 03:00 CEST (at 01:00 UTC)
    (window("02:00-03:00"), "2026-03-29 00:59", False),
    (window("02:00-03:00"), "2026-03-29 01:00", False),  # the skipped hour never happens
    (window("01:30-02:30"), "2026-03-29 00:45", True),  # 01:45 CET
    (window("01:30-02:30"), "2026-03-29 01:00", False),  # 03:00 CEST
    (window("02:30-04:00"), "2026-03-29 01:00", True),  # starts when the clock jumps
    # DST ends 2026-10-25: 03:00 CEST goes back to 02:00 CET (at 01:00 UTC)
    (window("02:00-03:00"), "2026-10-25 00:30", True),  # first 02:30 (CEST)
    (window("02:00-03:00"), "2026-10-25 01:30", True),  # second 02:30 (CET)
    (window("02:00-03:00"), "2026-10-25 02:00", False),  # 03:00 CET
]


@pytest.mark.parametrize(("win", "instant", "inside"), MATCHES)
def test_window_matches(win: TimeWindow, instant: str, inside: bool) -> None:
    assert win.matches(ts(instant)) is inside


NEXT_CHANGES = [
    # (window, now (UTC), next change (UTC))
    (window("01:00-03:00"), "2026-05-08 22:00", "2026-05-08 23:00"),
    (window("01:00-03:00"), "2026-05-08 23:00", "2026-05-09 01:00"),
    (window("01:00-03:00", ["sat", "sun"]), "2026-05-04 12:00", "2026-05-08 23:00"),
    (window("22:00-06:00", ["fri"]), "2026-05-08 20:00", "2026-05-09 04:00"),
    (window("22:00-06:00", ["fri"]), "2026-05-09 04:00", "2026-05-15 20:00"),
    # spring: a window inside the skipped hour never opens that day
    (window("02:00-02:45"), "2026-03-28 23:00", "2026-03-30 00:00"),
    # spring: 01:30-02:30 closes when the clock jumps at 01:00 UTC, not at "02:30"
    (window("01:30-02:30"), "2026-03-29 00:45", "2026-03-29 01:00"),
    # autumn: 02:00-03:00 stays open through both 02:xx hours, two hours of real time
    (window("02:00-03:00"), "2026-10-25 00:00", "2026-10-25 02:00"),
    (window("02:00-03:00"), "2026-10-24 23:00", "2026-10-25 00:00"),
    (window("00:00-24:00", ["mon"]), "2026-10-25 12:00", "2026-10-25 23:00"),  # CET midnight
    (window("00:00-24:00", ["mon"]), "2026-03-29 12:00", "2026-03-29 22:00"),  # CEST midnight
]


@pytest.mark.parametrize(("win", "now", "expected"), NEXT_CHANGES)
def test_next_change(win: TimeWindow, now: str, expected: str) -> None:
    assert win.next_change(ts(now)) == ts(expected)


def test_next_change_beyond_horizon_is_the_horizon() -> None:
    far = window(dates=["2030-01-01"])
    now = ts("2026-05-08 12:00")
    assert far.next_change(now) == now + HORIZON_DAYS * 86400


# --- the decision's TTL cap and valid_until ---------------------------------------------------


def policy_with(*windows: TimeWindow, qtype: int | None = None) -> Policy:
    criteria = [TimeIn(tuple(windows))]
    if qtype is not None:
        criteria.insert(0, QtypeIs(frozenset({qtype}), ("X",)))
    rule = Rule(name="timed", where="t:1", action=Action.REFUSE, criteria=All(tuple(criteria)))
    return Policy([rule])


def decide(policy: Policy, now: float, qtype: int = 1):
    facts = QueryFacts(
        client=ipaddress.ip_address("192.0.2.1"),
        ecs=None,
        server=ipaddress.ip_address("127.0.0.1"),
        transport="udp",
        qname=from_text("www.example.com"),
        qtype=qtype,
        zone=from_text("example.com"),
        now=now,
    )
    return policy.evaluate(facts, random.Random())


TTL_CAPS = [
    # (UTC now, action, ttl_cap) for the window 01:00-03:00 UTC
    ("2026-05-08 00:00:00", Action.ANSWER, 3600),
    ("2026-05-08 00:59:59", Action.ANSWER, 1),
    ("2026-05-08 00:59:59.5", Action.ANSWER, 0),
    ("2026-05-08 01:00:00", Action.REFUSE, 7200),
    ("2026-05-08 01:00:01", Action.REFUSE, 7199),
    ("2026-05-08 02:59:59", Action.REFUSE, 1),
    ("2026-05-08 03:00:00", Action.ANSWER, 22 * 3600),
]


@pytest.mark.parametrize(("now", "action", "cap"), TTL_CAPS)
def test_ttl_cap_counts_down_to_the_next_boundary(now: str, action: Action, cap: int) -> None:
    decision = decide(policy_with(window("01:00-03:00", tz=UTC)), ts(now))
    assert (decision.action, decision.ttl_cap) == (action, cap)
    assert decision.valid_until == ts(now) + cap or decision.valid_until - ts(now) < 1


def test_valid_until_is_the_exact_boundary() -> None:
    decision = decide(policy_with(window("01:00-03:00", tz=UTC)), ts("2026-05-08 00:59:59.5"))
    assert decision.valid_until == ts("2026-05-08 01:00")


def test_ttl_cap_uses_the_earliest_window_boundary() -> None:
    policy = policy_with(window("01:00-02:00", tz=UTC), window("04:00-05:00", tz=UTC))
    decision = decide(policy, ts("2026-05-08 00:30"))
    assert decision.ttl_cap == 1800  # 01:00, the first window opening
    decision = decide(policy, ts("2026-05-08 02:30"))
    assert decision.action is Action.ANSWER and decision.ttl_cap == 5400  # 04:00


def test_ttl_cap_follows_the_union_of_overlapping_windows() -> None:
    policy = policy_with(window("01:00-03:00", tz=UTC), window("02:00-04:00", tz=UTC))
    decision = decide(policy, ts("2026-05-08 01:30"))
    assert decision.action is Action.REFUSE and decision.ttl_cap == 150 * 60  # 04:00


def test_no_ttl_cap_when_no_time_window_was_evaluated() -> None:
    policy = policy_with(window("01:00-03:00", tz=UTC), qtype=255)
    decision = decide(policy, ts("2026-05-08 00:59"), qtype=1)  # qtype fails first
    assert decision.ttl_cap is None and decision.valid_until == float("inf")
    decision = decide(policy, ts("2026-05-08 00:59"), qtype=255)
    assert decision.ttl_cap == 60


def test_ttl_cap_across_dst_change() -> None:
    policy = policy_with(window("02:00-03:00"))  # Berlin
    decision = decide(policy, ts("2026-10-25 00:30"))  # first 02:30
    assert decision.action is Action.REFUSE and decision.ttl_cap == 90 * 60
    decision = decide(policy, ts("2026-03-29 00:30"))  # 01:30 CET; 02:00-03:00 is skipped
    assert decision.action is Action.ANSWER
    assert decision.ttl_cap == ts("2026-03-30 00:00") - ts("2026-03-29 00:30")


def test_memoised_verdict_matches_fresh_evaluation() -> None:
    criterion = TimeIn((window("01:00-03:00", ["sat"]),))
    fresh = TimeIn(criterion.windows)
    rng = random.Random(3)
    start = ts("2026-05-01 00:00")
    instants = sorted(start + rng.randrange(14 * 86400) for _ in range(300))
    for instant in instants:
        assert criterion.verdict(instant) == TimeIn(fresh.windows).verdict(instant)


def test_a_decision_holds_from_the_time_it_was_made_until_the_boundary() -> None:
    policy = policy_with(window("01:00-03:00", tz=UTC))
    decision = decide(policy, ts("2026-05-08 02:00"))
    assert (decision.valid_from, decision.valid_until) == (
        ts("2026-05-08 02:00"),
        ts("2026-05-08 03:00"),
    )
    no_window = decide(
        policy_with(window("01:00-03:00", tz=UTC), qtype=255), ts("2026-05-08 02:00")
    )
    assert (no_window.valid_from, no_window.valid_until) == (float("-inf"), float("inf"))


def test_evaluating_later_then_earlier_decides_for_each_time() -> None:
    """The windows remember their last verdict; a clock stepped back must not reuse it."""
    policy = policy_with(window("01:00-03:00", days=["sun"], tz=UTC))
    visits = [
        ("2026-05-10 02:59:30", Action.REFUSE, 30),  # Sunday, in the window
        ("2026-05-06 02:59:30", Action.ANSWER, 3 * 86400 + 22 * 3600 + 30),  # Wednesday before
        ("2026-05-10 01:00:00", Action.REFUSE, 7200),  # forward again, at the opening
        ("2026-05-10 00:59:59", Action.ANSWER, 1),  # one second back: before it
    ]
    for now, action, cap in visits:
        decision = decide(policy, ts(now))
        assert (decision.action, decision.ttl_cap) == (action, cap), now


@pytest.mark.parametrize(
    "now, inside",
    [
        ("1970-01-01 00:00:00", False),  # a Thursday, 01:00 in Berlin
        ("1970-01-03 01:30:00", True),  # a Saturday, 02:30 in Berlin
        ("9999-12-25 00:30:00", True),  # a Saturday; looking 8 days ahead leaves year 9999
        ("9999-12-31 23:59:59", False),  # a Friday; already 10000-01-01 in Berlin
    ],
)
def test_windows_decide_at_both_ends_of_the_clocks_range(now: str, inside: bool) -> None:
    policy = policy_with(window("01:00-03:00", days=["sat", "sun"]))
    decision = decide(policy, ts(now))
    assert decision.action is (Action.REFUSE if inside else Action.ANSWER)
    assert decision.ttl_cap is not None and decision.valid_until > ts(now)
