"""One valid example of every event type, as JSON-shaped `data`, for documentation and tests."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from twoway_shared.contract.envelope import full_type
from twoway_shared.contract.topics import EVENT_TOPIC, TOPIC_KEY_FIELD

_PAIR = {
    "pair_id": "5d1c2a4e-7b7f-4d36-9d43-0f6c1c3e2b11",
    "programme_id": "RM-2027",
    "mentor_id": "E20001",
    "mentee_id": "E12345",
}
_SESSION = {"session_id": "9a8f6a52-1f7e-4c59-8f0c-3b2d1e4f5a60", **_PAIR, "sequence": 1}
_BOOKED = {
    **_SESSION,
    "total": 12,
    "starts_at": "2027-01-11T09:00:00Z",
    "ends_at": "2027-01-11T09:30:00Z",
}
_PROFILE = {
    "participant_id": "E12345",
    "programme_id": "RM-2027",
    "role": "mentee",
    "display_name": "Dana Whitfield",
    "email": "dana.whitfield@example.com",
    "grade": 24,
    "department": "Finance",
    "manager_id": "E00042",
    "location": "London",
    "timezone": "Europe/London",
    "languages": ["en-GB", "fr"],
    "offers": ["Leadership", "corporate finance"],
    "wants": ["Generative AI", "social media"],
    "availability": [
        {"day": "mon", "start": "09:00", "end": "12:00"},
        {"day": "thu", "start": "14:00", "end": "24:00"},
    ],
    "capacity": 1,
    "locale": "en-GB",
    "notify": {"email": True, "reminders": True},
    "revision": 0,
}

EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "programme.configured": {
        "programme_id": "RM-2027",
        "name": "Reverse mentoring 2027",
        "session_minutes": 30,
        "cadence": "weekly",
        "sessions": 12,
        "starts_on": "2027-01-11",
        "min_notice_hours": 24,
        "reminder_minutes": [1440, 60],
        "matching": {
            "mode": "continuous",
            "acceptance_required": True,
            "min_grade_gap": 1,
            "cross_department": True,
            "proposal_ttl_hours": 72,
            "min_score": 0.2,
        },
        "progress": {
            "fit_check": True,
            "inactive_warning_days": 21,
            "inactive_close_days": 42,
            "credit_minutes": 50,
        },
        "coordinator_email": "mentoring.office@example.com",
    },
    "programme.matching_requested": {"programme_id": "RM-2027"},
    "participant.enrolled": _PROFILE,
    "participant.updated": {**_PROFILE, "location": None, "revision": 1},
    "participant.withdrawn": {
        "participant_id": "E12345",
        "programme_id": "RM-2027",
        "reason": "Moved to another role",
        "erase": False,
    },
    "pair.response_submitted": {
        "pair_id": _PAIR["pair_id"],
        "participant_id": "E12345",
        "response": "accept",
        "reason": None,
    },
    "session.reschedule_requested": {
        "session_id": _SESSION["session_id"],
        "pair_id": _PAIR["pair_id"],
        "requested_by": "E12345",
        "reason": "Board meeting",
        "not_before": "2027-01-12T00:00:00+00:00",
    },
    "session.attendance_recorded": {
        "session_id": _SESSION["session_id"],
        "pair_id": _PAIR["pair_id"],
        "participant_id": "E20001",
        "attended": True,
        "rating": 5,
        "comment": "Great questions about prompt design.",
    },
    "pair.proposed": {
        **_PAIR,
        "score": 0.85,
        "reasons": {
            "mentee_learns": ["generative-ai"],
            "mentor_learns": ["leadership"],
            "languages": ["en"],
            "weekly_overlap_minutes": 180,
        },
        "expires_at": "2027-01-07T09:00:00Z",
    },
    "pair.confirmed": dict(_PAIR),
    "pair.declined": {**_PAIR, "declined_by": "E12345", "reason": "declined"},
    "pair.ended": {**_PAIR, "reason": "withdrawn", "withdrawn_by": "E20001"},
    "session.scheduled": {**_BOOKED, "revision": 0},
    "session.rescheduled": {
        **_BOOKED,
        "starts_at": "2027-01-12T10:00:00Z",
        "ends_at": "2027-01-12T10:30:00Z",
        "previous_starts_at": "2027-01-11T09:00:00Z",
        "reason": "requested",
        "revision": 1,
    },
    "session.cancelled": {**_SESSION, "revision": 2, "reason": "pair_ended"},
    "session.completed": {**_SESSION, "minutes": 30, "ratings": {"mentor": 4, "mentee": None}},
    "session.missed": {**_SESSION, "absent": ["E12345"]},
    "session.request_rejected": {
        "session_id": _SESSION["session_id"],
        "pair_id": _PAIR["pair_id"],
        "requested_by": "E12345",
        "request": "reschedule",
        "reason": "The session has already taken place.",
    },
    "session.booking_failed": {
        **_PAIR,
        "booked": 9,
        "total": 12,
        "reason": "No common free time in weeks 10 to 12.",
    },
    "notification.sent": {
        "notification_id": "c0d3a1b2-0000-4000-8000-000000000001",
        "participant_id": "E12345",
        "channel": "email",
        "template": "session_reminder",
        "cause_id": "0b6f0c5e-8d0f-4a52-9f55-6f5c8d1d2a10",
        "session_id": _SESSION["session_id"],
    },
    "notification.failed": {
        "notification_id": "c0d3a1b2-0000-4000-8000-000000000002",
        "participant_id": "E12345",
        "channel": "email",
        "template": "pair_confirmed",
        "cause_id": "0b6f0c5e-8d0f-4a52-9f55-6f5c8d1d2a10",
        "session_id": None,
        "error": "SMTP 550 5.1.1 mailbox unavailable",
    },
    "pair.response_rejected": {
        "pair_id": _PAIR["pair_id"],
        "participant_id": "E99999",
        "response": "accept",
        "reason": "You are not one of the two people of this pair.",
    },
    "session.feedback_submitted": {
        "session_id": _SESSION["session_id"],
        "pair_id": _PAIR["pair_id"],
        "participant_id": "E12345",
        "learned": ["Prompt design", "generative-ai"],
        "rating": 5,
        "fit": "good",
        "comment": "Clear examples; next time more on agents.",
    },
    "pair.goals_set": {
        "pair_id": _PAIR["pair_id"],
        "participant_id": "E12345",
        "goals": [
            {"tag": "generative-ai", "note": "Use it for board papers"},
            {"tag": "social media", "note": None},
        ],
    },
    "pair.health_changed": {
        **_PAIR,
        "health": "at_risk",
        "reasons": ["missed_in_a_row"],
        "sessions_completed": 3,
        "sessions_missed": 2,
        "last_activity_at": "2027-02-01T09:30:00Z",
    },
    "pair.rematch_requested": {**_PAIR, "reason": "not_a_fit"},
    "pair.completed": {
        **_PAIR,
        "sessions_completed": 11,
        "sessions_missed": 1,
        "minutes": 330,
        "mentee_learned": ["generative-ai", "prompt-design"],
        "mentor_learned": ["leadership", "stakeholder-management"],
    },
    "credit.awarded": {
        "credit_id": "7e1d5b0a-2c3f-5a4e-9b8d-1f2e3d4c5b6a",
        "participant_id": "E12345",
        "programme_id": "RM-2027",
        "pair_id": _PAIR["pair_id"],
        "role": "mentee",
        "sessions_completed": 11,
        "minutes": 330,
        "credits": 6.6,
        "topics": ["generative-ai", "prompt-design"],
        "issued_at": "2027-04-05T10:00:00Z",
    },
}
"""Valid `data` for every short event type, as it would appear on the wire."""

EXAMPLE_ENVELOPE: dict[str, Any] = {
    "specversion": "1.0",
    "id": "0b6f0c5e-8d0f-4a52-9f55-6f5c8d1d2a10",
    "source": "/portal/hr",
    "type": "twoway.participant.enrolled.v1",
    "time": "2027-01-04T09:00:00Z",
    "subject": "E12345",
    "datacontenttype": "application/json",
}
"""The envelope of the example in CONTRACT.md section 1 (without `data`)."""


def example_event(event_type: str, **changes: Any) -> dict[str, Any]:
    """A valid CloudEvent of `event_type` as a JSON object; `changes` replace attributes."""
    data = copy.deepcopy(EXAMPLE_DATA[event_type])
    event = {
        **EXAMPLE_ENVELOPE,
        "type": full_type(event_type),
        "subject": data[TOPIC_KEY_FIELD[EVENT_TOPIC[event_type]]],
        "data": data,
    }
    event.update(changes)
    return event


def example_record(event_type: str, **changes: Any) -> bytes:
    """The record value of `example_event(event_type, **changes)`."""
    return orjson.dumps(example_event(event_type, **changes))
