"""What matching made of a pair response: the `--wait` of `twoway accept` and `twoway decline`.

The outcome is the pairs.v1 event caused by the response (its `causationid` is the response's
id): `pair.confirmed`, `pair.declined` or `pair.response_rejected`. An accept that still
waits for the partner, or a response to a pair no longer proposed, has no event: the deadline
passes with no change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from twoway_shared.contract import InvalidRecord, Topic, parse_record
from twoway_shared.platform.kafka import client_options
from twoway_shared.platform.settings import Settings

from twoway_dev.toolkit.publish import Outgoing, connect, create_topics, publish
from twoway_dev.toolkit.tail import partitions_of

OUTCOME_TYPES = frozenset({"pair.confirmed", "pair.declined", "pair.response_rejected"})
DEFAULT_WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class Outcome:
    """The event a response caused, or none (`event_type` None) within the deadline."""

    event_type: str | None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> bool:
        return self.event_type == "pair.response_rejected"

    def describe(self, pair_id: str, waited: float) -> str:
        """One line for the person who sent the response."""
        if self.event_type == "pair.confirmed":
            return f"pair {pair_id} confirmed: both people accepted"
        if self.event_type == "pair.declined":
            return f"pair {pair_id} declined ({self.data.get('reason', 'declined')})"
        if self.rejected:
            return f"response rejected: {self.data.get('reason', '')}"
        return (
            f"no change to pair {pair_id} within {waited:g} s: an accept waits for the partner "
            "to accept too, and a pair already confirmed, declined or expired takes no response"
        )


def outcome_of(response_id: str, value: bytes | None, key: bytes | None) -> Outcome | None:
    """The outcome a pairs.v1 record holds for the response `response_id`, if it holds one."""
    try:
        event = parse_record(Topic.PAIRS, value, key)
    except InvalidRecord:
        return None
    if event.type not in OUTCOME_TYPES or event.envelope.causationid != response_id:
        return None
    return Outcome(event.type, event.data.model_dump(mode="json"))


async def publish_and_wait(settings: Settings, record: Outgoing, seconds: float) -> Outcome:
    """Publish a response, then wait up to `seconds` for the pairs.v1 event it causes.

    The reader is positioned at the current end of pairs.v1 before the response is published,
    so the outcome cannot be missed however fast matching answers.
    """
    await create_topics(settings, {Topic.PAIRS, record.topic})
    name = settings.topic(Topic.PAIRS)
    partitions = [TopicPartition(name, p) for p in await partitions_of(settings, name)]
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(settings))
    await connect(settings, consumer.start)
    try:
        consumer.assign(partitions)
        for partition, offset in (await consumer.end_offsets(partitions)).items():
            consumer.seek(partition, offset)
        await publish(settings, [record])
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(timeout_ms=max(1, int(min(left, 0.5) * 1000)))
            for messages in batch.values():
                for message in messages:
                    found = outcome_of(record.event.id, message.value, message.key)
                    if found is not None:
                        return found
    finally:
        await consumer.stop()
    return Outcome(None)
