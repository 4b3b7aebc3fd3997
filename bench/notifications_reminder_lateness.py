"""Benchmark: reminder lateness (sent_at - due_at, p50/p99) with many pending reminders."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from notifications_support import (
    fresh_service,
    percentile,
    seed_messages,
    seed_people,
    sent_count,
    start_sink,
)
from twoway_notifications.sender import SenderOptions


async def main(pending: int, due_now: int, window: float) -> None:
    sink, port = start_sink()
    runtime, dsn = await fresh_service(port, SenderOptions())
    conn = await asyncpg.connect(dsn)
    try:
        await seed_people(conn, 1000)
        now = datetime.now(UTC)
        await conn.execute(
            """INSERT INTO notifications.sessions VALUES ('s1', 'p1', 'P', 'u1', 'u0', 1, 1,
               $1, $2, 0, 'scheduled', 'bench')""",
            now + timedelta(days=3),
            now + timedelta(days=3, minutes=30),
        )
        start = now + timedelta(seconds=5)
        # Most reminders lie ahead over the next day; `due_now` fall due during the window.
        later = [
            (
                str(uuid.uuid4()),
                f"u{i % 1000}",
                f"u{(i + 1) % 1000}",
                start + timedelta(seconds=window + 60 + i * 86_400 / pending),
            )
            for i in range(pending)
        ]
        soon = [
            (
                str(uuid.uuid4()),
                f"u{i % 1000}",
                f"u{(i + 1) % 1000}",
                start + timedelta(seconds=i * window / due_now),
            )
            for i in range(due_now)
        ]
        await seed_messages(conn, later + soon, "reminder")
        await runtime.start()
        while await sent_count(conn) < due_now:  # noqa: ASYNC110 (polling another process)
            await asyncio.sleep(0.1)
        rows = await conn.fetch(
            """SELECT extract(epoch FROM sent_at - due_at) AS late FROM notifications.messages
               WHERE status = 'sent'"""
        )
        lateness = [float(r["late"]) for r in rows]
        print(
            f"{pending} pending reminders ahead, {len(lateness)} fired over {window:.0f} s: "
            f"lateness p50 {percentile(lateness, 50) * 1000:.0f} ms, "
            f"p99 {percentile(lateness, 99) * 1000:.0f} ms, "
            f"max {max(lateness) * 1000:.0f} ms, early {sum(x < 0 for x in lateness)}"
        )
    finally:
        await runtime.stop()
        await conn.close()
        sink.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--due-now", type=int, default=1000)
    parser.add_argument("--window", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(main(args.pending, args.due_now, args.window))
