"""The slot finder: valid session starts for a pair, series planning, moves and refits."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from twoway_shared.intervals import Interval, intersect, merge, subtract
from twoway_shared.wallclock import (
    available,
    ceil_minute,
    day_minute,
    from_minute,
    local_date,
    monday_of,
    to_minute,
    wall_to_utc,
    week_grid,
)

from twoway_scheduling.domain.model import Person, SeriesPlan, SeriesRules

SEARCH_WEEKS = 8
"""How far session 1 and a moved session are searched, and how many skipped weeks end a series."""


class SlotFinder:
    """Valid starts for one pair: inside both availabilities, clear of both people's sessions.

    Weeks are the mentee's local weeks (Monday to Sunday); candidates lie on the mentee's
    15-minute wall-clock grid. `busy` holds the other sessions of either person.
    """

    def __init__(
        self,
        mentor: Person,
        mentee: Person,
        session_minutes: int,
        busy: Iterable[tuple[datetime, datetime]] = (),
    ) -> None:
        self.mentor = mentor
        self.mentee = mentee
        self.minutes = session_minutes
        self._busy: list[Interval] = merge((to_minute(s), to_minute(e)) for s, e in busy)
        self._both: dict[date, list[Interval]] = {}

    def reserve(self, start: datetime) -> None:
        """Count a newly booked session as busy for the searches that follow."""
        lo = to_minute(start)
        hi = lo + self.minutes
        # Merged into its neighbours in place, as `merge` would: touching intervals join.
        i = bisect_left(self._busy, (lo, hi))
        if i > 0 and self._busy[i - 1][1] >= lo:
            i -= 1
            lo = self._busy[i][0]
            hi = max(hi, self._busy[i][1])
        j = i
        while j < len(self._busy) and self._busy[j][0] <= hi:
            hi = max(hi, self._busy[j][1])
            j += 1
        self._busy[i:j] = [(lo, hi)]

    def week_of(self, instant: datetime) -> date:
        """The Monday of the mentee's local week holding `instant`."""
        return monday_of(local_date(to_minute(instant), self.mentee.timezone))

    def _available(self, person: Person, monday: date) -> tuple[Interval, ...]:
        return _week_available(person, monday)

    def _free(self, monday: date) -> list[Interval]:
        both = self._both.get(monday)
        if both is None:
            both = intersect(
                self._available(self.mentor, monday), self._available(self.mentee, monday)
            )
            self._both[monday] = both
        first, last = monday - timedelta(days=2), monday + timedelta(days=9)
        lo, hi = day_minute(first) - 1440, day_minute(last) + 2 * 1440
        busy = self._busy[max(0, bisect_left(self._busy, (lo, lo)) - 1) :]
        return subtract(both, [b for b in busy if b[0] < hi])

    def is_valid(self, start: datetime) -> bool:
        """Whether `[start, start + session_minutes)` fits both people and clashes with nothing."""
        minute = to_minute(start)
        monday = self.week_of(start)
        grid = week_grid(self.mentee.timezone, monday)
        g = bisect_left(grid, minute)
        if g == len(grid) or grid[g] != minute:
            return False
        # One start is checked against each merged list on its own (the same answer as looking
        # it up in their intersection minus the busy times, without building those lists).
        end = minute + self.minutes
        if not (
            _covers(self._available(self.mentor, monday), minute, end)
            and _covers(self._available(self.mentee, monday), minute, end)
        ):
            return False
        # The busy times are merged: only the last one starting before `end` can overlap.
        i = bisect_left(self._busy, (end, end)) - 1
        return i < 0 or self._busy[i][1] <= minute

    def earliest_in_week(
        self,
        monday: date,
        *,
        not_before: int | None = None,
        before: int | None = None,
        exclude: int | None = None,
    ) -> int | None:
        """The earliest valid start (UTC minute) of a local week, within the given bounds."""
        grid = week_grid(self.mentee.timezone, monday)
        for start, end in self._free(monday):
            i = bisect_left(grid, start if not_before is None else max(start, not_before))
            while i < len(grid) and grid[i] + self.minutes <= end:
                candidate = grid[i]
                if before is not None and candidate >= before:
                    return None
                if candidate != exclude:
                    return candidate
                i += 1
        return None

    def earliest_between(
        self,
        not_before: datetime,
        before: datetime,
        *,
        skip_weeks: Collection[date] = (),
        exclude: datetime | None = None,
    ) -> datetime | None:
        """The earliest valid start in [not_before, before), outside `skip_weeks`."""
        lo, hi = ceil_minute(not_before), to_minute(before)
        excluded = None if exclude is None else to_minute(exclude)
        monday, last = self.week_of(not_before), self.week_of(before)
        while monday <= last:
            if monday not in skip_weeks:
                found = self.earliest_in_week(monday, not_before=lo, before=hi, exclude=excluded)
                if found is not None:
                    return from_minute(found)
            monday += timedelta(weeks=1)
        return None


