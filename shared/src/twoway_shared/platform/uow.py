"""The unit of work: one transaction holding a handler's writes, its outbox rows and inbox row."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from twoway_shared.contract import (
    CONTENT_TYPE,
    Emitter,
    Event,
    Topic,
    event_type_of,
    partition_key,
)
from twoway_shared.platform.outbox import OutboxWriter, OutgoingRecord
from twoway_shared.platform.tracing import current_traceparent

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class UnitOfWork:
    """What a handler gets: the transaction's connection, the clock, and `emit`.

    Emitted events are buffered and written to the outbox just before the commit, so they
    are published if and only if the handler's writes are committed.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        *,
        source: str,
        topic_prefix: str,
        cause: Event[Any] | None,
        now: datetime,
    ) -> None:
        self.conn = conn
        self.cause = cause
        self.now = now
        self._source = source
        self._prefix = topic_prefix
        self._pending: list[OutgoingRecord] = []
        self._emitter: Emitter | None = None
        self.traceparent: str | None = None
        """The trace its events continue; None: the current span's (a handler run alone)."""

    def effects_traceparent(self) -> str | None:
        """The `traceparent` this unit of work's effects carry: its record's handle span."""
        return self.traceparent or current_traceparent()

    def emit(
        self,
        topic: Topic,
        data: BaseModel,
        *,
        event_id: str | None = None,
        subject: str | None = None,
    ) -> None:
        """Queue an event for publication when (and only if) this unit of work commits."""
        key = partition_key(topic, data)
        if self._emitter is None:
            self._emitter = Emitter(self._source, self.now)
        # The effect continues the trace of the span emitting it (the cause's handle span).
        value = self._emitter.encoded(
            data,
            subject=subject if subject is not None else key.decode(),
            cause=self.cause,
            event_id=event_id,
            traceparent=self.effects_traceparent(),
        )
        self._pending.append(
            OutgoingRecord(
                topic=f"{self._prefix}{topic.value}",
                key=key,
                value=value,
                headers=(("content-type", CONTENT_TYPE),),
                event_type=event_type_of(type(data)),
            )
        )

    @property
    def pending(self) -> list[OutgoingRecord]:
        return list(self._pending)


class Database:
    """Opens units of work on the service's pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str,
        source: str,
        topic_prefix: str,
        clock: Clock = utc_now,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.clock = clock
        self._source = source
        self._prefix = topic_prefix
        self._outbox = OutboxWriter(schema)
        self.on_commit: list[Callable[[list[OutgoingRecord]], None]] = []
        """Called with the emitted records after each commit (metrics count domain events)."""

    @asynccontextmanager
    async def unit_of_work(self, cause: Event[Any] | None = None) -> AsyncIterator[UnitOfWork]:
        """A transaction; commits the writes and the emitted events together, or neither."""
        async with self.pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(
                conn,
                source=self._source,
                topic_prefix=self._prefix,
                cause=cause,
                now=self.clock(),
            )
            yield uow
            await self._outbox.append(conn, uow.pending)
        for hook in self.on_commit:
            hook(uow.pending)

    @asynccontextmanager
    async def batch_of_work(self) -> AsyncIterator[Batch]:
        """One transaction for a batch of records: one unit of work per record, one commit.

        Each record's handler gets its own unit of work (its cause, its clock reading, its
        emitted events) on the batch's connection; the outbox rows of all of them are written
        in one statement just before the commit. If anything raises, nothing is kept.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            batch = Batch(self, conn)
            yield batch
            await self._outbox.append(conn, batch.pending)
        for hook in self.on_commit:
            hook(batch.pending)

    def _unit_on(self, conn: asyncpg.Connection, cause: Event[Any] | None) -> UnitOfWork:
        return UnitOfWork(
            conn, source=self._source, topic_prefix=self._prefix, cause=cause, now=self.clock()
        )


class Batch:
    """The units of work of one batch transaction, in the order they were opened."""

    def __init__(self, database: Database, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._database = database
        self._units: list[UnitOfWork] = []

    def unit_of_work(self, cause: Event[Any] | None) -> UnitOfWork:
        uow = self._database._unit_on(self.conn, cause)
        self._units.append(uow)
        return uow

    @property
    def pending(self) -> list[OutgoingRecord]:
        return [record for uow in self._units for record in uow.pending]
