"""A pair's sessions as one recurring iCalendar series (RFC 5545, iTIP RFC 5546); no I/O.

The one rule, used by notifications' invitations and scheduling's calendar feed, so both
carry the same `UID` (`<pair_id>@twoway`) and the same occurrences:

- The pattern is the first session's weekday and wall-clock time in the mentee's time zone,
  every `interval_weeks` weeks: a master VEVENT with `DTSTART`/`DTEND` in that zone (with its
  `VTIMEZONE`) and `RRULE:FREQ=WEEKLY[;INTERVAL=2];COUNT=n` ending with the series.
- Each session belongs to the pattern occurrence of the local week (Monday to Sunday) it was
  first booked in: scheduling keeps a session in its pattern week, moving it inside the week
  when the pattern time does not fit, so that week is its place for good (`slot`).
- A pattern occurrence holding no session (a skipped week) or only a cancelled one gets an
  `EXDATE`; a session not at its slot time (moved inside the week, rescheduled, changed
  length) gets an override VEVENT with `RECURRENCE-ID` = its slot.
- Every VEVENT carries `X-TWOWAY-SESSION-ID` (the master: the first session's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, vCalAddress, vText

SESSION_ID_PROPERTY = "X-TWOWAY-SESSION-ID"
PRODID = "-//Twoway//Reverse mentoring//EN"

Method = Literal["REQUEST", "CANCEL", "PUBLISH"]


def series_uid(pair_id: str) -> str:
    """The UID of a pair's series, in invitations and feeds alike."""
    return f"{pair_id}@twoway"


@dataclass(frozen=True)
class SeriesSession:
    """What the series needs of one session (plain data from either service)."""

    session_id: str
    sequence: int
    revision: int
    status: str  # scheduled, completed, missed, cancelled
    starts_at: datetime | None
    ends_at: datetime | None
    first_starts_at: datetime | None = None  # when first booked; None: starts_at

    @property
    def held(self) -> bool:
        """Whether the session is (or was) a meeting in the calendar: not cancelled, timed."""
        return (
            self.status != "cancelled" and self.starts_at is not None and self.ends_at is not None
        )

    @property
    def placed_at(self) -> datetime | None:
        return self.first_starts_at or self.starts_at


@dataclass(frozen=True)
class Occurrence:
    """A session at its place in the pattern."""

    session: SeriesSession
    slot: datetime  # its pattern time, in the series zone: the RECURRENCE-ID


