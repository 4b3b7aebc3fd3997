"""Plain data the progress rules work on: programme rules, a pair's sessions and feedback."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["mentor", "mentee"]
SessionStatus = Literal["scheduled", "cancelled", "completed", "missed"]
Fit = Literal["good", "unsure", "not_a_fit"]
HealthName = Literal["on_track", "at_risk", "inactive"]

REASON_ORDER = ("missed_in_a_row", "low_rating", "fit_unsure", "no_recent_session")
"""Reasons are listed in this order, so equal facts give equal lists."""


@dataclass(frozen=True)
class Rules:
    """A programme's progress settings (contract section 4, `progress`)."""

    fit_check: bool = True
    inactive_warning_days: int = 21
    inactive_close_days: int = 42
    credit_minutes: int = 50


@dataclass(frozen=True)
class SessionState:
    """One session of a pair as scheduling announced it; times are unknown until scheduled."""

    session_id: str
    sequence: int
    status: SessionStatus
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    minutes: int = 0

    @property
    def has_outcome(self) -> bool:
        return self.status in ("completed", "missed")


@dataclass(frozen=True)
class Feedback:
    """One person's current feedback about one session (a later one replaced any earlier)."""

    session_id: str
    participant_id: str
    role: Role
    sequence: int
    rating: int
    learned: tuple[str, ...] = ()
    fit: Fit | None = None


@dataclass(frozen=True)
class PairState:
    """Everything progress knows about one pair, as the rules need it."""

    pair_id: str
    mentor_id: str
    mentee_id: str
    sessions: tuple[SessionState, ...] = ()
    feedback: tuple[Feedback, ...] = ()
    total: int | None = None
    booked: int | None = None
    """Sessions booked when `session.booking_failed` cut the series short, else None."""

    def role_of(self, participant_id: str) -> Role | None:
        if participant_id == self.mentor_id:
            return "mentor"
        if participant_id == self.mentee_id:
            return "mentee"
        return None


@dataclass(frozen=True)
class Health:
    """A pair's health and the reasons for it."""

    health: HealthName = "on_track"
    reasons: tuple[str, ...] = field(default=())
