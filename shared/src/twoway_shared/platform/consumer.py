"""The Kafka edge: parse a record, dedupe it, handle it in a unit of work, or dead-letter it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError

from twoway_shared.contract import Event, InvalidRecord, Topic, parse_record
from twoway_shared.errors import Rejected
from twoway_shared.platform.deadletter import DeadLetters
from twoway_shared.platform.inbox import Claim, Inbox
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.poller import wait_for
from twoway_shared.platform.tracing import consume_span, handle_span, record_spans
from twoway_shared.platform.uow import Database, UnitOfWork

__all__ = ["BatchHandler", "Handler", "RecordProcessor", "Rejected", "one_at_a_time"]

log = logging.getLogger(__name__)

Handler = Callable[[Event[Any], UnitOfWork], Awaitable[None]]
BatchHandler = Callable[[Sequence[tuple[Event[Any], UnitOfWork]]], Awaitable[None]]
"""Handles a run of records of one event type at once (set-based SQL), in record order: one
unit of work per record, all on the batch's connection and transaction."""


def one_at_a_time(handler: BatchHandler) -> Handler:
    """A batch handler as a handler of one record (one rule, one implementation)."""

    async def handle(event: Event[Any], uow: UnitOfWork) -> None:
        await handler(((event, uow),))

    return handle


# A record whose handler raises anything but an infrastructure error this many times in a row
# is set aside in the dead-letter topic, so one bad record cannot stop the good ones.
MAX_ATTEMPTS = 5
# Outages and lost races (deadlock, serialization failure) are retried without limit.
_TRANSIENT = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TransactionRollbackError,
    KafkaError,
)


