"""The platform against the real broker and database: outbox, inbox, retries, dead letters."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import murmur2
from prometheus_client import generate_latest
from pydantic import BaseModel
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import (
    TopicReader,
    ToSend,
    eventually,
    publish,
    wait_until_consumed,
)
from twoway_dev.testing.service import with_migration_url
from twoway_shared.contract import (
    CONTENT_TYPE,
    Event,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    Topic,
    encode,
    new_event,
)
from twoway_shared.platform import kafka as platform_kafka
from twoway_shared.platform.consumer import Handler, Rejected
from twoway_shared.platform.kafka import ensure_topics
from twoway_shared.platform.migrations import MigrationError, migrate
from twoway_shared.platform.runtime import Runtime, ServiceSpec, run_migrations
from twoway_shared.platform.settings import Settings
from twoway_shared.platform.uow import UnitOfWork

pytestmark = pytest.mark.infra

EFFECTS_SQL = """
CREATE TABLE matching.effects (
    event_id text NOT NULL,
    programme_id text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


class Recorder:
    """A test handler: records each event it handles and can fail on demand."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_times: dict[str, int] = {}
        self.reject: set[str] = set()
        self.ids: list[str] = []
        self.groups: list[list[str]] = []

    async def handle_many(self, items: Sequence[tuple[Event[Any], UnitOfWork]]) -> None:
        """As a batch handler: each record as `handle` does, the runs it was given noted."""
        self.groups.append([event.envelope.id for event, _ in items])
        for event, uow in items:
            await self.handle(event, uow)

    async def handle(self, event: Event[Any], uow: UnitOfWork) -> None:
        programme_id = event.data.programme_id
        self.calls.append(programme_id)
        self.ids.append(event.envelope.id)
        await uow.conn.execute(
            "INSERT INTO matching.effects (event_id, programme_id) VALUES ($1, $2)",
            event.envelope.id,
            programme_id,
        )
        if programme_id in self.reject or event.envelope.id in self.reject:
            raise Rejected(f"programme {programme_id} is closed")
        failing = programme_id if programme_id in self.fail_times else event.envelope.id
        if self.fail_times.get(failing, 0) > 0:
            self.fail_times[failing] -= 1
            raise RuntimeError("simulated handler failure")
        if not programme_id.endswith("-echo"):
            # An effect of the handled event, published through the outbox.
            uow.emit(
                Topic.PROGRAMMES, ProgrammeMatchingRequested(programme_id=f"{programme_id}-echo")
            )


def make_spec(tmp_path: Path, recorder: Recorder, *, batched: bool = False) -> ServiceSpec:
    """programme.matching_requested handled by `recorder` (`batched`: as a batch handler)."""
    migrations = tmp_path / "migrations"
    migrations.mkdir(exist_ok=True)
    (migrations / "0001_effects.sql").write_text(EFFECTS_SQL)
    if batched:
        return ServiceSpec(
            name="matching",
            consumes=(Topic.PROGRAMMES,),
            produces=(Topic.PROGRAMMES,),
            handlers={ProgrammeConfigured: recorder.handle},
            batch_handlers={ProgrammeMatchingRequested: recorder.handle_many},
            migrations_dir=migrations,
        )
    return ServiceSpec(
        name="matching",
        consumes=(Topic.PROGRAMMES,),
        produces=(Topic.PROGRAMMES,),
        handlers={ProgrammeMatchingRequested: recorder.handle},
        migrations_dir=migrations,
        ignores=(ProgrammeConfigured,),
    )


def settings_for(infra: Infra, dsn: str, prefix: str) -> Settings:
    # The platform's own tests echo to topics no service writes: they run as the super-user.
    return with_migration_url(
        Settings(
            **infra.kafka_settings("admin"),
            database_url=dsn,
            topic_prefix=prefix,
            topic_partitions=3,
            http_port=0,
        )
    )


def record(programme_id: str, *, event_id: str | None = None, source: str = "/test") -> bytes:
    data = ProgrammeMatchingRequested(programme_id=programme_id)
    return encode(new_event(data, source=source, event_id=event_id))


@pytest.fixture
async def running(
    infra: Infra, service_dsns: dict[str, str], topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Runtime, Recorder]]:
    recorder = Recorder()
    spec = make_spec(tmp_path, recorder)
    settings = settings_for(infra, service_dsns["matching"], topic_prefix)
    await run_migrations(spec, settings)
    runtime = Runtime(spec, settings)
    await runtime.start()
    try:
        yield runtime, recorder
    finally:
        await runtime.stop()


async def effects_from(dsn: str, column: str = "programme_id") -> list[str]:
    """One column (`programme_id` or `event_id`) of the handled events' effects, in order."""
    assert column in ("programme_id", "event_id")
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT {column} FROM matching.effects ORDER BY handled_at")
        return [r[column] for r in rows]
    finally:
        await conn.close()


async def effect_ids_from(dsn: str) -> list[str]:
    return await effects_from(dsn, "event_id")


@asynccontextmanager
async def kafka_admin(infra: Infra) -> AsyncIterator[AIOKafkaAdminClient]:
    """A Kafka admin client of the super-user."""
    admin = AIOKafkaAdminClient(**infra.kafka_admin_options())
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def to_programmes(runtime: Runtime, *records: tuple[bytes, bytes]) -> str:
    """Publish (value, key) records on the programmes topic, in order; the topic's name."""
    topic = runtime.topic(Topic.PROGRAMMES)
    sends = [ToSend(topic, value, key) for value, key in records]
    await publish(runtime.settings.kafka_bootstrap_servers, sends)
    return topic


async def effects(runtime: Runtime) -> list[str]:
    return await effects_from(runtime.settings.database_url)


async def test_duplicate_record_has_no_effect(
    running: tuple[Runtime, Recorder], infra: Infra
) -> None:
    runtime, _ = running
    same = record("p-dup", event_id="fixed-id")
    topic = await to_programmes(runtime, (same, b"p-dup"), (same, b"p-dup"))

    async def duplicates() -> float:
        return float(runtime.metrics.duplicates.labels(topic)._value.get())

    await eventually(duplicates, lambda n: n == 1, what="the second copy seen as a duplicate")
    assert (await effects(runtime)).count("p-dup") == 1
    # The same id from another source is another event.
    other = record("p-dup", event_id="fixed-id", source="/other")
    await publish(infra.kafka_bootstrap, [ToSend(topic, other, b"p-dup")])
    await eventually(
        lambda: effects(runtime), lambda e: e.count("p-dup") == 2, what="the second source"
    )


async def test_failed_handler_is_retried_and_commits_once(
    running: tuple[Runtime, Recorder], infra: Infra
) -> None:
    runtime, recorder = running
    recorder.fail_times["p-flaky"] = 2
    await to_programmes(runtime, (record("p-flaky"), b"p-flaky"))
    await eventually(lambda: effects(runtime), lambda e: "p-flaky" in e, what="p-flaky handled")
    # Two failed attempts rolled back their writes; the third committed once.
    assert recorder.calls.count("p-flaky") == 3
    assert (await effects(runtime)).count("p-flaky") == 1


async def test_offset_is_not_committed_before_success(
    infra: Infra, service_dsns: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    """A record whose handler keeps failing is processed again by the next instance."""
    recorder = Recorder()
    recorder.fail_times["p-crash"] = 10**6
    spec = make_spec(tmp_path, recorder)
    dsn = service_dsns["matching"]
    settings = settings_for(infra, dsn, topic_prefix)
    await run_migrations(spec, settings)
    first = Runtime(spec, settings)
    await first.start()
    topic = first.topic(Topic.PROGRAMMES)
    await publish(infra.kafka_bootstrap, [ToSend(topic, record("p-crash"), b"p-crash")])

    async def calls() -> int:
        return len(recorder.calls)

    await eventually(calls, lambda n: n >= 2, what="two failed attempts")
    await first.stop()
    assert await effects_from(dsn) == []

    recorder.fail_times["p-crash"] = 0
    second = Runtime(spec, settings)
    await second.start()
    try:
        await eventually(
            lambda: effects_from(dsn), lambda e: "p-crash" in e, what="the record redelivered"
        )
    finally:
        await second.stop()


async def test_a_failed_dead_letter_send_keeps_the_record_uncommitted(
    running: tuple[Runtime, Recorder], infra: Infra
) -> None:
    """Giving up on a record whose dead letter cannot be sent must not commit its offset."""
    runtime, recorder = running
    recorder.fail_times["p-poison"] = 10**6
    assert runtime.processor is not None
    dead_letters = runtime.processor._dead_letters
    real_send = dead_letters._send
    failed_sends: list[int] = []
    outage = True

    async def send_during_outage(*args: Any) -> None:
        if outage:
            failed_sends.append(1)
            raise KafkaConnectionError("simulated: the dead-letter topic's leader is gone")
        await real_send(*args)

    dead_letters._send = send_during_outage  # type: ignore[method-assign,assignment]
    topic, dlq = runtime.topic(Topic.PROGRAMMES), runtime.topic(Topic.DEADLETTER)
    # On the poisoned record's partition, so the good record waits behind it.
    partitions = runtime.settings.topic_partitions
    home = murmur2(b"p-poison") & 0x7FFFFFFF
    after = next(
        f"p-after-{n}"
        for n in range(1000)
        if (murmur2(f"p-after-{n}".encode()) & 0x7FFFFFFF) % partitions == home % partitions
    )
    await publish(
        infra.kafka_bootstrap,
        [
            ToSend(topic, record("p-poison"), b"p-poison"),
            ToSend(topic, record(after), after.encode()),
        ],
    )

    async def failures() -> int:
        return len(failed_sends)

    await eventually(failures, lambda n: n >= 2, timeout=60, what="two failed dead-letter sends")
    group = runtime.settings.consumer_group("matching")
    async with kafka_admin(infra) as admin:
        committed = await admin.list_consumer_group_offsets(group)
    assert all(meta.offset <= 0 for tp, meta in committed.items() if tp.topic == topic)
    assert after not in await effects(runtime)

    outage = False
    async with TopicReader(infra.kafka_bootstrap, [dlq]) as reader:
        letters = await reader.wait_for(lambda r: len(r) >= 1, what="the dead letter")
        await eventually(lambda: effects(runtime), lambda e: after in e, what="the next record")
    assert [json.loads(r.value or b"")["data"]["programme_id"] for r in letters] == ["p-poison"]
    assert b"service failed" in letters[0].headers["x-twoway-error"]


async def test_invalid_record_is_dead_lettered_and_next_processed(
    running: tuple[Runtime, Recorder], infra: Infra
) -> None:
    runtime, recorder = running
    recorder.reject.add("p-closed")
    topic = runtime.topic(Topic.PROGRAMMES)
    dlq = runtime.topic(Topic.DEADLETTER)
    bad = [
        ToSend(topic, b"{not json", b"k1", (("trace", b"abc"),)),
        ToSend(topic, json.dumps({"specversion": "1.0"}).encode(), b"k2"),
        ToSend(topic, record("p-closed"), b"p-closed"),
    ]
    await publish(infra.kafka_bootstrap, [*bad, ToSend(topic, record("p-good"), b"p-good")])
    async with TopicReader(infra.kafka_bootstrap, [dlq]) as reader:
        letters = await reader.wait_for(lambda r: len(r) >= 3, what="three dead letters")
    await eventually(lambda: effects(runtime), lambda e: "p-good" in e, what="the good record")
    assert "p-closed" not in await effects(runtime)  # a rejected handler's writes roll back
    by_key = {r.key: r for r in letters}
    assert set(by_key) == {b"k1", b"k2", b"p-closed"}
    first = by_key[b"k1"]
    assert first.value == b"{not json"
    assert first.headers["trace"] == b"abc"  # the original headers are kept
    assert first.headers["x-twoway-consumer"] == b"matching"
    assert first.headers["x-original-topic"] == topic.encode()
    assert int(first.headers["x-original-partition"]) >= 0
    assert int(first.headers["x-original-offset"]) >= 0
    assert b"JSON" in first.headers["x-twoway-error"]
    assert b"closed" in by_key[b"p-closed"].headers["x-twoway-error"]


async def test_outbox_relay_delivers_in_order_per_key(
    running: tuple[Runtime, Recorder], infra: Infra
) -> None:
    runtime, _ = running
    keys = [f"prog-{i}" for i in range(5)]
    for n in range(40):
        async with runtime.db.unit_of_work() as uow:
            for key in keys:
                data = ProgrammeMatchingRequested(programme_id=f"{key}-echo")
                uow.emit(Topic.PROGRAMMES, data, event_id=f"{key}-{n:03d}")
    # Many records of one key in one unit of work keep the order they were emitted in.
    async with runtime.db.unit_of_work() as uow:
        for n in range(40):
            data = ProgrammeMatchingRequested(programme_id="prog-bulk-echo")
            uow.emit(Topic.PROGRAMMES, data, event_id=f"prog-bulk-{n:03d}")
    topic = runtime.topic(Topic.PROGRAMMES)
    async with TopicReader(infra.kafka_bootstrap, [topic]) as reader:
        seen = await reader.wait_for(lambda r: len(r) >= 240, what="240 outbox events")
    for key in [*keys, "prog-bulk"]:
        ids = [json.loads(r.value or b"")["id"] for r in seen if r.key == f"{key}-echo".encode()]
        assert ids == [f"{key}-{n:03d}" for n in range(40)], key
    assert seen[0].headers["content-type"] == CONTENT_TYPE.encode()
    # Each key on the partition every Kafka client's default partitioner gives it.
    partitions = runtime.settings.topic_partitions
    for r in seen:
        assert r.key is not None
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % partitions, r.key
    await eventually(
        lambda: runtime.pool.fetchval("SELECT count(*) FROM matching.outbox"),
        lambda n: n == 0,
        what="an empty outbox",
    )


async def test_outbox_relay_keeps_order_across_full_batches(
    infra: Infra,
    service_dsns: dict[str, str],
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of 1 KiB: one relay step fills many per partition, sent in turn, in order."""
    monkeypatch.setattr(platform_kafka, "PRODUCER_BATCH_BYTES", 1024)
    batches: list[tuple[str, int]] = []
    send_batch = AIOKafkaProducer.send_batch

    async def counted(producer: AIOKafkaProducer, batch: Any, topic: str, *, partition: int) -> Any:
        batches.append((topic, partition))
        return await send_batch(producer, batch, topic, partition=partition)

    monkeypatch.setattr(AIOKafkaProducer, "send_batch", counted)
    spec = make_spec(tmp_path, Recorder())
    settings = settings_for(infra, service_dsns["matching"], topic_prefix)
    await run_migrations(spec, settings)
    runtime = Runtime(spec, settings)
    await runtime.start()
    try:
        keys = [f"big-{i}" for i in range(4)]
        async with runtime.db.unit_of_work() as uow:  # one step of the relay: 200 records
            for n in range(50):
                for key in keys:
                    data = ProgrammeMatchingRequested(programme_id=f"{key}-echo")
                    uow.emit(Topic.PROGRAMMES, data, event_id=f"{key}-{n:03d}")
        topic = runtime.topic(Topic.PROGRAMMES)
        async with TopicReader(infra.kafka_bootstrap, [topic]) as reader:
            seen = await reader.wait_for(lambda r: len(r) >= 200, what="200 outbox events")
    finally:
        await runtime.stop()
    assert len(seen) == 200
    for key in keys:
        ids = [json.loads(r.value or b"")["id"] for r in seen if r.key == f"{key}-echo".encode()]
        assert ids == [f"{key}-{n:03d}" for n in range(50)], key
    assert max(Counter(batches).values()) > 10  # many batches a partition, not one


async def test_a_record_too_large_to_send_stays_and_its_partition_goes_on_after_it(
    running: tuple[Runtime, Recorder], infra: Infra, caplog: pytest.LogCaptureFixture
) -> None:
    """A 3 MiB record is refused before anything of its step is sent: it stays in the outbox
    (holding what follows), nothing goes out twice, and once an operator removes it the same
    partition publishes again without a restart."""
    caplog.set_level(logging.WARNING, logger="twoway_shared.platform.poller")
    runtime, _ = running
    topic = runtime.topic(Topic.PROGRAMMES)
    key = b"prog-after-echo"  # the one partition of everything here
    noise = base64.b64encode(os.urandom(3 * 1024 * 1024 // 4 * 3))  # gzip cannot shrink it
    await runtime.pool.execute(
        "INSERT INTO matching.outbox (topic, key, value, headers, event_type)"
        " VALUES ($1, $2, $3, '[]', 'programme.matching_requested')",
        topic,
        key,
        b'{"id":"too-large","noise":"' + noise + b'"}',
    )
    async with runtime.db.unit_of_work() as uow:  # wakes the relay
        uow.emit(Topic.PROGRAMMES, ProgrammeMatchingRequested(programme_id="prog-after-echo"))

    async def refusals() -> list[str]:
        return [
            str(getattr(r, "error", ""))
            for r in caplog.records
            if "MessageSizeTooLargeError" in str(getattr(r, "error", ""))
        ]

    await eventually(refusals, bool, what="the relay refusing the large record")
    assert await runtime.pool.fetchval("SELECT count(*) FROM matching.outbox") == 2
    await runtime.pool.execute("DELETE FROM matching.outbox WHERE length(value) > 1000000")
    async with runtime.db.unit_of_work() as uow:
        uow.emit(Topic.PROGRAMMES, ProgrammeMatchingRequested(programme_id="prog-after-echo"))
    await eventually(
        lambda: runtime.pool.fetchval("SELECT count(*) FROM matching.outbox"),
        lambda n: n == 0,
        what="an empty outbox",
    )
    async with TopicReader(infra.kafka_bootstrap, [topic]) as reader:
        seen = await reader.wait_for(lambda r: len(r) >= 2, what="the two later events")
    ids = [json.loads(r.value or b"")["id"] for r in seen]
    assert len(ids) == len(set(ids)) == 2  # each once: nothing of a refused step went out
    assert [r.key for r in seen] == [key, key]


async def test_handler_effects_carry_causation(
    running: tuple[Runtime, Recorder], infra: Infra
) -> None:
    runtime, _ = running
    topic = await to_programmes(runtime, (record("p-cause", event_id="cause-1"), b"p-cause"))
    async with TopicReader(infra.kafka_bootstrap, [topic]) as reader:
        seen = await reader.wait_for(
            lambda r: any(x.key == b"p-cause-echo" for x in r), what="the echo event"
        )
    echo = json.loads(next(r.value for r in seen if r.key == b"p-cause-echo") or b"")
    assert echo["causationid"] == "cause-1"
    assert echo["source"] == "/twoway/matching"
    assert echo["type"] == "twoway.programme.matching_requested.v1"


async def test_two_concurrent_migrations_both_succeed(
    migration_dsn_of: dict[str, str], tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, Recorder())
    dsn = migration_dsn_of["matching"]
    runs = await asyncio.gather(*(migrate(dsn, "matching", spec.migrations()) for _ in range(2)))
    assert sorted(len(r) for r in runs) == [0, len(spec.migrations())]
    assert await migrate(dsn, "matching", spec.migrations()) == []


async def test_migrate_as_the_runtime_role_is_refused_with_a_reason(
    service_dsns: dict[str, str], tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, Recorder())
    with pytest.raises(MigrationError, match="TWOWAY_DATABASE_MIGRATION_URL"):
        await migrate(service_dsns["matching"], "matching", spec.migrations())


async def test_topics_are_created_with_configured_partitions(
    infra: Infra, topic_prefix: str
) -> None:
    settings = Settings(
        **infra.kafka_settings("admin"), topic_prefix=topic_prefix, topic_partitions=4
    )
    names = [settings.topic(Topic.PAIRS), settings.topic(Topic.SESSIONS)]
    await ensure_topics(settings, names)
    await ensure_topics(settings, names)  # idempotent
    async with kafka_admin(infra) as admin:
        described = await admin.describe_topics(names)
    assert {d["topic"]: len(d["partitions"]) for d in described} == dict.fromkeys(names, 4)


async def test_ignored_event_types_are_counted_and_committed(
    running: tuple[Runtime, Recorder], infra: Infra
) -> None:
    runtime, recorder = running
    configured = encode(new_event(ProgrammeConfigured(programme_id="p-ign"), source="/test"))
    topic = await to_programmes(runtime, (configured, b"p-ign"))
    await wait_until_consumed(
        infra.kafka_bootstrap, runtime.settings.consumer_group("matching"), [topic]
    )
    scraped = generate_latest(runtime.metrics.registry).decode()
    assert (
        f'twoway_records_ignored_total{{event_type="programme.configured",topic="{topic}"}} 1.0'
        in scraped
    )
    assert recorder.calls == []


def test_a_spec_must_handle_or_ignore_every_event_type_it_consumes(tmp_path: Path) -> None:
    def handling(**ignores: Any) -> ServiceSpec:
        handlers: dict[type[BaseModel], Handler] = {ProgrammeMatchingRequested: Recorder().handle}
        return ServiceSpec("matching", (Topic.PROGRAMMES,), (), handlers, tmp_path, **ignores)

    with pytest.raises(ValueError, match=r"no handler for \['programme.configured'\]"):
        handling()
    with pytest.raises(ValueError, match="not on the topics it consumes"):
        handling(ignores=(ProgrammeConfigured, ParticipantWithdrawn))
    twice = Recorder()
    with pytest.raises(ValueError, match="have a handler and a batch handler"):
        ServiceSpec(
            "matching", (Topic.PROGRAMMES,), (), {ProgrammeMatchingRequested: twice.handle},
            tmp_path, ignores=(ProgrammeConfigured,),
            batch_handlers={ProgrammeMatchingRequested: twice.handle_many},
        )  # fmt: skip
    batched = make_spec(tmp_path, Recorder(), batched=True)
    assert set(batched.batch_dispatch) == {"programme.matching_requested"}
    assert batched.dispatch["programme.matching_requested"] is not None  # a run of one
    spec = make_spec(tmp_path, Recorder())
    assert spec.dispatch["programme.configured"] is None
    assert spec.dispatch["programme.matching_requested"] is not None


@pytest.mark.parametrize("batched", [False, True], ids=["handler", "batch-handler"])
async def test_a_backlog_is_handled_in_batches_and_a_bad_record_is_isolated(
    infra: Infra, service_dsns: dict[str, str], topic_prefix: str, tmp_path: Path, batched: bool
) -> None:
    """Records waiting before start come in batches; a failing one is retried and set aside
    alone, the others are committed once each, in order per key. With a batch handler, the
    failing run falls back to runs of one record."""
    recorder = Recorder()
    recorder.reject.add("k0-117")
    recorder.fail_times["k1-105"] = 2
    spec = make_spec(tmp_path, recorder, batched=batched)
    dsn = service_dsns["matching"]
    settings = settings_for(infra, dsn, topic_prefix)
    await run_migrations(spec, settings)
    topic = settings.topic(Topic.PROGRAMMES)
    await ensure_topics(settings, [topic, settings.topic(Topic.DEADLETTER)])
    keys = [f"k{k}" for k in range(3)]

    def records(ids: list[str]) -> list[ToSend]:
        return [
            ToSend(topic, record(p.split("-")[0], event_id=p), p.split("-")[0].encode())
            for p in ids
        ]

    backlog = [f"{key}-{n}" for n in range(100) for key in keys]
    await publish(infra.kafka_bootstrap, records(backlog))
    runtime = Runtime(spec, settings)
    await runtime.start()
    try:
        await eventually(
            lambda: effect_ids_from(dsn),
            lambda e: set(backlog) <= set(e),
            what="the backlog handled",
            timeout=60,
        )
        batches = next(iter(runtime.metrics.batch_size.collect())).samples
        count = next(s.value for s in batches if s.name.endswith("_count"))
        total = next(s.value for s in batches if s.name.endswith("_sum"))
        assert count > 0
        assert total / count > 5, "records were not batched"
        later = [f"{key}-{n}" for n in range(100, 200) for key in keys]
        await publish(infra.kafka_bootstrap, records(later))
        sent = backlog + later
        wanted = [p for p in sent if p != "k0-117"]
        handled = await eventually(
            lambda: effect_ids_from(dsn),
            lambda e: set(wanted) <= set(e),
            what="every good record handled",
            timeout=60,
        )
    finally:
        await runtime.stop()
    originals = [p for p in handled if p in set(sent)]
    assert sorted(originals) == sorted(wanted)  # each exactly once, the rejected one never
    for key in keys:
        assert [p for p in originals if p.startswith(f"{key}-")] == [
            p for p in wanted if p.startswith(f"{key}-")
        ]
    assert recorder.ids.count("k1-105") >= 3
    if batched:
        assert max(len(g) for g in recorder.groups) > 5, "no run of records handled at once"
        assert ["k0-117"] in recorder.groups  # retried alone, then dead-lettered
        assert ["k1-105"] in recorder.groups
        async with TopicReader(infra.kafka_bootstrap, [settings.topic(Topic.DEADLETTER)]) as dlq:
            dead = await dlq.wait_for(lambda r: len(r) >= 1, what="the dead letter")
        assert [json.loads(r.value or b"")["id"] for r in dead] == ["k0-117"]


async def test_a_batch_handler_gets_the_runs_of_its_type_in_record_order(
    infra: Infra, service_dsns: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    """Consecutive new records of a batch-handled type make one call; a record of another type
    ends the run, a duplicate does not; effects and emitted events keep the records' order."""
    recorder = Recorder()
    spec = make_spec(tmp_path, recorder, batched=True)
    settings = settings_for(infra, service_dsns["matching"], topic_prefix)
    await run_migrations(spec, settings)
    runtime = Runtime(spec, settings)
    await runtime.start()
    topic = runtime.topic(Topic.PROGRAMMES)

    def consumed(offset: int, data: BaseModel, event_id: str) -> SimpleNamespace:
        value = encode(new_event(data, source="/test", event_id=event_id))
        return SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"p", value=value)

    requested, configured = (
        ProgrammeMatchingRequested(programme_id="p"),
        ProgrammeConfigured(programme_id="p"),
    )
    batch = [
        consumed(0, requested, "a1"),
        consumed(1, requested, "a2"),
        consumed(2, configured, "c1"),
        consumed(3, requested, "a3"),
        consumed(4, requested, "a1"),  # a duplicate: skipped, the run goes on
        consumed(5, requested, "a4"),
    ]
    try:
        assert runtime.processor is not None
        async with TopicReader(infra.kafka_bootstrap, [topic]) as reader:
            assert await runtime.processor.process_batch(batch)
            groups, ids = list(recorder.groups), list(recorder.ids)
            echoes = await reader.wait_for(
                lambda r: sum(x.key == b"p-echo" for x in r) >= 5, what="the five echoes"
            )
    finally:
        await runtime.stop()
    assert groups == [["a1", "a2"], ["a3", "a4"]]
    assert ids == ["a1", "a2", "c1", "a3", "a4"]
    causes = [json.loads(r.value or b"")["causationid"] for r in echoes if r.key == b"p-echo"]
    assert causes == ["a1", "a2", "c1", "a3", "a4"]  # one partition: the outbox's order
    sent = {"a1", "a2", "c1", "a3", "a4"}
    handled = [e for e in await effect_ids_from(settings.database_url) if e in sent]
    assert handled == ["a1", "a2", "c1", "a3", "a4"]  # the echoes handled later left out
