"""The recurring series rule: expanding what it produces gives exactly the pair's sessions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import vobject
from icalendar import Calendar
from twoway_dev.testing.calendar_client import CalendarClient, Meeting, expand
from twoway_shared.calendar import (
    SESSION_ID_PROPERTY,
    Person,
    SeriesPlan,
    SeriesSession,
    SeriesText,
    _written,
    cancellation,
    feed,
    invitation,
    occurrence_update,
    pair_series,
    plan_series,
    series_events,
)

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
FROM, TO = datetime(2026, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")
TEXT = SeriesText(
    summary="Reverse mentoring with Sam Okafor",
    description="Dana learns: generative AI\nSam learns: leadership",
    url="https://portal.example/pairs/p1",
    organizer=Person("mentoring@example.com", "Twoway"),
    attendees=(Person("dana@example.com", "Dana"), Person("sam@example.com", "Sam")),
)


def at(day: int, month: int, hh: int, mm: int, zone: ZoneInfo = LONDON) -> datetime:
    return datetime(2027, month, day, hh, mm, tzinfo=zone).astimezone(UTC)


def booked(*starts: datetime, minutes: int = 30) -> list[SeriesSession]:
    return [
        SeriesSession(f"s{n}", n, 0, "scheduled", s, s + timedelta(minutes=minutes))
        for n, s in enumerate(starts, start=1)
    ]


def held(sessions: list[SeriesSession], pair: str = "p1") -> list[Meeting]:
    return sorted(
        (
            Meeting(s.starts_at, s.ends_at, s.session_id, f"{pair}@twoway")
            for s in sessions
            if s.held and s.starts_at is not None and s.ends_at is not None
        ),
        key=lambda m: m.starts_at,
    )


def prop(component: Any, name: str) -> Any:
    """A property of an icalendar component (the library's union types are too wide to use)."""
    return component[name]


def times(meetings: list[Meeting]) -> list[tuple[datetime, datetime]]:
    return [(m.starts_at, m.ends_at) for m in meetings]


def parses_with_vobject(ics: bytes) -> None:
    parsed = vobject.readOne(ics.decode("utf-8"))
    assert parsed.name == "VCALENDAR"
    assert all(str(e.uid.value).endswith("@twoway") for e in parsed.vevent_list)


class Pair:
    """A pair's sessions as scheduling changes them, and one person's calendar receiving mail."""

    def __init__(self, sessions: list[SeriesSession], zone: str = "Europe/London", weeks: int = 1):
        self.sessions = sessions
        self.zone = zone
        self.weeks = weeks
        self.client = CalendarClient()
        self.sent: list[bytes] = []

    def plan(self) -> SeriesPlan:
        plan = plan_series("p1", self.sessions, self.zone, self.weeks)
        assert plan is not None
        return plan

    def deliver(self, ics: bytes | None) -> None:
        assert ics is not None
        assert Calendar.from_ical(ics).walk("VEVENT")
        parses_with_vobject(ics)
        self.sent.append(ics)
        self.client.receive(ics)

    def book(self) -> None:
        self.deliver(invitation(self.plan(), TEXT, NOW))

    def move(self, n: int, starts_at: datetime, minutes: int = 30) -> None:
        s = self.sessions[n - 1]
        self.sessions[n - 1] = replace(
            s,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(minutes=minutes),
            revision=s.revision + 1,
            first_starts_at=s.first_starts_at or s.starts_at,
        )
        self.deliver(occurrence_update(self.plan(), s.session_id, TEXT, NOW))

    def cancel(self, *ns: int) -> None:
        for n in ns:
            s = self.sessions[n - 1]
            self.sessions[n - 1] = replace(
                s,
                status="cancelled",
                revision=s.revision + 1,
                first_starts_at=s.first_starts_at or s.starts_at,
            )
        ids = [self.sessions[n - 1].session_id for n in ns]
        self.deliver(cancellation(self.plan(), ids, TEXT, NOW))

    def check(self) -> None:
        """The calendar shows exactly the current sessions, and so does a fresh booking."""
        expected = held(self.sessions)
        assert times(self.client.meetings(FROM, TO)) == times(expected)
        if expected:
            fresh = invitation(self.plan(), TEXT, NOW)
            parses_with_vobject(fresh)
            assert times(expand(fresh, FROM, TO)) == times(expected)


def weekly(first: datetime, n: int) -> list[datetime]:
    return [
        datetime.combine(
            first.astimezone(LONDON).date() + timedelta(weeks=k),
            first.astimezone(LONDON).time(),
            LONDON,
        ).astimezone(UTC)
        for k in range(n)
    ]


def test_a_plain_series_is_one_rule_with_no_exceptions() -> None:
    pair = Pair(booked(*weekly(at(3, 3, 10, 30), 12)))
    plan = pair.plan()
    assert (plan.count, plan.exdates, plan.overrides) == (12, [], [])
    pair.book()
    pair.check()
    [ics] = pair.sent
    cal = Calendar.from_ical(ics)
    assert str(prop(cal, "METHOD")) == "REQUEST"
    [event] = cal.walk("VEVENT")
    assert {str(prop(e, "UID")) for e in cal.walk("VEVENT")} == {"p1@twoway"}
    assert prop(event, "DTSTART").to_ical() == b"20270303T103000"
    assert prop(event, "DTSTART").params["TZID"] == "Europe/London"
    assert prop(event, "RRULE").to_ical() == b"FREQ=WEEKLY;COUNT=12"
    assert [str(prop(z, "TZID")) for z in cal.walk("VTIMEZONE")] == ["Europe/London"]
    assert str(prop(event, SESSION_ID_PROPERTY)) == "s1"
    assert str(prop(event, "ORGANIZER")) == "mailto:mentoring@example.com"
    assert sorted(str(a.params["CN"]) for a in prop(event, "ATTENDEE")) == ["Dana", "Sam"]
    assert "generative AI" in str(prop(event, "DESCRIPTION"))


def test_the_series_keeps_wall_time_across_the_mentees_dst_change() -> None:
    # Every Wednesday 10:30 London from March into April: 10:30 GMT, then 10:30 BST.
    pair = Pair(booked(*weekly(at(10, 3, 10, 30), 6)))
    pair.book()
    pair.check()
    starts = [
        m.starts_at.astimezone(LONDON).strftime("%H:%M") for m in expand(pair.sent[0], FROM, TO)
    ]
    assert starts == ["10:30"] * 6
    assert pair.plan().overrides == []


def test_a_dst_change_on_the_partners_side_only_moves_those_weeks() -> None:
    # Mentee in London, mentor in New York: from 14 March (US DST) to 28 March (UK DST) the
    # usual 13:00 London is 09:00 in New York instead of 08:00; say the mentor starts at 09:00
    # only in those weeks' availability, so scheduling moved those two inside their weeks.
    starts = weekly(at(3, 3, 13, 0), 6)
    starts[2] = at(18, 3, 13, 0)  # Thursday instead of Wednesday
    starts[3] = at(24, 3, 12, 0)  # an hour earlier
    sessions = booked(*starts)
    sessions[2] = replace(sessions[2], first_starts_at=starts[2])
    pair = Pair(sessions)
    plan = pair.plan()
    assert [o.session.session_id for o in plan.overrides] == ["s3", "s4"]
    assert plan.exdates == []
    pair.book()
    pair.check()


def test_skipped_weeks_are_exdates_and_the_series_grows() -> None:
    starts = weekly(at(3, 3, 10, 30), 8)
    del starts[2]  # week 3 had no valid start: skipped, the series grows by one
    del starts[4]
    pair = Pair(booked(*starts))
    plan = pair.plan()
    assert plan.count == 8
    assert [t.date().isoformat() for t in plan.exdates] == ["2027-03-17", "2027-04-07"]
    pair.book()
    pair.check()
    cal = Calendar.from_ical(pair.sent[0])
    assert b"EXDATE;TZID=Europe/London:20270317T103000,20270407T103000" in cal.to_ical()


def test_fortnightly_is_interval_two() -> None:
    starts = weekly(at(3, 3, 10, 30), 12)[::2]
    pair = Pair(booked(*starts), weeks=2)
    pair.book()
    pair.check()
    [event] = Calendar.from_ical(pair.sent[0]).walk("VEVENT")
    assert prop(event, "RRULE").to_ical() == b"FREQ=WEEKLY;COUNT=6;INTERVAL=2"


def test_reschedules_and_cancellations_update_one_occurrence_each() -> None:
    pair = Pair(booked(*weekly(at(3, 3, 10, 30), 6)))
    pair.book()
    pair.move(2, at(11, 3, 15, 0))  # Thursday of the same week
    pair.check()
    pair.move(2, at(12, 3, 9, 0), minutes=45)  # again, and longer
    pair.check()
    pair.move(4, at(1, 4, 10, 30) + timedelta(weeks=3))  # weeks later, past the series' end
    pair.check()
    pair.cancel(3)
    pair.check()
    update = Calendar.from_ical(pair.sent[2])
    [event] = update.walk("VEVENT")
    assert str(prop(update, "METHOD")) == "REQUEST"
    assert (int(prop(event, "SEQUENCE")), str(prop(event, SESSION_ID_PROPERTY))) == (2, "s2")
    assert event.decoded("RECURRENCE-ID") == at(10, 3, 10, 30).astimezone(LONDON)
    cancel = Calendar.from_ical(pair.sent[-1])
    [event] = cancel.walk("VEVENT")
    assert str(prop(cancel, "METHOD")) == "CANCEL"
    assert (int(prop(event, "SEQUENCE")), str(prop(event, "STATUS"))) == (1, "CANCELLED")
    assert event.decoded("RECURRENCE-ID") == at(17, 3, 10, 30).astimezone(LONDON)


def test_a_moved_session_cancelled_later_leaves_nothing_behind() -> None:
    pair = Pair(booked(*weekly(at(3, 3, 10, 30), 4)))
    pair.book()
    pair.move(2, at(11, 3, 15, 0))
    pair.cancel(2)
    pair.check()
    assert len(pair.client.meetings(FROM, TO)) == 3


def test_when_nothing_is_left_the_whole_series_is_cancelled() -> None:
    pair = Pair(booked(*weekly(at(3, 3, 10, 30), 4)))
    pair.book()
    pair.move(1, at(4, 3, 10, 30))
    pair.cancel(1)
    pair.cancel(2, 3, 4)
    pair.check()
    assert pair.client.meetings(FROM, TO) == []
    cancel = Calendar.from_ical(pair.sent[-1])
    [event] = cancel.walk("VEVENT")
    assert "RECURRENCE-ID" not in event
    assert int(prop(event, "SEQUENCE")) == 3  # above the 2 of session 1's cancellation
    assert pair.client.series == {}


def test_a_booking_sent_after_changes_shows_the_current_state() -> None:
    starts = weekly(at(3, 3, 10, 30), 5)
    sessions = booked(*starts)
    sessions[1] = replace(
        sessions[1],
        starts_at=at(11, 3, 8, 0),
        ends_at=at(11, 3, 8, 30),
        revision=1,
        first_starts_at=starts[1],
    )
    sessions[0] = replace(sessions[0], status="cancelled", revision=1)
    pair = Pair(sessions)
    pair.book()
    pair.check()
    [master, override] = Calendar.from_ical(pair.sent[0]).walk("VEVENT")
    # Session 1 is gone, yet the pattern still starts from it: its time is an EXDATE.
    assert prop(master, "DTSTART").to_ical() == b"20270303T103000"
    assert int(prop(master, "SEQUENCE")) == 1
    assert str(prop(override, SESSION_ID_PROPERTY)) == "s2"


@pytest.mark.parametrize(
    ("zone", "first"),
    [
        ("Asia/Kolkata", datetime(2027, 10, 28, 18, 0, tzinfo=ZoneInfo("Asia/Kolkata"))),
        ("Australia/Sydney", datetime(2027, 3, 25, 8, 0, tzinfo=ZoneInfo("Australia/Sydney"))),
        ("America/New_York", datetime(2027, 10, 29, 9, 15, tzinfo=ZoneInfo("America/New_York"))),
    ],
)
def test_other_zones_and_their_own_dst_changes(zone: str, first: datetime) -> None:
    tz = ZoneInfo(zone)
    starts = [
        datetime.combine(first.date() + timedelta(weeks=k), first.time(), tz).astimezone(UTC)
        for k in range(8)
    ]
    pair = Pair(booked(*starts), zone=zone)
    assert pair.plan().overrides == []
    pair.book()
    pair.move(5, starts[4] + timedelta(days=1, hours=1))
    pair.cancel(7)
    pair.check()


def test_the_feed_holds_each_pair_once_and_cancelled_series_as_cancelled() -> None:
    live = plan_series("p1", booked(*weekly(at(3, 3, 10, 30), 3)), "Europe/London")
    gone = plan_series(
        "p2",
        [replace(s, status="cancelled", revision=1) for s in booked(*weekly(at(5, 3, 9, 0), 2))],
        "America/New_York",
    )
    assert live is not None
    assert gone is not None
    ics = feed([(live, SeriesText("Reverse mentoring")), (gone, SeriesText("Old"))], NOW, "Twoway")
    parses_with_vobject(ics)
    cal = Calendar.from_ical(ics)
    assert str(prop(cal, "METHOD")) == "PUBLISH"
    assert sorted(str(prop(z, "TZID")) for z in cal.walk("VTIMEZONE")) == [
        "America/New_York",
        "Europe/London",
    ]
    assert [str(prop(e, "STATUS")) for e in cal.walk("VEVENT")] == ["CONFIRMED", "CANCELLED"]
    assert [m.uid for m in expand(ics, FROM, TO)] == ["p1@twoway"] * 3


def test_a_cadence_the_facts_do_not_fit_falls_back_to_weekly() -> None:
    plan = plan_series("p1", booked(*weekly(at(3, 3, 10, 30), 3)), "Europe/London", 2)
    assert plan is not None
    assert (plan.interval_weeks, plan.count) == (1, 3)
    assert plan_series("p1", [], "UTC") is None


@dataclass(frozen=True)
class Kept:
    """A session as a service keeps it (both services' session rows have these fields)."""

    session_id: str
    sequence: int
    revision: int
    status: str
    starts_at: datetime | None
    ends_at: datetime | None
    first_starts_at: datetime | None = None
    series_zone: str | None = None
    series_weeks: int | None = None


def test_pair_series_takes_the_zone_and_cadence_its_first_session_was_booked_with() -> None:
    kept = [
        Kept("s2", 2, 0, "scheduled", at(22, 2, 9, 0), at(22, 2, 9, 30)),
        Kept("s1", 1, 0, "scheduled", at(8, 2, 9, 0), at(8, 2, 9, 30), None, "Europe/London", 2),
    ]
    plan = pair_series("p1", kept, fallback_zone="Asia/Kolkata")
    assert plan is not None
    assert (plan.zone, plan.interval_weeks, plan.count) == ("Europe/London", 2, 2)
    assert [o.session.session_id for o in plan.occurrences] == ["s1", "s2"]


def test_pair_series_falls_back_to_the_given_zone_then_utc_and_weekly() -> None:
    kept = [Kept("s1", 1, 0, "scheduled", at(8, 2, 9, 0), at(8, 2, 9, 30))]
    with_zone = pair_series("p1", kept, fallback_zone="Asia/Kolkata")
    without = pair_series("p1", kept)
    assert with_zone is not None
    assert without is not None
    assert (with_zone.zone, with_zone.interval_weeks) == ("Asia/Kolkata", 1)
    assert without.zone == "UTC"
    assert pair_series("p1", []) is None


@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", "UTC"])
def test_the_timezone_made_once_is_written_as_icalendar_adds_it(zone: str) -> None:
    """Each VTIMEZONE is made once per process and put in the written calendar: the bytes are
    what icalendar writes when it adds the missing timezones itself (for the same years)."""
    tz = ZoneInfo(zone)
    first = datetime(2027, 3, 3, 13, 0, tzinfo=tz)
    starts = [(first + timedelta(weeks=w)).astimezone(UTC) for w in range(6)]
    sessions = booked(*starts)
    moved = starts[2] + timedelta(hours=26)
    sessions[2] = replace(sessions[2], starts_at=moved, ends_at=moved + timedelta(minutes=30))
    plan = plan_series("p1", sessions, zone)
    assert plan is not None
    for _ in range(2):  # made, then taken from the cache
        data = invitation(plan, TEXT, NOW)
        expected = Calendar()
        for name, value in (
            ("prodid", "-//Twoway//Reverse mentoring//EN"),
            ("version", "2.0"),
            ("calscale", "GREGORIAN"),
            ("method", "REQUEST"),
        ):
            expected.add(name, value)
        for event in series_events(plan, TEXT, NOW):
            expected.add_component(event)
        expected.add_missing_timezones(first_date=date(2027, 1, 1), last_date=date(2028, 12, 31))
        assert data == expected.to_ical()
        assert [str(z["TZID"]) for z in Calendar.from_ical(data).walk("VTIMEZONE")] == (
            [] if zone == "UTC" else [zone]
        )


def test_a_feed_holds_one_timezone_per_zone_before_its_events() -> None:
    london = plan_series("p1", booked(at(3, 3, 13, 0), at(10, 3, 13, 0)), "Europe/London")
    tokyo = ZoneInfo("Asia/Tokyo")
    other = plan_series("p2", booked(at(4, 3, 9, 0, tokyo), at(11, 3, 9, 0, tokyo)), "Asia/Tokyo")
    assert london is not None
    assert other is not None
    data = feed([(london, TEXT), (other, TEXT), (london, TEXT)], NOW, "Mentoring")
    calendar = Calendar.from_ical(data)
    assert sorted(str(z["TZID"]) for z in calendar.walk("VTIMEZONE")) == [
        "Asia/Tokyo",
        "Europe/London",
    ]
    assert data.index(b"BEGIN:VTIMEZONE") < data.index(b"BEGIN:VEVENT")
    assert data.rindex(b"END:VTIMEZONE") < data.index(b"BEGIN:VEVENT")


@pytest.mark.parametrize(
    "text",
    [
        TEXT,
        SeriesText(
            summary="Mentorat inversé avec Zoë Ångström-Łukasiewicz, équipe données et IA",
            description="Zoë apprend : l'IA générative, la cybersécurité\n" * 4,
            url="https://portal.example/pairs/" + "p" * 90,
            organizer=Person("mentoring@example.com", "Twoway"),
            attendees=(Person("zoe@example.com", "Zoë Ångström" * 6), Person("a@b.c", "Sam")),
        ),
        SeriesText(summary="é" * 36 + "x", description="a" * 61 + "é"),
    ],
)
def test_a_calendar_is_written_byte_for_byte_as_icalendar_writes_it(text: SeriesText) -> None:
    """Short lines are written without icalendar's folding: lines at and around the 75-octet
    limit, ASCII or not, come out exactly as icalendar itself folds them."""
    plan = plan_series("p1", booked(at(3, 3, 10, 0), at(17, 3, 11, 0)), "Europe/London")
    assert plan is not None
    calendar = Calendar()
    calendar.add("prodid", "-//Twoway//Reverse mentoring//EN")
    for event in series_events(plan, text, NOW):
        calendar.add_component(event)
    assert _written(calendar) == calendar.to_ical()
    assert any(len(line.encode()) > 74 for line in calendar.content_lines())  # some fold
