"""Weekly availability as UTC intervals over the programme's first week, and their overlap."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from twoway_shared.intervals import Interval, merge

from twoway_matching.domain.model import Window

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc_minute(day: date, minute: int, zone: ZoneInfo) -> int:
    # Aware + timedelta is wall-clock arithmetic: the local time `minute` minutes after
    # midnight (24:00 is the next day's 00:00), resolved in the zone with fold=0, so a time
    # skipped by a DST change takes the offset in force before it.
    local = datetime.combine(day, time(0), tzinfo=zone) + timedelta(minutes=minute)
    return int((local - _EPOCH).total_seconds() // 60)


def first_week_intervals(
    windows: Iterable[Window], timezone: str, starts_on: date
) -> list[Interval]:
    """The windows on the 7 dates from `starts_on`, each converted to UTC on its date, merged."""
    zone = ZoneInfo(timezone)
    by_weekday: dict[int, list[Window]] = {}
    for window in windows:
        by_weekday.setdefault(window.weekday, []).append(window)
    intervals: list[Interval] = []
    for offset in range(7):
        day = starts_on + timedelta(days=offset)
        for window in by_weekday.get(day.weekday(), ()):
            start = _utc_minute(day, window.start_minute, zone)
            end = _utc_minute(day, window.end_minute, zone)
            if end > start:  # a window inside a skipped DST hour has no length
                intervals.append((start, end))
    return merge(intervals)
