"""The enrolment rule, table-driven over every ordering the services can see."""

from __future__ import annotations

from typing import Literal

import pytest
from twoway_shared.enrolment import (
    Enrolment,
    Role,
    Verdict,
    after_withdrawal,
    decide_profile,
    decide_withdrawal,
)

Kind = Literal["participant.enrolled", "participant.updated"]
ACTIVE = Enrolment("RM", "mentee", 3, withdrawn=False)
WITHDRAWN = Enrolment("RM", "mentee", 3, withdrawn=True)
TOMBSTONE = after_withdrawal(None, "RM")


def profile(
    stored: Enrolment | None,
    kind: Kind,
    revision: int,
    *,
    role: Role = "mentee",
    programme: str = "RM",
) -> tuple[Verdict, bool]:
    decision = decide_profile(
        stored,
        event_type=kind,
        participant_id="E1",
        programme_id=programme,
        role=role,
        revision=revision,
    )
    return decision.verdict, decision.reactivates


@pytest.mark.parametrize(
    ("stored", "kind", "revision", "expected"),
    [
        (None, "participant.enrolled", 0, (Verdict.APPLY, False)),
        (None, "participant.updated", 5, (Verdict.APPLY, False)),
        (ACTIVE, "participant.updated", 3, (Verdict.APPLY, False)),
        (ACTIVE, "participant.enrolled", 4, (Verdict.APPLY, False)),
        (ACTIVE, "participant.updated", 2, (Verdict.STALE, False)),
        (WITHDRAWN, "participant.updated", 9, (Verdict.STALE, False)),
        (WITHDRAWN, "participant.enrolled", 3, (Verdict.STALE, False)),
        (WITHDRAWN, "participant.enrolled", 2, (Verdict.STALE, False)),
        (WITHDRAWN, "participant.enrolled", 4, (Verdict.APPLY, True)),
        # A withdrawal seen first: the enrolment after it is a new enrolment; an update is not.
        (TOMBSTONE, "participant.enrolled", 0, (Verdict.APPLY, True)),
        (TOMBSTONE, "participant.updated", 0, (Verdict.STALE, False)),
    ],
)  # fmt: skip
def test_profile_orderings(
    stored: Enrolment | None, kind: Kind, revision: int, expected: tuple[Verdict, bool]
) -> None:
    assert profile(stored, kind, revision) == expected


@pytest.mark.parametrize("stored", [ACTIVE, WITHDRAWN, TOMBSTONE])
def test_programme_never_changes(stored: Enrolment) -> None:
    assert profile(stored, "participant.enrolled", 9, programme="OTHER")[0] is Verdict.REJECT


@pytest.mark.parametrize("stored", [ACTIVE, WITHDRAWN])
def test_role_never_changes(stored: Enrolment) -> None:
    verdict = decide_profile(
        stored,
        event_type="participant.enrolled",
        participant_id="E1",
        programme_id="RM",
        role="mentor",
        revision=9,
    )
    assert verdict.verdict is Verdict.REJECT
    assert "role and programme never change" in verdict.reason


def test_a_tombstone_takes_the_role_of_the_first_enrolment() -> None:
    assert profile(TOMBSTONE, "participant.enrolled", 0, role="mentor")[0] is Verdict.APPLY
    assert TOMBSTONE.role is None
    assert TOMBSTONE.revision == -1


@pytest.mark.parametrize("stored", [None, ACTIVE, WITHDRAWN, TOMBSTONE])
def test_withdrawal_orderings(stored: Enrolment | None) -> None:
    same = decide_withdrawal(stored, participant_id="E1", programme_id="RM")
    assert same.verdict is Verdict.APPLY
    after = after_withdrawal(stored, "RM")
    assert after.withdrawn
    assert after.programme_id == "RM"


@pytest.mark.parametrize("stored", [ACTIVE, WITHDRAWN, TOMBSTONE])
def test_withdrawal_for_another_programme_is_rejected(stored: Enrolment) -> None:
    other = decide_withdrawal(stored, participant_id="E1", programme_id="OTHER")
    assert other.verdict is Verdict.REJECT
    assert "not OTHER" in other.reason
