"""Reading topics for operators: one-line event summaries, following topics, dead letters."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from twoway_shared.contract import InvalidRecord, Topic, parse_record, short_type, topic_of
from twoway_shared.platform.kafka import client_options
from twoway_shared.platform.settings import Settings

from twoway_dev.toolkit.publish import KafkaTrouble, connect

PERSONAL_FIELDS = frozenset({"display_name", "email", "comment", "availability"})
"""Fields a summary leaves out: personal data, and values too long for one line."""

MAX_VALUE_CHARS = 40
MAX_LINE_CHARS = 300
STALL_SECONDS = 30.0


@dataclass(frozen=True)
class Record:
    """A consumed record, as the toolkit shows it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, str]

    @classmethod
    def of(cls, message: Any) -> Record:
        """From an aiokafka `ConsumerRecord`."""
        headers = {k: v.decode("utf-8", errors="replace") for k, v in message.headers or ()}
        return cls(
            message.topic,
            message.partition,
            message.offset,
            message.timestamp,
            message.key,
            message.value,
            headers,
        )

    @property
    def when(self) -> str:
        return _clock(datetime.fromtimestamp(self.timestamp_ms / 1000, UTC))

    @property
    def key_text(self) -> str:
        return "-" if self.key is None else self.key.decode("utf-8", errors="replace")


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_topics(prefix: str, names: Sequence[str]) -> list[str]:
    """Topic arguments as deployed names: `sessions`, `sessions.v1` or a full name; none = all."""
    if not names:
        return [f"{prefix}{topic.value}" for topic in Topic]
    known = {topic.value: topic for topic in Topic}
    resolved = []
    for name in names:
        topic = known.get(name) or known.get(f"{name}.v1")
        resolved.append(f"{prefix}{topic.value}" if topic else name)
    return list(dict.fromkeys(resolved))


def _shown(value: Any) -> str | None:
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, list):
        if not value or not all(isinstance(item, str | int | float) for item in value):
            return None
        text = ",".join(str(item) for item in value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if not text:
        return None
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def key_fields(data: Mapping[str, Any], skip: str | None = None) -> str:
    """`name=value` for the short fields of `data` (one level into objects), no personal data."""
    parts = []
    for name, value in data.items():
        if name in PERSONAL_FIELDS:
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for inner, item in items:
            shown = _shown(item)
            if shown is not None and shown != skip:
                parts.append(f"{name}.{inner}={shown}" if inner else f"{name}={shown}")
    return " ".join(parts)


def _line(*parts: str) -> str:
    text = "  ".join(part for part in parts if part)
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 1] + "…"


def summarise(prefix: str, record: Record) -> str:
    """One readable line: time, topic, event type, subject and key fields (or why it is invalid)."""
    topic = topic_of(prefix, record.topic)
    shown_topic = topic.value if topic else record.topic
    if topic is Topic.DEADLETTER:
        h = record.headers
        origin = (
            f"from {h.get('x-original-topic', '?')}[{h.get('x-original-partition', '?')}]"
            f"@{h.get('x-original-offset', '?')} by {h.get('x-twoway-consumer', '?')}:"
        )
        error = h.get("x-twoway-error", "(no x-twoway-error header)")
        return _line(record.when, shown_topic, "dead-letter", record.key_text, origin, error)
    if topic is None:
        return _line(record.when, shown_topic, *_loose(record))
    try:
        event = parse_record(topic, record.value, record.key)
    except InvalidRecord as exc:
        return _line(record.when, shown_topic, "INVALID", f"key={record.key_text}", exc.reason)
    envelope = event.envelope
    when = _clock(envelope.time) if envelope.time else record.when
    subject = envelope.subject or record.key_text
    fields = key_fields(event.data.model_dump(mode="json"), skip=subject)
    return _line(when, shown_topic, event.type, subject, fields)


def _loose(record: Record) -> tuple[str, str, str]:
    """Type, subject and data fields of a record on a topic outside the contract, if it has them."""
    try:
        document = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return ("(not JSON)", record.key_text, "")
    if not isinstance(document, dict):
        return ("(not an event)", record.key_text, "")
    full = str(document.get("type", "(no type)"))
    data = document.get("data")
    subject = str(document.get("subject") or record.key_text)
    fields = key_fields(data, skip=subject) if isinstance(data, dict) else ""
    return (short_type(full) or full, subject, fields)


