"""Benchmark: the floor under every service, a raw aiokafka -> asyncpg -> aiokafka loop.

Each consumed record inserts one row (an inbox-like claim) and produces one record, then
the loop commits the PostgreSQL transaction and the Kafka offset: once per record, or once
per batch of what the consumer has (up to 500). No framework, no parsing, no handler: what
the services are compared with.

Usage (the tests' infrastructure, bench/bench_support.py, e.g. a shared project stack):
    TWOWAY_TEST_STACK_DIR=/path/to/stack uv run python bench/floor.py --records 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from bench_support import bench_infra
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import ToSend, publish

BATCH = 500


async def loop(
    kafka: dict[str, Any], dsn: str, source: str, sink: str, count: int, batch: int
) -> float:
    """Consume `count` records; records/s from the first record to the last commit."""
    conn = await asyncpg.connect(dsn)
    table = f"floor_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, kafka_offset bigint)")
    consumer = AIOKafkaConsumer(
        source,
        **kafka,
        group_id=f"floor-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch,
    )
    producer = AIOKafkaProducer(**kafka, enable_idempotence=True, linger_ms=5)
    await consumer.start()
    await producer.start()
    insert = f"INSERT INTO {table} (id, kafka_offset) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    insert_many = (
        f"INSERT INTO {table} (id, kafka_offset)"
        " SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING"
    )
    done = 0
    started = 0.0
    try:
        while done < count:
            fetched = await consumer.getmany(timeout_ms=100, max_records=batch)
            records = [r for rs in fetched.values() for r in rs]
            if not records:
                continue
            if not started:
                started = time.perf_counter()
            async with conn.transaction():
                if batch == 1:
                    await conn.execute(insert, records[0].value.decode(), records[0].offset)
                else:
                    await conn.execute(
                        insert_many,
                        [r.value.decode() for r in records],
                        [r.offset for r in records],
                    )
                futures = [await producer.send(sink, r.value, key=r.key) for r in records]
                await asyncio.gather(*futures)
            await consumer.commit()
            done += len(records)
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()


async def run(infra: Infra, records: int) -> tuple[float, float]:
    """(per-record, batched) records/s; the loops run as the Kafka super-user."""
    bootstrap, dsn, kafka = infra.kafka_bootstrap, infra.admin_dsn, infra.kafka_admin_options()
    prefix = f"floor{uuid.uuid4().hex[:8]}"
    topics = [f"{prefix}.in", f"{prefix}.out"]
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=6, replication_factor=1) for t in topics]
        )
        await publish(
            bootstrap,
            [
                ToSend(topics[0], uuid.uuid4().hex.encode(), str(i % 100).encode())
                for i in range(records)
            ],
        )
        # The per-record loop is slow: a tenth of the records is enough for its rate.
        per_record = await loop(kafka, dsn, topics[0], topics[1], max(500, records // 10), 1)
        batched = await loop(kafka, dsn, topics[0], topics[1], records, BATCH)
    finally:
        await admin.delete_topics(topics)
        await admin.close()
    print(f"floor per record: {per_record:,.0f} records/s")
    print(f"floor batched (<= {BATCH}): {batched:,.0f} records/s")
    return per_record, batched


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    with bench_infra() as found:
        asyncio.run(run(found, parser.parse_args().records))
