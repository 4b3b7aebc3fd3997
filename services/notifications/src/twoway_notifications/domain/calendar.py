"""iCalendar (RFC 5546) invitations, updates and cancellations for sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from icalendar import Calendar, Event, vCalAddress, vText

from twoway_notifications.domain.model import Session

Method = Literal["REQUEST", "CANCEL"]


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str


def session_uid(session_id: str) -> str:
    return f"{session_id}@twoway"


def build_calendar(
    method: Method,
    sessions: Sequence[Session],
    *,
    organizer: str,
    attendees: Sequence[Attendee],
    summary: str,
    now: datetime,
) -> bytes:
    """One VEVENT per session, times in UTC, SEQUENCE = the session's revision."""
    cal = Calendar()
    cal.add("prodid", "-//Twoway//Notifications//EN")
    cal.add("version", "2.0")
    cal.add("method", method)
    for session in sessions:
        event = Event()
        event.add("uid", session_uid(session.session_id))
        event.add("sequence", session.revision)
        event.add("dtstamp", now.astimezone(UTC))
        if session.starts_at is not None and session.ends_at is not None:
            event.add("dtstart", session.starts_at.astimezone(UTC))
            event.add("dtend", session.ends_at.astimezone(UTC))
        event.add("summary", f"{summary} ({session.sequence}/{session.total or '?'})")
        event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
        event.add("organizer", vCalAddress(f"mailto:{organizer}"))
        for person in attendees:
            address = vCalAddress(f"mailto:{person.email}")
            address.params["cn"] = vText(person.name)
            address.params["role"] = vText("REQ-PARTICIPANT")
            event.add("attendee", address, encode=False)
        cal.add_component(event)
    ical: bytes = cal.to_ical()
    return ical
