"""The progress rules as pure functions of a pair's state, its programme's rules and the time."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from twoway_progress.domain.model import (
    REASON_ORDER,
    Feedback,
    Health,
    PairState,
    Role,
    Rules,
    SessionState,
)

LOW_RATING = 2.0
"""An average of a person's last three ratings at or below this puts the pair at risk."""


# ---------------------------------------------------------------- activity and timers


def last_completed_end(pair: PairState) -> datetime | None:
    """When the pair's last completed session ended (its `last_activity_at`)."""
    ends = [s.ends_at or s.starts_at for s in pair.sessions if s.status == "completed"]
    known = [t for t in ends if t is not None]
    return max(known) if known else None


def first_session_start(pair: PairState) -> datetime | None:
    starts = [s.starts_at for s in pair.sessions if s.starts_at is not None]
    return min(starts) if starts else None


def inactivity_anchor(pair: PairState) -> datetime | None:
    """The later of the first session's start and the last completed session's end."""
    moments = [t for t in (first_session_start(pair), last_completed_end(pair)) if t is not None]
    return max(moments) if moments else None


def warning_at(pair: PairState, rules: Rules) -> datetime | None:
    """When the pair becomes inactive if no session is completed before; None: never."""
    anchor = inactivity_anchor(pair)
    if anchor is None or rules.inactive_warning_days == 0:
        return None
    return anchor + timedelta(days=rules.inactive_warning_days)


def close_at(pair: PairState, rules: Rules) -> datetime | None:
    """When an inactive pair is closed (rematch requested); None: never."""
    anchor = inactivity_anchor(pair)
    if anchor is None or rules.inactive_warning_days == 0 or rules.inactive_close_days == 0:
        return None
    return anchor + timedelta(days=rules.inactive_close_days)


def next_check(pair: PairState, rules: Rules, now: datetime) -> datetime | None:
    """The next moment the passing of time alone changes something for this pair."""
    upcoming = [t for t in (warning_at(pair, rules), close_at(pair, rules)) if t and t > now]
    return min(upcoming) if upcoming else None


def due_for_close(pair: PairState, rules: Rules, now: datetime) -> bool:
    """Inactive and still inactive `inactive_close_days` after its last activity."""
    closing = close_at(pair, rules)
    return closing is not None and now >= closing


# ---------------------------------------------------------------- health


def outcomes_in_order(sessions: Iterable[SessionState]) -> list[SessionState]:
    return sorted((s for s in sessions if s.has_outcome), key=lambda s: s.sequence)


def missed_in_a_row(pair: PairState) -> bool:
    last_two = outcomes_in_order(pair.sessions)[-2:]
    return len(last_two) == 2 and all(s.status == "missed" for s in last_two)


def _by_person(feedback: Iterable[Feedback]) -> dict[str, list[Feedback]]:
    people: dict[str, list[Feedback]] = {}
    for item in sorted(feedback, key=lambda f: f.sequence):
        people.setdefault(item.participant_id, []).append(item)
    return people


def low_rating(pair: PairState) -> bool:
    """The average of either person's last three ratings is 2 or less."""
    for items in _by_person(pair.feedback).values():
        last = [f.rating for f in items[-3:]]
        if last and sum(last) / len(last) <= LOW_RATING:
            return True
    return False


def fit_unsure(pair: PairState) -> bool:
    """Someone's latest fit answer is `unsure` (a later `good` clears it)."""
    for items in _by_person(pair.feedback).values():
        answers = [f.fit for f in items if f.fit is not None]
        if answers and answers[-1] == "unsure":
            return True
    return False


def assess(pair: PairState, rules: Rules, now: datetime) -> Health:
    """The pair's health now; `inactive` outranks `at_risk`, and every reason that holds is kept."""
    reasons: set[str] = set()
    if missed_in_a_row(pair):
        reasons.add("missed_in_a_row")
    if low_rating(pair):
        reasons.add("low_rating")
    if fit_unsure(pair):
        reasons.add("fit_unsure")
    warning = warning_at(pair, rules)
    if warning is not None and now >= warning:
        reasons.add("no_recent_session")
    ordered = tuple(r for r in REASON_ORDER if r in reasons)
    if "no_recent_session" in reasons:
        return Health("inactive", ordered)
    return Health("at_risk" if ordered else "on_track", ordered)


# ---------------------------------------------------------------- fit check


def not_a_fit(pair: PairState, rules: Rules) -> bool:
    """Someone answered `not_a_fit` about the pair's first or second session."""
    return rules.fit_check and any(
        f.fit == "not_a_fit" and f.sequence in (1, 2) for f in pair.feedback
    )


# ---------------------------------------------------------------- completion and credits


def series_length(pair: PairState) -> int | None:
    """How many sessions the series has: the booked ones when booking failed, else `total`."""
    return pair.booked if pair.booked is not None else pair.total


def is_complete(pair: PairState) -> bool:
    """Every session of the series is known and has an outcome; cancelled ones do not count."""
    length = series_length(pair)
    if length is None or len(pair.sessions) < length:
        return False
    counted = [s for s in pair.sessions if s.status != "cancelled"]
    return bool(counted) and all(s.has_outcome for s in counted)


def credits_for(minutes: int, credit_minutes: int) -> float:
    """Whole fifths of a credit: floor(5 * minutes / credit_minutes) / 5."""
    return math.floor(5 * minutes / credit_minutes) / 5


def most_frequent_first(tags: Iterable[str]) -> list[str]:
    """Each tag once, most often reported first; ties keep the order first reported."""
    counts = Counter(tags)  # keeps the order in which tags were first seen
    return sorted(counts, key=lambda tag: -counts[tag])  # a stable sort keeps ties in that order


def learned_by(pair: PairState, role: Role) -> list[str]:
    """The tags one side reported under `learned`, most frequent first."""
    items = sorted((f for f in pair.feedback if f.role == role), key=lambda f: f.sequence)
    return most_frequent_first(tag for f in items for tag in f.learned)


@dataclass(frozen=True)
class Completion:
    """What `pair.completed` and each `credit.awarded` say."""

    sessions_completed: int
    sessions_missed: int
    minutes: int
    mentee_learned: list[str]
    mentor_learned: list[str]
    credits: dict[Role, float]


def completion(pair: PairState, rules: Rules) -> Completion:
    completed = [s for s in pair.sessions if s.status == "completed"]
    missed = [s for s in pair.sessions if s.status == "missed"]
    minutes = sum(s.minutes for s in completed)
    credits: dict[Role, float] = {}
    if completed:
        # Both people sat through every completed session: they earn the same minutes.
        credits = {
            role: credits_for(minutes, rules.credit_minutes) for role in ("mentor", "mentee")
        }
    return Completion(
        sessions_completed=len(completed),
        sessions_missed=len(missed),
        minutes=minutes,
        mentee_learned=learned_by(pair, "mentee"),
        mentor_learned=learned_by(pair, "mentor"),
        credits=credits,
    )


# ---------------------------------------------------------------- goals


@dataclass(frozen=True)
class GoalProgress:
    tag: str
    note: str | None
    matched: bool


def goal_progress(
    goals: Sequence[tuple[str, str | None]], learned: Iterable[str]
) -> list[GoalProgress]:
    """Each goal of one person, and whether a `learned` tag of that person matched it."""
    seen = set(learned)
    return [GoalProgress(tag, note, tag in seen) for tag, note in goals]
