"""Programme health: counts over pairs, and aggregates over feedback that cover enough people."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

MIN_PEOPLE = 3
"""An aggregate over feedback is shown only when at least this many people contributed to it,
so nobody's answer can be read back from it (junior mentors rate senior leaders)."""

TOP_TOPICS = 10


@dataclass(frozen=True)
class PairHealthRow:
    pair_id: str
    status: str
    health: str
    reasons: tuple[str, ...]
    completed: bool
    rematch_requested: str | None


class _PairHealth(Protocol):
    @property
    def pair_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def health(self) -> str: ...
    @property
    def reasons(self) -> tuple[str, ...]: ...
    @property
    def completed_at(self) -> datetime | None: ...
    @property
    def rematch_requested(self) -> str | None: ...


def health_row(pair: _PairHealth) -> PairHealthRow:
    """A pair's row in the programme's health, from what progress keeps of the pair."""
    return PairHealthRow(
        pair.pair_id,
        pair.status,
        pair.health,
        pair.reasons,
        pair.completed_at is not None,
        pair.rematch_requested,
    )


@dataclass(frozen=True)
class FeedbackRow:
    person: str
    """The participant id, or an anonymous token once the person is erased."""
    role: str
    rating: int
    learned: tuple[str, ...]


def _direction(rows: Sequence[FeedbackRow]) -> dict[str, Any]:
    people = {r.person for r in rows}
    enough = len(people) >= MIN_PEOPLE
    rating = round(sum(r.rating for r in rows) / len(rows), 2) if enough else None
    reporters: dict[str, set[str]] = {}
    for row in rows:
        for tag in row.learned:
            reporters.setdefault(tag, set()).add(row.person)
    mentions = Counter({tag: sum(tag in r.learned for r in rows) for tag in reporters})
    topics = [
        {"tag": tag, "people": len(reporters[tag])}
        for tag, _ in sorted(mentions.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(reporters[tag]) >= MIN_PEOPLE
    ][:TOP_TOPICS]
    return {
        "people": len(people) if enough else None,
        "average_rating": rating,
        "top_learned": topics,
        "withheld": not enough,
    }


def programme_health(
    programme_id: str,
    pairs: Iterable[PairHealthRow],
    session_counts: dict[str, int],
    feedback: Iterable[FeedbackRow],
) -> dict[str, Any]:
    """What `GET /programmes/{id}/health` answers."""
    pairs = list(pairs)
    active = [p for p in pairs if p.status == "active" and not p.completed]
    by_health = Counter(p.health for p in active)
    flagged = [
        {"pair_id": p.pair_id, "health": p.health, "reasons": list(p.reasons)}
        for p in active
        if p.health in ("at_risk", "inactive")
    ]
    rows = list(feedback)
    return {
        "programme_id": programme_id,
        "pairs": {
            "active": len(active),
            "on_track": by_health.get("on_track", 0),
            "at_risk": by_health.get("at_risk", 0),
            "inactive": by_health.get("inactive", 0),
            "completed": sum(p.completed for p in pairs),
            "rematch_requested": sum(p.rematch_requested is not None for p in pairs),
            "ended": sum(p.status == "ended" for p in pairs),
        },
        "sessions": {
            "completed": session_counts.get("completed", 0),
            "missed": session_counts.get("missed", 0),
            "cancelled": session_counts.get("cancelled", 0),
            "scheduled": session_counts.get("scheduled", 0),
        },
        "attention": flagged,
        "feedback": {
            "minimum_people": MIN_PEOPLE,
            "mentee": _direction([r for r in rows if r.role == "mentee"]),
            "mentor": _direction([r for r in rows if r.role == "mentor"]),
        },
    }
