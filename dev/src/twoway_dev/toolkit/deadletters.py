"""Operators' dead-letter tools: replay dead letters to their topics, purge old ones.

Replay publishes a dead letter's key, value and headers (less the `x-twoway-*` and
`x-original-*` headers the dead-lettering added) to its original topic, with one header of its
own, `x-twoway-replay-of: <partition>:<offset>` of the dead letter. Before publishing, the
original topics are read from the oldest selected dead letter's time on, and a dead letter whose
marker is already there is skipped: replaying twice does not publish a second copy.

Purge deletes, on every partition of the dead-letter topic, the records older than a time
(Kafka's DeleteRecords: the partition's start moves forward; nothing else changes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError
from twoway_shared.contract import Topic
from twoway_shared.platform.kafka import client_options, idempotent_producer
from twoway_shared.platform.settings import Settings

from twoway_dev.toolkit.publish import KafkaTrouble, connect
from twoway_dev.toolkit.tail import STALL_SECONDS, partitions_of

REPLAY_MARKER = "x-twoway-replay-of"
STRIPPED_PREFIXES = ("x-twoway-", "x-original-")


@dataclass(frozen=True)
class Letter:
    """A dead letter as read from the topic: where it is, and the record it holds."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", errors="replace")
        return None

    @property
    def marker(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def original_topic(self) -> str | None:
        return self.header("x-original-topic")

    @property
    def consumer(self) -> str | None:
        return self.header("x-twoway-consumer")

    @property
    def error(self) -> str:
        return self.header("x-twoway-error") or ""

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The original record's headers, and the marker of this replay."""
        kept = [(k, v) for k, v in self.headers if not k.startswith(STRIPPED_PREFIXES)]
        return [*kept, (REPLAY_MARKER, self.marker.encode())]


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay: one by its coordinates, or all matching every filter."""

    partition: int | None = None
    offset: int | None = None
    consumer: str | None = None
    original_topic: str | None = None
    error_contains: str | None = None

    def matches(self, letter: Letter) -> bool:
        if self.offset is not None:
            return letter.offset == self.offset and letter.partition == (self.partition or 0)
        return (
            (self.consumer is None or letter.consumer == self.consumer)
            and (self.original_topic is None or letter.original_topic == self.original_topic)
            and (self.error_contains is None or self.error_contains.lower() in letter.error.lower())
        )


@dataclass(frozen=True)
class ReplayReport:
    replayed: list[Letter]
    already: list[Letter]
    refused: list[tuple[Letter, str]]


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_options(settings),
    )


async def _read(
    settings: Settings,
    topic: str,
    keep: Callable[[TopicPartition, Any], None],
    *,
    since_ms: int | None = None,
) -> None:
    """Pass every record of `topic` (from `since_ms` on, if given) to `keep`, up to its end."""
    partitions = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    if not partitions:
        return
    consumer = _consumer(settings)
    await connect(settings, consumer.start)
    try:
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        start = await consumer.beginning_offsets(partitions)
        if since_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
            start = {tp: end[tp] if at is None else at.offset for tp, at in found.items()}
        for tp in partitions:
            consumer.seek(tp, start[tp])
        remaining = {tp for tp in partitions if start[tp] < end[tp]}
        progress_at = time.monotonic()
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset < end[tp]:
                        keep(tp, message)
                progress_at = time.monotonic()
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if time.monotonic() - progress_at > STALL_SECONDS:
                raise KafkaTrouble(f"reading {topic} stalled for {STALL_SECONDS:.0f} s")
    finally:
        await consumer.stop()


async def read_letters(settings: Settings) -> list[Letter]:
    """Every dead letter now on the topic, oldest first per partition."""
    letters: list[Letter] = []

    def keep(tp: TopicPartition, message: Any) -> None:
        letters.append(
            Letter(
                tp.partition,
                message.offset,
                message.timestamp,
                message.key,
                message.value,
                tuple(message.headers or ()),
            )
        )

    await _read(settings, settings.topic(Topic.DEADLETTER), keep)
    return sorted(letters, key=lambda d: (d.partition, d.offset))


async def replayed_markers(settings: Settings, topics: Iterable[str], since_ms: int) -> set[str]:
    """Markers of replays already on `topics`, looking at records from `since_ms` on."""
    markers: set[str] = set()

    def keep(_: TopicPartition, message: Any) -> None:
        for key, value in message.headers or ():
            if key == REPLAY_MARKER:
                markers.add(value.decode("utf-8", errors="replace"))

    for topic in sorted(set(topics)):
        await _read(settings, topic, keep, since_ms=since_ms)
    return markers


async def replay(
    settings: Settings, selection: Selection, *, dry_run: bool = False
) -> ReplayReport:
    """Publish the selected dead letters to their original topics, each at most once."""
    chosen = [d for d in await read_letters(settings) if selection.matches(d)]
    refused: list[tuple[Letter, str]] = []
    candidates: list[Letter] = []
    for letter in chosen:
        if not letter.original_topic:
            refused.append((letter, "it has no x-original-topic header"))
        elif letter.header("x-twoway-truncated-from") is not None:
            refused.append((letter, "it holds only the first part of a record over the limit"))
        else:
            candidates.append(letter)
    if not candidates:
        return ReplayReport([], [], refused)
    since = min(d.timestamp_ms for d in candidates)
    seen = await replayed_markers(settings, {d.original_topic or "" for d in candidates}, since)
    already = [d for d in candidates if d.marker in seen]
    todo = [d for d in candidates if d.marker not in seen]
    if dry_run or not todo:
        return ReplayReport(todo if dry_run else [], already, refused)
    producer = idempotent_producer(settings, client_id="twoway-cli-replay")
    await connect(settings, producer.start)
    try:
        futures = [
            await producer.send(
                d.original_topic or "", value=d.value, key=d.key, headers=d.replay_headers()
            )
            for d in todo
        ]
        for future in futures:
            await future
    except KafkaError as exc:
        raise KafkaTrouble(f"replaying failed: {exc}") from None
    finally:
        await producer.stop()
    return ReplayReport(todo, already, refused)


async def purge(settings: Settings, before: datetime, *, dry_run: bool = False) -> dict[int, int]:
    """Delete the dead letters older than `before`; partition -> records deleted."""
    topic = settings.topic(Topic.DEADLETTER)
    partitions = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    if not partitions:
        return {}
    consumer = _consumer(settings)
    await connect(settings, consumer.start)
    try:
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        cut_ms = int(before.timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, cut_ms))
    finally:
        await consumer.stop()
    upto = {tp: end[tp] if at is None else at.offset for tp, at in found.items()}
    counts = {tp.partition: max(0, upto[tp] - start[tp]) for tp in partitions}
    if dry_run or not any(counts.values()):
        return counts
    admin = AIOKafkaAdminClient(**client_options(settings))
    await connect(settings, admin.start)
    try:
        await admin.delete_records(
            {
                tp: RecordsToDelete(before_offset=upto[tp])
                for tp in partitions
                if counts[tp.partition]
            }
        )
    except KafkaError as exc:
        raise KafkaTrouble(f"deleting records of {topic} failed: {exc}") from None
    finally:
        await admin.close()
    return counts
