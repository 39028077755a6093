"""Time windows: wall-clock hours, weekdays and dates in an IANA time zone.

A window is matched against the local wall clock of its time zone (``zoneinfo``), so DST works
the way people read a clock: in the spring the skipped hour never happens (a window inside it
does not match that day; one starting inside it starts when the clock jumps), in the autumn
the repeated hour happens twice and a window covering it matches both times.

``between: "22:00-06:00"`` crosses midnight; ``days`` and ``dates`` then name the day the window
*starts* (``days: [fri]`` with ``22:00-06:00`` is Friday night, including Saturday 03:00).
Start is inclusive, end exclusive; ``00:00-24:00`` is the whole day.

``next_change(now)`` answers the question TTL capping needs: the first instant after ``now``
at which the window's verdict flips. It walks the candidate instants (starts, ends, midnights,
in both folds, plus the zone's UTC-offset changes) in order and returns the first whose verdict
differs, looking at most ``HORIZON_DAYS`` ahead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 1440
HORIZON_DAYS = 8  # a verdict that holds longer than this is re-checked after it
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = {name: index for index, name in enumerate(WEEKDAYS)}
DAY_NAMES.update(
    {
        full: index
        for index, full in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    }
)
DAY_GROUPS = {"weekdays": frozenset(range(5)), "weekend": frozenset({5, 6})}


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """One compiled window. ``days``/``dates`` None means every day / every date."""

    start: int  # minute of the day, 0..1439
    end: int  # 1..1440; end <= start means the window crosses midnight
    days: frozenset[int] | None
    dates: tuple[tuple[dt.date, dt.date], ...] | None  # inclusive ranges
    tz: ZoneInfo
    text: str = field(default="", compare=False)  # as written, for explanations

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def matches(self, now: float) -> bool:
        return self.matches_local(dt.datetime.fromtimestamp(now, self.tz))

    def matches_local(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.date()
        if self.crosses_midnight:
            if minute < self.end:
                day -= dt.timedelta(days=1)  # the tail of the window that started yesterday
            elif minute < self.start:
                return False
        elif not self.start <= minute < self.end:
            return False
        return self._day_allowed(day)

    def _day_allowed(self, day: dt.date) -> bool:
        if self.days is not None and day.weekday() not in self.days:
            return False
        if self.dates is not None:
            return any(first <= day <= last for first, last in self.dates)
        return True

    def next_change(self, now: float) -> float:
        """First instant after ``now`` at which ``matches`` flips (or the horizon's end)."""
        verdict = self.matches(now)
        for instant in self._candidates(now):
            if self.matches(instant) != verdict:
                return instant
        return now + HORIZON_DAYS * 86400.0

    def _candidates(self, now: float) -> list[float]:
        today = dt.datetime.fromtimestamp(now, self.tz).date()
        walls = sorted({0, self.start, self.end % MINUTES_PER_DAY})
        instants: set[float] = set()
        for offset in range(-1, HORIZON_DAYS + 1):
            day = today + dt.timedelta(days=offset)
            for minute in walls:
                wall = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), self.tz)
                instants.add(wall.timestamp())
                instants.add(wall.replace(fold=1).timestamp())
        ordered = sorted(instants)
        instants.update(_offset_changes(ordered, self.tz))
        return sorted(t for t in instants if t > now)

    def describe(self) -> str:
        return self.text or f"{_clock(self.start)}-{_clock(self.end)}"


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _offset_changes(instants: list[float], tz: ZoneInfo) -> list[float]:
    """Instants at which the zone's UTC offset changes, between the given sorted instants."""
    changes = []
    for before, after in zip(instants, instants[1:], strict=False):
        if _utc_offset(before, tz) != _utc_offset(after, tz):
            changes.append(_bisect_offset_change(before, after, tz))
    return changes


def _utc_offset(instant: float, tz: ZoneInfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(instant, tz).utcoffset()


def _bisect_offset_change(low: float, high: float, tz: ZoneInfo) -> float:
    """The first whole second in (low, high] with ``high``'s offset."""
    target = _utc_offset(high, tz)
    low_s, high_s = int(low), int(high)
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if _utc_offset(middle, tz) == target:
            high_s = middle
        else:
            low_s = middle
    return float(high_s)


# --- parsing (used by the rule compiler; every error is a message for people) ---------------


def parse_between(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` → (start minute, end minute). Raises ValueError."""
    start_text, dash, end_text = text.replace(" ", "").partition("-")
    if not dash:
        raise ValueError(f"time window {text!r} must look like HH:MM-HH:MM (e.g. 01:00-03:00)")
    start = _parse_clock(start_text, allow_24=False)
    end = _parse_clock(end_text, allow_24=True)
    if start == end % MINUTES_PER_DAY and not (start == 0 and end == MINUTES_PER_DAY):
        raise ValueError(
            f"time window {text!r} starts where it ends; write 00:00-24:00 for the whole day"
        )
    return start, end


def _parse_clock(text: str, *, allow_24: bool) -> int:
    hours, colon, minutes = text.partition(":")
    if not (colon and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    hour, minute = int(hours), int(minutes)
    if hour == 24 and minute == 0 and allow_24:
        return MINUTES_PER_DAY
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59, or 24:00 as an end)")
    return hour * 60 + minute


def parse_days(items: list[str]) -> frozenset[int]:
    """``["mon-fri", "sun"]``, ``["weekend"]`` → weekday numbers (Monday is 0)."""
    days: set[int] = set()
    for item in items:
        word = item.strip().lower()
        if word in DAY_GROUPS:
            days |= DAY_GROUPS[word]
            continue
        first, dash, last = word.partition("-")
        if dash:
            start, stop = _day(first, item), _day(last, item)
            span = (stop - start) % 7
            days.update((start + step) % 7 for step in range(span + 1))
        else:
            days.add(_day(word, item))
    return frozenset(days)


def _day(word: str, item: str) -> int:
    if word not in DAY_NAMES:
        raise ValueError(
            f"{item!r} is not a day; use mon, tue, wed, thu, fri, sat, sun, ranges like "
            "mon-fri, or weekdays / weekend"
        )
    return DAY_NAMES[word]


def parse_date_range(text: str) -> tuple[dt.date, dt.date]:
    """``"2026-12-24"`` or ``"2026-12-24..2027-01-02"`` (inclusive)."""
    first_text, dots, last_text = text.strip().partition("..")
    first = _date(first_text, text)
    last = _date(last_text, text) if dots else first
    if last < first:
        raise ValueError(f"date range {text!r} ends before it starts")
    return first, last


def _date(text: str, whole: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{whole!r} is not a date or date range (YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD)"
        ) from None
