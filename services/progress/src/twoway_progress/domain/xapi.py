"""xAPI 1.0.3 statements for learning record stores: built from plain data, ids stable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

XAPI_VERSION = "1.0.3"
ATTENDED = "http://adlnet.gov/expapi/verbs/attended"
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
MEETING = "http://adlnet.gov/expapi/activities/meeting"
COURSE = "http://adlnet.gov/expapi/activities/course"
CREDITS_EXTENSION = "https://w3id.org/twoway/xapi/extensions/credits"
"""Result extension holding the continuing-education credits (a number of whole fifths)."""

_NAMESPACE = UUID("8c0b5f7e-2a61-4f43-9d0e-7b1f3c5a9e24")


def attended_statement_id(session_id: str, participant_id: str) -> str:
    return str(uuid5(_NAMESPACE, f"attended/{session_id}/{participant_id}"))


def completed_statement_id(credit_id: str) -> str:
    return str(uuid5(_NAMESPACE, f"completed/{credit_id}"))


def iso_duration(minutes: int) -> str:
    """An ISO 8601 duration, e.g. 90 -> `PT1H30M`, 0 -> `PT0M`."""
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"PT{hours}H{rest}M"
    return f"PT{hours}H" if hours else f"PT{rest}M"


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Attended:
    """One person took part in one completed session."""

    participant_id: str
    session_id: str
    pair_id: str
    programme_id: str
    sequence: int
    minutes: int
    ended_at: datetime

    @property
    def statement_id(self) -> str:
        return attended_statement_id(self.session_id, self.participant_id)


@dataclass(frozen=True)
class CompletedCredit:
    """One person earned credits for a completed pair."""

    credit_id: str
    participant_id: str
    pair_id: str
    programme_id: str
    minutes: int
    credits: float
    issued_at: datetime

    @property
    def statement_id(self) -> str:
        return completed_statement_id(self.credit_id)


def _actor(portal_url: str, participant_id: str) -> dict[str, Any]:
    # By account only: never an email address (mbox) or a name.
    return {"objectType": "Agent", "account": {"homePage": portal_url, "name": participant_id}}


def _activity(iri: str, kind: str, name: str) -> dict[str, Any]:
    return {
        "objectType": "Activity",
        "id": iri,
        "definition": {"type": kind, "name": {"en": name}},
    }


def statement(fact: Attended | CompletedCredit, portal_url: str) -> dict[str, Any]:
    """The full statement for one fact; `portal_url` is the actor's account home page."""
    base = portal_url.rstrip("/")
    programme = {"objectType": "Activity", "id": f"{base}/programmes/{fact.programme_id}"}
    if isinstance(fact, Attended):
        return {
            "id": fact.statement_id,
            "actor": _actor(base, fact.participant_id),
            "verb": {"id": ATTENDED, "display": {"en": "attended"}},
            "object": _activity(
                f"{base}/sessions/{fact.session_id}", MEETING, f"Mentoring session {fact.sequence}"
            ),
            "result": {"duration": iso_duration(fact.minutes)},
            "context": {
                "contextActivities": {
                    "parent": [{"objectType": "Activity", "id": f"{base}/pairs/{fact.pair_id}"}],
                    "grouping": [programme],
                }
            },
            "timestamp": _stamp(fact.ended_at),
        }
    return {
        "id": fact.statement_id,
        "actor": _actor(base, fact.participant_id),
        "verb": {"id": COMPLETED, "display": {"en": "completed"}},
        "object": _activity(f"{base}/pairs/{fact.pair_id}", COURSE, "Reverse mentoring pair"),
        "result": {
            "completion": True,
            "duration": iso_duration(fact.minutes),
            "extensions": {CREDITS_EXTENSION: fact.credits},
        },
        "context": {"contextActivities": {"grouping": [programme]}},
        "timestamp": _stamp(fact.issued_at),
    }
