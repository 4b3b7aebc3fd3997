"""The iCalendar feed of a participant's sessions, for Outlook or Google Calendar to subscribe."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import icalendar

from twoway_scheduling.storage import Session


def calendar_feed(sessions: Sequence[Session], now: datetime) -> bytes:
    """One VEVENT per session (UID `<session_id>@twoway`, SEQUENCE = revision, UTC times).

    Cancelled sessions stay in the feed with STATUS:CANCELLED, so subscribed calendars drop
    them rather than keep a stale copy.
    """
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Twoway//Scheduling//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", "Twoway mentoring sessions")
    for session in sessions:
        vevent = icalendar.Event()
        vevent.add("uid", f"{session.session_id}@twoway")
        vevent.add("dtstamp", now)
        vevent.add("dtstart", session.starts_at)
        vevent.add("dtend", session.ends_at)
        vevent.add("sequence", session.revision)
        vevent.add("status", "CANCELLED" if session.status == "cancelled" else "CONFIRMED")
        vevent.add("summary", f"Reverse mentoring session {session.sequence} of {session.total}")
        vevent.add("transp", "OPAQUE")
        calendar.add_component(vevent)
    data: bytes = calendar.to_ical()
    return data
