"""Benchmark: reminder lateness (sent_at - due_at, p50/p99) with many pending reminders.

Usage (the tests' infrastructure, e.g. a shared project stack):
    TWOWAY_TEST_STACK_DIR=/path/to/stack uv run python bench/notifications_reminder_lateness.py
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench_support import bench_infra
from notifications_support import notifications_bench, percentile, seed_messages, sent_count
from twoway_dev.testing.infra import Infra


async def run(infra: Infra, pending: int, due_now: int, window: float) -> float:
    """The p99 lateness in seconds of `due_now` reminders falling due over `window` s."""
    now = datetime.now(UTC)
    async with notifications_bench(infra, now + timedelta(days=3)) as (runtime, conn):
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
        deadline = time.perf_counter() + window + 120
        while (sent := await sent_count(conn)) < due_now:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {sent} of {due_now} reminders sent in time")
            await asyncio.sleep(0.1)
        rows = await conn.fetch(
            """SELECT extract(epoch FROM sent_at - due_at) AS late FROM notifications.messages
               WHERE status = 'sent'"""
        )
    lateness = [float(r["late"]) for r in rows]
    print(
        f"reminders: {pending} pending ahead, {len(lateness)} fired over {window:.0f} s: "
        f"lateness p50 {percentile(lateness, 50) * 1000:.0f} ms, "
        f"p99 {percentile(lateness, 99) * 1000:.0f} ms, "
        f"max {max(lateness) * 1000:.0f} ms, early {sum(x < 0 for x in lateness)}"
    )
    return percentile(lateness, 99)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--due-now", type=int, default=1000)
    parser.add_argument("--window", type=float, default=20.0)
    args = parser.parse_args()
    with bench_infra() as found:
        asyncio.run(run(found, args.pending, args.due_now, args.window))
