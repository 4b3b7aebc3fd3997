"""Kafka I/O of the toolkit: connect with a clear error, create topics, publish contract events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import BaseModel
from twoway_shared.contract import (
    CONTENT_TYPE,
    EVENT_TOPIC,
    CloudEvent,
    Topic,
    encode,
    event_type_of,
    new_event,
    partition_key,
)
from twoway_shared.platform.kafka import ensure_topics, idempotent_producer
from twoway_shared.platform.settings import Settings

DEFAULT_SOURCE = "/twoway/cli"
CONNECT_TIMEOUT_SECONDS = 30.0


class KafkaTrouble(Exception):
    """Kafka could not be reached, or did not take every record; the message says what to do."""


def unreachable(settings: Settings, detail: object) -> KafkaTrouble:
    """The error for a broker that does not answer."""
    return KafkaTrouble(
        f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: is it running? "
        f"(twoway-stack up)\n  ({detail})"
    )


async def connect(settings: Settings, start: Callable[[], Awaitable[Any]]) -> None:
    """Start a Kafka client, turning a broker that does not answer into `KafkaTrouble`."""
    try:
        await asyncio.wait_for(start(), CONNECT_TIMEOUT_SECONDS)
    except TimeoutError:
        raise unreachable(settings, f"no answer in {CONNECT_TIMEOUT_SECONDS:.0f} s") from None
    except (KafkaConnectionError, OSError) as exc:
        raise unreachable(settings, exc) from None


@dataclass(frozen=True)
class Outgoing:
    """One record to publish: the event, its topic, key and value."""

    topic: Topic
    key: bytes
    event: CloudEvent

    @property
    def value(self) -> bytes:
        return encode(self.event)

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [("content-type", CONTENT_TYPE.encode())]


def outgoing(data: BaseModel, *, source: str = DEFAULT_SOURCE) -> Outgoing:
    """The record of a contract event `data`: its topic, partition key, and a new envelope."""
    topic = EVENT_TOPIC[event_type_of(type(data))]
    key = partition_key(topic, data)
    return Outgoing(topic, key, new_event(data, source=source, subject=key.decode()))


async def create_topics(settings: Settings, topics: set[Topic]) -> None:
    """Create the topics about to be used if they are missing."""
    names = [settings.topic(topic) for topic in sorted(topics)]
    try:
        await asyncio.wait_for(ensure_topics(settings, names), CONNECT_TIMEOUT_SECONDS)
    except TimeoutError:
        raise unreachable(settings, f"no answer in {CONNECT_TIMEOUT_SECONDS:.0f} s") from None
    except (KafkaConnectionError, OSError) as exc:
        raise unreachable(settings, exc) from None
    except (KafkaError, RuntimeError) as exc:
        raise KafkaTrouble(f"could not create topics {', '.join(names)}: {exc}") from None


async def publish(
    settings: Settings,
    records: Sequence[Outgoing],
    *,
    on_sent: Callable[[], None] | None = None,
) -> None:
    """Create missing topics, then publish `records` in order and wait until Kafka has them all."""
    if not records:
        return
    await create_topics(settings, {record.topic for record in records})
    producer = idempotent_producer(settings, client_id="twoway-cli")
    await connect(settings, producer.start)
    delivered = 0

    def done(future: asyncio.Future[Any]) -> None:
        nonlocal delivered
        if not future.cancelled() and future.exception() is None:
            delivered += 1
            if on_sent is not None:
                on_sent()

    try:
        futures = []
        for record in records:
            future = await producer.send(
                settings.topic(record.topic),
                value=record.value,
                key=record.key,
                headers=record.headers,
            )
            future.add_done_callback(done)
            futures.append(future)
        await asyncio.gather(*futures)
    except KafkaError as exc:
        raise KafkaTrouble(
            f"publishing failed after {delivered} of {len(records)} events were delivered: {exc}"
        ) from None
    finally:
        await producer.stop()
