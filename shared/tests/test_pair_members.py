"""`pair_members`: the four fields that name a pair, taken from events and stored rows alike."""

from __future__ import annotations

from dataclasses import dataclass

from twoway_shared.contract import PairConfirmed
from twoway_shared.contract.values import pair_members


@dataclass(frozen=True)
class StoredSession:
    session_id: str
    pair_id: str
    programme_id: str
    mentor_id: str
    mentee_id: str


def test_pair_members_names_the_pair_and_nothing_else() -> None:
    stored = StoredSession("s1", "p1", "RM", "m1", "e1")
    members = pair_members(stored)
    assert members == {"pair_id": "p1", "programme_id": "RM", "mentor_id": "m1", "mentee_id": "e1"}
    assert PairConfirmed(**members) == PairConfirmed(
        pair_id="p1", programme_id="RM", mentor_id="m1", mentee_id="e1"
    )
    assert pair_members(PairConfirmed(**members)) == members
