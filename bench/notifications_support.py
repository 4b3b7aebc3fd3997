"""Shared set-up of the notifications benchmarks: a fresh database, an SMTP sink, the service."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime

import asyncpg
from twoway_notifications.app import create_spec
from twoway_notifications.config import NotificationsSettings
from twoway_notifications.sender import SenderOptions
from twoway_shared.platform.roles import migration_dsns, provision
from twoway_shared.platform.runtime import Runtime, run_migrations

KAFKA = os.environ.get("TWOWAY_TEST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
ADMIN = os.environ.get("TWOWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:15432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    """aiosmtpd's discarding Sink in its own process, so it does not share our GIL."""
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
            "aiosmtpd.handlers.Sink",
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


async def fresh_service(smtp_port: int, options: SenderOptions) -> tuple[Runtime, str]:
    """A migrated notifications schema in a new database, and a runtime not yet started."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    dsn = (await provision(ADMIN, name, role_prefix=f"{name}_"))["notifications"]
    settings = NotificationsSettings(
        kafka_bootstrap_servers=KAFKA,
        database_url=dsn,
        database_migration_url=migration_dsns(ADMIN, name, role_prefix=f"{name}_")["notifications"],
        topic_prefix=f"{name}.",
        topic_partitions=1,
        http_port=0,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
    )
    spec = create_spec(options)
    await run_migrations(spec, settings)
    return Runtime(spec, settings), dsn


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
    conn: asyncpg.Connection, rows: list[tuple[str, str, str, datetime]], template: str
) -> None:
    """(notification_id, recipient, partner, due_at) rows about pair p1 / session s1."""
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
            (nid, who, partner, True, template, "p1", "s1", "bench", due, due)
            for nid, who, partner, due in rows
        ],
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def now_monotonic() -> float:
    return time.perf_counter()
