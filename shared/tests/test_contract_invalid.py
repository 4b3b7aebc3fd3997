"""Records that break the contract are rejected with a reason naming the problem."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from twoway_shared.contract import (
    EVENT_TOPIC,
    MAX_RECORD_BYTES,
    InvalidRecord,
    Topic,
    parse_record,
)
from twoway_shared.contract.examples import example_event, example_record


def with_data(event_type: str, **changes: Any) -> bytes:
    """An example record of `event_type` whose data has `changes` (a None value removes it)."""
    event = example_event(event_type)
    for field, value in changes.items():
        if value is None:
            del event["data"][field]
        else:
            event["data"][field] = value
    return orjson.dumps(event)


def without(event_type: str, attribute: str) -> bytes:
    event = example_event(event_type)
    del event[attribute]
    return orjson.dumps(event)


def edit(event_type: str, change: Callable[[dict[str, Any]], None]) -> bytes:
    """An example record of `event_type` after `change` edits its data in place."""
    event = example_event(event_type)
    change(event["data"])
    return orjson.dumps(event)


def set_window(index: int, **values: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["availability"][index].update(values)

    return change


def oversized() -> bytes:
    event = example_event("pair.confirmed")
    event["data"]["padding"] = ""
    size = len(orjson.dumps(event))
    event["data"]["padding"] = "x" * (MAX_RECORD_BYTES + 1 - size)
    return orjson.dumps(event)


ENROLLED = "participant.enrolled"
PROGRAMME = "programme.configured"
WINDOW = {"day": "mon", "start": "09:00", "end": "10:00"}
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# (case id, topic, record value, record key, a substring the reason must contain)
CASES: list[tuple[str, Topic, bytes | None, bytes | None, str]] = [
    # --- the record as a whole
    ("not json", Topic.ENROLMENTS, b"{not json", None, "not JSON"),
    ("empty value", Topic.ENROLMENTS, b"", None, "not JSON"),
    ("tombstone", Topic.ENROLMENTS, None, None, "no value"),
    ("json array", Topic.ENROLMENTS, b"[1, 2]", None, "an array, not a CloudEvent"),
    ("json string", Topic.ENROLMENTS, b'"hello"', None, "a string, not a CloudEvent"),
    ("json NaN", Topic.ENROLMENTS, b'{"a": NaN}', None, "not JSON"),
    ("not utf-8", Topic.ENROLMENTS, b'{"id": "\xff\xfe"}', None, "not UTF-8"),
    ("over 1 MiB", Topic.PAIRS, oversized(), None, "1048577 bytes; the limit is 1 MiB"),
    ("dead letters not parsed", Topic.DEADLETTER, example_record(ENROLLED), None, "not parsed"),
    # --- the CloudEvents envelope
    ("no specversion", Topic.ENROLMENTS, without(ENROLLED, "specversion"), None,
     "field specversion: required but missing"),
    ("specversion 0.3", Topic.ENROLMENTS, example_record(ENROLLED, specversion="0.3"), None,
     "field specversion"),
    ("specversion number", Topic.ENROLMENTS, example_record(ENROLLED, specversion=1.0), None,
     "field specversion"),
    ("no id", Topic.ENROLMENTS, without(ENROLLED, "id"), None, "field id: required"),
    ("empty id", Topic.ENROLMENTS, example_record(ENROLLED, id=""), None, "field id"),
    ("id 129 chars", Topic.ENROLMENTS, example_record(ENROLLED, id="a" * 129), None,
     "field id: string should have at most 128 characters"),
    ("id a number", Topic.ENROLMENTS, example_record(ENROLLED, id=42), None, "field id"),
    ("no source", Topic.ENROLMENTS, without(ENROLLED, "source"), None, "field source"),
    ("source with spaces", Topic.ENROLMENTS, example_record(ENROLLED, source="hr portal"), None,
     "field source: 'hr portal' is not a URI-reference"),
    ("empty source", Topic.ENROLMENTS, example_record(ENROLLED, source=""), None, "field source"),
    ("no type", Topic.ENROLMENTS, without(ENROLLED, "type"), None, "field type: required"),
    ("unknown type", Topic.ENROLMENTS, example_record(ENROLLED, type="twoway.foo.bar.v1"), None,
     "event type twoway.foo.bar.v1 is not a Twoway event type"),
    ("short type", Topic.ENROLMENTS, example_record(ENROLLED, type="participant.enrolled"), None,
     "is not a Twoway event type"),
    ("type version 2", Topic.ENROLMENTS,
     example_record(ENROLLED, type="twoway.participant.enrolled.v2"), None,
     "not a Twoway event type"),
    ("type for another topic", Topic.ENROLMENTS, example_record("pair.proposed"), None,
     "twoway.pair.proposed.v1 is not accepted on topic enrolments.v1"),
    ("out type on in topic", Topic.SESSION_REQUESTS, example_record("session.scheduled"), None,
     "not accepted on topic session-requests.v1"),
    ("no data", Topic.ENROLMENTS, without(ENROLLED, "data"), None, "field data: required"),
    ("data a list", Topic.ENROLMENTS, example_record(ENROLLED, data=[1]), None, "field data"),
    ("data null", Topic.ENROLMENTS, example_record(ENROLLED, data=None), None, "field data"),
    ("naive time", Topic.ENROLMENTS, example_record(ENROLLED, time="2027-01-04T09:00:00"), None,
     "field time"),
    ("date as time", Topic.ENROLMENTS, example_record(ENROLLED, time="2027-01-04"), None,
     "field time"),
    ("time a number", Topic.ENROLMENTS, example_record(ENROLLED, time=1799999999), None,
     "field time"),
    ("impossible time", Topic.ENROLMENTS, example_record(ENROLLED, time="2027-02-30T09:00:00Z"),
     None, "field time"),
    ("text content type", Topic.ENROLMENTS,
     example_record(ENROLLED, datacontenttype="text/plain"), None, "field datacontenttype"),
    ("bad traceparent", Topic.ENROLMENTS, example_record(ENROLLED, traceparent="00-abc"), None,
     "field traceparent"),
    ("zero trace id", Topic.ENROLMENTS,
     example_record(ENROLLED, traceparent="00-" + "0" * 32 + "-00f067aa0ba902b7-01"), None,
     "field traceparent"),
    ("empty subject", Topic.ENROLMENTS, example_record(ENROLLED, subject=""), None,
     "field subject"),
    ("correlationid 129", Topic.ENROLMENTS, example_record(ENROLLED, correlationid="c" * 129),
     None, "field correlationid"),
    # --- the record key
    ("key mismatch", Topic.ENROLMENTS, example_record(ENROLLED), b"E99999",
     "record key 'E99999' does not match data.participant_id 'E12345'"),
    ("key not utf-8", Topic.ENROLMENTS, example_record(ENROLLED), b"\xff", "record key"),
    ("key is pair not session", Topic.SESSIONS, example_record("session.scheduled"),
     b"9a8f6a52-1f7e-4c59-8f0c-3b2d1e4f5a60", "data.pair_id"),
    # --- participant.enrolled data
    ("missing email", Topic.ENROLMENTS, with_data(ENROLLED, email=None), None,
     "field data.email: required but missing"),
    ("missing offers", Topic.ENROLMENTS, with_data(ENROLLED, offers=None), None,
     "data.offers: required"),
    ("grade as string", Topic.ENROLMENTS, with_data(ENROLLED, grade="5"), None,
     "field data.grade: input should be a valid integer (got \"5\")"),
    ("grade true", Topic.ENROLMENTS, with_data(ENROLLED, grade=True), None, "field data.grade"),
    ("grade 5.0", Topic.ENROLMENTS, with_data(ENROLLED, grade=5.0), None, "field data.grade"),
    ("grade 0", Topic.ENROLMENTS, with_data(ENROLLED, grade=0), None,
     "field data.grade: input should be greater than or equal to 1"),
    ("grade 31", Topic.ENROLMENTS, with_data(ENROLLED, grade=31), None, "field data.grade"),
    ("bad timezone", Topic.ENROLMENTS, with_data(ENROLLED, timezone="Mars/Olympus_Mons"), None,
     "field data.timezone: 'Mars/Olympus_Mons' is not an IANA time zone name"),
    ("timezone path", Topic.ENROLMENTS, with_data(ENROLLED, timezone="../etc/passwd"), None,
     "data.timezone"),
    ("timezone offset", Topic.ENROLMENTS, with_data(ENROLLED, timezone="+01:00"), None,
     "data.timezone"),
    ("start after end", Topic.ENROLMENTS,
     edit(ENROLLED, set_window(0, start="10:00", end="09:00")), None,
     "field data.availability[0]: start 10:00 must be before end 09:00"),
    ("start equals end", Topic.ENROLMENTS,
     edit(ENROLLED, set_window(1, start="14:00", end="14:00")), None,
     "data.availability[1]: start 14:00 must be before end 14:00"),
    ("end 24:30", Topic.ENROLMENTS, edit(ENROLLED, set_window(0, end="24:30")), None,
     "field data.availability[0].end"),
    ("start 24:00", Topic.ENROLMENTS, edit(ENROLLED, set_window(0, start="24:00")), None,
     "field data.availability[0].start"),
    ("start 9:00", Topic.ENROLMENTS, edit(ENROLLED, set_window(0, start="9:00")), None,
     "data.availability[0].start: '9:00' is not a time HH:MM"),
    ("day monday", Topic.ENROLMENTS, edit(ENROLLED, set_window(0, day="monday")), None,
     "field data.availability[0].day"),
    ("51 windows", Topic.ENROLMENTS, with_data(ENROLLED, availability=[WINDOW] * 51), None,
     "field data.availability: list should have at most 50 items"),
    ("no windows", Topic.ENROLMENTS, with_data(ENROLLED, availability=[]), None,
     "field data.availability"),
    ("tag 65 chars", Topic.ENROLMENTS, with_data(ENROLLED, offers=["a" * 65]), None,
     "field data.offers[0]: tag 'aaaaaaaa"),
    ("empty tag", Topic.ENROLMENTS, with_data(ENROLLED, wants=["ok", "   "]), None,
     "field data.wants[1]: tag '' has 0 characters once normalised"),
    ("31 tags", Topic.ENROLMENTS, with_data(ENROLLED, offers=[f"t{i}" for i in range(31)]), None,
     "field data.offers"),
    ("tag a number", Topic.ENROLMENTS, with_data(ENROLLED, offers=[7]), None,
     "field data.offers[0]"),
    ("id with space", Topic.ENROLMENTS, with_data(ENROLLED, participant_id="E 12345"), None,
     "field data.participant_id: 'E 12345' is not an id"),
    ("id starts with dash", Topic.ENROLMENTS, with_data(ENROLLED, manager_id="-E1"), None,
     "field data.manager_id"),
    ("id 65 chars", Topic.ENROLMENTS, with_data(ENROLLED, programme_id="P" * 65), None,
     "field data.programme_id: string should have at most 64 characters"),
    ("participant id a number", Topic.ENROLMENTS, with_data(ENROLLED, participant_id=12345), None,
     "field data.participant_id"),
    ("bad language", Topic.ENROLMENTS, with_data(ENROLLED, languages=["en_GB"]), None,
     "field data.languages[0]: 'en_GB' is not a BCP 47 language tag"),
    ("no languages", Topic.ENROLMENTS, with_data(ENROLLED, languages=[]), None,
     "field data.languages"),
    ("11 languages", Topic.ENROLMENTS, with_data(ENROLLED, languages=["en"] * 11), None,
     "field data.languages"),
    ("bad locale", Topic.ENROLMENTS, with_data(ENROLLED, locale="english (UK)"), None,
     "field data.locale"),
    ("capacity 6", Topic.ENROLMENTS, with_data(ENROLLED, capacity=6), None, "field data.capacity"),
    ("capacity 0", Topic.ENROLMENTS, with_data(ENROLLED, capacity=0), None, "field data.capacity"),
    ("role boss", Topic.ENROLMENTS, with_data(ENROLLED, role="boss"), None,
     "field data.role: input should be 'mentor' or 'mentee' (got \"boss\")"),
    ("bad email", Topic.ENROLMENTS, with_data(ENROLLED, email="dana.example.com"), None,
     "field data.email: not a valid email address"),
    ("email display form", Topic.ENROLMENTS, with_data(ENROLLED, email="Dana <d@example.com>"),
     None, "field data.email"),
    ("empty display name", Topic.ENROLMENTS, with_data(ENROLLED, display_name=""), None,
     "field data.display_name"),
    ("display name 201", Topic.ENROLMENTS, with_data(ENROLLED, display_name="n" * 201), None,
     "field data.display_name"),
    ("department 101", Topic.ENROLMENTS, with_data(ENROLLED, department="d" * 101), None,
     "field data.department"),
    ("empty location", Topic.ENROLMENTS, with_data(ENROLLED, location=""), None,
     "field data.location"),
    ("revision -1", Topic.ENROLMENTS, with_data(ENROLLED, revision=-1), None,
     "field data.revision"),
    ("notify as string", Topic.ENROLMENTS, with_data(ENROLLED, notify={"email": "yes"}), None,
     "field data.notify.email"),
    # --- other events in
    ("withdrawn reason 501", Topic.ENROLMENTS,
     with_data("participant.withdrawn", reason="r" * 501), None, "field data.reason"),
    ("erase as string", Topic.ENROLMENTS, with_data("participant.withdrawn", erase="true"), None,
     "field data.erase"),
    ("session minutes 20", Topic.PROGRAMMES, with_data(PROGRAMME, session_minutes=20), None,
     "field data.session_minutes: input should be a multiple of 15"),
    ("session minutes 135", Topic.PROGRAMMES, with_data(PROGRAMME, session_minutes=135), None,
     "field data.session_minutes"),
    ("sessions 0", Topic.PROGRAMMES, with_data(PROGRAMME, sessions=0), None,
     "field data.sessions"),
    ("sessions 53", Topic.PROGRAMMES, with_data(PROGRAMME, sessions=53), None,
     "field data.sessions"),
    ("six reminders", Topic.PROGRAMMES,
     with_data(PROGRAMME, reminder_minutes=[10, 20, 30, 40, 50, 60]), None,
     "field data.reminder_minutes: list should have at most 5 items"),
    ("reminder too early", Topic.PROGRAMMES, with_data(PROGRAMME, reminder_minutes=[20161]), None,
     "field data.reminder_minutes[0]"),
    ("cadence daily", Topic.PROGRAMMES, with_data(PROGRAMME, cadence="daily"), None,
     "field data.cadence"),
    ("impossible date", Topic.PROGRAMMES, with_data(PROGRAMME, starts_on="2027-13-01"), None,
     "field data.starts_on"),
    ("datetime as date", Topic.PROGRAMMES,
     with_data(PROGRAMME, starts_on="2027-01-11T00:00:00Z"), None, "field data.starts_on"),
    ("notice 337 hours", Topic.PROGRAMMES, with_data(PROGRAMME, min_notice_hours=337), None,
     "field data.min_notice_hours"),
    ("matching mode", Topic.PROGRAMMES, with_data(PROGRAMME, matching={"mode": "sometimes"}),
     None, "field data.matching.mode"),
    ("grade gap 30", Topic.PROGRAMMES, with_data(PROGRAMME, matching={"min_grade_gap": 30}),
     None, "field data.matching.min_grade_gap"),
    ("no programme id", Topic.PROGRAMMES,
     with_data("programme.matching_requested", programme_id=None), None,
     "field data.programme_id: required"),
    ("response maybe", Topic.PAIR_RESPONSES,
     with_data("pair.response_submitted", response="maybe"), None, "field data.response"),
    ("rating 6", Topic.SESSION_REQUESTS, with_data("session.attendance_recorded", rating=6), None,
     "field data.rating"),
    ("rating 0", Topic.SESSION_REQUESTS, with_data("session.attendance_recorded", rating=0), None,
     "field data.rating"),
    ("attended as string", Topic.SESSION_REQUESTS,
     with_data("session.attendance_recorded", attended="yes"), None, "field data.attended"),
    ("comment 2001", Topic.SESSION_REQUESTS,
     with_data("session.attendance_recorded", comment="c" * 2001), None, "field data.comment"),
    ("naive not_before", Topic.SESSION_REQUESTS,
     with_data("session.reschedule_requested", not_before="2027-01-12T00:00:00"), None,
     "field data.not_before"),
    ("no session id", Topic.SESSION_REQUESTS,
     with_data("session.reschedule_requested", session_id=None), None, "data.session_id"),
    # --- events out
    ("score 1.5", Topic.PAIRS, with_data("pair.proposed", score=1.5), None, "field data.score"),
    ("score as string", Topic.PAIRS, with_data("pair.proposed", score="0.5"), None,
     "field data.score"),
    ("negative overlap", Topic.PAIRS,
     edit("pair.proposed", lambda d: d["reasons"].update(weekly_overlap_minutes=-1)), None,
     "field data.reasons.weekly_overlap_minutes"),
    ("declined bored", Topic.PAIRS, with_data("pair.declined", reason="bored"), None,
     "field data.reason"),
    ("ends before starts", Topic.SESSIONS,
     with_data("session.scheduled", ends_at="2027-01-11T08:00:00Z"), None,
     "starts_at 2027-01-11T09:00:00Z must be before ends_at 2027-01-11T08:00:00Z"),
    ("sequence 0", Topic.SESSIONS, with_data("session.scheduled", sequence=0), None,
     "field data.sequence"),
    ("reschedule reason", Topic.SESSIONS, with_data("session.rescheduled", reason="whim"), None,
     "field data.reason"),
    ("rating by mentor 6", Topic.SESSIONS,
     with_data("session.completed", ratings={"mentor": 6}), None, "field data.ratings.mentor"),
    ("cancel reason", Topic.SESSIONS, with_data("session.cancelled", reason="rain"), None,
     "field data.reason"),
    ("channel sms", Topic.NOTIFICATIONS, with_data("notification.sent", channel="sms"), None,
     "field data.channel"),
    ("empty error", Topic.NOTIFICATIONS, with_data("notification.failed", error=""), None,
     "field data.error"),
    ("feedback rating 0", Topic.FEEDBACK, with_data("session.feedback_submitted", rating=0), None,
     "field data.rating"),
    ("fit maybe", Topic.FEEDBACK, with_data("session.feedback_submitted", fit="maybe"), None,
     "field data.fit"),
    ("no goals", Topic.FEEDBACK, with_data("pair.goals_set", goals=[]), None, "field data.goals"),
    ("health sick", Topic.PROGRESS, with_data("pair.health_changed", health="sick"), None,
     "field data.health"),
    ("credits 0.3", Topic.PROGRESS, with_data("credit.awarded", credits=0.3), None,
     "whole number of fifths"),
    ("rematch completed", Topic.PROGRESS,
     with_data("pair.rematch_requested", reason="completed"), None, "field data.reason"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("topic", "value", "key", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_invalid_record_is_rejected_with_a_reason(
    topic: Topic, value: bytes | None, key: bytes | None, expected: str
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_record(topic, value, key)
    assert expected in str(caught.value)


def test_the_table_is_large_enough_and_uses_every_topic() -> None:
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)
    assert {case[1] for case in CASES} == set(Topic)


def test_all_errors_are_reported_together_and_bounded() -> None:
    event = example_event("participant.enrolled")
    event["data"].update(grade=0, capacity=9, role="boss")
    with pytest.raises(InvalidRecord) as caught:
        parse_record(Topic.ENROLMENTS, orjson.dumps(event))
    reason = str(caught.value)
    assert "data.role" in reason
    assert "data.grade" in reason
    assert "data.capacity" in reason
    assert reason.count("; ") == 2

    event = copy.deepcopy(example_event("participant.enrolled"))
    event["data"]["availability"] = [{"day": "x", "start": "y", "end": "z"}] * 50
    with pytest.raises(InvalidRecord) as caught:
        parse_record(Topic.ENROLMENTS, orjson.dumps(event))
    assert len(str(caught.value)) <= 1000


def test_every_event_type_is_invalid_on_every_other_topic() -> None:
    for event_type, home in EVENT_TOPIC.items():
        for topic in Topic:
            if topic in (home, Topic.DEADLETTER):
                continue
            with pytest.raises(InvalidRecord, match="is not accepted on topic"):
                parse_record(topic, example_record(event_type))
