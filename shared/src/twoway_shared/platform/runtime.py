"""Builds and runs a service: pool, producer, consumer, outbox relay, workers and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.message import StreamMessage
from pydantic import BaseModel
from starlette.routing import BaseRoute

from twoway_shared.contract import TOPIC_EVENT_TYPES, Topic, access, event_type_of
from twoway_shared.platform.consumer import (
    BatchHandler,
    Handler,
    RecordProcessor,
    one_at_a_time,
    summarise_periodically,
)
from twoway_shared.platform.db import create_pool
from twoway_shared.platform.deadletter import DeadLetters
from twoway_shared.platform.http import Guard, create_http_app
from twoway_shared.platform.kafka import (
    ensure_topics,
    idempotent_producer,
    security_of,
    wait_for_group_coordinator,
)
from twoway_shared.platform.logs import FASTSTREAM_NOISE
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.migrations import (
    Migration,
    load_migrations,
    migrate,
    migrations_dir,
    platform_migrations,
)
from twoway_shared.platform.outbox import OutboxRelay
from twoway_shared.platform.settings import Settings
from twoway_shared.platform.uow import Clock, Database, utc_now

log = logging.getLogger(__name__)

# FastStream logs two lines per record (Received, Processed) at its broker's level; below
# DEBUG they never show. The record processor logs one DEBUG line per record instead, and an
# INFO summary every SUMMARY_SECONDS.
FASTSTREAM_RECORD_LEVEL = logging.DEBUG - 5
SUMMARY_SECONDS = 60.0
# Records handled in one transaction and one offset commit at most.
MAX_BATCH_RECORDS = 500

Worker = Callable[["Runtime", asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ServiceSpec:
    """What makes one service: its topics, handlers, migrations, routes and workers."""

    name: str
    consumes: tuple[Topic, ...]
    produces: tuple[Topic, ...]
    handlers: Mapping[type[BaseModel], Handler]
    """Contract data model -> its handler."""
    migrations_dir: Path
    routes: Callable[[Runtime], Sequence[BaseRoute]] = field(default=lambda _: ())
    workers: tuple[Worker, ...] = ()
    ignores: tuple[type[BaseModel], ...] = ()
    """Event types of consumed topics this service validates and then deliberately ignores."""
    batch_handlers: Mapping[type[BaseModel], BatchHandler] = field(default_factory=dict)
    """Contract data model -> a handler of a run of its records at once (see `BatchHandler`);
    a record handled alone is a run of one."""

    def __post_init__(self) -> None:
        # Checked when the service is built, i.e. at start-up: a consumed event type with no
        # handler would otherwise be claimed in the inbox and committed without a trace.
        if twice := set(self.handlers) & set(self.batch_handlers):
            names = sorted(event_type_of(m) for m in twice)
            raise ValueError(f"{self.name}: {names} have a handler and a batch handler")
        handled = {event_type_of(model) for model in (*self.handlers, *self.batch_handlers)}
        ignored = {event_type_of(model) for model in self.ignores}
        expected = {t for topic in self.consumes for t in TOPIC_EVENT_TYPES[topic]}
        if missing := expected - handled - ignored:
            raise ValueError(
                f"{self.name}: no handler for {sorted(missing)}; handle them or list them in "
                "ignores"
            )
        if stray := (handled | ignored) - expected:
            raise ValueError(f"{self.name}: {sorted(stray)} are not on the topics it consumes")
        if both := handled & ignored:
            raise ValueError(f"{self.name}: {sorted(both)} are both handled and ignored")

    @property
    def dispatch(self) -> dict[str, Handler | None]:
        """Short event type -> handler, or None for an event type it ignores."""
        table: dict[str, Handler | None] = {event_type_of(m): None for m in self.ignores}
        table.update({event_type_of(m): h for m, h in self.handlers.items()})
        table.update({event_type_of(m): one_at_a_time(h) for m, h in self.batch_handlers.items()})
        return table

    @property
    def batch_dispatch(self) -> dict[str, BatchHandler]:
        """Short event type -> its batch handler, for the event types that have one."""
        return {event_type_of(m): h for m, h in self.batch_handlers.items()}

    @property
    def schema(self) -> str:
        return self.name

    def migrations(self) -> list[Migration]:
        return [
            *platform_migrations(self.schema),
            *load_migrations(self.name, self.migrations_dir),
        ]


def service_spec(
    name: str,
    app_file: str,
    *,
    handlers: Mapping[type[BaseModel], Handler],
    batch_handlers: Mapping[type[BaseModel], BatchHandler] | None = None,
    ignores: tuple[type[BaseModel], ...] = (),
    routes: Callable[[Runtime], Sequence[BaseRoute]] = lambda _: (),
    workers: tuple[Worker, ...] = (),
) -> ServiceSpec:
    """A service's spec: its topics from the ACL list (`contract.access`), its migrations
    beside its package (`app_file` is its `app.py`), and what it says it does."""
    return ServiceSpec(
        name=name,
        consumes=access.consumes(name),
        produces=tuple(t for t in access.produces(name) if t is not Topic.DEADLETTER),
        handlers=handlers,
        batch_handlers=batch_handlers or {},
        ignores=ignores,
        migrations_dir=migrations_dir(app_file),
        routes=routes,
        workers=workers,
    )


async def run_migrations(spec: ServiceSpec, settings: Settings) -> list[Migration]:
    """Apply the platform's and the service's pending migrations."""
    dsn = settings.database_migration_url or settings.database_url
    return await migrate(dsn, spec.schema, spec.migrations())


async def _raw_body(message: StreamMessage[Any]) -> Any:
    # The edge parses the record itself (it must dead-letter what is not JSON), so FastStream
    # hands over the bytes untouched.
    return message.body


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The runtime owns SIGTERM: it stops consuming, drains, then stops HTTP.
        yield


class Runtime:
    """The object graph of one running service instance."""

    def __init__(self, spec: ServiceSpec, settings: Settings, *, clock: Clock = utc_now) -> None:
        self.spec = spec
        self.settings = settings
        self.clock = clock
        self.summary_seconds = SUMMARY_SECONDS
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self._relay_stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self._broker: KafkaBroker | None = None
        self._server: _Server | None = None
        self.database: Database | None = None
        self.relay: OutboxRelay | None = None
        self.processor: RecordProcessor | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the runtime is not started"
        return self._pool

    @property
    def db(self) -> Database:
        assert self.database is not None, "the runtime is not started"
        return self.database

    def topic(self, topic: Topic) -> str:
        return self.settings.topic(topic)

    async def start(self) -> None:
        spec, settings = self.spec, self.settings
        self._pool = await create_pool(settings.database_url)
        topics = {*spec.consumes, *spec.produces, Topic.DEADLETTER}
        await ensure_topics(settings, sorted(self.topic(t) for t in topics))
        self._producer = idempotent_producer(settings, client_id=f"twoway-{spec.name}")
        await self._producer.start()
        self.database = Database(
            self._pool,
            schema=spec.schema,
            source=f"/twoway/{spec.name}",
            topic_prefix=settings.topic_prefix,
            clock=self.clock,
        )
        self.database.on_commit.append(self.metrics.observe_committed)
        dead_letters = DeadLetters(
            self._pool,
            spec.schema,
            self._producer,
            topic=self.topic(Topic.DEADLETTER),
            consumer=spec.name,
            metrics=self.metrics,
        )
        self.processor = RecordProcessor(
            service=spec.name,
            topic_prefix=settings.topic_prefix,
            consumes=list(spec.consumes),
            handlers=spec.dispatch,
            batch_handlers=spec.batch_dispatch,
            database=self.database,
            dead_letters=dead_letters,
            metrics=self.metrics,
        )
        self.relay = OutboxRelay(settings.database_url, spec.schema, self._producer, self.metrics)
        self._tasks.append(asyncio.create_task(self.relay.run(self._relay_stopping)))
        for worker in spec.workers:
            self._worker_tasks.append(asyncio.create_task(worker(self, self.stopping)))
        summaries = summarise_periodically(self.processor, self.stopping, self.summary_seconds)
        self._worker_tasks.append(asyncio.create_task(summaries))
        if spec.consumes:
            await self._start_consumer()
        await self._start_http()
        log.info("service started", extra={"service": spec.name})

    async def _start_consumer(self) -> None:
        settings, processor = self.settings, self.processor
        assert processor is not None
        group = settings.consumer_group(self.spec.name)
        await wait_for_group_coordinator(settings, group)
        kafka_log = logging.getLogger(f"twoway.{self.spec.name}.kafka")
        kafka_log.addFilter(FASTSTREAM_NOISE)
        self._broker = broker = KafkaBroker(
            settings.kafka_bootstrap_servers.split(","),
            security=security_of(settings),
            client_id=f"twoway-{self.spec.name}",
            consumer_only=True,
            graceful_timeout=30.0,
            logger=kafka_log,
            log_level=FASTSTREAM_RECORD_LEVEL,
        )

        # Ack policy MANUAL: the offsets are committed only after the batch's transaction
        # committed in PostgreSQL (or its bad records were dead-lettered); a failed attempt
        # seeks each partition back to its earliest record of the batch, so nothing after an
        # unprocessed record is committed. The batch is whatever the consumer has fetched,
        # up to `max_records`: one record under light load, hundreds when catching up.
        @broker.subscriber(
            *(self.topic(t) for t in self.spec.consumes),
            group_id=group,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            decoder=_raw_body,
            batch=True,
            max_records=MAX_BATCH_RECORDS,
            batch_timeout_ms=25,
        )
        async def on_records(body: Any, message: KafkaMessage) -> None:
            if await processor.process_batch(message.raw_message):
                await message.ack()
            else:
                await message.nack()

        await broker.start()

    async def _start_http(self) -> None:
        app = create_http_app(
            service=self.spec.name,
            metrics=self.metrics,
            checks={"postgresql": self._check_postgres, "kafka": self._check_kafka},
            before_metrics=self._update_lag,
            routes=self.spec.routes(self),
            guard=Guard.from_settings(self.settings, self.spec.name),
        )
        config = uvicorn.Config(
            app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._server = _Server(config)
        self._tasks.append(asyncio.create_task(self._server.serve()))
        while not self._server.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()  # raises the bind error
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    @property
    def http_port(self) -> int:
        """The port the HTTP server listens on (useful when configured as 0)."""
        if self._server is None or not self._server.servers:
            raise RuntimeError("the HTTP server is not started")
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def http_addresses(self) -> list[str]:
        """The addresses the HTTP server's sockets are bound to (`TWOWAY_HTTP_HOST`)."""
        if self._server is None:
            raise RuntimeError("the HTTP server is not started")
        return [str(s.getsockname()[0]) for srv in self._server.servers for s in srv.sockets]

    async def _check_postgres(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def _check_kafka(self) -> None:
        assert self._producer is not None
        if not await self._producer.client.ready(self._producer.client.get_random_node()):
            raise ConnectionError("no Kafka broker answers")

    async def _update_lag(self) -> None:
        consumer = self._consumer()
        if consumer is None:
            return
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), 1.0)
            except Exception:
                continue
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max(0, highwater - position)
            )

    def _consumer(self) -> Any:
        if self._broker is None:
            return None
        for subscriber in self._broker.subscribers:
            return getattr(subscriber, "consumer", None)
        return None

    async def stop(self) -> None:
        """Stop consuming (in-flight records finish), stop workers, drain the outbox, exit."""
        log.info("service stopping", extra={"service": self.spec.name})
        self.stopping.set()
        if self._broker is not None:
            await self._broker.stop()
        if self._worker_tasks:
            await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        self._relay_stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=30)
            for task in pending:
                task.cancel()
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()
        log.info("service stopped", extra={"service": self.spec.name})

    async def serve_until_stopped(self, stop: asyncio.Event) -> bool:
        """Start, run until `stop` is set (SIGTERM), then shut down; False if a task failed."""
        await self.start()
        clean = True
        try:
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, *self._tasks, *self._worker_tasks}, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            for task in (*self._tasks, *self._worker_tasks):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    clean = False
                    log.error("a service task failed", exc_info=task.exception())
        finally:
            await self.stop()
        return clean
