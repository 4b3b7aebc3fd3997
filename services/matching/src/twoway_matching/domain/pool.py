"""Who a round considers, and when a programme gets a round: pure decisions on plain data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from twoway_matching.domain.model import MatchingRules, Participant, RoundInput

Mode = Literal["continuous", "batch"]


@dataclass(frozen=True)
class PastPair:
    """A pair of the programme, in any state; `active` when proposed or confirmed."""

    mentor_id: str
    mentee_id: str
    active: bool


def round_follows_change(mode: Mode | None) -> bool:
    """Whether a change of the pool asks for a round on its own.

    `mode` is None while the programme's `programme.configured` has not been processed:
    topics have no order between them, so the programme may yet turn out to be in batch mode,
    and a round on a partial pool could not be taken back (contract 1.1).
    """
    return mode == "continuous"


def round_may_run(mode: Mode | None, requested: bool) -> bool:
    """Whether a due round runs: asked for by `programme.matching_requested`, or continuous.

    A round that became due under one mode is checked again when it runs, so a programme
    reconfigured to batch (or a change consumed before any settings) never gets a round it
    did not ask for.
    """
    return requested or mode == "continuous"


def round_input(
    rules: MatchingRules,
    people: Iterable[Participant],
    pairs: Iterable[PastPair],
    paused: frozenset[str] = frozenset(),
) -> RoundInput:
    """The round's view of the pool.

    Mentors come with the capacity they still have free, mentees only when they are in no
    active pair (rule 7); people in `paused` (they completed a pair and have not enrolled
    again) get no new partner; every earlier pair is never repeated (rule 8).
    """
    history = list(pairs)
    busy: Counter[str] = Counter()
    for pair in history:
        if pair.active:
            busy[pair.mentor_id] += 1
            busy[pair.mentee_id] += 1
    candidates = [p for p in people if p.participant_id not in paused]
    mentors = tuple(
        replace(p, capacity=p.capacity - busy[p.participant_id])
        for p in candidates
        if p.role == "mentor" and p.capacity > busy[p.participant_id]
    )
    mentees = tuple(p for p in candidates if p.role == "mentee" and busy[p.participant_id] == 0)
    never_again = frozenset((p.mentor_id, p.mentee_id) for p in history)
    return RoundInput(rules, mentors, mentees, never_again)
