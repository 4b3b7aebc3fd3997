"""The transactional outbox: events written with their cause, published by a relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer

from twoway_shared.platform.db import schema_identifier
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.tracing import publish_span

log = logging.getLogger(__name__)


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
        self._insert = (
            f"INSERT INTO {s}.outbox (topic, key, value, headers, event_type)"
            " VALUES ($1, $2, $3, $4::jsonb, $5)"
        )

    async def append(self, conn: asyncpg.Connection, records: Sequence[OutgoingRecord]) -> None:
        if not records:
            return
        await conn.executemany(
            self._insert,
            [
                (r.topic, r.key, r.value, json.dumps([list(h) for h in r.headers]), r.event_type)
                for r in records
            ],
        )
        # Delivered at commit, and only if the transaction commits.
        await conn.execute("SELECT pg_notify($1, '')", self._channel)


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
        self._wake = asyncio.Event()

    async def run(self, stopping: asyncio.Event) -> None:
        """Relay until `stopping` is set, then publish what is left and return."""
        backoff = 0.5
        while not stopping.is_set():
            try:
                await self._lead(stopping)
                backoff = 0.5
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outbox relay lost its database connection", extra={"error": str(exc)})
            except Exception:
                log.exception("outbox relay failed; retrying")
            if not stopping.is_set():
                await _wait(stopping, backoff)
                backoff = min(backoff * 2, 10.0)

    async def _lead(self, stopping: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn)
        try:
            while not await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", self._lock_key
            ):
                if await _wait(stopping, 1.0):
                    return
            await conn.add_listener(self._channel, self._on_notify)
            while True:
                self._wake.clear()
                published = await self._publish_batch(conn)
                if published == self._batch_size:
                    continue
                if stopping.is_set():
                    return  # drained after the consumers stopped
                self._metrics.outbox_backlog.set(await conn.fetchval(self._count))
                waker = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stopping.wait())
                try:
                    await asyncio.wait(
                        {waker, stopper},
                        timeout=self._poll_seconds,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    waker.cancel()
                    stopper.cancel()
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(self._select, self._batch_size)
        if not rows:
            self._metrics.outbox_backlog.set(0)
            return 0
        # Sends are pipelined; the idempotent producer keeps them in order per partition.
        futures = []
        for row in rows:
            value = bytes(row["value"])
            with publish_span(row["topic"], traceparent_in(value)):
                futures.append(
                    await self._producer.send(
                        row["topic"],
                        value=value,
                        key=None if row["key"] is None else bytes(row["key"]),
                        headers=[
                            (name, text.encode()) for name, text in json.loads(row["headers"])
                        ],
                    )
                )
        await asyncio.gather(*futures)
        await conn.execute(self._delete, [row["id"] for row in rows])
        for row in rows:
            self._metrics.produced.labels(row["topic"]).inc()
        return len(rows)


_TRACEPARENT_ATTRIBUTE = b'"traceparent":"'
_TRACEPARENT_LENGTH = 55  # 00-<32 hex>-<16 hex>-<2 hex>


def traceparent_in(value: bytes) -> str | None:
    """The `traceparent` of an encoded event (compact JSON, as `encode` writes it), if any."""
    start = value.find(_TRACEPARENT_ATTRIBUTE)
    if start < 0:
        return None
    start += len(_TRACEPARENT_ATTRIBUTE)
    return value[start : start + _TRACEPARENT_LENGTH].decode("ascii", errors="replace")


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait for an event at most `seconds`; True when it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()
