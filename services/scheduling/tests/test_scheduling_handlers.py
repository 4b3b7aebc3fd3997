"""Scheduling's handlers against the real PostgreSQL, one unit of work each, no Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from twoway_dev.testing.handlers import HandlerBench
from twoway_dev.testing.service import example
from twoway_scheduling.app import create_spec
from twoway_shared.contract import (
    PairConfirmed,
    ParticipantEnrolled,
    ProgrammeConfigured,
    SessionAttendanceRecorded,
    SessionRescheduleRequested,
)

pytestmark = pytest.mark.infra

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
HOURS = [{"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu")]


def person(participant_id: str, role: str) -> ParticipantEnrolled:
    return example(
        ParticipantEnrolled, participant_id=participant_id, programme_id="RM", role=role,
        manager_id=None, timezone="Europe/London", availability=HOURS,
    )  # fmt: skip


@pytest.fixture
async def bench(service_dsns: dict[str, str]) -> AsyncIterator[HandlerBench]:
    async with HandlerBench.open(create_spec(), service_dsns["scheduling"], NOW) as opened:
        yield opened


async def book(bench: HandlerBench) -> list[dict[str, Any]]:
    await bench.handle(
        ProgrammeConfigured(
            programme_id="RM", sessions=3, starts_on=date(2027, 1, 5), min_notice_hours=0
        )
    )
    assert await bench.handle(person("M1", "mentor")) == []
    assert await bench.handle(person("E1", "mentee")) == []
    emitted = await bench.handle(
        PairConfirmed(pair_id="P1", programme_id="RM", mentor_id="M1", mentee_id="E1")
    )
    assert [t for t, _ in emitted] == ["session.scheduled"] * 3
    return [d for _, d in emitted]


async def test_confirmed_pair_is_booked_once(bench: HandlerBench) -> None:
    sessions = await book(bench)
    assert [s["sequence"] for s in sessions] == [1, 2, 3]
    again = await bench.handle(
        PairConfirmed(pair_id="P1", programme_id="RM", mentor_id="M1", mentee_id="E1")
    )
    assert again == []
    rows = await bench.fetch("SELECT count(*) AS n FROM scheduling.sessions")
    assert rows[0]["n"] == 3


async def test_attendance_from_both_completes_the_session(bench: HandlerBench) -> None:
    first = (await book(bench))[0]

    def attended(who: str, rating: int) -> SessionAttendanceRecorded:
        return SessionAttendanceRecorded(
            session_id=first["session_id"], pair_id="P1", participant_id=who, attended=True,
            rating=rating,
        )  # fmt: skip

    assert await bench.handle(attended("M1", 4)) == []
    [(kind, data)] = await bench.handle(attended("E1", 5))
    assert kind == "session.completed"
    assert data["ratings"] == {"mentor": 4, "mentee": 5}
    assert data["minutes"] == 30
    assert await bench.handle(attended("E1", 1)) == []  # after the outcome: no effect
    rows = await bench.fetch(
        "SELECT status FROM scheduling.sessions WHERE session_id = $1", first["session_id"]
    )
    assert rows[0]["status"] == "completed"


async def test_reschedule_by_an_outsider_is_rejected_with_a_reason(bench: HandlerBench) -> None:
    first = (await book(bench))[0]
    [(kind, data)] = await bench.handle(
        SessionRescheduleRequested(session_id=first["session_id"], pair_id="P1", requested_by="X9")
    )
    assert kind == "session.request_rejected"
    assert data["reason"] == "Only the mentor or the mentee of this session can move it."
    [(kind, moved)] = await bench.handle(
        SessionRescheduleRequested(session_id=first["session_id"], pair_id="P1", requested_by="E1")
    )
    assert kind == "session.rescheduled", moved
    assert first["starts_at"] == "2027-01-05T09:00:00Z"
    assert moved["previous_starts_at"] == first["starts_at"]
    assert moved["revision"] == 1
