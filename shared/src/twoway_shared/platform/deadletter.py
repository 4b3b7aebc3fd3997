"""Dead letters: a record a service cannot accept is copied unchanged with the reason."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from twoway_shared.platform.db import schema_identifier
from twoway_shared.platform.metrics import Metrics

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000
TRUNCATED_BYTES = 512 * 1024


class DeadLetters:
    """Copies a record to `{P}deadletter.v1` (CONTRACT.md section 6), once per record.

    The record's coordinates are noted in the same transaction as the send is confirmed, so a
    consumer group rewound to the start does not dead-letter the same record again.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        producer: AIOKafkaProducer,
        *,
        topic: str,
        consumer: str,
        metrics: Metrics,
    ) -> None:
        s = schema_identifier(schema)
        self._pool = pool
        self._producer = producer
        self._topic = topic
        self._consumer = consumer
        self._metrics = metrics
        self._note = (
            f"INSERT INTO {s}.dead_letters (topic, kafka_partition, kafka_offset)"
            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true"
        )

    async def send(self, record: Any, reason: str) -> None:
        """Dead-letter an aiokafka ConsumerRecord with a reason a person can act on."""
        reason = " ".join(reason.split())[:MAX_REASON_CHARS]
        async with self._pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                self._note, record.topic, record.partition, record.offset
            )
            if not first_time:
                return
            headers = [*(record.headers or ()), *self.headers(record, reason)]
            try:
                await self._send(record.value, record.key, headers)
            except MessageSizeTooLargeError:
                # Even compressed, the copy is over the broker's limit (a record over 1 MiB is
                # one reason to dead-letter it). Keep the first part, say so, and go on:
                # nothing about a bad record may stop the good ones behind it.
                size = len(record.value or b"")
                headers.append(("x-twoway-truncated-from", str(size).encode()))
                await self._send((record.value or b"")[:TRUNCATED_BYTES], record.key, headers)
        self._metrics.dead_lettered.labels(record.topic).inc()
        # The reason can quote the record (personal data): it goes to the topic, not the log.
        log.warning(
            "record dead-lettered",
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )

    async def _send(self, value: bytes | None, key: bytes | None, headers: list[Any]) -> None:
        future = await self._producer.send(self._topic, value=value, key=key, headers=headers)
        await future

    def headers(self, record: Any, reason: str) -> list[tuple[str, bytes]]:
        return [
            ("x-twoway-error", reason.encode()),
            ("x-twoway-consumer", self._consumer.encode()),
            ("x-original-topic", str(record.topic).encode()),
            ("x-original-partition", str(record.partition).encode()),
            ("x-original-offset", str(record.offset).encode()),
        ]
