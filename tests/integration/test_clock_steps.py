"""The test clock visiting times out of order: every answer is decided for its own time.

A decision (and the answer stored for it) holds on the interval of time for which
it was made; a step of the clock to before that interval, or past it, decides
again. The failover example is asked at a later time, an earlier one, the two
passes of the repeated hour on a DST day (in reverse), and earlier again. The
clock refuses times it cannot show (nan, inf, before 1970, after 9999) with the
reason, and keeps its time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dnspol.testing import Server

FAILOVER = Path(__file__).resolve().parents[2] / "policies" / "failover" / "dnspol.yaml"
PRIMARY, DR = ["192.0.2.10"], ["198.51.100.10"]


@pytest.fixture(scope="module")
def failover():
    with Server(config=FAILOVER, fake_time="2026-05-01T12:00:00+02:00") as srv:
        yield srv


# (time, app's addresses, the highest TTL allowed): each row asked twice in a row, so
# the second answer comes from what the first stored
VISITS = [
    ("2026-05-10T02:59:30+02:00", DR, 30),  # a Sunday, 30 s before maintenance ends
    ("2026-05-06T07:59:40+02:00", PRIMARY, 20),  # the Wednesday before, 20 s before 08:00
    # 2026-10-25, Berlin: 03:00 CEST -> 02:00 CET; maintenance covers both 02:xx hours
    ("2026-10-25T01:59:50+00:00", DR, 10),  # 02:59:50 CET, the second pass: ends at 03:00
    ("2026-10-25T00:59:50+00:00", DR, 60),  # 02:59:50 CEST, the first: 1 h 10 s to go
    ("2026-10-24T22:59:50+00:00", PRIMARY, 10),  # 00:59:50 CEST: maintenance starts at 01:00
]


def test_times_visited_out_of_order_are_each_decided_for_their_own_time(failover):
    for when, addresses, highest in VISITS:
        failover.set_time(when)
        for tcp in (False, False, True):
            app = failover.dig("app.example.org", tcp=tcp)
            assert app.addresses == addresses, (when, tcp)
            ttls = [record.ttl for record in app.answer]
            assert ttls and max(ttls) <= highest, (when, tcp, ttls)
            if highest < 60:  # capped by the window: within a few seconds of the boundary
                assert min(ttls) >= highest - 5, (when, tcp, ttls)


@pytest.mark.parametrize(
    "when, why",
    [
        (float("nan"), "not a number"),
        (float("inf"), "not a finite"),
        ("1969-12-31T23:59:59+00:00", "1970"),
        (253402300800, "9999"),
    ],
)
def test_set_time_refuses_times_the_clock_cannot_show(failover, when, why):
    failover.set_time("2026-05-10T02:00:00+02:00")
    with pytest.raises(ValueError, match=why):
        failover.set_time(when)
    assert failover.now().isoformat().startswith("2026-05-10T00:00")  # unchanged
    assert failover.dig("app.example.org").addresses == DR  # no SERVFAIL


def test_advance_refuses_to_leave_the_years_the_clock_can_show(failover):
    failover.set_time("9999-12-31T23:59:00+00:00")
    with pytest.raises(ValueError, match="9999"):
        failover.advance(120)
    with pytest.raises(ValueError, match="whole seconds"):
        failover.advance(float("nan"))
    assert failover.now().isoformat().startswith("9999-12-31T23:59")
    assert failover.dig("app.example.org").rcode == "NOERROR"
