"""Pure slot-finder tests around the real 2027 daylight-saving changes, and a property test."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from twoway_scheduling.domain.model import Person, SeriesRules
from twoway_scheduling.domain.slots import SlotFinder, find_move, plan_series, refit_session
from twoway_shared.wallclock import Window


def fits(person: Person, start: datetime, minutes: int) -> bool:
    """Every minute of the session is inside a window, read on the person's own wall clock."""
    zone = ZoneInfo(person.timezone)
    for offset in range(minutes):
        local = (start + timedelta(minutes=offset)).astimezone(zone)
        wall = local.hour * 60 + local.minute
        if not any(
            w.weekday == local.weekday() and w.start_minute <= wall < w.end_minute
            for w in person.windows
        ):
            return False
    return True


def local(start: datetime, timezone: str) -> str:
    """A start as the wall clock shows it, e.g. `2027-03-15 Mon 10:00`."""
    return start.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %a %H:%M")


def weekly(days: range | tuple[int, ...], start: str, end: str) -> tuple[Window, ...]:
    """The same window on each of `days` (0 = Monday)."""

    def minute(clock: str) -> int:
        hours, minutes = clock.split(":")
        return int(hours) * 60 + int(minutes)

    return tuple(Window(day, minute(start), minute(end)) for day in days)


WEEKDAYS = range(5)
LONG_AGO = datetime(2026, 12, 1, tzinfo=UTC)  # "now" well before every series


def rules(starts_on: date, sessions: int, **changes: object) -> SeriesRules:
    return SeriesRules(starts_on=starts_on, sessions=sessions, **changes)  # type: ignore[arg-type]


