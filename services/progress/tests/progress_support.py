"""The progress service in the test process, and the records of a test pair to feed it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from twoway_dev.testing.kafka import ToSend
from twoway_dev.testing.service import Sandbox, ServiceHarness
from twoway_progress.app import create_spec
from twoway_progress.config import ProgressSettings
from twoway_progress.workers import WorkerOptions
from twoway_shared.contract.values import rfc3339

MENTOR, MENTEE, PAIR, PROGRAMME = "M1", "E1", "P1", "RM"
FAST = WorkerOptions(
    poll_seconds=0.5, retry_base=timedelta(milliseconds=200), retry_max=timedelta(seconds=1)
)


@asynccontextmanager
async def progress(sandbox: Sandbox, **settings: Any) -> AsyncIterator[ServiceHarness]:
    """Progress with fast workers, ready to run in `async with h.running()` blocks (a test
    may stop it, move its clock and start it again)."""
    async with sandbox.service(
        create_spec(FAST), ProgressSettings, start=False, **settings
    ) as harness:
        yield harness


class Facts:
    """Records of a pair's life (M1 mentors E1 in RM) as the other services publish them."""

    def __init__(self, h: ServiceHarness) -> None:
        self.h = h

    def programme(self, **changes: Any) -> ToSend:
        fields: dict[str, Any] = {
            "programme_id": PROGRAMME,
            "name": "Digital Leaders",
            "sessions": 3,
        }
        return self.h.record("programme.configured", **(fields | changes))

    def profile(self, participant_id: str, role: str, **changes: Any) -> ToSend:
        fields = {
            "participant_id": participant_id,
            "programme_id": PROGRAMME,
            "role": role,
            "manager_id": None,
            "display_name": f"Person {participant_id}",
        }
        return self.h.record("participant.enrolled", **(fields | changes))

    def pair_fields(self, pair_id: str = PAIR) -> dict[str, str]:
        return {
            "pair_id": pair_id,
            "programme_id": PROGRAMME,
            "mentor_id": MENTOR,
            "mentee_id": MENTEE,
        }

    def confirmed(self, pair_id: str = PAIR) -> ToSend:
        return self.h.record("pair.confirmed", **self.pair_fields(pair_id))

    def scheduled(
        self,
        sequence: int,
        starts_at: datetime,
        total: int = 3,
        pair_id: str = PAIR,
        minutes: int = 30,
    ) -> ToSend:
        return self.h.record(
            "session.scheduled",
            **self.pair_fields(pair_id),
            session_id=f"{pair_id}-S{sequence}",
            sequence=sequence,
            total=total,
            starts_at=rfc3339(starts_at),
            ends_at=rfc3339(starts_at + timedelta(minutes=minutes)),
            revision=0,
        )

    def completed(self, sequence: int, pair_id: str = PAIR, minutes: int = 30) -> ToSend:
        return self.h.record(
            "session.completed",
            **self.pair_fields(pair_id),
            session_id=f"{pair_id}-S{sequence}",
            sequence=sequence,
            minutes=minutes,
            ratings={"mentor": 4, "mentee": 5},
        )

    def missed(self, sequence: int, pair_id: str = PAIR) -> ToSend:
        return self.h.record(
            "session.missed",
            **self.pair_fields(pair_id),
            session_id=f"{pair_id}-S{sequence}",
            sequence=sequence,
            absent=[MENTOR],
        )

    def feedback(
        self, sequence: int, participant_id: str, pair_id: str = PAIR, **changes: Any
    ) -> ToSend:
        fields: dict[str, Any] = {
            "session_id": f"{pair_id}-S{sequence}",
            "pair_id": pair_id,
            "participant_id": participant_id,
            "learned": [],
            "rating": 4,
            "fit": "good",
            "comment": f"private words of {participant_id}",
        }
        return self.h.record("session.feedback_submitted", **(fields | changes))

    def goals(
        self, participant_id: str, goals: list[dict[str, Any]], pair_id: str = PAIR
    ) -> ToSend:
        return self.h.record(
            "pair.goals_set", pair_id=pair_id, participant_id=participant_id, goals=goals
        )
