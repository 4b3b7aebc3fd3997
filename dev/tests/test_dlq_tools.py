"""`twoway dlq replay` and `twoway dlq purge` against the real broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import TopicReader
from twoway_dev.toolkit.cli import main
from twoway_dev.toolkit.deadletters import read_letters
from twoway_dev.toolkit.tail import partitions_of
from twoway_shared.contract import Topic, topic_name
from twoway_shared.platform.kafka import ensure_topics
from twoway_shared.platform.settings import Settings

pytestmark = pytest.mark.infra

OLD_MS = 1_600_000_000_000  # 2020-09-13


@pytest.fixture
def kafka_env(infra: Infra, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in infra.kafka_env("admin").items():  # the toolkit, as an operator
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TWOWAY_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("TWOWAY_TOPIC_PARTITIONS", "2")
    return topic_prefix


async def twoway(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def letter_headers(
    prefix: str, consumer: str, topic: Topic, offset: int
) -> list[tuple[str, bytes]]:
    """What the platform's dead-lettering adds to a record's own headers."""
    return [
        ("content-type", b"application/cloudevents+json; charset=utf-8"),
        ("trace", b"abc"),
        ("x-twoway-error", f"field data.pair_id: required but missing ({offset})".encode()),
        ("x-twoway-consumer", consumer.encode()),
        ("x-original-topic", topic_name(prefix, topic).encode()),
        ("x-original-partition", b"0"),
        ("x-original-offset", str(offset).encode()),
    ]


Letter = tuple[bytes, bytes, list[tuple[str, bytes]], int | None]
"""A dead letter to write: key, value, headers, timestamp (ms, or None for now)."""


async def dead_letter(infra: Infra, prefix: str, letters: list[Letter]) -> None:
    """Write dead letters (key, value, headers, timestamp) to partition 0 of the topic, in order."""
    settings = Settings()
    await ensure_topics(settings, [settings.topic(t) for t in Topic])
    producer = AIOKafkaProducer(**infra.kafka_admin_options())
    await producer.start()
    try:
        for key, value, headers, timestamp_ms in letters:
            await producer.send_and_wait(
                settings.topic(Topic.DEADLETTER),
                value=value,
                key=key,
                headers=headers,
                partition=0,
                timestamp_ms=timestamp_ms,
            )
    finally:
        await producer.stop()


async def records_on(infra: Infra, topic: str) -> int:
    """How many records a topic holds now, from the brokers' offsets."""
    partitions = [TopicPartition(topic, p) for p in await partitions_of(Settings(), topic)]
    consumer = AIOKafkaConsumer(**infra.kafka_admin_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(end[tp] - start[tp] for tp in partitions)


async def test_replay_one_by_offset_restores_key_value_and_headers_once(
    infra: Infra, kafka_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = kafka_env
    headers = [letter_headers(prefix, "scheduling", Topic.PAIRS, 10 + n) for n in range(2)]
    # K0 and K1, each with its own original offset (10 and 11).
    letters: list[Letter] = [
        (f"K{n}".encode(), f'{{"bad": {n}}}'.encode(), headers[n], None) for n in range(2)
    ]
    await dead_letter(infra, prefix, letters)
    assert await twoway("dlq", "replay", "--offset", "1") == 0
    assert "replayed 0:1 to" in capsys.readouterr().out
    assert await twoway("dlq", "replay", "--offset", "1") == 0
    output = capsys.readouterr()
    assert "skipped 0:1: replayed before" in output.err
    assert "replayed 0, already replayed 1" in output.out

    pairs = topic_name(prefix, Topic.PAIRS)
    assert await records_on(infra, pairs) == 1  # one copy, not two
    async with TopicReader(infra.kafka_bootstrap, [pairs]) as reader:
        (record,) = await reader.wait_for(lambda rs: len(rs) >= 1, what="the replayed record")
    assert record.key == b"K1"
    assert record.value == b'{"bad": 1}'
    assert record.headers == {
        "content-type": b"application/cloudevents+json; charset=utf-8",
        "trace": b"abc",
        "x-twoway-replay-of": b"0:1",
    }


async def test_replay_all_matching_a_filter_skips_the_rest_and_earlier_replays(
    infra: Infra, kafka_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = kafka_env
    await dead_letter(
        infra,
        prefix,
        [
            (b"A", b"a", letter_headers(prefix, "scheduling", Topic.PAIRS, 1), None),
            (b"B", b"b", letter_headers(prefix, "notifications", Topic.SESSIONS, 2), None),
            (b"C", b"c", letter_headers(prefix, "scheduling", Topic.PAIRS, 3), None),
        ],
    )
    assert await twoway("dlq", "replay", "--all", "--consumer", "scheduling", "--dry-run") == 0
    assert "would replay 2" in capsys.readouterr().out
    assert await twoway("dlq", "replay", "--offset", "0") == 0
    assert await twoway("dlq", "replay", "--all", "--consumer", "scheduling") == 0
    assert "replayed 1, already replayed 1, refused 0" in capsys.readouterr().out
    assert await twoway("dlq", "replay", "--all", "--topic", "pairs") == 0
    assert "replayed 0, already replayed 2" in capsys.readouterr().out

    async with TopicReader(
        infra.kafka_bootstrap, [topic_name(prefix, Topic.PAIRS), topic_name(prefix, Topic.SESSIONS)]
    ) as reader:
        records = await reader.wait_for(lambda rs: len(rs) >= 2, what="two replayed records")
    assert await records_on(infra, topic_name(prefix, Topic.SESSIONS)) == 0
    assert await records_on(infra, topic_name(prefix, Topic.PAIRS)) == 2
    assert sorted((r.topic, r.key) for r in records) == [
        (topic_name(prefix, Topic.PAIRS), b"A"),
        (topic_name(prefix, Topic.PAIRS), b"C"),
    ]
    assert await twoway("dlq", "replay", "--all", "--consumer", "nobody") == 1


async def test_purge_deletes_only_dead_letters_older_than_the_time(
    infra: Infra, kafka_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = kafka_env
    old = letter_headers(prefix, "matching", Topic.ENROLMENTS, 5)
    await dead_letter(
        infra,
        prefix,
        [
            (b"old1", b"1", old, OLD_MS),
            (b"old2", b"2", old, OLD_MS + 1000),
            (b"new", b"3", old, None),
        ],
    )
    assert await twoway("dlq", "purge", "--before", "2021-01-01T00:00:00Z", "--dry-run") == 0
    assert "would delete 2 dead letter(s)" in capsys.readouterr().out
    assert len(await read_letters(Settings())) == 3
    assert await twoway("dlq", "purge", "--before", "2021-01-01T00:00:00Z") == 0
    assert "deleted 2 dead letter(s)" in capsys.readouterr().out
    left = await read_letters(Settings())
    assert [(d.key, d.offset) for d in left] == [(b"new", 2)]
    assert await twoway("dlq", "purge", "--before", "2021-01-01T00:00:00Z") == 0
    assert "deleted 0 dead letter(s)" in capsys.readouterr().out
    assert await twoway("dlq", "purge", "--before", "yesterday") == 2
