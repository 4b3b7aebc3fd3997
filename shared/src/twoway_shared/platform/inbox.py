"""The inbox: dedupe of consumed events on (source, id), inside the handler's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from twoway_shared.platform.db import schema_identifier


@dataclass(frozen=True)
class Claim:
    """One consumed event to claim: its identity and where it was read."""

    source: str
    event_id: str
    topic: str
    partition: int
    offset: int


class Inbox:
    """Claims an event once; a second claim of the same (source, id) returns False."""

    def __init__(self, schema: str) -> None:
        s = schema_identifier(schema)
        self._claim = (
            f"INSERT INTO {s}.inbox (source, event_id, topic, kafka_partition, kafka_offset)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true"
        )
        # One statement for a whole batch (one round trip instead of one per record).
        self._claim_many = (
            f"INSERT INTO {s}.inbox (source, event_id, topic, kafka_partition, kafka_offset)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[])"
            " ON CONFLICT DO NOTHING RETURNING source, event_id"
        )

    async def claim(
        self,
        conn: asyncpg.Connection,
        *,
        source: str,
        event_id: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> bool:
        """True when this event is new; the row commits with the handler's writes."""
        return bool(await conn.fetchval(self._claim, source, event_id, topic, partition, offset))

    async def claim_many(self, conn: asyncpg.Connection, claims: Sequence[Claim]) -> list[bool]:
        """For each claim in order, True when it is new (a repeat within the batch is not)."""
        first: dict[tuple[str, str], int] = {}
        for i, c in enumerate(claims):
            first.setdefault((c.source, c.event_id), i)
        unique = [claims[i] for i in sorted(first.values())]
        rows = await conn.fetch(
            self._claim_many,
            [c.source for c in unique],
            [c.event_id for c in unique],
            [c.topic for c in unique],
            [c.partition for c in unique],
            [c.offset for c in unique],
        )
        new = {(r["source"], r["event_id"]) for r in rows}
        return [
            first[(c.source, c.event_id)] == i and (c.source, c.event_id) in new
            for i, c in enumerate(claims)
        ]