@lru_cache(maxsize=65536)
def _week_available(person: Person, monday: date) -> tuple[Interval, ...]:
    """When `person` is available around a week (keyed by the person, hashed once)."""
    # Local dates two days either side cover any pair of UTC offsets.
    first, last = monday - timedelta(days=2), monday + timedelta(days=9)
    return available(person.timezone, person.windows, first, last)


def _covers(intervals: Sequence[Interval], start: int, end: int) -> bool:
    """Whether one interval of the merged list holds all of [start, end)."""
    i = bisect_right(intervals, (start, 1 << 62)) - 1
    return i >= 0 and intervals[i][1] >= end


def series_start(rules: SeriesRules, mentee: Person, now: datetime) -> datetime:
    """`max(starts_on 00:00 in the mentee's zone, now + min_notice)`, rounded up to a minute."""
    starts_on = rules.starts_on if rules.starts_on is not None else now.date()
    midnight = wall_to_utc(mentee.timezone, day_minute(starts_on))
    if midnight is None:  # midnight skipped by a DST change: the day starts at the jump
        midnight = wall_to_utc(mentee.timezone, day_minute(starts_on) + 60) or 0
    return from_minute(max(midnight, ceil_minute(now + rules.min_notice)))


def plan_series(
    mentor: Person,
    mentee: Person,
    rules: SeriesRules,
    now: datetime,
    busy: Iterable[tuple[datetime, datetime]] = (),
) -> SeriesPlan:
    """Book `rules.sessions` sessions, one per cadence period, as BEHAVIOUR.md describes."""
    finder = SlotFinder(mentor, mentee, rules.session_minutes, busy)
    earliest = series_start(rules, mentee, now)
    horizon = earliest + timedelta(weeks=SEARCH_WEEKS)
    first = finder.earliest_between(earliest, horizon)
    if first is None:
        return SeriesPlan(
            (),
            f"No {rules.session_minutes}-minute time in the {SEARCH_WEEKS} weeks from "
            f"{earliest:%d %B %Y} fits both people's availability (each in their own time "
            "zone) without clashing with their other sessions. Widen the availability, then "
            "confirm the pair again.",
        )
    starts = [first]
    finder.reserve(first)
    local_first = first.astimezone(ZoneInfo(mentee.timezone))
    wall_offset = day_minute(local_first.date()) - day_minute(monday_of(local_first.date()))
    wall_offset += local_first.hour * 60 + local_first.minute
    week, skipped = finder.week_of(first), 0
    while len(starts) < rules.sessions:
        week += rules.period
        preferred = wall_to_utc(mentee.timezone, day_minute(week) + wall_offset)
        slot: datetime | None = None
        if preferred is not None and finder.is_valid(from_minute(preferred)):
            slot = from_minute(preferred)
        else:
            found = finder.earliest_in_week(week)
            slot = None if found is None else from_minute(found)
        if slot is None:
            skipped += 1
            if skipped == SEARCH_WEEKS:
                first_skipped = week - rules.period * (SEARCH_WEEKS - 1)
                return SeriesPlan(
                    tuple(starts),
                    f"Booked {len(starts)} of {rules.sessions} sessions: in {SEARCH_WEEKS} "
                    f"weeks in a row from the week of {first_skipped:%d %B %Y} no "
                    f"{rules.session_minutes}-minute time fits both people's availability "
                    "without clashing with their other sessions.",
                )
            continue
        skipped = 0
        starts.append(slot)
        finder.reserve(slot)
    return SeriesPlan(tuple(starts))


def find_move(
    finder: SlotFinder,
    current: datetime,
    not_before: datetime,
    pair_weeks: Collection[date],
) -> datetime | None:
    """The reschedule rule: earliest valid start at or after `not_before`, searching 8 weeks.

    Not the session's current start, and not in a local week of the mentee that holds
    another session of the pair. `finder` must not count the moving session as busy.
    """
    return finder.earliest_between(
        not_before,
        not_before + timedelta(weeks=SEARCH_WEEKS),
        skip_weeks=pair_weeks,
        exclude=current,
    )


@dataclass(frozen=True)
class Refit:
    """What an availability change does to one future session."""

    action: Literal["keep", "move", "cancel"]
    starts_at: datetime | None = None


def refit_session(
    finder: SlotFinder,
    current: datetime,
    not_before: datetime,
    pair_weeks: Collection[date],
) -> Refit:
    """Keep a session that still fits; else its own week; else the reschedule rule; else cancel."""
    if finder.is_valid(current):
        return Refit("keep")
    week = finder.week_of(current)
    in_week = finder.earliest_in_week(week, not_before=ceil_minute(not_before))
    if in_week is not None:
        return Refit("move", from_minute(in_week))
    moved = find_move(finder, current, not_before, pair_weeks)
    if moved is not None:
        return Refit("move", moved)
    return Refit("cancel")
