"""Run a service in the test process against the real broker and database.

`Sandbox` is a test's own place on the session's broker and database: its database (the
services' schemas and least-privileged roles) and its topic prefix (with each service's Kafka
ACLs under it). `Sandbox.service` starts one service's app there as its own principal and hands
back a `ServiceHarness`: publish records, wait with deadlines for output records, dead letters,
committed offsets or database state, call the read API, restart, stop cleanly.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson
from pydantic import BaseModel
from twoway_shared.contract import EVENT_MODELS, Topic, event_type_of
from twoway_shared.contract.examples import EXAMPLE_DATA
from twoway_shared.platform.kafka import ensure_topics
from twoway_shared.platform.runtime import Runtime, ServiceSpec, run_migrations
from twoway_shared.platform.settings import Settings
from twoway_shared.platform.uow import Clock

from twoway_dev.testing import kafka
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import Received, TopicReader, ToSend
from twoway_dev.testing.oidc import TestProvider

S = TypeVar("S", bound=Settings)
M = TypeVar("M", bound=BaseModel)

SOURCE = "/test"
"""The `source` of the events a test publishes."""


class MovableClock:
    """Real time plus an offset a test can move forward (e.g. past an expiry)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


MIGRATION_DSNS: dict[str, str] = {}
"""Runtime DSN -> the schema owner's DSN, filled by the fixtures that provision databases.

Settings without `database_migration_url` migrate with the owner found here, as `migrate`
would with TWOWAY_DATABASE_MIGRATION_URL; the runtime role itself may not change the schema.
"""


def with_migration_url(settings: Settings) -> Settings:
    """The settings, with the owner's DSN for `migrate` when the test did not give one."""
    owner = MIGRATION_DSNS.get(settings.database_url)
    if settings.database_migration_url is not None or owner is None:
        return settings
    return settings.model_copy(update={"database_migration_url": owner})


@asynccontextmanager
async def running_service(
    spec: ServiceSpec, settings: Settings, clock: Clock | None = None
) -> AsyncIterator[Runtime]:
    """Migrate, start, yield the runtime, then stop it cleanly."""
    await run_migrations(spec, with_migration_url(settings))
    runtime = Runtime(spec, settings, clock=clock or MovableClock())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def example(model: type[M], **changes: Any) -> M:
    """The contract's example data of `model`'s event type, with `changes`."""
    data = copy.deepcopy(EXAMPLE_DATA[event_type_of(model)])
    return model.model_validate({**data, **changes})


class ServiceHarness:
    """One service's app in the test process, a reader of what it produces, ways to feed it.

    Event types are the contract's short names (`pair.confirmed`); `wait*` and `until` fail
    with what they saw once their deadline passes.
    """

    def __init__(
        self,
        infra: Infra,
        spec: ServiceSpec,
        settings: Settings,
        reader: TopicReader,
        *,
        clock: Clock,
        token: str = "",
    ) -> None:
        self.infra, self.spec, self.settings, self.reader = infra, spec, settings, reader
        self.clock, self.token = clock, token
        self.sent: list[ToSend] = []
        """Every record published through `send`, in order (for replays)."""
        self._runtime: Runtime | None = None
        self._counter = 0

    # ------------------------------------------------------------ the running service

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "the service is not running"
        return self._runtime

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runtime.pool

    def topic(self, topic: Topic) -> str:
        return self.settings.topic(topic)

    def advance(self, by: timedelta) -> None:
        """Move the service's clock forward (it must be a `MovableClock`)."""
        assert isinstance(self.clock, MovableClock), "the service runs on a fixed clock"
        self.clock.advance(by)

    async def start(self, spec: ServiceSpec | None = None, **changes: Any) -> Runtime:
        """Migrate and start the service; `spec` and settings `changes` stay for later starts."""
        assert self._runtime is None, "the service is already running"
        if spec is not None:
            self.spec = spec
        if changes:
            self.settings = self.settings.model_copy(update=changes)
        await run_migrations(self.spec, with_migration_url(self.settings))
        runtime = Runtime(self.spec, self.settings, clock=self.clock)
        await runtime.start()
        self._runtime = runtime
        return runtime

    async def stop(self) -> None:
        """Stop cleanly: consuming ends, workers stop, the outbox drains."""
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            await runtime.stop()

    @asynccontextmanager
    async def running(
        self, spec: ServiceSpec | None = None, **changes: Any
    ) -> AsyncIterator[Runtime]:
        """The service runs inside the block (and can be started again after it)."""
        runtime = await self.start(spec, **changes)
        try:
            yield runtime
        finally:
            await self.stop()

    @asynccontextmanager
    async def another_instance(self) -> AsyncIterator[Runtime]:
        """A second instance with the same settings: same consumer group, same database."""
        async with running_service(self.spec, self.settings, self.clock) as runtime:
            yield runtime

    # ------------------------------------------------------------ records in

    def record(self, data: BaseModel | str, event_id: str | None = None, **changes: Any) -> ToSend:
        """A contract event as a record under the test's prefix, keyed as the contract says.

        `data` is a model, or an event type whose contract example is the base for `changes`.
        """
        if isinstance(data, str):
            data = example(EVENT_MODELS[data], **changes)
        elif changes:
            data = type(data).model_validate({**data.model_dump(mode="json"), **changes})
        self._counter += 1
        event_id = event_id or f"{self.spec.name}-in-{self._counter}"
        return ToSend.event(self.settings.topic_prefix, data, source=SOURCE, event_id=event_id)

    async def send(self, *items: BaseModel | ToSend) -> list[ToSend]:
        """Publish in order (models become records) and wait until the broker has them all."""
        records = [i if isinstance(i, ToSend) else self.record(i) for i in items]
        self.sent.extend(records)
        await kafka.publish(self.infra.kafka_bootstrap, records)
        return records

    async def replay(self) -> None:
        """Publish every record sent so far again, as they were (same event ids)."""
        await kafka.publish(self.infra.kafka_bootstrap, list(self.sent))

    async def barrier(self, timeout: float = 30.0) -> None:
        """Wait until the service has committed every record now on its input topics.

        Offsets are committed only after a record's effects are, so everything sent so far
        is processed; topics have no mutual order, and this is how a test orders them.
        """
        await kafka.wait_until_consumed(
            self.infra.kafka_bootstrap,
            self.settings.consumer_group(self.spec.name),
            [self.topic(t) for t in self.spec.consumes],
            timeout=timeout,
        )

    # ------------------------------------------------------------ records out

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The CloudEvents the service produced so far, oldest first per partition."""
        outputs = {self.topic(t) for t in self.spec.produces}
        found = [orjson.loads(r.value or b"{}") for r in self.reader.records if r.topic in outputs]
        if event_type is None:
            return found
        return [e for e in found if e["type"] == f"twoway.{event_type}.v1"]

    def data(self, event_type: str) -> list[dict[str, Any]]:
        """The `data` of each produced event of `event_type`."""
        return [e["data"] for e in self.events(event_type)]

    async def wait(
        self, event_type: str, count: int, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until at least `count` events of `event_type` are out; the data of all of them."""
        await self.reader.wait_for(
            lambda _: len(self.events(event_type)) >= count,
            timeout=timeout,
            what=f"{count} x {event_type}",
        )
        return self.data(event_type)

    def dead_letters(self) -> list[Received]:
        return self.reader.on(self.topic(Topic.DEADLETTER))

    async def wait_dead_letters(self, count: int, timeout: float = 30.0) -> list[Received]:
        await self.reader.wait_for(
            lambda _: len(self.dead_letters()) >= count,
            timeout=timeout,
            what=f"{count} dead letter(s)",
        )
        return self.dead_letters()

    # ------------------------------------------------------------ database state

    async def rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Rows of a query with the service's runtime role (also while it is stopped)."""
        if self._runtime is not None:
            return list(await self._runtime.pool.fetch(sql, *args))
        conn = await asyncpg.connect(self.settings.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def until(
        self,
        sql: str,
        *args: Any,
        holds: Callable[[list[asyncpg.Record]], bool],
        what: str = "the database state",
        timeout: float = 30.0,
    ) -> list[asyncpg.Record]:
        """Query until `holds(rows)`; the rows, or a failure showing the last ones."""
        return await kafka.eventually(
            lambda: self.rows(sql, *args), holds, timeout=timeout, what=what
        )

    # ------------------------------------------------------------ the read API

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        """A client of the service's real HTTP server, as a `twoway.reader` unless told.

        An empty `token` sends no Authorization header.
        """
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.runtime.http_port}", headers=headers, timeout=10
        )

    async def get(self, path: str, token: str | None = None) -> httpx.Response:
        async with self.http(token) as client:
            return await client.get(path)


