"""`twoway accept|decline --wait`: which pairs.v1 event is the outcome, and the deadline."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import TopicReader
from twoway_dev.toolkit.cli import main
from twoway_dev.toolkit.outcome import Outcome, outcome_of
from twoway_shared.contract import Topic, encode, new_event, parse_record, topic_name
from twoway_shared.contract.events import (
    PairConfirmed,
    PairResponseRejected,
    PairResponseSubmitted,
)

RESPONSE = PairResponseSubmitted(pair_id="P1", participant_id="X9", response="accept")
CAUSE = parse_record(
    Topic.PAIR_RESPONSES, encode(new_event(RESPONSE, source="/portal/test")), b"P1"
)
MEMBERS = {"pair_id": "P1", "programme_id": "RM", "mentor_id": "M1", "mentee_id": "E1"}


def caused(data: object, cause: object = CAUSE) -> bytes:
    return encode(new_event(data, source="/twoway/matching", cause=cause))  # type: ignore[arg-type]


def test_the_outcome_is_the_event_the_response_caused() -> None:
    rejected = PairResponseRejected(
        pair_id="P1", participant_id="X9", response="accept", reason="not one of this pair"
    )
    found = outcome_of(CAUSE.envelope.id, caused(rejected), b"P1")
    assert found == Outcome("pair.response_rejected", rejected.model_dump(mode="json"))
    assert found.rejected
    assert found.describe("P1", 15) == "response rejected: not one of this pair"
    confirmed = outcome_of(CAUSE.envelope.id, caused(PairConfirmed(**MEMBERS)), b"P1")
    assert confirmed is not None
    assert not confirmed.rejected
    assert confirmed.describe("P1", 15) == "pair P1 confirmed: both people accepted"


def test_events_caused_by_something_else_or_not_events_are_not_outcomes() -> None:
    other = parse_record(
        Topic.PAIR_RESPONSES, encode(new_event(RESPONSE, source="/portal/test")), b"P1"
    )
    assert outcome_of(CAUSE.envelope.id, caused(PairConfirmed(**MEMBERS), other), b"P1") is None
    assert outcome_of(CAUSE.envelope.id, b"not json", b"P1") is None
    assert "no change to pair P1 within 2 s" in Outcome(None).describe("P1", 2)


@pytest.mark.infra
async def test_wait_with_nobody_answering_publishes_and_reports_no_change(
    infra: Infra,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in infra.kafka_env("admin").items():  # the toolkit runs as an operator
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TWOWAY_TOPIC_PREFIX", topic_prefix)
    argv = ["accept", "P1", "E1", "--wait", "--wait-seconds", "1.5"]
    assert await asyncio.to_thread(main, argv) == 0
    assert "no change to pair P1 within 1.5 s" in capsys.readouterr().out
    responses = topic_name(topic_prefix, Topic.PAIR_RESPONSES)
    async with TopicReader(infra.kafka_bootstrap, [responses]) as reader:
        (record,) = await reader.wait_for(lambda rs: len(rs) >= 1, what="the response")
    assert orjson.loads(record.value or b"")["data"]["participant_id"] == "E1"


def test_wait_seconds_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["accept", "P1", "E1", "--wait", "--wait-seconds", "0"]) == 2
    assert "must be more than 0" in capsys.readouterr().err
