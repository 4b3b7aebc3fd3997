"""Kafka helpers for tests: publish records and wait, with a deadline, for what arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel
from twoway_shared.contract import (
    EVENT_TOPIC,
    encode,
    event_type_of,
    new_event,
    partition_key,
    topic_name,
)

T = TypeVar("T")

_LOGINS: dict[str, dict[str, Any]] = {}


def authenticate(bootstrap: str, options: dict[str, Any]) -> None:
    """Make every helper here connect to `bootstrap` with these client options (a super-user).

    The helpers take a bootstrap string; a broker that requires SASL is registered once.
    """
    _LOGINS[bootstrap] = dict(options)


def client_options(bootstrap: str) -> dict[str, Any]:
    """aiokafka keyword arguments for `bootstrap`: its registered login, else PLAINTEXT."""
    return _LOGINS.get(bootstrap, {"bootstrap_servers": bootstrap})


@dataclass(frozen=True)
class Received:
    """One record as a test sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


class TopicReader:
    """Reads topics from their beginning into a list, in the background."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self.records: list[Received] = []
        self._changed = asyncio.Condition()
        self._consumer = AIOKafkaConsumer(
            *topics,
            **client_options(bootstrap),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=1000,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()

    async def _read(self) -> None:
        async for msg in self._consumer:
            async with self._changed:
                self.records.append(
                    Received(
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        msg.key,
                        msg.value,
                        {k: v for k, v in (msg.headers or ())},
                    )
                )
                self._changed.notify_all()

    async def wait_for(
        self,
        condition: Callable[[list[Received]], bool],
        *,
        timeout: float = 30.0,
        what: str = "the expected records",
    ) -> list[Received]:
        """Wait until `condition(records)` holds; fail with the records seen after `timeout` s."""

        async def satisfied() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: condition(self.records))

        try:
            await asyncio.wait_for(satisfied(), timeout)
        except TimeoutError:
            seen = [(r.topic, r.key, (r.value or b"")[:120]) for r in self.records[-10:]]
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; {len(self.records)} "
                f"record(s) seen, the last: {seen}"
            ) from None
        return list(self.records)

    def on(self, topic: str) -> list[Received]:
        return [r for r in self.records if r.topic == topic]


@dataclass(frozen=True)
class ToSend:
    """A record a test publishes."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def event(
        cls, prefix: str, data: BaseModel, *, source: str, event_id: str | None = None
    ) -> ToSend:
        """A contract event as a record: its topic under `prefix`, key, and a new envelope."""
        topic = EVENT_TOPIC[event_type_of(type(data))]
        return cls(
            topic_name(prefix, topic),
            encode(new_event(data, source=source, event_id=event_id)),
            partition_key(topic, data),
        )


async def publish(bootstrap: str, records: Sequence[ToSend]) -> None:
    """Publish records in order and wait until all are written."""
    producer = AIOKafkaProducer(
        **client_options(bootstrap), enable_idempotence=True, max_request_size=3 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(r.topic, value=r.value, key=r.key, headers=list(r.headers))
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    condition: Callable[[T], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call `probe` until `condition` holds for its result, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await probe()
        if condition(last):
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


async def wait_until_consumed(
    bootstrap: str, group: str, topics: Sequence[str], *, timeout: float = 30.0
) -> None:
    """Wait until `group` has committed every record now in `topics`: all of it is processed.

    A service commits a record's offset only after its effects committed (or it was
    dead-lettered), so this is a barrier that holds across topics and partitions.
    """
    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=None)
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await consumer.start()
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
        partitions = [
            TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
        ]
        if len({tp.topic for tp in partitions}) != len(set(topics)):
            raise AssertionError(f"some of {list(topics)} do not exist")
        ends = await consumer.end_offsets(partitions)
        targets = {tp: end for tp, end in ends.items() if end > 0}

        async def behind() -> int:
            committed = await admin.list_consumer_group_offsets(group)
            return sum(
                end - (committed[tp].offset if tp in committed else 0)
                for tp, end in targets.items()
            )

        await eventually(behind, lambda n: n <= 0, timeout=timeout, what=f"{group} to catch up")
    finally:
        await admin.close()
        await consumer.stop()