def _consumer(settings: Settings, *topics: str, from_beginning: bool) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        metadata_max_age_ms=5000,
        **client_options(settings),
    )


async def follow(
    settings: Settings,
    topics: Sequence[str],
    emit: Callable[[Record], None],
    *,
    from_beginning: bool = False,
    max_records: int | None = None,
    idle_timeout: float | None = None,
) -> int:
    """Pass records of `topics` to `emit` until `max_records`, or `idle_timeout` s with none."""
    consumer = _consumer(settings, *topics, from_beginning=from_beginning)
    await connect(settings, consumer.start)
    count = 0
    last = time.monotonic()
    try:
        while max_records is None or count < max_records:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    if max_records is not None and count >= max_records:
                        break
                    emit(Record.of(message))
                    count += 1
                    last = time.monotonic()
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                break
    finally:
        await consumer.stop()
    return count


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter and why it was rejected (CONTRACT.md section 6)."""

    record: Record
    error: str
    consumer: str
    original: str
    event_type: str

    @classmethod
    def of(cls, record: Record) -> DeadLetter:
        h = record.headers
        original = (
            f"{h.get('x-original-topic', '?')}[{h.get('x-original-partition', '?')}]"
            f"@{h.get('x-original-offset', '?')}"
        )
        event_type, *_ = _loose(record)
        return cls(
            record,
            error=h.get("x-twoway-error", "(no x-twoway-error header)"),
            consumer=h.get("x-twoway-consumer", "?"),
            original=original,
            event_type=event_type,
        )


@dataclass(frozen=True)
class BadRecord:
    """One rejected record and its dead letters: one per service that consumed and refused it."""

    letters: tuple[DeadLetter, ...]

    @property
    def first(self) -> DeadLetter:
        return self.letters[0]

    @property
    def consumers(self) -> str:
        return ",".join(dict.fromkeys(d.consumer for d in self.letters))

    @property
    def error(self) -> str:
        """The reason, once when every service gave the same, else each service's own."""
        reasons = dict.fromkeys(d.error for d in self.letters)
        if len(reasons) == 1:
            return next(iter(reasons))
        return " | ".join(f"{d.consumer}: {d.error}" for d in self.letters)


def group_dead_letters(letters: Sequence[DeadLetter]) -> list[BadRecord]:
    """Dead letters of the same original record together, in the order first seen."""
    groups: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        known = "?" not in letter.original
        where = letter.original if known else f"{letter.record.partition}@{letter.record.offset}"
        groups.setdefault(where, []).append(letter)
    return [BadRecord(tuple(group)) for group in groups.values()]


async def partitions_of(settings: Settings, name: str) -> list[int]:
    """The partition numbers of a topic; none if it does not exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await connect(settings, admin.start)
    try:
        [description] = await admin.describe_topics([name])
    finally:
        await admin.close()
    if description["error_code"] != 0:
        return []
    return sorted(p["partition"] for p in description["partitions"])


async def read_dead_letters(settings: Settings, max_records: int | None = None) -> list[DeadLetter]:
    """Every dead letter from the beginning to the current end (at most `max_records`)."""
    name = settings.topic(Topic.DEADLETTER)
    partitions = [TopicPartition(name, p) for p in await partitions_of(settings, name)]
    letters: list[DeadLetter] = []
    if not partitions:
        return letters
    consumer = _consumer(settings, from_beginning=True)
    await connect(settings, consumer.start)
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        remaining = set(partitions)
        progress_at = time.monotonic()
        while remaining and (max_records is None or len(letters) < max_records):
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for messages in batch.values():
                letters.extend(DeadLetter.of(Record.of(m)) for m in messages)
                progress_at = time.monotonic()
            for partition in list(remaining):
                if await consumer.position(partition) >= end[partition]:
                    remaining.discard(partition)
            if time.monotonic() - progress_at > STALL_SECONDS:
                raise KafkaTrouble(
                    f"reading {name} stalled for {STALL_SECONDS:.0f} s before its end; "
                    f"is Kafka at {settings.kafka_bootstrap_servers} healthy?"
                )
    finally:
        await consumer.stop()
    letters.sort(key=lambda d: (d.record.timestamp_ms, d.record.partition, d.record.offset))
    return letters[:max_records]
