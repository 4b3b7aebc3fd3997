"""Shared set-up of the notifications benchmarks: a fresh database, an SMTP sink, the service."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
from bench_support import Place, fresh_place
from twoway_dev.testing.infra import Infra
from twoway_notifications.app import create_spec
from twoway_notifications.config import NotificationsSettings
from twoway_notifications.sender import SenderOptions
from twoway_shared.platform.runtime import Runtime, run_migrations


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_sink(
    handler: str = "twoway_dev.localstack.mailsink.Discard",
) -> tuple[subprocess.Popen[bytes], int]:
    """A discarding aiosmtpd server in its own process, so it does not share our GIL; it
    offers PIPELINING, as real servers do (aiosmtpd's own `aiosmtpd.handlers.Sink` does
    not)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            handler,
        ]
    )
    for _ in range(100):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
            return process, port
        time.sleep(0.05)
    raise RuntimeError("the SMTP sink did not start")


async def sent_count(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM notifications.messages WHERE status = 'sent'")
    )


async def fresh_service(
    place: Place, smtp_port: int, options: SenderOptions
) -> tuple[Runtime, str]:
    """A migrated notifications schema in the place's database, a runtime not yet started."""
    settings = place.settings(
        NotificationsSettings,
        "notifications",
        topic_partitions=1,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
    )
    spec = create_spec(options)
    await run_migrations(spec, settings)
    return Runtime(spec, settings), place.dsns["notifications"]


async def seed_people(conn: asyncpg.Connection, n: int) -> None:
    await conn.executemany(
        """INSERT INTO notifications.participants (participant_id, programme_id, role,
               display_name, email, timezone) VALUES ($1, 'P', $2, $3, $4, 'Europe/London')""",
        [
            (f"u{i}", "mentor" if i % 2 else "mentee", f"User {i}", f"u{i}@example.com")
            for i in range(n)
        ],
    )


async def seed_messages(
    conn: asyncpg.Connection,
    rows: list[tuple[str, str, str, datetime]],
    template: str,
    session_id: str | None = "s1",
) -> None:
    """(notification_id, recipient, partner, due_at) rows about pair p1 (and `session_id`)."""
    await conn.copy_records_to_table(
        "messages",
        schema_name="notifications",
        columns=[
            "notification_id",
            "participant_id",
            "partner_id",
            "needs_partner",
            "template",
            "pair_id",
            "session_id",
            "cause_id",
            "due_at",
            "created_at",
        ],
        records=[
            (nid, who, partner, True, template, "p1", session_id, "bench", due, due)
            for nid, who, partner, due in rows
        ],
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def notifications_bench(
    infra: Infra, session_starts: datetime
) -> AsyncIterator[tuple[Runtime, asyncpg.Connection]]:
    """A notifications service (not yet started) on a fresh database with 1,000 people and
    the weekly series of six sessions of their pair p1 (s1 first), a discarding SMTP sink,
    and a connection to seed and watch it."""
    sink, port = start_sink()
    try:
        async with fresh_place(infra) as place:
            runtime, dsn = await fresh_service(place, port, SenderOptions())
            conn = await asyncpg.connect(dsn)
            try:
                await seed_people(conn, 1000)
                await conn.executemany(
                    """INSERT INTO notifications.sessions VALUES ($1, 'p1', 'P', 'u1', 'u0',
                       $2, 6, $3, $4, 0, 'scheduled', 'bench')""",
                    [
                        (
                            f"s{n}",
                            n,
                            session_starts + timedelta(weeks=n - 1),
                            session_starts + timedelta(weeks=n - 1, minutes=30),
                        )
                        for n in range(1, 7)
                    ],
                )
                yield runtime, conn
            finally:
                await runtime.stop()
                await conn.close()
    finally:
        sink.terminate()
