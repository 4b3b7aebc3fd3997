"""A pair's row in the programme health, from either view progress keeps of a pair."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from twoway_progress.domain.report import PairHealthRow, health_row


@dataclass(frozen=True)
class Kept:
    pair_id: str
    status: str
    health: str
    reasons: tuple[str, ...]
    completed_at: datetime | None
    rematch_requested: str | None


def test_a_completed_pair_reads_as_completed() -> None:
    done = Kept("P1", "active", "on_track", (), datetime(2027, 5, 1, tzinfo=UTC), None)
    assert health_row(done) == PairHealthRow("P1", "active", "on_track", (), True, None)


def test_an_open_pair_keeps_its_health_reasons_and_rematch() -> None:
    open_ = Kept("P2", "ended", "inactive", ("no_sessions",), None, "inactive")
    row = health_row(open_)
    assert row == PairHealthRow("P2", "ended", "inactive", ("no_sessions",), False, "inactive")
