"""Benchmark: emails per second from the sender to a local SMTP sink for a burst of messages."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from notifications_support import (
    fresh_service,
    seed_messages,
    seed_people,
    sent_count,
    start_sink,
)
from twoway_notifications.sender import SenderOptions


async def main(count: int) -> None:
    sink, port = start_sink()
    runtime, dsn = await fresh_service(port, SenderOptions())
    conn = await asyncpg.connect(dsn)
    try:
        await seed_people(conn, 1000)
        now = datetime.now(UTC) - timedelta(seconds=1)
        await conn.execute(
            """INSERT INTO notifications.sessions VALUES ('s1', 'p1', 'P', 'u1', 'u0', 1, 1,
               $1, $2, 0, 'scheduled', 'bench')""",
            now + timedelta(days=2),
            now + timedelta(days=2, minutes=30),
        )
        rows = [
            (str(uuid.uuid4()), f"u{i % 1000}", f"u{(i + 1) % 1000}", now) for i in range(count)
        ]
        await runtime.start()
        await asyncio.sleep(2)  # let the consumer join its group first
        started = time.perf_counter()
        await seed_messages(conn, rows, "pair_confirmed")
        await conn.execute("SELECT pg_notify('twoway_notifications_due', '')")
        while await sent_count(conn) < count:  # noqa: ASYNC110 (polling another process)
            await asyncio.sleep(0.05)
        elapsed = recorded = time.perf_counter() - started
        print(
            f"{count} emails: delivered in {elapsed:.2f} s ({count / elapsed:.0f}/s); "
            f"all recorded sent (with notification.sent in the outbox) in {recorded:.2f} s "
            f"({count / recorded:.0f}/s)"
        )
    finally:
        await runtime.stop()
        await conn.close()
        sink.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().count))
