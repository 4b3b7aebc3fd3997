"""The inbox: dedupe of consumed events on (source, id), inside the handler's transaction."""

from __future__ import annotations

import asyncpg

from twoway_shared.platform.db import schema_identifier


class Inbox:
    """Claims an event once; a second claim of the same (source, id) returns False."""

    def __init__(self, schema: str) -> None:
        s = schema_identifier(schema)
        self._claim = (
            f"INSERT INTO {s}.inbox (source, event_id, topic, kafka_partition, kafka_offset)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true"
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
