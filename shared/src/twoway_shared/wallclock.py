"""Wall-clock maths, one way for every service: weekly windows and local grids as UTC minutes.

Exact at daylight-saving changes: a window loses the hour the clock skips and, in a repeated
hour, holds both occurrences; a local time that does not exist is not a candidate start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from twoway_shared.intervals import Interval, merge


@dataclass(frozen=True, order=True)
class Window:
    """A weekly availability window in its owner's timezone; minutes from local midnight."""

    weekday: int  # 0 = Monday
    start_minute: int
    end_minute: int  # up to 1440 (24:00)


Segment = tuple[int, int, int]  # [start, end) in UTC minutes during which `offset` applies

GRID_MINUTES = 15
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)
# Wider than any UTC offset (-12..+14 h), so a local date's instants all fall in its range.
_MARGIN = 15 * 60
# Probe the offset this often; no zone changes its offset twice within six hours.
_PROBE = 6 * 60


def to_minute(instant: datetime) -> int:
    """An aware datetime as whole minutes since the epoch (UTC)."""
    return int((instant - _EPOCH).total_seconds()) // 60


def ceil_minute(instant: datetime) -> int:
    """An aware datetime as minutes since the epoch, rounded up to a whole minute."""
    return -(-int((instant - _EPOCH).total_seconds() * 1_000_000) // 60_000_000)


def from_minute(minute: int) -> datetime:
    """UTC minutes since the epoch as an aware UTC datetime."""
    return _EPOCH + timedelta(minutes=minute)


def day_minute(day: date) -> int:
    """Local midnight of `day` as if the zone were UTC (a "wall-clock minute")."""
    return (day - _EPOCH_DAY).days * 1440


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def local_date(minute: int, timezone: str) -> date:
    """The date the clock on the wall shows in `timezone` at UTC minute `minute`."""
    return from_minute(minute).astimezone(ZoneInfo(timezone)).date()


def _offset(zone: ZoneInfo, minute: int) -> int:
    offset = from_minute(minute).astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds()) // 60


@lru_cache(maxsize=4096)
def offset_segments(timezone: str, lo: int, hi: int) -> tuple[Segment, ...]:
    """The UTC range [lo, hi) cut where the zone's offset changes, each piece with its offset."""
    zone = ZoneInfo(timezone)
    segments: list[Segment] = []
    start, current, t = lo, _offset(zone, lo), lo
    while t < hi - 1:
        probe = min(t + _PROBE, hi - 1)
        if _offset(zone, probe) == current:
            t = probe
            continue
        before, after = t, probe  # offset(before) == current != offset(after)
        while after - before > 1:
            middle = (before + after) // 2
            if _offset(zone, middle) == current:
                before = middle
            else:
                after = middle
        segments.append((start, after, current))
        start, current, t = after, _offset(zone, after), after
    segments.append((start, hi, current))
    return tuple(segments)


def _segments_for_days(timezone: str, first: date, last: date) -> tuple[Segment, ...]:
    return offset_segments(timezone, day_minute(first) - _MARGIN, day_minute(last) + 1440 + _MARGIN)


@lru_cache(maxsize=65536)
def wall_to_utc(timezone: str, wall: int) -> int | None:
    """The first UTC minute whose local wall-clock minute is `wall`; None inside a DST gap."""
    segments = offset_segments(
        timezone, wall - wall % 1440 - _MARGIN, wall - wall % 1440 + 1440 + _MARGIN
    )
    found = [wall - off for start, end, off in segments if start <= wall - off < end]
    return min(found) if found else None


@lru_cache(maxsize=16384)
def available(
    timezone: str, windows: tuple[Window, ...], first: date, last: date
) -> tuple[Interval, ...]:
    """UTC minutes whose wall clock in `timezone` lies in a window, on local dates first..last.

    Exact at DST changes: a window loses the hour the clock skips and, in a repeated hour,
    holds both occurrences of the wall-clock times it covers.
    """
    segments = _segments_for_days(timezone, first, last)
    by_weekday: dict[int, list[Window]] = {}
    for window in windows:
        by_weekday.setdefault(window.weekday, []).append(window)
    pieces: list[Interval] = []
    day = first
    while day <= last:
        midnight = day_minute(day)
        for window in by_weekday.get(day.weekday(), ()):
            for seg_start, seg_end, off in segments:
                start = max(midnight + window.start_minute - off, seg_start)
                end = min(midnight + window.end_minute - off, seg_end)
                if start < end:
                    pieces.append((start, end))
        day += timedelta(days=1)
    return tuple(merge(pieces))


@lru_cache(maxsize=4096)
def week_grid(timezone: str, monday: date) -> tuple[int, ...]:
    """A local week's candidate starts: every existing 15-minute wall time, first occurrence."""
    segments = _segments_for_days(timezone, monday, monday + timedelta(days=6))
    grid: list[int] = []
    for wall in range(day_minute(monday), day_minute(monday) + 7 * 1440, GRID_MINUTES):
        found = [wall - off for start, end, off in segments if start <= wall - off < end]
        if found:
            grid.append(min(found))
    return tuple(sorted(grid))
