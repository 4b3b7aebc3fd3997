"""What a calendar application does with the iTIP messages it receives, for tests.

A reduced RFC 5546 receiver: a REQUEST or PUBLISH holding a master replaces the whole series
(its overrides included), one holding an override replaces that occurrence, a component with a
lower SEQUENCE than the one held is ignored; a CANCEL with a RECURRENCE-ID removes that
occurrence (an EXDATE on the master), one without removes the series. The held calendar is
expanded with recurring-ical-events, the standard expander.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import recurring_ical_events
from icalendar import Calendar, Event, Timezone
from twoway_shared.calendar import SESSION_ID_PROPERTY


def _key(event: Event) -> datetime | None:
    if "RECURRENCE-ID" not in event:
        return None
    value: datetime = event.decoded("RECURRENCE-ID")
    return value.astimezone(UTC)


def _sequence(event: Event) -> int:
    return int(event.get("SEQUENCE", 0))


@dataclass(frozen=True)
class Meeting:
    """One expanded occurrence."""

    starts_at: datetime
    ends_at: datetime
    session_id: str
    uid: str


@dataclass
class CalendarClient:
    series: dict[str, dict[datetime | None, Event]] = field(default_factory=dict)
    zones: dict[str, Timezone] = field(default_factory=dict)

    def receive(self, ics: bytes) -> None:
        calendar = Calendar.from_ical(ics)
        method = str(calendar.get("METHOD", "PUBLISH"))
        for zone in calendar.walk("VTIMEZONE"):
            assert isinstance(zone, Timezone)
            self.zones[str(zone["TZID"])] = zone
        for event in calendar.walk("VEVENT"):
            assert isinstance(event, Event)
            uid = str(event["UID"])
            key = _key(event)
            held = self.series.get(uid, {})
            known = held.get(key)
            if known is not None and _sequence(known) > _sequence(event):
                continue  # an older message arriving late
            if method == "CANCEL":
                if key is None:
                    self.series.pop(uid, None)
                elif None in held:
                    held.pop(key, None)
                    held[None].add("EXDATE", event.decoded("RECURRENCE-ID"))
                continue
            if key is None:
                self.series[uid] = {None: event}
            else:
                held[key] = event
                self.series[uid] = held

    def calendar(self) -> Calendar:
        calendar = Calendar()
        calendar.add("prodid", "-//test client//EN")
        calendar.add("version", "2.0")
        for zone in self.zones.values():
            calendar.add_component(zone)
        for held in self.series.values():
            for event in held.values():
                calendar.add_component(event)
        return calendar

    def meetings(self, start: datetime, end: datetime) -> list[Meeting]:
        """Every occurrence between `start` and `end`, cancelled ones left out, by start."""
        found: list[Any] = recurring_ical_events.of(self.calendar()).between(start, end)
        meetings = [
            Meeting(
                e.decoded("DTSTART").astimezone(UTC),
                e.decoded("DTEND").astimezone(UTC),
                str(e.get(SESSION_ID_PROPERTY, "")),
                str(e["UID"]),
            )
            for e in found
            if str(e.get("STATUS", "CONFIRMED")) != "CANCELLED"
        ]
        return sorted(meetings, key=lambda m: (m.starts_at, m.uid))


def expand(ics: bytes, start: datetime, end: datetime) -> list[Meeting]:
    """The occurrences of one calendar object on its own."""
    client = CalendarClient()
    client.receive(ics)
    return client.meetings(start, end)
