"""Every example of CONTRACT.md parses, defaults apply and the value rules hold."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from twoway_shared.contract import (
    CONTENT_TYPE,
    EVENT_MODELS,
    EVENT_TOPIC,
    MAX_RECORD_BYTES,
    TOPIC_EVENT_TYPES,
    TOPIC_KEY_FIELD,
    AvailabilityWindow,
    CloudEvent,
    Event,
    PairConfirmed,
    ParticipantEnrolled,
    ProgrammeConfigured,
    SessionScheduled,
    Topic,
    encode,
    event_type_of,
    full_type,
    new_event,
    parse_record,
    partition_key,
    primary_subtag,
    short_type,
    topic_name,
    topic_of,
)
from twoway_shared.contract.examples import EXAMPLE_DATA, example_event, example_record

ALL_TYPES = sorted(EVENT_MODELS)


def key_of(event_type: str, data: dict[str, Any] | None = None) -> bytes:
    topic = EVENT_TOPIC[event_type]
    source = data if data is not None else EXAMPLE_DATA[event_type]
    return str(source[TOPIC_KEY_FIELD[topic]]).encode()


def parse(event_type: str, data: dict[str, Any], **attributes: Any) -> Any:
    value = orjson.dumps(example_event(event_type, data=data, **attributes))
    return parse_record(EVENT_TOPIC[event_type], value, key_of(event_type, data)).data


def profile(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(EXAMPLE_DATA["participant.enrolled"])
    data.update(changes)
    return data


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_event_type_has_a_valid_example(event_type: str) -> None:
    topic = EVENT_TOPIC[event_type]
    event = parse_record(topic, example_record(event_type), key_of(event_type))
    assert event.type == event_type
    assert isinstance(event.data, EVENT_MODELS[event_type])
    assert event.envelope.type == full_type(event_type)


def test_the_envelope_example_of_section_1() -> None:
    value = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "0b6f0c5e-8d0f-4a52-9f55-6f5c8d1d2a10",
            "source": "/portal/hr",
            "type": "twoway.participant.enrolled.v1",
            "time": "2027-01-04T09:00:00Z",
            "subject": "E12345",
            "datacontenttype": "application/json",
            "data": EXAMPLE_DATA["participant.enrolled"],
        }
    )
    event = parse_record(Topic.ENROLMENTS, value, b"E12345")
    assert event.id == "0b6f0c5e-8d0f-4a52-9f55-6f5c8d1d2a10"
    assert event.source == "/portal/hr"
    assert event.envelope.time == datetime(2027, 1, 4, 9, tzinfo=UTC)
    assert event.envelope.subject == "E12345"
    assert isinstance(event.data, ParticipantEnrolled)
    assert event.data.participant_id == "E12345"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_round_trip_new_event_encode_parse(event_type: str) -> None:
    topic = EVENT_TOPIC[event_type]
    original = parse_record(topic, example_record(event_type)).data
    produced = new_event(original, source="/twoway/test", subject="s-1")
    event = parse_record(topic, encode(produced), partition_key(topic, original))
    assert event.data == original
    assert event.envelope == produced


def test_new_event_starts_or_continues_the_correlation() -> None:
    cause = parse_record(
        Topic.PAIRS,
        example_record(
            "pair.confirmed",
            correlationid="corr-1",
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    )
    effect = new_event(cause.data, source="/twoway/scheduling", cause=cause, event_id="e-2")
    assert (effect.id, effect.correlationid, effect.causationid) == ("e-2", "corr-1", cause.id)
    assert effect.traceparent == cause.envelope.traceparent

    first = new_event(cause.data, source="/twoway/matching")
    assert first.correlationid == first.id
    assert first.causationid is None
    assert first.traceparent is None
    assert len(first.id) == 36  # a UUID

    uncorrelated = parse_record(Topic.PAIRS, example_record("pair.confirmed"))
    effect = new_event(cause.data, source="/twoway/scheduling", cause=uncorrelated)
    assert effect.correlationid == uncorrelated.id


def test_encode_is_compact_utc_and_omits_null_attributes() -> None:
    data = PairConfirmed(pair_id="p1", programme_id="RM", mentor_id="m1", mentee_id="e1")
    when = datetime(2027, 1, 4, 10, 30, tzinfo=UTC)
    value = encode(new_event(data, source="/twoway/matching", event_id="id-1", time=when))
    assert b" " not in value
    document = orjson.loads(value)
    assert document["time"] == "2027-01-04T10:30:00Z"
    assert "causationid" not in document
    assert "subject" not in document
    assert "traceparent" not in document
    assert document["type"] == "twoway.pair.confirmed.v1"
    assert document["datacontenttype"] == "application/json"
    assert CONTENT_TYPE == "application/cloudevents+json; charset=utf-8"


def test_emitted_data_times_are_utc_with_z_and_nulls_kept() -> None:
    data = SessionScheduled.model_validate(
        {
            **EXAMPLE_DATA["session.scheduled"],
            "starts_at": "2027-01-11T10:00:00+01:00",
            "ends_at": "2027-01-11T10:30:00+01:00",
        }
    )
    assert data.starts_at == datetime(2027, 1, 11, 9, tzinfo=UTC)
    emitted = orjson.loads(encode(new_event(data, source="/twoway/scheduling")))["data"]
    assert emitted["starts_at"] == "2027-01-11T09:00:00Z"
    withdrawn = parse("participant.withdrawn", {"participant_id": "E1", "programme_id": "RM"})
    assert orjson.loads(encode(new_event(withdrawn, source="/x")))["data"]["reason"] is None


def test_programme_defaults() -> None:
    programme = parse("programme.configured", {"programme_id": "RM-2027"})
    assert isinstance(programme, ProgrammeConfigured)
    assert programme.name == ""
    assert programme.session_minutes == 30
    assert programme.cadence == "weekly"
    assert programme.sessions == 12
    assert programme.starts_on is None  # the day the event is processed
    assert programme.min_notice_hours == 24
    assert programme.reminder_minutes == [1440]
    matching = programme.matching
    assert matching.mode == "continuous"
    assert matching.acceptance_required is False
    assert matching.min_grade_gap == 1
    assert matching.cross_department is True
    assert matching.proposal_ttl_hours == 72
    partial = parse("programme.configured", {"programme_id": "P", "matching": {"mode": "batch"}})
    assert partial.matching.mode == "batch"
    assert partial.matching.min_grade_gap == 1
    assert parse("programme.configured", EXAMPLE_DATA["programme.configured"]).starts_on == date(
        2027, 1, 11
    )


def test_programme_limits_accepted() -> None:
    data = {
        "programme_id": "P",
        "session_minutes": 120,
        "sessions": 52,
        "min_notice_hours": 0,
        "reminder_minutes": [0, 20160, 60, 60],
        "cadence": "fortnightly",
    }
    programme = parse("programme.configured", data)
    assert programme.session_minutes == 120
    assert programme.reminder_minutes == [0, 20160, 60]  # duplicates dropped, order kept
    assert parse("programme.configured", {**data, "reminder_minutes": []}).reminder_minutes == []


def test_participant_defaults() -> None:
    data = profile()
    for optional in ("capacity", "locale", "notify", "revision", "manager_id", "location"):
        del data[optional]
    participant = parse("participant.enrolled", data)
    assert participant.capacity == 1
    assert participant.locale == "en"
    assert participant.notify.email is True
    assert participant.notify.reminders is True
    assert participant.revision == 0
    assert participant.manager_id is None
    assert participant.location is None
    withdrawn = parse("participant.withdrawn", {"participant_id": "E1", "programme_id": "RM"})
    assert withdrawn.erase is False
    assert withdrawn.reason is None
    completed = parse("session.completed", {**EXAMPLE_DATA["session.completed"], "ratings": {}})
    assert completed.ratings.mentor is None
    assert completed.ratings.mentee is None
    scheduled = dict(EXAMPLE_DATA["session.scheduled"])
    del scheduled["revision"]
    assert parse("session.scheduled", scheduled).revision == 0


def test_tags_are_normalised_and_deduplicated() -> None:
    participant = parse(
        "participant.enrolled",
        profile(
            offers=["Generative AI", "generative-ai", "  Machine    Learning ", "SQL"],
            wants=["Social Media", "social   media"],
        ),
    )
    assert participant.offers == ["generative-ai", "machine-learning", "sql"]
    assert participant.wants == ["social-media"]
    assert parse("participant.enrolled", profile(offers=["x" * 64], wants=[])).offers == ["x" * 64]


@pytest.mark.parametrize(
    "language", ["en", "en-GB", "pt-BR", "zh-Hant-TW", "sr-Latn-RS", "de-CH-1996", "es-419", "EN"]
)
def test_bcp47_languages_are_accepted(language: str) -> None:
    participant = parse("participant.enrolled", profile(languages=[language], locale=language))
    assert participant.languages == [language]


def test_languages_match_on_primary_subtag() -> None:
    assert primary_subtag("pt-BR") == primary_subtag("PT") == "pt"
    assert primary_subtag("en-GB") != primary_subtag("es")


@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", "Asia/Kolkata", "UTC"])
def test_iana_time_zones_are_accepted(zone: str) -> None:
    assert parse("participant.enrolled", profile(timezone=zone)).timezone == zone


def test_availability_rules() -> None:
    windows = [{"day": "sun", "start": "00:00", "end": "24:00"}] + [
        {"day": "mon", "start": "09:00", "end": "09:15"}
    ] * 49
    participant = parse("participant.enrolled", profile(availability=windows))
    assert len(participant.availability) == 50
    full_day = participant.availability[0]
    assert (full_day.start_minute, full_day.end_minute, full_day.weekday) == (0, 1440, 6)
    window = AvailabilityWindow(day="mon", start="23:45", end="24:00")
    assert (window.start_minute, window.end_minute, window.weekday) == (1425, 1440, 0)


def test_email_is_checked_and_domain_normalised() -> None:
    participant = parse("participant.enrolled", profile(email="Dana.Whitfield@Example.COM"))
    assert participant.email == "Dana.Whitfield@example.com"
    for address in ("dana@mailhub", "dana@corp.test", "dana+rm@xn--bcher-kva.example"):
        assert parse("participant.enrolled", profile(email=address)).email == address
    idn = parse("participant.enrolled", profile(email="dana@Bücher.example"))
    assert idn.email == "dana@xn--bcher-kva.example"


def test_tolerant_reader_ignores_unknown_fields_and_attributes() -> None:
    data = profile(favourite_colour="green", notify={"email": False, "sms": True})
    value = orjson.dumps(
        example_event(
            "participant.enrolled",
            data=data,
            partitionkey="E12345",
            dataschema="https://example.com/s",
        )
    )
    event = parse_record(Topic.ENROLMENTS, value)  # a record without a key is accepted
    assert isinstance(event.data, ParticipantEnrolled)
    assert event.data.notify.email is False
    assert not hasattr(event.data, "favourite_colour")


def test_optional_attributes_may_be_absent_or_vary() -> None:
    event = example_event("pair.confirmed")
    for attribute in ("time", "subject", "datacontenttype"):
        del event[attribute]
    assert parse_record(Topic.PAIRS, orjson.dumps(event)).envelope.time is None
    for content_type in ("application/json; charset=utf-8", "application/cloudevents+json"):
        record = example_record("pair.confirmed", datacontenttype=content_type)
        assert parse_record(Topic.PAIRS, record).type == "pair.confirmed"


def test_offsets_are_accepted_and_held_in_utc() -> None:
    record = example_record("pair.confirmed", time="2027-01-04T10:00:00.250+01:00")
    time = parse_record(Topic.PAIRS, record).envelope.time
    assert time == datetime(2027, 1, 4, 9, 0, 0, 250000, tzinfo=UTC)
    assert time is not None
    assert time.utcoffset() == timedelta(0)


def test_a_record_of_exactly_one_mib_is_accepted() -> None:
    event = example_event("pair.confirmed")
    event["data"]["padding"] = ""
    size = len(orjson.dumps(event))
    event["data"]["padding"] = "x" * (MAX_RECORD_BYTES - size)
    value = orjson.dumps(event)
    assert len(value) == MAX_RECORD_BYTES
    assert parse_record(Topic.PAIRS, value).type == "pair.confirmed"


def test_topics_and_event_types() -> None:
    assert topic_name("twoway.", Topic.SESSIONS) == "twoway.sessions.v1"
    assert topic_name("acme-", Topic.PAIR_RESPONSES) == "acme-pair-responses.v1"
    assert topic_of("twoway.", "twoway.enrolments.v1") is Topic.ENROLMENTS
    assert topic_of("twoway.", "other.enrolments.v1") is None
    assert topic_of("twoway.", "twoway.unknown.v1") is None
    listed = [t for topic in Topic for t in TOPIC_EVENT_TYPES[topic]]
    assert sorted(listed) == ALL_TYPES  # every event type on exactly one topic
    assert set(TOPIC_KEY_FIELD) == set(Topic) - {Topic.DEADLETTER}
    for event_type, model in EVENT_MODELS.items():
        assert event_type_of(model) == event_type
        assert short_type(full_type(event_type)) == event_type
    assert short_type("twoway.pair.confirmed.v2") is None
    assert short_type("com.example.pair.confirmed") is None
    with pytest.raises(ValueError, match="not the data model"):
        event_type_of(CloudEvent)


def test_partition_keys() -> None:
    enrolled = parse("participant.enrolled", profile())
    assert partition_key(Topic.ENROLMENTS, enrolled) == b"E12345"
    confirmed = PairConfirmed(pair_id="p-1", programme_id="RM", mentor_id="m", mentee_id="e")
    assert partition_key(Topic.PAIRS, confirmed) == b"p-1"
    with pytest.raises(ValueError, match="not published on"):
        partition_key(Topic.SESSIONS, confirmed)


def test_event_is_typed_and_immutable() -> None:
    event: Event[Any] = parse_record(Topic.PAIRS, example_record("pair.confirmed"))
    with pytest.raises(AttributeError):
        event.type = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        event.data.pair_id = "other"
