"""Plain data the matching rules work on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from twoway_shared.wallclock import Window

Role = Literal["mentor", "mentee"]

# Scores are compared as integers (millionths) so the solver and any check agree exactly.
SCORE_UNITS = 1_000_000


@dataclass(frozen=True)
class Participant:
    """What matching knows of one active participant."""

    participant_id: str
    role: Role
    grade: int
    department: str
    timezone: str
    languages: frozenset[str]  # primary subtags, lower-case
    availability: tuple[Window, ...]
    offers: frozenset[str] = frozenset()
    wants: frozenset[str] = frozenset()
    manager_id: str | None = None
    capacity: int = 1

    @property
    def department_key(self) -> str:
        return self.department.strip().casefold()


@dataclass(frozen=True)
class MatchingRules:
    """The programme settings a round applies."""

    starts_on: date
    session_minutes: int = 30
    min_grade_gap: int = 1
    cross_department: bool = True
    min_score: float = 0.0  # rule 9: pairs scoring below are not eligible

    @property
    def min_score_units(self) -> int:
        """`min_score` in the units scores are compared in."""
        return round(self.min_score * SCORE_UNITS)


@dataclass(frozen=True)
class Reasons:
    """Why a pair fits: what each side learns, shared languages, weekly time together."""

    mentee_learns: tuple[str, ...]
    mentor_learns: tuple[str, ...]
    languages: tuple[str, ...]
    weekly_overlap_minutes: int


@dataclass(frozen=True)
class Proposal:
    """A pair chosen by a round."""

    mentor_id: str
    mentee_id: str
    score_units: int
    reasons: Reasons

    @property
    def score(self) -> float:
        return self.score_units / SCORE_UNITS


@dataclass(frozen=True)
class RoundInput:
    """One programme's pool as a round sees it."""

    rules: MatchingRules
    mentors: tuple[Participant, ...]  # with the capacity still free
    mentees: tuple[Participant, ...]  # not in an active pair
    never_again: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (mentor, mentee)
