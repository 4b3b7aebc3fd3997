"""The transactional outbox: events written with their cause, published by a relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from twoway_shared.platform.db import schema_identifier
from twoway_shared.platform.kafka import MAX_REQUEST_BYTES
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.poller import Backoff, Poller
from twoway_shared.platform.tracing import publish_span

_STANDBY_SECONDS = 1.0
_PARTITIONER = DefaultPartitioner()  # what AIOKafkaProducer uses unless told otherwise


@dataclass(frozen=True)
class OutgoingRecord:
    """A Kafka record as it will be published: full topic name, key, value and headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, str], ...]
    event_type: str


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes the relay of a schema."""
    return f"twoway_outbox_{schema_identifier(schema)}"


class OutboxWriter:
    """Appends records to the outbox inside the caller's transaction."""

    def __init__(self, schema: str) -> None:
        s = schema_identifier(schema)
        self._channel = notify_channel(s)
        # One statement, one round trip: the rows in the order given (ids follow it, and the
        # relay publishes in id order), then the NOTIFY, delivered at commit and only if the
        # transaction commits.
        self._insert = f"""
            WITH added AS (
                INSERT INTO {s}.outbox (topic, key, value, headers, event_type)
                SELECT topic, key, value, headers::jsonb, event_type
                FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::text[])
                    WITH ORDINALITY AS r (topic, key, value, headers, event_type, n)
                ORDER BY n
                RETURNING 1)
            SELECT pg_notify($6, '')"""

    async def append(self, conn: asyncpg.Connection, records: Sequence[OutgoingRecord]) -> None:
        if not records:
            return
        await conn.execute(
            self._insert,
            [r.topic for r in records],
            [r.key for r in records],
            [r.value for r in records],
            [orjson.dumps(r.headers).decode() for r in records],
            [r.event_type for r in records],
            self._channel,
        )


class OutboxRelay:
    """Publishes outbox rows in id order with an idempotent producer, then deletes them.

    One relay per schema is active at a time (a session advisory lock); the others wait as
    standbys, so per-key order is kept across instances. The relay sleeps on LISTEN and wakes
    when a transaction that wrote to the outbox commits; a slow poll covers lost wake-ups.
    """

    def __init__(
        self,
        dsn: str,
        schema: str,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        *,
        batch_size: int = 1000,
        poll_seconds: float = 5.0,
    ) -> None:
        s = schema_identifier(schema)
        self._dsn = dsn
        self._lock_key = f"twoway.outbox.{s}"
        self._channel = notify_channel(s)
        self._select = f"SELECT id, topic, key, value, headers FROM {s}.outbox ORDER BY id LIMIT $1"
        self._delete = f"DELETE FROM {s}.outbox WHERE id = ANY($1::bigint[])"
        self._count = f"SELECT count(*) FROM {s}.outbox"
        self._producer = producer
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wake: Callable[[], None] = lambda: None
        self._conn: asyncpg.Connection | None = None
        self._leader = False

    async def run(self, stopping: asyncio.Event) -> None:
        """Relay until `stopping` is set, then publish what is left and return."""
        poller = Poller(
            "outbox relay",
            self._step,
            poll_seconds=self._poll_seconds,
            until_due=self._before_sleep,
            recover=self._close,
            backoff=Backoff(first=0.5, most=10.0),
            drain=True,
        )
        self._wake = poller.wake
        try:
            await poller.run(stopping)
        finally:
            await self._close()

    async def _step(self) -> bool:
        """Publish one batch if this relay leads; True when the batch was full."""
        conn = await self._leading()
        if conn is None:
            return False
        return await self._publish_batch(conn) == self._batch_size

    async def _leading(self) -> asyncpg.Connection | None:
        """The leader's connection, or None while another relay holds the schema's lock."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn)
            self._leader = False
        if not self._leader:
            self._leader = bool(
                await self._conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", self._lock_key
                )
            )
            if not self._leader:
                return None
            await self._conn.add_listener(self._channel, self._on_notify)
        return self._conn

    async def _before_sleep(self) -> float | None:
        """A standby asks for the lock again in a second; the leader updates the backlog."""
        if not self._leader or self._conn is None:
            return _STANDBY_SECONDS
        self._metrics.outbox_backlog.set(await self._conn.fetchval(self._count))
        return None

    async def _close(self) -> None:
        conn, self._conn, self._leader = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _on_notify(self, *_: object) -> None:
        self._wake()

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(self._select, self._batch_size)
        if not rows:
            self._metrics.outbox_backlog.set(0)
            return 0
        # One record batch per partition in id order, so per key, rather than a send per
        # record (a quarter less CPU a record); the idempotent producer keeps each
        # partition's batches in order.
        batches: dict[tuple[str, int], list[BatchBuilder]] = {}
        partitions: dict[str, list[int]] = {}  # each topic's, as the producer knows them now
        for row in rows:
            topic, value = row["topic"], bytes(row["value"])
            key = None if row["key"] is None else bytes(row["key"])
            if topic not in partitions:
                partitions[topic] = sorted(await self._producer.partitions_for(topic))
            # The partition `send` would choose: murmur2 of the key, any one for no key.
            partition = int(_PARTITIONER(key, partitions[topic], partitions[topic]))
            headers = [(name, text.encode()) for name, text in orjson.loads(row["headers"])]
            _check_size(key, value, headers)
            with publish_span(topic, traceparent_in(value)):
                builders = batches.setdefault((topic, partition), [])
                if not builders or not _append(builders[-1], key, value, headers):
                    builders.append(self._producer.create_batch())
                    _append(builders[-1], key, value, headers)
        # Every partition's first batch, then the seconds...: a partition's next batch waits
        # until its last is taken, so the others are queued first.
        futures = [
            await self._producer.send_batch(builders[n], topic, partition=partition)
            for n in range(max(len(b) for b in batches.values()))
            for (topic, partition), builders in batches.items()
            if n < len(builders)
        ]
        await asyncio.gather(*futures)
        await conn.execute(self._delete, [row["id"] for row in rows])
        for topic, count in Counter(row["topic"] for row in rows).items():
            self._metrics.produced.labels(topic).inc(count)
        return len(rows)


def _check_size(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    """Refuse a record larger than a request may be, as `send` does (before it takes a
    sequence number of its partition)."""
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    if size > MAX_REQUEST_BYTES:
        raise MessageSizeTooLargeError(
            f"an outbox record of {size} bytes is larger than a request may be "
            f"({MAX_REQUEST_BYTES} bytes)"
        )


def _append(
    builder: BatchBuilder, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
) -> bool:
    """Add a record to a batch; False when the batch is full (an empty one takes any record)."""
    return builder.append(key=key, value=value, timestamp=None, headers=headers) is not None


_TRACEPARENT_ATTRIBUTE = b'"traceparent":"'
_TRACEPARENT_LENGTH = 55  # 00-<32 hex>-<16 hex>-<2 hex>


def traceparent_in(value: bytes) -> str | None:
    """The `traceparent` of an encoded event (compact JSON, as `encode` writes it), if any."""
    start = value.find(_TRACEPARENT_ATTRIBUTE)
    if start < 0:
        return None
    start += len(_TRACEPARENT_ATTRIBUTE)
    return value[start : start + _TRACEPARENT_LENGTH].decode("ascii", errors="replace")
