"""End-to-end helpers: hand-made people, times and the mail the sink received (the stack of
services as processes is `twoway_dev.testing.stack`)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from twoway_dev.localstack.mailsink import MailSink
from twoway_dev.testing.stack import (
    CALENDAR_KEYS,
    CONSUMES,
    SOURCE,
    Stack,
    View,
    events,
    free_port,
    running_stack,
    script,
)
from twoway_shared.contract import WEEKDAYS

__all__ = [
    "CALENDAR_KEYS",
    "CONSUMES",
    "SOURCE",
    "Mail",
    "Stack",
    "View",
    "events",
    "free_port",
    "mails",
    "next_monday",
    "parse_time",
    "person",
    "running_stack",
    "script",
    "vevent_times",
    "within_availability",
]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---------------------------------------------------------------- people


def next_monday(today: date) -> date:
    return today + timedelta(days=7 - today.weekday())


def person(
    participant_id: str,
    programme_id: str,
    role: str,
    *,
    name: str | None = None,
    grade: int | None = None,
    department: str | None = None,
    timezone: str = "Europe/London",
    availability: list[dict[str, str]] | None = None,
    revision: int = 0,
) -> dict[str, Any]:
    """A hand-made profile: mentors junior, mentees senior, both free on weekdays 09-17 London."""
    mentor = role == "mentor"
    return {
        "participant_id": participant_id,
        "programme_id": programme_id,
        "role": role,
        "display_name": name or f"Person {participant_id}",
        "email": f"{participant_id.lower()}@example.com",
        "grade": grade if grade is not None else (5 if mentor else 20),
        "department": department or ("Engineering" if mentor else "Finance"),
        "manager_id": None,
        "location": None,
        "timezone": timezone,
        "languages": ["en"],
        "offers": ["python"] if mentor else ["leadership"],
        "wants": ["leadership"] if mentor else ["python"],
        "availability": availability
        or [{"day": d, "start": "09:00", "end": "17:00"} for d in WEEKDAYS[:5]],
        "capacity": 1,
        "locale": "en",
        "notify": {"email": True, "reminders": True},
        "revision": revision,
    }


def within_availability(profile: dict[str, Any], starts: datetime, ends: datetime) -> bool:
    """`[starts, ends)` lies inside one weekly window of `profile`, in its own timezone."""
    zone = ZoneInfo(profile["timezone"])
    local_start, local_end = starts.astimezone(zone), ends.astimezone(zone)
    day = WEEKDAYS[local_start.weekday()]
    for window in profile["availability"]:
        if window["day"] != day:
            continue
        lo = datetime.combine(local_start.date(), time.fromisoformat(window["start"]), zone)
        if window["end"] == "24:00":
            hi = datetime.combine(local_start.date() + timedelta(days=1), time(), zone)
        else:
            hi = datetime.combine(local_start.date(), time.fromisoformat(window["end"]), zone)
        if lo <= local_start and local_end <= hi:
            return True
    return False


# ---------------------------------------------------------------- mail


@dataclass(frozen=True)
class Mail:
    """One message the sink received."""

    path: Path
    message: EmailMessage

    @property
    def to(self) -> str:
        return parseaddr(str(self.message["To"]))[1].lower()

    @property
    def template(self) -> str:
        return str(self.message["X-Twoway-Template"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def ics(self) -> bytes | None:
        for part in self.message.walk():
            if part.get_content_type() == "text/calendar":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                return payload
        return None

    def calendar(self) -> icalendar.Calendar | None:
        payload = self.ics()
        return None if payload is None else icalendar.Calendar.from_ical(payload)

    def vevents(self) -> list[Any]:
        cal = self.calendar()
        return [] if cal is None else list(cal.walk("VEVENT"))

    def text(self) -> str:
        return self.path.read_bytes().decode("utf-8", errors="replace")


def mails(sink: MailSink, addresses: Iterable[str] | None = None) -> list[Mail]:
    """Every message in the sink, or those to one of `addresses`."""
    wanted = None if addresses is None else {a.lower() for a in addresses}
    found = []
    for path in sink.messages():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        mail = Mail(path, message)
        if wanted is None or mail.to in wanted:
            found.append(mail)
    return found


def vevent_times(vevent: Any) -> tuple[datetime, datetime]:
    start, end = vevent["DTSTART"].dt, vevent["DTEND"].dt
    assert isinstance(start, datetime)
    assert isinstance(end, datetime)
    return start.astimezone(UTC), end.astimezone(UTC)
