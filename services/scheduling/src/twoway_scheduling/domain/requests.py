"""Requests about one booked session (reschedule, attendance): who may ask, and what follows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol


class BookedSession(Protocol):
    """What the request rules need to know of a stored session."""

    @property
    def pair_id(self) -> str: ...
    @property
    def mentor_id(self) -> str: ...
    @property
    def mentee_id(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def status(self) -> str: ...


@dataclass(frozen=True)
class Attendance:
    """What one person recorded about one session."""

    participant_id: str
    attended: bool
    rating: int | None


@dataclass(frozen=True)
class Outcome:
    """A session's outcome once both people have recorded attendance."""

    status: Literal["completed", "missed"]
    absent: tuple[str, ...] = ()
    mentor_rating: int | None = None
    mentee_rating: int | None = None


def _not_of_pair(
    session: BookedSession | None, session_id: str, pair_id: str, who: str, doing: str
) -> str | None:
    if session is None:
        return f"There is no session {session_id}; check the link or calendar entry used."
    if session.pair_id != pair_id:
        return f"Session {session_id} does not belong to pair {pair_id}."
    if who not in (session.mentor_id, session.mentee_id):
        return f"Only the mentor or the mentee of this session can {doing}."
    return None


def reschedule_refusal(
    session: BookedSession | None,
    *,
    session_id: str,
    pair_id: str,
    requested_by: str,
    now: datetime,
    min_notice_hours: int,
) -> str | None:
    """Why a reschedule request cannot be considered, or None when a new time may be sought."""
    problem = _not_of_pair(session, session_id, pair_id, requested_by, "move it")
    if problem is not None or session is None:
        return problem
    if session.status == "cancelled":
        return "This session was cancelled, so it cannot be moved."
    if session.status != "scheduled" or session.starts_at <= now:
        return "This session has already taken place, so it cannot be moved."
    if session.starts_at <= now + timedelta(hours=min_notice_hours):
        return (
            f"This session starts in less than {min_notice_hours} hours, the programme's "
            "minimum notice, so it can no longer be moved."
        )
    return None


def attendance_refusal(
    session: BookedSession | None, *, session_id: str, pair_id: str, participant_id: str
) -> str | None:
    """Why an attendance record is refused, or None when it may be recorded."""
    problem = _not_of_pair(session, session_id, pair_id, participant_id, "record attendance")
    if problem is None and session is not None and session.status == "cancelled":
        return "This session was cancelled, so attendance cannot be recorded for it."
    return problem


def outcome(mentor: Attendance | None, mentee: Attendance | None) -> Outcome | None:
    """Completed when both attended, missed (naming who was absent) otherwise; None until both
    have recorded attendance."""
    if mentor is None or mentee is None:
        return None
    if mentor.attended and mentee.attended:
        return Outcome("completed", mentor_rating=mentor.rating, mentee_rating=mentee.rating)
    absent = tuple(a.participant_id for a in (mentor, mentee) if not a.attended)
    return Outcome("missed", absent=absent)
