"""The enrolment rule, once for every service: does a profile or a withdrawal apply?

Enrolments and updates are upserts ordered by `revision`; a withdrawal ends the enrolment and
only a `participant.enrolled` with a higher revision makes the person active again; role and
programme never change for a participant id. A withdrawal may be the first thing a service
sees of a person (a rewind, or a portal that sends it first): it is remembered as a tombstone
(no role, revision -1) so that the programme still cannot change and an `updated` for the
withdrawn person is ignored, while an `enrolled` that follows it is a new enrolment.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from twoway_shared.errors import Rejected

Role = Literal["mentor", "mentee"]
TOMBSTONE_REVISION = -1
"""The revision stored for a person known only from a withdrawal."""


@dataclass(frozen=True)
class Enrolment:
    """What a service keeps of a person for this rule."""

    programme_id: str
    role: Role | None
    revision: int
    withdrawn: bool

    @classmethod
    def stored(
        cls, programme_id: str, role: str | None, revision: int, withdrawn: bool
    ) -> Enrolment:
        """From a service's row, where a tombstone's role may be stored as NULL or a marker."""
        known: Role | None = (
            "mentor" if role == "mentor" else "mentee" if role == "mentee" else None
        )
        return cls(programme_id, known, revision, withdrawn)


class Verdict(StrEnum):
    """What to do with an enrolment event."""

    APPLY = "apply"
    STALE = "stale"
    REJECT = "reject"


@dataclass(frozen=True)
class Decision:
    """A verdict with the reason a person can act on (for `reject`) or read in logs."""

    verdict: Verdict
    reason: str = ""
    reactivates: bool = False
    """True when the applied profile makes a withdrawn person active again."""

    def applies(self) -> bool:
        """True to apply, False for a stale event; a rejection raises `Rejected` (a dead letter)."""
        if self.verdict is Verdict.REJECT:
            raise Rejected(self.reason)
        return self.verdict is Verdict.APPLY


APPLY = Decision(Verdict.APPLY)


ProfileEvent = Literal["participant.enrolled", "participant.updated"]


def profile_event_type(event_type: str) -> ProfileEvent:
    """The profile event type of a short event type (anything but `enrolled` updates)."""
    return "participant.enrolled" if event_type == "participant.enrolled" else "participant.updated"


def decide_profile(
    stored: Enrolment | None,
    *,
    event_type: ProfileEvent,
    participant_id: str,
    programme_id: str,
    role: Role,
    revision: int,
) -> Decision:
    """`participant.enrolled` / `participant.updated` against what is stored."""
    if stored is None:
        return APPLY
    if stored.programme_id != programme_id or (stored.role is not None and stored.role != role):
        known = f"a {stored.role}" if stored.role else "withdrawn"
        return Decision(
            Verdict.REJECT,
            f"participant {participant_id} is {known} in programme {stored.programme_id}; "
            "role and programme never change for an id, so enrol the person under a new "
            "participant_id instead",
        )
    if revision < stored.revision:
        return Decision(Verdict.STALE, f"revision {revision} < stored {stored.revision}")
    if not stored.withdrawn:
        return APPLY
    if event_type == "participant.enrolled" and revision > stored.revision:
        return Decision(Verdict.APPLY, reactivates=True)
    return Decision(
        Verdict.STALE,
        "withdrawn: only participant.enrolled with a higher revision brings the person back",
    )


def decide_withdrawal(
    stored: Enrolment | None, *, participant_id: str, programme_id: str
) -> Decision:
    """`participant.withdrawn` against what is stored (applying it twice is harmless)."""
    if stored is not None and stored.programme_id != programme_id:
        return Decision(
            Verdict.REJECT,
            f"participant {participant_id} is enrolled in programme {stored.programme_id}, "
            f"not {programme_id}; check the programme_id of the withdrawal",
        )
    return APPLY


def after_withdrawal(stored: Enrolment | None, programme_id: str) -> Enrolment:
    """What to store once a withdrawal is applied (a tombstone when nothing was known)."""
    if stored is None:
        return Enrolment(programme_id, None, TOMBSTONE_REVISION, withdrawn=True)
    return Enrolment(stored.programme_id, stored.role, stored.revision, withdrawn=True)


class ProfileFacts(Protocol):
    """What the rule reads of a `participant.enrolled` / `participant.updated`."""

    @property
    def participant_id(self) -> str: ...
    @property
    def programme_id(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def revision(self) -> int: ...


def profile_applies(stored: Enrolment | None, event_type: str, profile: ProfileFacts) -> bool:
    """`decide_profile(...).applies()` for a profile event: apply it, ignore it as stale or
    withdrawn (False), or raise `Rejected` (a dead letter) when it changes role or programme."""
    return decide_profile(
        stored,
        event_type=profile_event_type(event_type),
        participant_id=profile.participant_id,
        programme_id=profile.programme_id,
        role=profile.role,
        revision=profile.revision,
    ).applies()
