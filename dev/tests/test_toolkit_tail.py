"""One-line summaries of records for `twoway tail`, and topic arguments; no broker."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from twoway_dev.toolkit.tail import MAX_LINE_CHARS, Record, resolve_topics, summarise
from twoway_shared.contract import Topic, topic_name
from twoway_shared.contract.examples import EXAMPLE_DATA, example_event

PREFIX = "twoway."
NOON_MS = int(datetime(2027, 1, 4, 12, tzinfo=UTC).timestamp() * 1000)


def record(topic: Topic, value: bytes | None, key: bytes | None, **headers: str) -> Record:
    return Record(topic_name(PREFIX, topic), 0, 7, NOON_MS, key, value, headers)


def test_an_enrolment_shows_its_key_fields_and_no_personal_data() -> None:
    profile = EXAMPLE_DATA["participant.enrolled"]
    value = orjson.dumps(example_event("participant.enrolled"))

    line = summarise(PREFIX, record(Topic.ENROLMENTS, value, b"E12345"))

    assert "enrolments.v1  participant.enrolled  E12345  programme_id=RM-2027 role=mentee" in line
    assert "grade=24" in line
    assert "wants=generative-ai,social-media" in line
    assert len(line) <= MAX_LINE_CHARS
    assert profile["email"] not in line
    assert profile["display_name"] not in line


def test_an_invalid_record_says_why() -> None:
    line = summarise(PREFIX, record(Topic.PAIRS, b"[]", b"P1"))

    assert line == (
        "2027-01-04T12:00:00Z  pairs.v1  INVALID  key=P1  "
        "record value is an array, not a CloudEvent JSON object"
    )


def test_a_dead_letter_shows_where_it_came_from_and_why() -> None:
    dead = record(
        Topic.DEADLETTER,
        b"x",
        None,
        **{
            "x-twoway-error": "record value is not JSON",
            "x-twoway-consumer": "scheduling",
            "x-original-topic": "twoway.session-requests.v1",
            "x-original-partition": "4",
            "x-original-offset": "12",
        },
    )

    assert summarise(PREFIX, dead) == (
        "2027-01-04T12:00:00Z  deadletter.v1  dead-letter  -  "
        "from twoway.session-requests.v1[4]@12 by scheduling:  record value is not JSON"
    )


def test_a_record_outside_the_contract_is_shown_loosely() -> None:
    value = orjson.dumps({"type": "acme.thing", "subject": "X1", "data": {"n": 1}})

    line = Record("other.topic", 0, 0, NOON_MS, None, value, {})

    assert summarise(PREFIX, line) == "2027-01-04T12:00:00Z  other.topic  acme.thing  X1  n=1"


def test_summaries_use_the_event_time() -> None:
    event = example_event("programme.matching_requested", time="2027-02-01T08:30:00+01:00")

    line = summarise(PREFIX, record(Topic.PROGRAMMES, orjson.dumps(event), b"RM-2027"))

    assert line.startswith("2027-02-01T07:30:00Z  programmes.v1  programme.matching_requested")


def test_topic_arguments() -> None:
    assert resolve_topics("p.", ["sessions", "pairs.v1", "raw.topic", "sessions.v1"]) == [
        "p.sessions.v1",
        "p.pairs.v1",
        "raw.topic",
    ]
    assert len(resolve_topics("p.", [])) == len(Topic)
