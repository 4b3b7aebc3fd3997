"""A notifications process killed with SIGKILL still sends a pending reminder, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import eventually
from twoway_shared.contract import (
    ParticipantEnrolled,
    ProgrammeConfigured,
    SessionScheduled,
)

from tests.e2e_support import Stack, mails, person, running_stack, script

pytestmark = pytest.mark.infra

PROGRAMME = "RM-KILL"


@pytest.fixture
async def stack(infra: Infra, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(infra, tmp_path) as running:
        yield running


async def restart_notifications(stack: Stack) -> None:
    with (stack.log_dir / "notifications.log").open("ab") as log:
        stack.processes["notifications"] = await asyncio.create_subprocess_exec(
            script("notifications"), "run", env=stack.env("notifications"), stdout=log, stderr=log
        )

    async def ready() -> int:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{stack.url('notifications')}/readyz")).status_code
        except httpx.TransportError:
            return 0

    await eventually(ready, lambda code: code == 200, timeout=60, what="notifications ready")


async def test_killed_service_sends_a_pending_reminder_once(stack: Stack) -> None:
    # A session starting in 1 min 20 s with a reminder 1 minute before: due in ~20 s.
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1, seconds=20)
    mentor = ParticipantEnrolled.model_validate(person("K-M1", PROGRAMME, "mentor"))
    mentee = ParticipantEnrolled.model_validate(person("K-E1", PROGRAMME, "mentee"))
    session = SessionScheduled(
        session_id="kill-s1",
        pair_id="kill-p1",
        programme_id=PROGRAMME,
        mentor_id="K-M1",
        mentee_id="K-E1",
        sequence=1,
        total=1,
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
    )
    await stack.send(
        ProgrammeConfigured(programme_id=PROGRAMME, reminder_minutes=[1]), mentor, mentee
    )
    await stack.barrier(["notifications"])
    await stack.send(session)
    await stack.barrier(["notifications"])

    # The reminders are stored; kill the process before they are due, with no chance to drain.
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        pending = await conn.fetch(
            "SELECT status, due_at FROM notifications.messages"
            " WHERE template = 'reminder' AND session_id = 'kill-s1'"
        )
        assert len(pending) == 2
        assert all(r["due_at"] > datetime.now(UTC) for r in pending)
        process = stack.processes["notifications"]
        process.kill()
        assert await process.wait() == -9

        await restart_notifications(stack)
        addresses = ["k-m1@example.com", "k-e1@example.com"]

        def reminders() -> list[str]:
            return sorted(m.to for m in mails(stack.mail, addresses) if m.template == "reminder")

        async def probe() -> list[str]:
            return reminders()

        await eventually(probe, lambda r: r == addresses[::-1], timeout=60, what="2 reminders")
        arrived = datetime.now(UTC)
        assert arrived >= starts - timedelta(minutes=1)

        async def statuses() -> list[str]:
            rows = await conn.fetch(
                "SELECT status FROM notifications.messages"
                " WHERE template = 'reminder' AND session_id = 'kill-s1'"
            )
            return sorted(r["status"] for r in rows)

        await eventually(statuses, lambda s: s == ["sent", "sent"], what="reminders marked sent")
        assert reminders() == addresses[::-1]  # once each
    finally:
        await conn.close()
