"""Eligibility and score of one (mentor, mentee) pair: the reference rules, one pair at a time."""

from __future__ import annotations

from twoway_shared.intervals import Interval, intersect

from twoway_matching.domain.availability import first_week_intervals
from twoway_matching.domain.model import (
    SCORE_UNITS,
    MatchingRules,
    Participant,
    Reasons,
)

BELOW_MIN_SCORE = "score below min_score"
"""Rule 9's reason, as the unmatched explanation names it."""


def weekly_overlap(a: list[Interval], b: list[Interval]) -> tuple[int, int]:
    """(total minutes both are free in the first week, the longest such stretch)."""
    common = intersect(a, b)
    lengths = [end - start for start, end in common]
    return sum(lengths), max(lengths, default=0)


def ineligibility(
    mentor: Participant,
    mentee: Participant,
    rules: MatchingRules,
    longest_overlap: int,
    paired_before: bool = False,
) -> str | None:
    """Why the two cannot be paired (rules 2-6 and 8), or None when they can."""
    if mentor.grade + rules.min_grade_gap > mentee.grade:
        return "grade gap"
    if mentee.manager_id == mentor.participant_id or mentor.manager_id == mentee.participant_id:
        return "manager"
    if rules.cross_department and mentor.department_key == mentee.department_key:
        return "same department"
    if not mentor.languages & mentee.languages:
        return "no common language"
    if longest_overlap < rules.session_minutes:
        return "no time overlap"
    if paired_before:
        return "paired before"
    return None


def score_units(
    mentor: Participant, mentee: Participant, overlap: int, session_minutes: int
) -> int:
    """The pair's score in millionths: 0.60 learn_e + 0.25 learn_m + 0.15 time."""
    learn_e = len(mentee.wants & mentor.offers) / len(mentee.wants) if mentee.wants else 0.0
    learn_m = len(mentor.wants & mentee.offers) / len(mentor.wants) if mentor.wants else 0.0
    time_fit = min(1.0, overlap / (4 * session_minutes))
    return round((0.60 * learn_e + 0.25 * learn_m + 0.15 * time_fit) * SCORE_UNITS)


def reasons(mentor: Participant, mentee: Participant, overlap: int) -> Reasons:
    """What makes the pair explainable."""
    return Reasons(
        mentee_learns=tuple(sorted(mentee.wants & mentor.offers)),
        mentor_learns=tuple(sorted(mentor.wants & mentee.offers)),
        languages=tuple(sorted(mentor.languages & mentee.languages)),
        weekly_overlap_minutes=overlap,
    )


def evaluate(
    mentor: Participant, mentee: Participant, rules: MatchingRules, paired_before: bool = False
) -> tuple[str | None, int, int]:
    """(why not eligible or None, score units, weekly overlap minutes) of one pair (rules 2-9)."""
    overlap, longest = weekly_overlap(
        first_week_intervals(mentor.availability, mentor.timezone, rules.starts_on),
        first_week_intervals(mentee.availability, mentee.timezone, rules.starts_on),
    )
    why_not = ineligibility(mentor, mentee, rules, longest, paired_before)
    score = score_units(mentor, mentee, overlap, rules.session_minutes)
    if why_not is None and score < rules.min_score_units:
        why_not = BELOW_MIN_SCORE
    return why_not, score, overlap