@dataclass(frozen=True)
class SeriesPlan:
    """Where each session of a pair sits in its recurring series."""

    pair_id: str
    zone: str
    interval_weeks: int
    anchor: datetime  # the master's DTSTART, in the series zone
    duration: timedelta
    count: int  # pattern occurrences, EXDATEs included
    occurrences: tuple[Occurrence, ...]  # by sequence

    @property
    def uid(self) -> str:
        return series_uid(self.pair_id)

    def pattern(self, period: int) -> datetime:
        """The pattern time of period `period` (0 = the anchor), wall clock kept in the zone."""
        day = self.anchor.date() + timedelta(weeks=period * self.interval_weeks)
        return datetime.combine(day, self.anchor.timetz().replace(tzinfo=None), self.anchor.tzinfo)

    def occurrence(self, session_id: str) -> Occurrence | None:
        return next((o for o in self.occurrences if o.session.session_id == session_id), None)

    @property
    def held(self) -> list[Occurrence]:
        return [o for o in self.occurrences if o.session.held]

    @property
    def exdates(self) -> list[datetime]:
        """Pattern times holding no held session: skipped weeks and cancelled sessions."""
        taken = {o.slot for o in self.held}
        return [t for t in (self.pattern(p) for p in range(self.count)) if t not in taken]

    def is_moved(self, occurrence: Occurrence) -> bool:
        s = occurrence.session
        assert s.starts_at is not None
        assert s.ends_at is not None
        return s.starts_at != occurrence.slot or s.ends_at - s.starts_at != self.duration

    @property
    def overrides(self) -> list[Occurrence]:
        return [o for o in self.held if self.is_moved(o)]

    @property
    def master_sequence(self) -> int:
        """The master changes with each session it stands for or excludes (EXDATE)."""
        overridden = {o.session.session_id for o in self.overrides}
        return max(
            (
                o.session.revision
                for o in self.occurrences
                if o.session.session_id not in overridden
            ),
            default=0,
        )

    @property
    def last_sequence(self) -> int:
        """The highest SEQUENCE any component of this series was ever sent with."""
        return max((o.session.revision for o in self.occurrences), default=0)


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def plan_series(
    pair_id: str, sessions: Iterable[SeriesSession], zone: str, interval_weeks: int = 1
) -> SeriesPlan | None:
    """Place a pair's sessions on their pattern; None when no session has a time."""
    tz = ZoneInfo(zone)
    placed = sorted((s for s in sessions if s.placed_at is not None), key=lambda s: s.sequence)
    if not placed:
        return None
    first = placed[0]
    assert first.placed_at is not None
    anchor = first.placed_at.astimezone(tz)
    weeks = {
        s.session_id: (_monday(s.placed_at.astimezone(tz).date()) - _monday(anchor.date())).days
        // 7
        for s in placed
        if s.placed_at is not None
    }
    # A pattern that does not fit the facts (a cadence changed after booking) falls back to
    # weekly, which places every session just as exactly.
    if interval_weeks < 1 or any(w % interval_weeks for w in weeks.values()):
        interval_weeks = 1
    timed = next((s for s in placed if s.starts_at and s.ends_at), first)
    duration = (
        timed.ends_at - timed.starts_at
        if timed.starts_at is not None and timed.ends_at is not None
        else timedelta(minutes=30)
    )
    plan = SeriesPlan(pair_id, zone, interval_weeks, anchor, duration, 0, ())
    periods: dict[int, SeriesSession] = {}
    for s in placed:
        period = max(weeks[s.session_id] // interval_weeks, 0)
        while period in periods:  # two sessions first booked in one week: keep both apart
            period += 1
        periods[period] = s
    occurrences = tuple(
        Occurrence(s, plan.pattern(p))
        for p, s in sorted(periods.items(), key=lambda i: i[1].sequence)
    )
    return SeriesPlan(
        pair_id, zone, interval_weeks, anchor, duration, max(periods) + 1, occurrences
    )


class KeptSession(Protocol):
    """What a service keeps of a session to place it in its pair's series."""

    @property
    def session_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def revision(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def starts_at(self) -> datetime | None: ...
    @property
    def ends_at(self) -> datetime | None: ...
    @property
    def first_starts_at(self) -> datetime | None: ...
    @property
    def series_zone(self) -> str | None: ...
    @property
    def series_weeks(self) -> int | None: ...


def pair_series(
    pair_id: str, sessions: Sequence[KeptSession], fallback_zone: str | None = None
) -> SeriesPlan | None:
    """A pair's series from the sessions a service kept: in the zone and cadence its first
    session was booked with (else `fallback_zone`, else UTC, and weekly)."""
    first = min(sessions, key=lambda s: s.sequence, default=None)
    if first is None:
        return None
    return plan_series(
        pair_id,
        [
            SeriesSession(
                s.session_id,
                s.sequence,
                s.revision,
                s.status,
                s.starts_at,
                s.ends_at,
                s.first_starts_at,
            )
            for s in sessions
        ],
        first.series_zone or fallback_zone or "UTC",
        first.series_weeks or 1,
    )


# ---------------------------------------------------------------- components


@dataclass(frozen=True)
class Person:
    email: str
    name: str


@dataclass(frozen=True)
class SeriesText:
    """What the VEVENTs say, for one recipient (or for a feed)."""

    summary: str
    description: str = ""
    url: str | None = None
    organizer: Person | None = None
    attendees: tuple[Person, ...] = ()


def _common(event: Event, plan: SeriesPlan, text: SeriesText, now: datetime, rsvp: bool) -> None:
    for name, value in _common_properties(plan.uid, text, now, rsvp):
        event[name] = list(value) if isinstance(value, list) else value


@lru_cache(maxsize=64)
def _common_properties(
    uid: str, text: SeriesText, now: datetime, rsvp: bool
) -> tuple[tuple[str, Any], ...]:
    """What every VEVENT of a series says, as icalendar holds it: made once for the master
    and all its overrides (and the next message of the batch to the same pair), since
    icalendar's conversion of each value costs about what writing it out does. Shared
    values are only ever read."""
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", now.astimezone(UTC))
    event.add("summary", text.summary)
    if text.description:
        event.add("description", text.description)
    if text.url:
        event.add("url", text.url)
    event.add("transp", "OPAQUE")
    if text.organizer is not None:
        organizer = vCalAddress(f"mailto:{text.organizer.email}")
        organizer.params["cn"] = vText(text.organizer.name)
        event.add("organizer", organizer, encode=False)
    for person in text.attendees:
        attendee = vCalAddress(f"mailto:{person.email}")
        attendee.params["cn"] = vText(person.name)
        attendee.params["cutype"] = vText("INDIVIDUAL")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        if rsvp:
            attendee.params["partstat"] = vText("NEEDS-ACTION")
            attendee.params["rsvp"] = vText("TRUE")
        event.add("attendee", attendee, encode=False)
    return tuple(event.items())


def _local(plan: SeriesPlan, at: datetime) -> datetime:
    return at.astimezone(ZoneInfo(plan.zone))


def master_event(plan: SeriesPlan, text: SeriesText, now: datetime, *, rsvp: bool = True) -> Event:
    """The series: DTSTART at the anchor, the RRULE, and an EXDATE per empty pattern time."""
    event = Event()
    _common(event, plan, text, now, rsvp)
    event.add("sequence", plan.master_sequence)
    event.add("dtstart", plan.anchor)
    event.add("dtend", plan.anchor + plan.duration)
    rule: dict[str, object] = {"freq": "weekly", "count": plan.count}
    if plan.interval_weeks > 1:
        rule["interval"] = plan.interval_weeks
    event.add("rrule", rule)
    exdates = plan.exdates
    if exdates:
        event.add("exdate", exdates)
    held = plan.held
    event.add("status", "CONFIRMED" if held else "CANCELLED")
    event.add(SESSION_ID_PROPERTY, plan.occurrences[0].session.session_id)
    return event


def override_event(
    plan: SeriesPlan, occurrence: Occurrence, text: SeriesText, now: datetime, *, rsvp: bool = True
) -> Event:
    """One occurrence at its current time: RECURRENCE-ID = its slot, SEQUENCE = its revision."""
    s = occurrence.session
    assert s.starts_at is not None
    assert s.ends_at is not None
    event = Event()
    _common(event, plan, text, now, rsvp)
    event.add("recurrence-id", occurrence.slot)
    event.add("sequence", s.revision)
    event.add("dtstart", _local(plan, s.starts_at))
    event.add("dtend", _local(plan, s.ends_at))
    event.add("status", "CONFIRMED")
    event.add(SESSION_ID_PROPERTY, s.session_id)
    return event


def cancelled_occurrence_event(
    plan: SeriesPlan, occurrence: Occurrence, text: SeriesText, now: datetime
) -> Event:
    """METHOD:CANCEL of one occurrence, by RECURRENCE-ID, SEQUENCE = the cancelled revision."""
    s = occurrence.session
    event = Event()
    _common(event, plan, text, now, rsvp=False)
    event.add("recurrence-id", occurrence.slot)
    event.add("sequence", s.revision)
    starts = s.starts_at or occurrence.slot
    event.add("dtstart", _local(plan, starts))
    event.add("dtend", _local(plan, s.ends_at or starts + plan.duration))
    event.add("status", "CANCELLED")
    event.add(SESSION_ID_PROPERTY, s.session_id)
    return event


def cancelled_series_event(plan: SeriesPlan, text: SeriesText, now: datetime) -> Event:
    """METHOD:CANCEL of the whole series: no RECURRENCE-ID, SEQUENCE above every earlier one."""
    event = Event()
    _common(event, plan, text, now, rsvp=False)
    event.add("sequence", plan.last_sequence + 1)
    event.add("dtstart", plan.anchor)
    event.add("dtend", plan.anchor + plan.duration)
    event.add("status", "CANCELLED")
    event.add(SESSION_ID_PROPERTY, plan.occurrences[0].session.session_id)
    return event


def series_events(
    plan: SeriesPlan, text: SeriesText, now: datetime, *, rsvp: bool = True
) -> list[Event]:
    """The master and its overrides: the whole series in its current state."""
    return [master_event(plan, text, now, rsvp=rsvp)] + [
        override_event(plan, o, text, now, rsvp=rsvp) for o in plan.overrides
    ]


# ---------------------------------------------------------------- calendars


@lru_cache(maxsize=256)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    """A zone's VTIMEZONE for whole years, as icalendar writes it, built once per process:
    from zoneinfo, then written out, it costs as much as the rest of a calendar. Empty for a
    zone icalendar cannot describe."""
    try:
        timezone = Timezone.from_tzid(
            tzid, first_date=date(first_year, 1, 1), last_date=date(last_year, 12, 31)
        )
    except ValueError:
        return b""
    data: bytes = timezone.to_ical()
    return data


_UNFOLDED = 74
"""The longest content line icalendar leaves whole, in bytes (it folds a line before the
75th octet, RFC 5545 3.1)."""


def _written(calendar: Calendar) -> bytes:
    """`calendar.to_ical()`, the same bytes: icalendar's folding looks at every character of
    every line, a third of writing a calendar, though most lines are short; a line that
    fits is written as it is, a longer one folded by icalendar."""
    written = []
    for line in calendar.content_lines():
        if line:
            data = line.encode()
            written.append(data if len(data) <= _UNFOLDED else line.to_ical())
    return b"\r\n".join(written) + b"\r\n"


def _calendar(method: Method, events: Sequence[Event], name: str | None = None) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    if name:
        calendar.add("x-wr-calname", name)
    for event in events:
        calendar.add_component(event)
    data = _written(calendar)
    keys = [(event, key) for event in events for key in ("dtstart", "dtend", "recurrence-id")]
    times: list[datetime] = [event.decoded(key) for event, key in keys if key in event]
    if not times:
        return data
    # A VTIMEZONE for each TZID of the times (every time of a series is in its zone; UTC
    # needs none), ahead of the events as icalendar places them: it covers the message's
    # dates, with a year's margin for later updates, in whole years so it is made once.
    # icalendar writes a component inside a calendar exactly as on its own, so the one made
    # once is put in before the first event (values never hold a line break, so no line
    # other than an event's first is "BEGIN:VEVENT").
    first = min(times).date() - timedelta(days=7)
    last = max(times).date() + timedelta(days=366)
    zones = {event[key].params.get("TZID") for event, key in keys if key in event}
    tzids = sorted(str(z) for z in zones if z and z != "UTC")
    timezones = b"".join(_vtimezone(tzid, first.year, last.year) for tzid in tzids)
    at = data.index(b"\r\nBEGIN:VEVENT\r\n") + 2
    return data[:at] + timezones + data[at:]


def invitation(plan: SeriesPlan, text: SeriesText, now: datetime) -> bytes:
    """METHOD:REQUEST holding the whole series (one UID)."""
    return _calendar("REQUEST", series_events(plan, text, now))


def occurrence_update(
    plan: SeriesPlan, session_id: str, text: SeriesText, now: datetime
) -> bytes | None:
    """METHOD:REQUEST with the override of one occurrence; None when it is not held."""
    occurrence = plan.occurrence(session_id)
    if occurrence is None or not occurrence.session.held:
        return None
    return _calendar("REQUEST", [override_event(plan, occurrence, text, now)])


def cancellation(
    plan: SeriesPlan, session_ids: Iterable[str], text: SeriesText, now: datetime
) -> bytes | None:
    """METHOD:CANCEL of those occurrences, or of the whole series when none is held any more."""
    if not plan.held:
        return _calendar("CANCEL", [cancelled_series_event(plan, text, now)])
    wanted = set(session_ids)
    events = [
        cancelled_occurrence_event(plan, o, text, now)
        for o in plan.occurrences
        if o.session.session_id in wanted and not o.session.held
    ]
    return _calendar("CANCEL", events) if events else None


def feed(series: Iterable[tuple[SeriesPlan, SeriesText]], now: datetime, name: str) -> bytes:
    """METHOD:PUBLISH of many series; a series with nothing held stays, STATUS:CANCELLED."""
    events: list[Event] = []
    for plan, text in series:
        events.extend(series_events(plan, text, now, rsvp=False))
    return _calendar("PUBLISH", events, name)
