"""Topic names, the event types each topic carries and each topic's partition-key field."""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    """A contract topic; the deployed name is the configured prefix + the value."""

    PROGRAMMES = "programmes.v1"
    ENROLMENTS = "enrolments.v1"
    PAIR_RESPONSES = "pair-responses.v1"
    PAIRS = "pairs.v1"
    SESSION_REQUESTS = "session-requests.v1"
    SESSIONS = "sessions.v1"
    NOTIFICATIONS = "notifications.v1"
    FEEDBACK = "feedback.v1"
    PROGRESS = "progress.v1"
    DEADLETTER = "deadletter.v1"


DEFAULT_TOPIC_PREFIX = "twoway."

TOPIC_EVENT_TYPES: dict[Topic, frozenset[str]] = {
    Topic.PROGRAMMES: frozenset({"programme.configured", "programme.matching_requested"}),
    Topic.ENROLMENTS: frozenset(
        {"participant.enrolled", "participant.updated", "participant.withdrawn"}
    ),
    Topic.PAIR_RESPONSES: frozenset({"pair.response_submitted"}),
    Topic.PAIRS: frozenset(
        {
            "pair.proposed",
            "pair.confirmed",
            "pair.declined",
            "pair.ended",
            "pair.response_rejected",
        }
    ),
    Topic.SESSION_REQUESTS: frozenset(
        {"session.reschedule_requested", "session.attendance_recorded"}
    ),
    Topic.SESSIONS: frozenset(
        {
            "session.scheduled",
            "session.rescheduled",
            "session.cancelled",
            "session.completed",
            "session.missed",
            "session.request_rejected",
            "session.booking_failed",
        }
    ),
    Topic.NOTIFICATIONS: frozenset({"notification.sent", "notification.failed"}),
    Topic.FEEDBACK: frozenset({"session.feedback_submitted", "pair.goals_set"}),
    Topic.PROGRESS: frozenset(
        {"pair.health_changed", "pair.rematch_requested", "pair.completed", "credit.awarded"}
    ),
    # Dead letters are copies of rejected records, kept unchanged and never parsed.
    Topic.DEADLETTER: frozenset(),
}
"""Short event types accepted on each topic; any other type there makes a record invalid."""

TOPIC_KEY_FIELD: dict[Topic, str] = {
    Topic.PROGRAMMES: "programme_id",
    Topic.ENROLMENTS: "participant_id",
    Topic.PAIR_RESPONSES: "pair_id",
    Topic.PAIRS: "pair_id",
    Topic.SESSION_REQUESTS: "pair_id",
    Topic.SESSIONS: "pair_id",
    Topic.NOTIFICATIONS: "participant_id",
    Topic.FEEDBACK: "pair_id",
    Topic.PROGRESS: "pair_id",
}
"""The `data` field whose UTF-8 bytes are the record key (dead letters keep the original key)."""

EVENT_TOPIC: dict[str, Topic] = {
    event_type: topic for topic, types in TOPIC_EVENT_TYPES.items() for event_type in types
}
"""Short event type -> the one topic it is published on."""


DAY_MS = 24 * 60 * 60 * 1000

TOPIC_CONFIGS: dict[Topic, dict[str, str]] = {
    # Profiles (names, emails) are upserts keyed by participant: compaction keeps only each
    # person's latest record, so an older profile, and after a withdrawal with `erase` every
    # profile, leaves the log within 7 days while a replay still rebuilds everyone's state.
    Topic.ENROLMENTS: {"cleanup.policy": "compact", "max.compaction.lag.ms": str(7 * DAY_MS)},
    # Dead letters are verbatim copies of rejected records (names, emails): kept 14 days.
    Topic.DEADLETTER: {"cleanup.policy": "delete", "retention.ms": str(14 * DAY_MS)},
}
"""Kafka topic settings Twoway sets on the topics it creates (docs/security.md)."""


def topic_name(prefix: str, topic: Topic) -> str:
    """The deployed name of a topic: `topic_name("twoway.", Topic.PAIRS)` is `twoway.pairs.v1`."""
    return f"{prefix}{topic.value}"


def topic_of(prefix: str, name: str) -> Topic | None:
    """The contract topic a deployed topic name stands for under `prefix`, or None."""
    if not name.startswith(prefix):
        return None
    try:
        return Topic(name[len(prefix) :])
    except ValueError:
        return None
