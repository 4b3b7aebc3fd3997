"""Weekly availability as UTC intervals over the programme's first week, and their overlap."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from twoway_matching.domain.model import Window

Interval = tuple[int, int]  # [start, end) in minutes since the Unix epoch, UTC

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


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-touching intervals covering the same minutes."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """The intervals where both `a` and `b` are available (both merged)."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
