"""Start-up and per-record logs: no false alarms, one DEBUG line per record, INFO summaries."""

from __future__ import annotations

import logging
import random
import socket
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from twoway_dev.localstack.stack import KAFKA_ADMIN, LocalStack
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import ToSend, eventually, publish
from twoway_dev.testing.service import with_migration_url
from twoway_shared.contract import (
    Event,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    Topic,
    encode,
    new_event,
)
from twoway_shared.platform.kafka import ensure_topics, wait_for_group_coordinator
from twoway_shared.platform.runtime import Runtime, ServiceSpec, run_migrations
from twoway_shared.platform.settings import Settings
from twoway_shared.platform.uow import UnitOfWork


async def ignore(event: Event[Any], uow: UnitOfWork) -> None:
    """A handler with nothing to do: these tests look at the logs around it."""


def quiet_spec(tmp_path: Path) -> ServiceSpec:
    (tmp_path / "migrations").mkdir(exist_ok=True)
    return ServiceSpec(
        name="matching",
        consumes=(Topic.PROGRAMMES,),
        produces=(),
        handlers={ProgrammeMatchingRequested: ignore},
        ignores=(ProgrammeConfigured,),
        migrations_dir=tmp_path / "migrations",
    )


def record(programme_id: str) -> bytes:
    return encode(new_event(ProgrammeMatchingRequested(programme_id=programme_id), source="/t"))


pytestmark = pytest.mark.infra


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def two_free_ports() -> int:
    for _ in range(50):
        port = random.randrange(41000, 48000)
        if _free(port) and _free(port + 1):
            return port
    raise AssertionError("no two free ports in a row")


async def test_a_new_cluster_gives_no_coordinator_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A brand-new broker has no offsets topic: the first group lookup used to log ERRORs."""
    port = two_free_ports()
    stack = LocalStack(tmp_path, kafka_port=port, pg_port=1)
    process = stack._kafka_start()
    try:
        stack._wait_kafka(float("inf"), process)
        info = stack.info
        kafka_env = {
            k.removeprefix("TWOWAY_").lower(): v for k, v in info.kafka_env(KAFKA_ADMIN).items()
        }
        settings = Settings.model_validate(kafka_env)
        await ensure_topics(settings, ["fresh.topic"])
        caplog.set_level(logging.INFO, logger="aiokafka")

        assert await wait_for_group_coordinator(settings, "fresh.group", timeout=60)
        consumer = AIOKafkaConsumer(
            "fresh.topic", group_id="fresh.group", **info.kafka_client_options()
        )
        await consumer.start()
        try:
            await eventually(
                lambda: _assigned(consumer), bool, timeout=60, what="partitions assigned"
            )
        finally:
            await consumer.stop()
    finally:
        stack._kafka_down()
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []


async def _assigned(consumer: AIOKafkaConsumer) -> bool:
    return bool(consumer.assignment())


async def test_one_debug_line_per_record_and_a_summary_at_info(
    infra: Infra,
    service_dsns: dict[str, str],
    topic_prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = quiet_spec(tmp_path)
    settings = with_migration_url(
        Settings(
            **infra.kafka_settings("admin"),
            database_url=service_dsns["matching"],
            topic_prefix=topic_prefix,
            topic_partitions=3,
            http_port=0,
        )
    )
    await run_migrations(spec, settings)
    runtime = Runtime(spec, settings)
    runtime.summary_seconds = 0.5
    await runtime.start()
    try:
        topic = runtime.topic(Topic.PROGRAMMES)
        sent = [ToSend(topic, record(f"p-log-{i}"), f"p-log-{i}".encode()) for i in range(4)]
        await publish(infra.kafka_bootstrap, sent)

        def summaries() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage().startswith("records processed")]

        async def summarised() -> int:
            return sum(getattr(r, "records", 0) for r in summaries())

        await eventually(summarised, lambda n: n >= 4, timeout=60, what="summaries of 4")
    finally:
        await runtime.stop()

    per_record = [r for r in caplog.records if r.getMessage().startswith("record ")]
    assert len(per_record) == 4
    assert {r.levelno for r in per_record} == {logging.DEBUG}
    assert all(r.levelno == logging.INFO for r in summaries())
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m in ("Received", "Processed") for m in messages)
    assert not any("Topic creation is skipped" in m for m in messages)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records), messages
