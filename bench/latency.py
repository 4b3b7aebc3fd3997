"""Benchmark: event-in to event-out latency of the platform at a steady input rate.

A service on the real platform (batched consumer, inbox, unit of work, outbox, relay) whose
handler writes one row and emits one event per input. Inputs are published at `--rate`
events/s for `--seconds`; the latency of each is the time from its publication to the
arrival of its output event at a reader.

The service runs as matching's principal with matching's ACLs: it reads
`programme.matching_requested` and answers each with a `pair.confirmed` on the pairs topic.

Usage (the tests' infrastructure, bench/bench_support.py, e.g. a shared project stack):
    TWOWAY_TEST_STACK_DIR=/path/to/stack uv run python bench/latency.py --rate 500 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from bench_support import bench_infra, fresh_place
from twoway_dev.testing.infra import Infra
from twoway_shared.contract import (
    Event,
    PairConfirmed,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    Topic,
    encode,
    new_event,
)
from twoway_shared.platform.runtime import Runtime, ServiceSpec, run_migrations
from twoway_shared.platform.settings import Settings
from twoway_shared.platform.uow import UnitOfWork

EFFECTS_SQL = "CREATE TABLE matching.effects (event_id text PRIMARY KEY, programme_id text);"


async def echo(event: Event[Any], uow: UnitOfWork) -> None:
    programme_id = event.data.programme_id
    await uow.conn.execute(
        "INSERT INTO matching.effects (event_id, programme_id) VALUES ($1, $2)",
        event.envelope.id,
        programme_id,
    )
    answer = PairConfirmed(
        pair_id=programme_id, programme_id=programme_id, mentor_id="m", mentee_id="e"
    )
    uow.emit(Topic.PAIRS, answer)


async def run(infra: Infra, rate: int, seconds: int) -> float:
    """The p99 latency in seconds."""
    async with fresh_place(infra) as place:
        with tempfile.TemporaryDirectory(prefix="twoway-latency-") as folder:
            settings = place.settings(Settings, "matching")
            return await _measure(infra, settings, rate, seconds, Path(folder))


async def _measure(
    infra: Infra, settings: Settings, rate: int, seconds: int, folder: Path
) -> float:
    migrations = folder / "migrations"
    migrations.mkdir()
    (migrations / "0001_effects.sql").write_text(EFFECTS_SQL)
    spec = ServiceSpec(
        name="matching",
        consumes=(Topic.PROGRAMMES,),
        produces=(Topic.PAIRS,),
        handlers={ProgrammeMatchingRequested: echo},
        ignores=(ProgrammeConfigured,),
        migrations_dir=migrations,
    )
    await run_migrations(spec, settings)
    runtime = Runtime(spec, settings)
    await runtime.start()
    topic = runtime.topic(Topic.PROGRAMMES)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    kafka = infra.kafka_admin_options()
    producer = AIOKafkaProducer(**kafka, linger_ms=0)
    consumer = AIOKafkaConsumer(runtime.topic(Topic.PAIRS), **kafka, auto_offset_reset="latest")
    await producer.start()
    await consumer.start()
    total = rate * seconds
    try:
        await consumer.getmany(timeout_ms=1000)  # positioned at the end before any input
        await asyncio.sleep(2)  # the service's consumer joins its group
        reading = asyncio.create_task(_read(consumer, sent_at, latencies, total))
        began = time.perf_counter()
        for i in range(total):
            # Paced: the i-th event leaves at began + i / rate.
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            programme_id = f"lat-{i}"
            data = ProgrammeMatchingRequested(programme_id=programme_id)
            sent_at[programme_id] = time.perf_counter()
            await producer.send(
                topic, encode(new_event(data, source="/bench")), key=programme_id.encode()
            )
        await asyncio.wait_for(reading, 60)
    finally:
        await producer.stop()
        await consumer.stop()
        await runtime.stop()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"latency: {rate * seconds} inputs at {rate}/s, {len(latencies)} outputs: "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    return p99


async def _read(
    consumer: AIOKafkaConsumer, sent_at: dict[str, float], latencies: list[float], total: int
) -> None:
    """Note each output's latency as it arrives."""
    while len(latencies) < total:
        fetched = await consumer.getmany(timeout_ms=100)
        now = time.perf_counter()
        for records in fetched.values():
            for record in records:
                pair_id = json.loads(record.value or b"{}")["data"]["pair_id"]
                latencies.append(now - sent_at[pair_id])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    with bench_infra() as found:
        asyncio.run(run(found, args.rate, args.seconds))
