"""The `twoway` command against the real broker: what it publishes, tails and lists."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import Received, TopicReader, ToSend, publish
from twoway_dev.toolkit.cli import main
from twoway_dev.toolkit.generate import generate_cohort
from twoway_dev.toolkit.inputs import to_csv
from twoway_shared.contract import (
    CONTENT_TYPE,
    ProgrammeMatchingRequested,
    Topic,
    encode,
    new_event,
    parse_record,
    topic_name,
)
from twoway_shared.platform.kafka import ensure_topics
from twoway_shared.platform.settings import Settings

pytestmark = pytest.mark.infra


@pytest.fixture
def kafka_env(infra: Infra, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at the test broker under this test's own topic prefix."""
    # Operators publish as the super-user (the input topics have no service writer).
    for name, value in infra.kafka_env("admin").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TWOWAY_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("TWOWAY_TOPIC_PARTITIONS", "3")
    return topic_prefix


async def twoway(*argv: str) -> int:
    """Run the CLI in-process, in a thread, as a script would (it runs its own event loop)."""
    return await asyncio.to_thread(main, list(argv))


async def create(*topics: Topic) -> None:
    """Create topics before publishing to them by hand (the broker does not auto-create)."""
    settings = Settings()
    await ensure_topics(settings, [settings.topic(topic) for topic in topics])


def types_of(records: list[Received], topic: Topic) -> list[str]:
    return [parse_record(topic, r.value, r.key).type for r in records]


async def test_enrol_publishes_exactly_the_rows_keyed_by_participant(
    infra: Infra, kafka_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cohort = generate_cohort(6, seed=5, programme_id="RM-T")
    export = tmp_path / "hr.csv"
    export.write_text(to_csv(cohort))

    assert await twoway("enrol", str(export), "--source", "/portal/hr") == 0

    enrolments = topic_name(kafka_env, Topic.ENROLMENTS)
    async with TopicReader(infra.kafka_bootstrap, [enrolments]) as reader:
        records = await reader.wait_for(lambda rs: len(rs) >= 6, what="six enrolments")
    assert sorted(r.key or b"" for r in records) == sorted(
        p["participant_id"].encode() for p in cohort
    )
    for record in records:
        event = parse_record(Topic.ENROLMENTS, record.value, record.key)
        assert event.type == "participant.enrolled"
        assert event.source == "/portal/hr"
        assert record.headers["content-type"] == CONTENT_TYPE.encode()
    by_id = {p["participant_id"]: p for p in cohort}
    assert all(
        orjson.loads(r.value or b"")["data"] == by_id[r.key.decode()] for r in records if r.key
    )
    assert "published 6 participant.enrolled event(s), invalid 0" in capsys.readouterr().out


async def test_configure_and_withdraw_with_erase_publish_their_types(
    infra: Infra, kafka_env: str
) -> None:
    configure = ("programme", "configure", "RM-T", "--sessions", "6", "--mode", "batch")
    assert await twoway(*configure) == 0
    assert await twoway("programme", "match", "RM-T") == 0
    assert await twoway("withdraw", "E100", "RM-T", "--erase", "--reason", "left") == 0

    programmes = topic_name(kafka_env, Topic.PROGRAMMES)
    enrolments = topic_name(kafka_env, Topic.ENROLMENTS)
    async with TopicReader(infra.kafka_bootstrap, [programmes, enrolments]) as reader:
        await reader.wait_for(lambda rs: len(rs) >= 3, what="three events")
        assert types_of(reader.on(programmes), Topic.PROGRAMMES) == [
            "programme.configured",
            "programme.matching_requested",
        ]
        [withdrawn] = reader.on(enrolments)
    event = parse_record(Topic.ENROLMENTS, withdrawn.value, withdrawn.key)
    assert event.type == "participant.withdrawn"
    assert event.envelope.data == {
        "participant_id": "E100",
        "programme_id": "RM-T",
        "reason": "left",
        "erase": True,
    }


async def test_dlq_lists_a_dead_letter_with_its_reason(
    infra: Infra, kafka_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    original = topic_name(kafka_env, Topic.PAIR_RESPONSES)
    await create(Topic.DEADLETTER)
    await publish(
        infra.kafka_bootstrap,
        [
            ToSend(
                topic_name(kafka_env, Topic.DEADLETTER),
                value=b'{"not": "an event"}',
                key=b"P-77",
                headers=(
                    ("x-twoway-error", b"record value is not a CloudEvent: field id missing"),
                    ("x-twoway-consumer", b"matching"),
                    ("x-original-topic", original.encode()),
                    ("x-original-partition", b"2"),
                    ("x-original-offset", b"41"),
                ),
            )
        ],
    )

    assert await twoway("dlq") == 0

    [line] = capsys.readouterr().out.splitlines()
    fields = line.split("\t")
    assert fields[1:5] == ["matching", f"{original}[2]@41", "(no type)", "P-77"]
    assert fields[5] == "record value is not a CloudEvent: field id missing"


async def test_dlq_without_dead_letters_says_so(
    kafka_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await twoway("dlq", "--max", "5") == 0
    assert "no dead letters" in capsys.readouterr().err


async def test_tail_summarises_events_from_the_beginning(
    infra: Infra, kafka_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ProgrammeMatchingRequested(programme_id="RM-T")
    event = new_event(data, source="/portal/admin", subject="RM-T")
    programmes = topic_name(kafka_env, Topic.PROGRAMMES)
    await create(Topic.PROGRAMMES)
    await publish(
        infra.kafka_bootstrap,
        [
            ToSend(programmes, encode(event), b"RM-T"),
            ToSend(programmes, b"not json", b"RM-T"),
        ],
    )

    assert (
        await twoway("tail", "programmes", "--from-beginning", "--max", "2", "--timeout", "20") == 0
    )

    first, second = capsys.readouterr().out.splitlines()
    assert "programmes.v1  programme.matching_requested  RM-T" in first
    assert "programmes.v1  INVALID  key=RM-T  record value is not JSON" in second
