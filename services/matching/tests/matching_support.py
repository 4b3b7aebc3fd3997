"""Matching's test people and programme settings, shared by its handler and service tests."""

from __future__ import annotations

from typing import Any

from twoway_matching.domain.model import Participant
from twoway_shared.contract import ParticipantEnrolled, ProgrammeConfigured

PROGRAMME = "RM-TEST"


def profile(pid: str, role: str, **changes: Any) -> dict[str, Any]:
    """A mentor (junior, Digital) or a mentee (senior, Finance) who suit each other."""
    base: dict[str, Any] = {
        "participant_id": pid,
        "programme_id": PROGRAMME,
        "role": role,
        "display_name": f"Person {pid}",
        "email": f"{pid.lower()}@example.com",
        "grade": 4 if role == "mentor" else 20,
        "department": "Digital" if role == "mentor" else "Finance",
        "timezone": "Europe/London",
        "languages": ["en"],
        "offers": ["generative ai", "social media"] if role == "mentor" else ["strategy"],
        "wants": ["strategy"] if role == "mentor" else ["Generative AI"],
        "availability": [{"day": d, "start": "09:00", "end": "12:00"} for d in ("mon", "tue")],
    }
    base.update(changes)
    return base


def enrolled(pid: str, role: str, **changes: Any) -> ParticipantEnrolled:
    return ParticipantEnrolled.model_validate(profile(pid, role, **changes))


def configure(**matching: Any) -> ProgrammeConfigured:
    return ProgrammeConfigured.model_validate(
        {"programme_id": PROGRAMME, "starts_on": "2027-01-04", "matching": matching}
    )


def participant(pid: str, role: str, **changes: Any) -> Participant:
    """The domain's view of a person: a junior IT mentor or a senior Finance mentee, in London,
    speaking English, free when `availability` says (nowhere by default)."""
    mentor = role == "mentor"
    fields: dict[str, Any] = {
        "grade": 3 if mentor else 12,
        "department": "IT" if mentor else "Finance",
        "timezone": "Europe/London",
        "languages": frozenset({"en"}),
        "availability": (),
    }
    return Participant(participant_id=pid, role=role, **(fields | changes))  # type: ignore[arg-type]
