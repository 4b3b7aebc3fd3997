"""Benchmark: emails per second from the sender to a local SMTP sink for a burst of messages.

Usage (the tests' infrastructure, e.g. a shared project stack):
    TWOWAY_TEST_STACK_DIR=/path/to/stack uv run python bench/notifications_send_rate.py
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench_support import bench_infra
from notifications_support import notifications_bench, seed_messages, sent_count
from twoway_dev.testing.infra import Infra

MIXES = ("programme", "pair_confirmed")


async def run(infra: Infra, count: int, mix: str = "programme") -> float:
    """Emails/s from the burst's insertion to the last one recorded sent.

    `mix`: "programme", the programme's (half pair_confirmed, half bookings with the pair's
    six-session calendar, as a pair's four emails), or "pair_confirmed" alone (no calendar).
    """
    now = datetime.now(UTC) - timedelta(seconds=1)
    async with notifications_bench(infra, now + timedelta(days=2)) as (runtime, conn):
        rows = [
            (str(uuid.uuid4()), f"u{i % 1000}", f"u{(i + 1) % 1000}", now) for i in range(count)
        ]
        bookings = rows[1::2] if mix == "programme" else []
        await runtime.start()
        await asyncio.sleep(2)  # let the consumer join its group first
        started = time.perf_counter()
        await seed_messages(conn, rows[::2] if bookings else rows, "pair_confirmed")
        await seed_messages(conn, bookings, "booking", session_id=None)
        await conn.execute("SELECT pg_notify('twoway_notifications_due', '')")
        # A deadline and a progress line: a slow run shows how far it got instead of looking
        # like a hang (10,000 emails at an overloaded machine's 15/s take over ten minutes).
        deadline = started + max(120.0, count / 10)
        shown = started
        while (sent := await sent_count(conn)) < count:
            now_ = time.perf_counter()
            if now_ > deadline:
                raise TimeoutError(f"only {sent} of {count} emails sent in {now_ - started:.0f} s")
            if now_ - shown > 10:
                shown = now_
                print(f"  {sent} sent after {now_ - started:.0f} s", flush=True)
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    rate = count / elapsed
    print(
        f"notifications: {count} emails ({mix} mix) delivered and recorded sent "
        f"(notification.sent in the outbox) in {elapsed:.2f} s = {rate:.0f} emails/s"
    )
    return rate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--mix", choices=MIXES, default="programme")
    args = parser.parse_args()
    with bench_infra() as found:
        asyncio.run(run(found, args.count, args.mix))
