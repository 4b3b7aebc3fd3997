"""Pure rules of requests about one session: who may ask, when, and the attendance outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from twoway_scheduling.domain.requests import (
    Attendance,
    Outcome,
    attendance_refusal,
    outcome,
    reschedule_refusal,
)

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Booked:
    pair_id: str = "P1"
    mentor_id: str = "M1"
    mentee_id: str = "E1"
    starts_at: datetime = NOW + timedelta(days=3)
    status: str = "scheduled"


def refuse_move(session: Booked | None, who: str = "E1", pair: str = "P1") -> str | None:
    return reschedule_refusal(
        session, session_id="S1", pair_id=pair, requested_by=who, now=NOW, min_notice_hours=24
    )


@pytest.mark.parametrize(
    ("session", "who", "pair", "expected"),
    [
        (None, "E1", "P1", "There is no session S1"),
        (Booked(), "E1", "P2", "does not belong to pair P2"),
        (Booked(), "X9", "P1", "Only the mentor or the mentee of this session can move it."),
        (Booked(status="cancelled"), "M1", "P1", "was cancelled"),
        (Booked(status="completed"), "M1", "P1", "already taken place"),
        (Booked(starts_at=NOW - timedelta(minutes=1)), "M1", "P1", "already taken place"),
        (Booked(starts_at=NOW + timedelta(hours=23)), "M1", "P1", "less than 24 hours"),
    ],
)  # fmt: skip
def test_reschedule_refusals(session: Booked | None, who: str, pair: str, expected: str) -> None:
    refusal = refuse_move(session, who, pair)
    assert refusal is not None
    assert expected in refusal


def test_reschedule_allowed_for_either_person_with_notice() -> None:
    assert refuse_move(Booked(), "E1") is None
    assert refuse_move(Booked(starts_at=NOW + timedelta(hours=25)), "M1") is None


def test_attendance_refusals() -> None:
    def refuse(session: Booked | None, who: str = "M1") -> str | None:
        return attendance_refusal(session, session_id="S1", pair_id="P1", participant_id=who)

    assert refuse(Booked()) is None
    assert refuse(Booked(status="completed")) is None  # accepted, and then has no effect
    assert "record attendance" in (refuse(Booked(), "X9") or "")
    assert "cancelled" in (refuse(Booked(status="cancelled")) or "")
    assert "no session" in (refuse(None) or "")


def test_outcome_needs_both_records() -> None:
    here, away = Attendance("M1", True, 4), Attendance("E1", False, None)
    assert outcome(here, None) is None
    assert outcome(None, away) is None
    assert outcome(here, Attendance("E1", True, 5)) == Outcome(
        "completed", mentor_rating=4, mentee_rating=5
    )
    assert outcome(here, away) == Outcome("missed", absent=("E1",))
    assert outcome(Attendance("M1", False, 1), away) == Outcome("missed", absent=("M1", "E1"))
