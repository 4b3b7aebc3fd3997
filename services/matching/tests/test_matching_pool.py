"""Who a round considers (capacity, history, pauses) and when a programme gets a round."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from matching_support import participant
from twoway_matching.domain.model import MatchingRules
from twoway_matching.domain.pool import (
    PastPair,
    round_follows_change,
    round_input,
    round_may_run,
)
from twoway_shared.wallclock import Window

RULES = MatchingRules(starts_on=date(2027, 1, 4))
MENTOR = participant("m1", "mentor", availability=(Window(0, 540, 720),), capacity=2)
MENTEE = replace(MENTOR, participant_id="e1", role="mentee", grade=12, capacity=1)


@pytest.mark.parametrize(
    ("mode", "follows"), [(None, False), ("batch", False), ("continuous", True)]
)
def test_only_a_programme_known_to_be_continuous_rounds_on_its_own(
    mode: str | None, follows: bool
) -> None:
    assert round_follows_change(mode) is follows  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "requested", "runs"),
    [
        (None, False, False),  # settings not processed yet: wait for them
        (None, True, True),  # programme.matching_requested: one round with the defaults
        ("batch", False, False),  # e.g. due under continuous, then reconfigured to batch
        ("batch", True, True),
        ("continuous", False, True),
        ("continuous", True, True),
    ],
)
def test_a_due_round_runs_when_requested_or_continuous(
    mode: str | None, requested: bool, runs: bool
) -> None:
    assert round_may_run(mode, requested) is runs  # type: ignore[arg-type]


def test_capacity_left_and_mentees_already_paired() -> None:
    e2 = replace(MENTEE, participant_id="e2")
    history = [PastPair("m1", "e1", active=True)]
    pool = round_input(RULES, [MENTOR, MENTEE, e2], history)
    assert [(m.participant_id, m.capacity) for m in pool.mentors] == [("m1", 1)]
    assert [e.participant_id for e in pool.mentees] == ["e2"]
    full = round_input(RULES, [MENTOR, e2], [*history, PastPair("m1", "e3", active=True)])
    assert full.mentors == ()


def test_ended_pairs_free_both_people_but_are_never_repeated() -> None:
    history = [PastPair("m1", "e1", active=False)]
    pool = round_input(RULES, [MENTOR, MENTEE], history)
    assert [m.capacity for m in pool.mentors] == [2]
    assert [e.participant_id for e in pool.mentees] == ["e1"]
    assert pool.never_again == frozenset({("m1", "e1")})


def test_people_paused_after_a_completed_pair_get_no_new_partner() -> None:
    e2 = replace(MENTEE, participant_id="e2")
    pool = round_input(RULES, [MENTOR, MENTEE, e2], [], paused=frozenset({"m1", "e1"}))
    assert pool.mentors == ()
    assert [e.participant_id for e in pool.mentees] == ["e2"]
