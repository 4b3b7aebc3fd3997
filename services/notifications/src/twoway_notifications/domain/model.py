"""Plain data the notification rules work on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Template(StrEnum):
    """The eleven messages; the value is the `template` of notification.sent/failed."""

    PAIR_PROPOSED = "pair_proposed"
    PAIR_CONFIRMED = "pair_confirmed"
    BOOKING = "booking"
    SESSION_RESCHEDULED = "session_rescheduled"
    SESSION_CANCELLED = "session_cancelled"
    REMINDER = "reminder"
    PARTNER_WITHDREW = "partner_withdrew"
    FEEDBACK_REQUEST = "feedback_request"  # 1.1
    PAIR_CLOSED = "pair_closed"  # 1.1
    PAIR_AT_RISK = "pair_at_risk"  # 1.1, to the programme's coordinator
    COMPLETION = "completion"  # 1.1


# Messages that name the partner or list them as attendee wait for the partner's details too.
NEEDS_PARTNER = frozenset(
    {
        Template.PAIR_PROPOSED,
        Template.PAIR_CONFIRMED,
        Template.BOOKING,
        Template.SESSION_RESCHEDULED,
        Template.REMINDER,
    }
)


@dataclass(frozen=True)
class Contact:
    """What notifications keeps of one participant."""

    participant_id: str
    role: str
    display_name: str | None
    email: str | None
    timezone: str | None
    locale: str = "en"
    notify_email: bool = True
    notify_reminders: bool = True
    erased: bool = False

    @property
    def reachable(self) -> bool:
        return self.email is not None and self.display_name is not None


@dataclass(frozen=True)
class Session:
    """A session as last seen on sessions.v1."""

    session_id: str
    pair_id: str
    mentor_id: str
    mentee_id: str
    sequence: int
    total: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    revision: int
    status: str  # scheduled, cancelled, completed, missed
    first_starts_at: datetime | None = None  # when first booked: its place in the series
    series_zone: str | None = None  # the mentee's zone when it was booked
    series_weeks: int | None = None  # the programme's cadence then, in weeks

    @property
    def is_scheduled(self) -> bool:
        return self.status == "scheduled" and self.starts_at is not None

    @property
    def is_held(self) -> bool:
        """A meeting in people's calendars: scheduled, or past with an outcome."""
        return self.status != "cancelled" and self.starts_at is not None


@dataclass(frozen=True)
class Message:
    """A message due to one person: what it is about, not its text."""

    notification_id: str
    template: Template
    participant_id: str
    partner_id: str | None
    pair_id: str | None
    session_id: str | None
    cause_id: str
    attempts: int = 0
    first_attempt_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    session_ids: tuple[str, ...] = ()  # a grouped cancellation's sessions
    due_at: datetime | None = None
    traceparent: str | None = None  # the trace of the event that made it due

    @property
    def people(self) -> tuple[str, ...]:
        """Everyone whose details the message needs: recipient, partner, people it names."""
        named = tuple(str(p) for p in self.details.get("people", ()))
        partner = (self.partner_id,) if self.partner_id else ()
        return (self.participant_id, *partner, *named)