class RecordProcessor:
    """Everything that happens to one consumed record, independent of the Kafka client."""

    def __init__(
        self,
        *,
        service: str,
        topic_prefix: str,
        consumes: list[Topic],
        handlers: Mapping[str, Handler | None],
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        database: Database,
        dead_letters: DeadLetters,
        metrics: Metrics,
    ) -> None:
        self._service = service
        self._topics = {f"{topic_prefix}{t.value}": t for t in consumes}
        self._handlers = handlers
        self._batch_handlers = batch_handlers or {}
        self._db = database
        self._inbox = Inbox(database.schema)
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._attempts: dict[tuple[str, int, int], int] = {}
        self._outcomes: Counter[str] = Counter()

    def take_outcomes(self) -> Counter[str]:
        """What happened to the records since the last call (handled, duplicate, ...)."""
        outcomes, self._outcomes = self._outcomes, Counter()
        return outcomes

    async def process_batch(self, records: Sequence[Any]) -> bool:
        """Handle records in one transaction; True when all are done (commit the offsets).

        The records keep their order (the consumer hands them over partition by partition,
        each in offset order), so per-key order holds. If the batch fails as a whole, its
        transaction is rolled back and the records are handled again one at a time, each in
        its own transaction: the bad one is retried and dead-lettered alone, the others are
        committed. False means a record must be retried later: the caller rewinds to the
        earliest record of each partition, and the inbox skips those already committed.
        """
        if len(records) > 1:
            try:
                await self._process_batch(records)
                return True
            except Exception as exc:
                self._metrics.batch_fallbacks.inc()
                log.warning(
                    "batch failed; handling its records one at a time",
                    extra={"records": len(records), "error": f"{type(exc).__name__}"},
                )
        for record in records:
            if not await self.process(record):
                return False
        return True

    async def _process_batch(self, records: Sequence[Any]) -> None:
        parsed: list[tuple[Any, Event[Any]]] = []
        # Counted and logged only once the batch commits (a rolled-back batch is handled again).
        began = time.perf_counter()
        outcomes: list[tuple[Any, str]] = []
        for record in records:
            self._metrics.consumed.labels(record.topic).inc()
            topic = self._topics.get(record.topic)
            if topic is None:
                raise RuntimeError(f"{self._service} does not consume topic {record.topic}")
            try:
                parsed.append((record, parse_record(topic, record.value, record.key)))
            except InvalidRecord as exc:
                # Noted once per record, so a retried batch does not dead-letter it twice.
                await self._dead_letters.send(record, str(exc))
                outcomes.append((record, "dead-lettered"))
        if not parsed:
            self._settled(outcomes, began)
            return
        async with self._db.batch_of_work() as batch:
            new = await self._inbox.claim_many(
                batch.conn,
                [
                    Claim(
                        source=event.envelope.source,
                        event_id=event.envelope.id,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                    for record, event in parsed
                ],
            )
            # Consecutive records of an event type with a batch handler form a group handled
            # in one call; any other handled record ends the group, so the effects keep the
            # records' order (duplicates and ignored records have none).
            group: list[tuple[Any, Event[Any], UnitOfWork]] = []
            for (record, event), is_new in zip(parsed, new, strict=True):
                if not is_new:
                    self._metrics.duplicates.labels(record.topic).inc()
                    outcomes.append((record, "duplicate"))
                    continue
                batch_handler = self._batch_handlers.get(event.type)
                handler = self._handlers.get(event.type)
                if batch_handler is None and handler is None:
                    self._metrics.ignored.labels(record.topic, event.type).inc()
                    outcomes.append((record, "ignored"))
                    continue
                if group and (batch_handler is None or group[0][1].type != event.type):
                    await self._handle_group(group)
                    group = []
                outcomes.append((record, "handled"))
                if batch_handler is not None:
                    group.append((record, event, batch.unit_of_work(event)))
                    continue
                assert handler is not None
                started = time.perf_counter()
                with (
                    consume_span(record, event.envelope.traceparent),
                    handle_span(event.type, event.id),
                ):
                    await handler(event, batch.unit_of_work(event))
                self._metrics.handler_seconds.labels(event.type).observe(
                    time.perf_counter() - started
                )
            if group:
                await self._handle_group(group)
        self._metrics.batch_size.observe(len(records))
        self._settled(outcomes, began)

    async def _handle_group(self, group: list[tuple[Any, Event[Any], UnitOfWork]]) -> None:
        """One call of the batch handler for records of one event type, in their order."""
        event_type = group[0][1].type
        started = time.perf_counter()
        with ExitStack() as spans:
            for record, event, uow in group:
                uow.traceparent = spans.enter_context(
                    record_spans(record, event.envelope.traceparent, event.type, event.id)
                )
            await self._batch_handlers[event_type]([(event, uow) for _, event, uow in group])
        # The group's time shared out, so the histogram still counts one sample per record.
        share = (time.perf_counter() - started) / len(group)
        for _ in group:
            self._metrics.handler_seconds.labels(event_type).observe(share)

    def _settled(self, outcomes: list[tuple[Any, str]], began: float) -> None:
        ms = round((time.perf_counter() - began) * 1000, 1)
        for record, outcome in outcomes:
            self._outcomes[outcome] += 1
            # One line per record, at DEBUG, as for a record handled alone.
            log.debug("record %s", outcome, extra={**_where(record), "ms": ms, "batch": True})

    async def process(self, record: Any) -> bool:
        """Handle one record; True when it is done (commit its offset), False to retry it."""
        coordinates = (record.topic, record.partition, record.offset)
        started = time.perf_counter()
        try:
            outcome = await self._process(record)
        except Exception as exc:
            self._outcomes["retried"] += 1
            attempts = self._attempts.get(coordinates, 0) + 1
            self._attempts[coordinates] = attempts
            self._metrics.handler_failures.labels(record.topic).inc()
            transient = isinstance(exc, _TRANSIENT)
            if not transient and attempts >= MAX_ATTEMPTS:
                log.exception("giving up on a record", extra=_where(record))
                try:
                    await self._dead_letters.send(
                        record,
                        f"The {self._service} service failed {attempts} times to process this "
                        f"record ({type(exc).__name__}: {str(exc)[:300]}); it was set aside so "
                        "the records after it go on. Fix the cause, then republish the record.",
                    )
                except Exception as failure:
                    # Not set aside, so not done: committing its offset would lose it. It is
                    # processed again, and given up on again, until the dead letter is sent.
                    log.warning(
                        "could not dead-letter a record; it will be processed again",
                        extra={**_where(record), "error": str(failure)[:300]},
                    )
                    await asyncio.sleep(1.0)
                    return False
                del self._attempts[coordinates]
                self._outcomes["dead-lettered"] += 1
                return True
            log.warning(
                "handler failed; the record will be processed again",
                exc_info=not transient,
                extra={**_where(record), "attempt": attempts, "error": str(exc)[:300]},
            )
            await asyncio.sleep(min(0.1 * 2**attempts, 10.0))
            return False
        self._attempts.pop(coordinates, None)
        self._outcomes[outcome] += 1
        # One line per record, at DEBUG; INFO gets a periodic summary (summarise_periodically).
        log.debug(
            "record %s",
            outcome,
            extra={**_where(record), "ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return True

    async def _process(self, record: Any) -> str:
        """Handle one record; what happened to it (handled, duplicate, dead-lettered)."""
        self._metrics.consumed.labels(record.topic).inc()
        topic = self._topics.get(record.topic)
        if topic is None:  # only possible with a misconfigured subscription
            raise RuntimeError(f"{self._service} does not consume topic {record.topic}")
        try:
            event = parse_record(topic, record.value, record.key)
        except InvalidRecord as exc:
            await self._dead_letters.send(record, str(exc))
            return "dead-lettered"
        handler = self._handlers.get(event.type)
        started = time.perf_counter()
        try:
            with (
                consume_span(record, event.envelope.traceparent),
                handle_span(event.type, event.id),
            ):
                async with self._db.unit_of_work(cause=event) as uow:
                    claimed = await self._inbox.claim(
                        uow.conn,
                        source=event.envelope.source,
                        event_id=event.envelope.id,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                    if not claimed:
                        self._metrics.duplicates.labels(record.topic).inc()
                        return "duplicate"
                    if handler is not None:
                        await handler(event, uow)
                    else:
                        self._metrics.ignored.labels(record.topic, event.type).inc()
        except Rejected as exc:
            await self._dead_letters.send(record, str(exc))
            return "dead-lettered"
        finally:
            self._metrics.handler_seconds.labels(event.type).observe(time.perf_counter() - started)
        return "handled" if handler is not None else "ignored"


async def summarise_periodically(
    processor: RecordProcessor, stopping: asyncio.Event, every: float = 60.0
) -> None:
    """One INFO line every `every` seconds with what happened to the records, if any came."""
    while True:
        await wait_for(stopping, every)
        outcomes = processor.take_outcomes()
        if outcomes:
            log.info(
                "records processed: %s",
                ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items())),
                extra={"records": sum(outcomes.values()), **outcomes, "seconds": every},
            )
        if stopping.is_set():
            return


def _where(record: Any) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}