def test_london_new_york_in_march_moves_within_the_week_only_america_changed() -> None:
    mentor = Person("Europe/London", weekly(WEEKDAYS, "14:00", "15:00"))
    mentee = Person("America/New_York", weekly(WEEKDAYS, "09:00", "17:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 3, 1), 6), LONG_AGO)
    assert plan.failure is None
    assert [local(s, "America/New_York") for s in plan.starts] == [
        "2027-03-01 Mon 09:00",
        "2027-03-08 Mon 09:00",
        # US clocks went forward on 14 March, UK ones only on 28 March.
        "2027-03-15 Mon 10:00",
        "2027-03-22 Mon 10:00",
        "2027-03-29 Mon 09:00",
        "2027-04-05 Mon 09:00",
    ]
    assert all(fits(mentor, s, 30) and fits(mentee, s, 30) for s in plan.starts)


def test_london_new_york_in_the_november_week_only_europe_changed() -> None:
    mentor = Person("Europe/London", weekly(WEEKDAYS, "14:00", "15:00"))
    mentee = Person("America/New_York", weekly(WEEKDAYS, "09:00", "17:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 10, 18), 5), LONG_AGO)
    assert [local(s, "America/New_York") for s in plan.starts] == [
        "2027-10-18 Mon 09:00",
        "2027-10-25 Mon 09:00",
        # UK clocks went back on 31 October, US ones only on 7 November.
        "2027-11-01 Mon 10:00",
        "2027-11-08 Mon 09:00",
        "2027-11-15 Mon 09:00",
    ]
    assert all(fits(mentor, s, 30) and fits(mentee, s, 30) for s in plan.starts)


def test_week_without_valid_start_is_skipped_and_the_series_extended() -> None:
    mentor = Person("Europe/London", weekly((0,), "14:00", "14:30"))
    mentee = Person("America/New_York", weekly((0,), "09:00", "09:30"))
    plan = plan_series(mentor, mentee, rules(date(2027, 3, 1), 4), LONG_AGO)
    assert plan.failure is None
    # The weeks of 15 and 22 March have no common half hour, so the series runs two weeks longer.
    assert [local(s, "Europe/London") for s in plan.starts] == [
        "2027-03-01 Mon 14:00",
        "2027-03-08 Mon 14:00",
        "2027-03-29 Mon 14:00",
        "2027-04-05 Mon 14:00",
    ]


def test_kolkata_half_hour_offset_with_berlin() -> None:
    mentor = Person("Europe/Berlin", weekly((0,), "09:00", "10:00"))
    mentee = Person("Asia/Kolkata", weekly((0,), "13:00", "16:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 3, 15), 4), LONG_AGO)
    assert [local(s, "Asia/Kolkata") for s in plan.starts] == [
        "2027-03-15 Mon 13:30",
        "2027-03-22 Mon 13:30",
        # Berlin is on summer time from 28 March: 09:00 there is 12:30 in Kolkata.
        "2027-03-29 Mon 13:00",
        "2027-04-05 Mon 13:00",
    ]
    assert all(fits(mentor, s, 30) and fits(mentee, s, 30) for s in plan.starts)


def test_kathmandu_quarter_hour_offset_with_berlin() -> None:
    mentor = Person("Europe/Berlin", weekly((2,), "09:00", "10:00"))
    mentee = Person("Asia/Kathmandu", weekly((2,), "13:00", "17:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 3, 15), 3), LONG_AGO)
    assert [local(s, "Asia/Kathmandu") for s in plan.starts] == [
        "2027-03-17 Wed 13:45",
        "2027-03-24 Wed 13:45",
        "2027-03-31 Wed 13:00",  # 08:00..09:00 UTC is 12:45..13:45 in Kathmandu
    ]
    assert [local(s, "Europe/Berlin") for s in plan.starts] == [
        "2027-03-17 Wed 09:00",
        "2027-03-24 Wed 09:00",
        "2027-03-31 Wed 09:15",
    ]


def test_berlin_mentee_grid_with_kathmandu_mentor() -> None:
    mentor = Person("Asia/Kathmandu", weekly((2,), "13:50", "17:00"))
    mentee = Person("Europe/Berlin", weekly((2,), "09:00", "10:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 3, 15), 1), LONG_AGO)
    # 13:50 Kathmandu is 09:05 Berlin: the next quarter hour of the mentee's clock is 09:15.
    assert [local(s, "Europe/Berlin") for s in plan.starts] == ["2027-03-17 Wed 09:15"]


def test_sydney_southern_hemisphere_with_london() -> None:
    mentor = Person("Europe/London", weekly(WEEKDAYS, "09:00", "10:00"))
    mentee = Person("Australia/Sydney", weekly(WEEKDAYS, "18:00", "21:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 3, 15), 5), LONG_AGO)
    assert [local(s, "Australia/Sydney") for s in plan.starts] == [
        "2027-03-15 Mon 20:00",
        "2027-03-22 Mon 20:00",
        "2027-03-29 Mon 19:00",  # London on summer time, Sydney still on summer time
        "2027-04-05 Mon 18:00",  # Sydney back on standard time since 4 April
        "2027-04-12 Mon 18:00",
    ]
    assert all(fits(mentor, s, 30) and fits(mentee, s, 30) for s in plan.starts)


def test_availability_ending_at_midnight() -> None:
    mentor = Person("Europe/London", weekly((1,), "23:00", "24:00"))
    mentee = Person("Europe/London", weekly((1,), "22:00", "24:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 1, 4), 2, session_minutes=60), LONG_AGO)
    assert [local(s, "Europe/London") for s in plan.starts] == [
        "2027-01-05 Tue 23:00",
        "2027-01-12 Tue 23:00",
    ]


def test_session_across_midnight_joins_two_days_windows() -> None:
    person = Person(
        "Europe/London", (*weekly((6,), "23:30", "24:00"), *weekly((0,), "00:00", "00:30"))
    )
    plan = plan_series(person, person, rules(date(2027, 1, 4), 1, session_minutes=60), LONG_AGO)
    assert [local(s, "Europe/London") for s in plan.starts] == ["2027-01-10 Sun 23:30"]


def test_no_valid_start_at_all_explains_why() -> None:
    mentor = Person("Europe/London", weekly((0,), "09:00", "10:00"))
    mentee = Person("Europe/London", weekly((1,), "09:00", "10:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 1, 4), 12), LONG_AGO)
    assert plan.starts == ()
    assert plan.failure is not None
    assert "8 weeks" in plan.failure


def test_time_skipped_by_spring_forward_is_not_a_candidate() -> None:
    mentor = Person("UTC", weekly((6,), "07:00", "08:00"))
    mentee = Person("America/New_York", weekly((6,), "01:00", "04:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 3, 1), 3), LONG_AGO)
    assert [local(s, "America/New_York") for s in plan.starts] == [
        "2027-03-07 Sun 02:00",
        "2027-03-14 Sun 03:00",  # 02:00 does not exist that day
        "2027-03-21 Sun 03:00",
    ]


def test_repeated_local_time_means_its_first_occurrence() -> None:
    mentor = Person("UTC", weekly((6,), "05:00", "07:00"))
    mentee = Person("America/New_York", weekly((6,), "01:00", "02:00"))
    plan = plan_series(mentor, mentee, rules(date(2027, 10, 25), 3), LONG_AGO)
    assert [s.strftime("%m-%d %H:%M") for s in plan.starts] == [
        "10-31 05:00",
        "11-07 05:00",  # 01:00 EDT, the first of the two 01:00s
        "11-14 06:00",
    ]


def test_min_notice_and_fortnightly_cadence() -> None:
    person = Person("Europe/London", weekly(range(7), "08:00", "18:00"))
    now = datetime(2027, 1, 4, 12, 5, tzinfo=UTC)
    plan = plan_series(person, person, rules(date(2027, 1, 1), 3, cadence="fortnightly"), now)
    assert plan.starts[0] == datetime(2027, 1, 5, 12, 15, tzinfo=UTC)
    assert [b - a for a, b in zip(plan.starts, plan.starts[1:], strict=False)] == [
        timedelta(weeks=2)
    ] * 2


def test_mentor_with_three_mentees_gets_three_non_overlapping_series() -> None:
    mentor = Person("Europe/London", weekly((0,), "09:00", "11:00"))
    busy: list[tuple[datetime, datetime]] = []
    for timezone in ("Europe/Paris", "America/New_York", "Asia/Kolkata"):
        mentee = Person(timezone, weekly(range(7), "00:00", "24:00"))
        plan = plan_series(mentor, mentee, rules(date(2027, 1, 4), 4), LONG_AGO, busy)
        assert plan.failure is None
        busy += [(s, s + timedelta(minutes=30)) for s in plan.starts]
    ordered = sorted(busy)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ordered))


def test_eight_skipped_weeks_in_a_row_stop_the_series() -> None:
    person = Person("Europe/London", weekly((0,), "09:00", "10:00"))
    blocked = [
        (datetime(2027, 1, 18, 9, tzinfo=UTC) + timedelta(weeks=w), timedelta(hours=1))
        for w in range(10)
    ]
    busy = [(start, start + length) for start, length in blocked]
    plan = plan_series(person, person, rules(date(2027, 1, 4), 12), LONG_AGO, busy)
    assert len(plan.starts) == 2
    assert plan.failure is not None
    assert plan.failure.startswith("Booked 2 of 12 sessions")


def test_move_skips_the_current_start_and_weeks_of_the_pair() -> None:
    person = Person("Europe/London", weekly((0,), "09:00", "10:00"))
    finder = SlotFinder(person, person, 30)
    current = datetime(2027, 1, 11, 9, tzinfo=UTC)
    moved = find_move(finder, current, datetime(2027, 1, 10, tzinfo=UTC), set())
    assert moved == datetime(2027, 1, 11, 9, 15, tzinfo=UTC)
    next_week = finder.week_of(datetime(2027, 1, 11, tzinfo=UTC))
    moved = find_move(finder, current, datetime(2027, 1, 10, tzinfo=UTC), {next_week})
    assert moved == datetime(2027, 1, 18, 9, tzinfo=UTC)


def test_refit_keeps_moves_in_week_or_cancels() -> None:
    mentee = Person("Europe/London", weekly(WEEKDAYS, "09:00", "17:00"))
    start = datetime(2027, 1, 13, 9, tzinfo=UTC)  # a Wednesday
    notice = datetime(2027, 1, 5, tzinfo=UTC)
    still = SlotFinder(Person("Europe/London", weekly(WEEKDAYS, "09:00", "10:00")), mentee, 30)
    assert refit_session(still, start, notice, set()).action == "keep"
    friday = SlotFinder(Person("Europe/London", weekly((4,), "15:00", "16:00")), mentee, 30)
    assert refit_session(friday, start, notice, set()).starts_at == datetime(
        2027, 1, 15, 15, tzinfo=UTC
    )
    never = SlotFinder(Person("Europe/London", weekly((5,), "09:00", "10:00")), mentee, 30)
    assert refit_session(never, start, notice, set()).action == "cancel"


# ---------------------------------------------------------------- property test

ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Pacific/Auckland",
)


@st.composite
def windows(draw: st.DrawFn) -> tuple[Window, ...]:
    found = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, 94)) * 15
        end = draw(st.integers(start // 15 + 1, 96)) * 15
        found.append(Window(draw(st.integers(0, 6)), start, end))
    return tuple(sorted(set(found)))


people = st.builds(Person, st.sampled_from(ZONES), windows())


@settings(max_examples=120, deadline=None)
@given(
    mentor=people,
    mentees=st.lists(people, min_size=1, max_size=3),
    sessions=st.integers(1, 12),
    minutes=st.sampled_from([15, 30, 60, 90]),
    cadence=st.sampled_from(["weekly", "fortnightly"]),
    starts_on=st.dates(date(2027, 1, 1), date(2027, 12, 20)),
)
def test_every_booking_fits_both_people_and_never_overlaps(
    mentor: Person,
    mentees: list[Person],
    sessions: int,
    minutes: int,
    cadence: str,
    starts_on: date,
) -> None:
    rules = SeriesRules(
        session_minutes=minutes,
        cadence=cadence,  # type: ignore[arg-type]
        sessions=sessions,
        starts_on=starts_on,
        min_notice_hours=24,
    )
    now = datetime.combine(starts_on, datetime.min.time(), tzinfo=UTC) - timedelta(days=3)
    booked: list[tuple[datetime, datetime]] = []
    for mentee in mentees:
        plan = plan_series(mentor, mentee, rules, now, booked)
        if plan.failure is None:
            assert len(plan.starts) == sessions
        else:
            assert len(plan.starts) < sessions
            assert plan.failure.strip()
        assert list(plan.starts) == sorted(plan.starts)
        for start in plan.starts:
            assert start >= now + rules.min_notice
            assert fits(mentor, start, minutes)
            assert fits(mentee, start, minutes)
            end = start + timedelta(minutes=minutes)
            assert all(end <= b_start or b_end <= start for b_start, b_end in booked)
        booked += [(s, s + timedelta(minutes=minutes)) for s in plan.starts]


def test_session_ids_are_pinned() -> None:
    # Published ids never change across versions: consumers deduplicate on them.
    from twoway_scheduling.handlers import session_id_for

    assert session_id_for("P1", 3) == "8ac38473-a449-54a9-85c4-7f02cc7ff381"


@settings(max_examples=150, deadline=None)
@given(
    mentor=people,
    mentee=people,
    minutes=st.sampled_from([15, 30, 60, 90]),
    day=st.dates(date(2027, 1, 1), date(2027, 12, 20)),
    busy_starts=st.lists(st.integers(0, 7 * 96), max_size=6),
    probes=st.lists(st.integers(0, 7 * 96), min_size=1, max_size=30),
)
def test_a_single_start_is_valid_exactly_when_the_free_times_hold_it(
    mentor: Person,
    mentee: Person,
    minutes: int,
    day: date,
    busy_starts: list[int],
    probes: list[int],
) -> None:
    """`is_valid` checks one start against each list on its own; `earliest_in_week` walks
    the free times (both availabilities intersected, the busy times taken out): they agree."""
    base = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    busy = [
        (base + timedelta(minutes=15 * b), base + timedelta(minutes=15 * b + 45))
        for b in busy_starts
    ]
    finder = SlotFinder(mentor, mentee, minutes, busy)
    for probe in probes:
        start = base + timedelta(minutes=15 * probe)
        minute = int(start.timestamp()) // 60
        free = finder._free(finder.week_of(start))
        held = any(lo <= minute and minute + minutes <= hi for lo, hi in free)
        if finder.is_valid(start):
            assert held
        elif held:  # not valid although free: only because it is off the mentee's grid
            zone = ZoneInfo(mentee.timezone)
            local_start = start.astimezone(zone)
            off_grid = local_start.minute % 15 != 0 or local_start.fold == 1
            assert off_grid or local_start.replace(fold=0).astimezone(UTC) != start


@given(
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 90)), max_size=12),
    st.lists(st.integers(0, 400), min_size=1, max_size=12),
    st.sampled_from([15, 30, 60]),
)
def test_reserving_keeps_the_busy_times_merged(
    busy: list[tuple[int, int]], starts: list[int], minutes: int
) -> None:
    """Each reserved session joins the busy times exactly as merging the whole list would."""
    epoch = datetime(2027, 1, 4, tzinfo=UTC)
    person = Person("Europe/London", weekly(range(5), "09:00", "17:00"))
    moments = [(epoch + timedelta(minutes=s), epoch + timedelta(minutes=s + n)) for s, n in busy]
    finder = SlotFinder(person, person, minutes, moments)
    expected = SlotFinder(person, person, minutes, moments)
    for start in starts:
        finder.reserve(epoch + timedelta(minutes=start))
        moments.append(
            (epoch + timedelta(minutes=start), epoch + timedelta(minutes=start + minutes))
        )
        expected = SlotFinder(person, person, minutes, moments)
        assert finder._busy == expected._busy