@asynccontextmanager
async def service_harness(
    infra: Infra,
    spec: ServiceSpec,
    settings: Settings,
    *,
    clock: Clock | None = None,
    reads: Sequence[Topic] | None = None,
    token: str = "",
    start: bool = True,
) -> AsyncIterator[ServiceHarness]:
    """A harness reading `reads` (by default what the service produces, and dead letters)
    from their beginning; the service started unless `start` is false. Stops it at the end."""
    topics = [settings.topic(t) for t in (reads or (*spec.produces, Topic.DEADLETTER))]
    await ensure_topics(settings, topics)  # the reader's subscription sees them from offset 0
    async with TopicReader(infra.kafka_bootstrap, topics) as reader:
        harness = ServiceHarness(
            infra, spec, settings, reader, clock=clock or MovableClock(), token=token
        )
        try:
            if start:
                await harness.start()
            yield harness
        finally:
            await harness.stop()


@dataclass(frozen=True)
class Sandbox:
    """A test's own database (every service's schema and roles) and topic prefix (with every
    service's ACLs under it) on the session's broker and database."""

    infra: Infra
    dsns: Mapping[str, str]
    """Service -> its runtime role's DSN."""
    topic_prefix: str
    oidc: TestProvider | None = None

    def settings(self, cls: type[S], service: str, **more: Any) -> S:
        """`service`'s settings here: its principal, its role, HTTP on a free local port, read
        API tokens from the session's provider; `more` adds or replaces fields."""
        fields: dict[str, Any] = {
            **self.infra.kafka_settings(service),
            "database_url": self.dsns[service],
            "topic_prefix": self.topic_prefix,
            "topic_partitions": 3,
            "http_port": 0,
            "http_host": "127.0.0.1",
        }
        if self.oidc is not None:
            fields.update(self.oidc.settings())
        return cls(**(fields | more))

    def reader_token(self) -> str:
        """A `twoway.reader` token of the session's provider (empty without one)."""
        return self.oidc.mint() if self.oidc is not None else ""

    @asynccontextmanager
    async def service(
        self,
        spec: ServiceSpec,
        settings_class: type[Settings],
        *,
        clock: Clock | None = None,
        reads: Sequence[Topic] | None = None,
        start: bool = True,
        **more: Any,
    ) -> AsyncIterator[ServiceHarness]:
        """`spec`'s service running here (see `service_harness`)."""
        settings = self.settings(settings_class, spec.name, **more)
        async with service_harness(
            self.infra,
            spec,
            settings,
            clock=clock,
            reads=reads,
            token=self.reader_token(),
            start=start,
        ) as harness:
            yield harness
