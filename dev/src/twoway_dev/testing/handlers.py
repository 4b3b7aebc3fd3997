"""The middle test tier: a service's handlers against the real PostgreSQL, without Kafka.

Each `handle` call runs one handler in its own unit of work (one transaction) exactly as the
consumer would, commits it, and returns the events it emitted, so a test can assert on both
the database state and the events, with a clock it controls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel
from twoway_shared.contract import Event, event_type_of, new_event
from twoway_shared.platform.outbox import OutgoingRecord
from twoway_shared.platform.runtime import ServiceSpec, run_migrations
from twoway_shared.platform.settings import Settings
from twoway_shared.platform.uow import Database

from twoway_dev.testing.service import with_migration_url


class HandlerBench:
    """Calls a service's handlers directly, each in one committed unit of work."""

    def __init__(self, spec: ServiceSpec, pool: asyncpg.Pool, now: datetime) -> None:
        self.spec, self.pool, self.now = spec, pool, now
        self._database = Database(
            pool, schema=spec.schema, source=f"/test/{spec.name}", topic_prefix="t.",
            clock=lambda: self.now,
        )  # fmt: skip
        self._counter = 0

    @classmethod
    @asynccontextmanager
    async def open(
        cls, spec: ServiceSpec, database_url: str, now: datetime | None = None
    ) -> AsyncIterator[HandlerBench]:
        """Migrate the service's schema (as its owner) and open a pool with its runtime role."""
        await run_migrations(spec, with_migration_url(Settings(database_url=database_url)))
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            yield cls(spec, pool, now or datetime.now(UTC))
        finally:
            await pool.close()

    async def handle(self, data: BaseModel) -> list[tuple[str, dict[str, Any]]]:
        """Run the handler of `data`'s event type; the (event type, data) of what it emitted."""
        event = self._event(data)
        handler = self.spec.dispatch[event.type]
        async with self._database.unit_of_work(cause=event) as uow:
            if handler is not None:
                await handler(event, uow)
            emitted = uow.pending
        return _emitted(emitted)

    async def handle_each(
        self, *data: BaseModel, tick: timedelta | None = None
    ) -> list[list[tuple[str, dict[str, Any]]]]:
        """`handle` each event alone, in order (what `handle_run` is compared with); with
        `tick`, the clock moves on by it after each, as `handle_run` moves it."""
        emitted = []
        for d in data:
            emitted.append(await self.handle(d))
            if tick is not None:
                self.now += tick
        return emitted

    async def handle_run(
        self, *data: BaseModel, tick: timedelta | None = None
    ) -> list[list[tuple[str, dict[str, Any]]]]:
        """Run the batch handler of one event type on a run of events in one transaction, as
        the consumer does with a batch; what each event's unit of work emitted. With `tick`,
        the clock moves on by it after each event's unit of work is opened (each reads it)."""
        events = [self._event(d) for d in data]
        handler = self.spec.batch_dispatch[events[0].type]
        async with self._database.batch_of_work() as batch:
            units = []
            for event in events:
                units.append((event, batch.unit_of_work(event)))
                if tick is not None:
                    self.now += tick
            await handler(units)
        return [_emitted(uow.pending) for _, uow in units]

    async def outbox(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every event written to the outbox (a bench has no relay): topic, key and the whole
        event, envelope included (ids, causation, time), oldest first."""
        rows = await self.pool.fetch(
            f"SELECT topic, key, value FROM {self.spec.schema}.outbox ORDER BY id"
        )
        return [(r["topic"], bytes(r["key"]).decode(), orjson.loads(r["value"])) for r in rows]

    def _event(self, data: BaseModel) -> Event[Any]:
        self._counter += 1
        envelope = new_event(data, source="/test", event_id=f"bench-{self._counter}")
        return Event(envelope=envelope, type=event_type_of(type(data)), data=data)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(sql, *args))


def _emitted(records: list[OutgoingRecord]) -> list[tuple[str, dict[str, Any]]]:
    return [(r.event_type, orjson.loads(r.value)["data"]) for r in records]
