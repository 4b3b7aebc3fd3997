"""The SMTP hand-over under SIGKILL, step by step: the notifications process is killed while an
SMTP server withholds its reply at one step (or while the database makes one statement wait),
restarted, and the server's receipts (by Message-ID) and the database are checked: a message
the server never completed is sent again, one it completed is never sent again.

The one step no test can stop at is the hand-over window itself (from the 'sending' commit to
the end-of-data mark, written in the same step of the event loop): docs/reliability.md
measures it (test_the_hand_over_window_is_measured).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import BaseModel
from twoway_dev.localstack.stack import LocalStack
from twoway_dev.testing.infra import unique_name
from twoway_dev.testing.kafka import TopicReader, ToSend, eventually, publish
from twoway_shared.contract import (
    PairConfirmed,
    ParticipantEnrolled,
    Topic,
    topic_name,
)
from twoway_shared.contract.access import all_acls
from twoway_shared.contract.examples import EXAMPLE_DATA
from twoway_shared.platform.kafka_acls import grant
from twoway_shared.platform.roles import migration_dsns, provision

from tests.reliability.gated_smtp import GatedSmtp, Step
from tests.reliability.support import Cluster, infra_of

pytestmark = [pytest.mark.reliability, pytest.mark.infra, pytest.mark.timeout(300)]

PAIR = {"pair_id": "pair-h", "programme_id": "RM-2027", "mentor_id": "HM", "mentee_id": "HE"}
SERVICE = "notifications"


def person(pid: str, role: str) -> ParticipantEnrolled:
    return ParticipantEnrolled.model_validate(
        {
            **EXAMPLE_DATA["participant.enrolled"],
            "participant_id": pid,
            "role": role,
            "email": f"{pid.lower()}@example.com",
            "display_name": f"Person {pid}",
            "locale": "en",
        }
    )


@dataclass
class Bench:
    """The notifications service alone, as a process, on the suite's broker and database,
    sending to a gated SMTP server."""

    cluster: Cluster
    smtp: GatedSmtp
    dsn: str
    reader: TopicReader

    async def publish_pair(self) -> None:
        """Both people, then (once the service knows them, so that both emails are due at
        once and go out in one batch) their pair."""
        await self.publish([person("HM", "mentor"), person("HE", "mentee")])
        await eventually(
            lambda: self.count("SELECT count(*) FROM notifications.participants"),
            lambda n: n == 2,
            what="both people known",
        )
        await self.publish([PairConfirmed(**PAIR)])

    async def count(self, query: str) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            found: int = await conn.fetchval(query)
            return found
        finally:
            await conn.close()

    async def publish(self, events: list[BaseModel]) -> None:
        await publish(
            self.cluster.infra.kafka_bootstrap,
            [
                ToSend.event(self.cluster.prefix, data, source="/tests/reliability/handover")
                for data in events
            ],
        )

    async def messages(self) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(
                await conn.fetch(
                    "SELECT notification_id, status, lease_holder, error"
                    " FROM notifications.messages ORDER BY notification_id"
                )
            )
        finally:
            await conn.close()

    async def waiting_statements(self, like: str) -> int:
        """Statements of this database waiting for a lock, whose text contains `like`."""
        conn = await asyncpg.connect(self.dsn)
        try:
            count: int = await conn.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'
                     AND position($1 in query) > 0""",
                like,
            )
            return count
        finally:
            await conn.close()

    def sent_events(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for record in self.reader.records:
            event = json.loads(record.value or b"{}")
            if event["type"] == "twoway.notification.sent.v1":
                found[event["data"]["notification_id"]] += 1
        return found

    async def kill_and_restart(self) -> None:
        await self.cluster.kill(SERVICE, 0)
        await self.cluster.start_instance(SERVICE, 0)


@pytest.fixture
async def bench(own_stack: LocalStack, tmp_path: Path) -> AsyncIterator[Bench]:
    infra = infra_of(own_stack)
    database = unique_name("h_")
    dsns = await provision(infra.admin_dsn, database, role_prefix=f"{database}_")
    owners = migration_dsns(infra.admin_dsn, database, role_prefix=f"{database}_")
    prefix = f"{unique_name('h')}."
    await grant(infra.kafka_admin_options(), all_acls(prefix) if infra.kafka_secured else [])
    smtp = GatedSmtp()
    await smtp.start()
    cluster = Cluster(
        infra, dsns, owners, prefix, tmp_path / "logs", smtp, {SERVICE: 1}, services=(SERVICE,)
    )
    try:
        await cluster.start()
        topics = [topic_name(prefix, Topic.NOTIFICATIONS)]
        async with TopicReader(infra.kafka_bootstrap, topics) as reader:
            yield Bench(cluster, smtp, dsns[SERVICE], reader)
        assert cluster.crashed() == [], cluster.crashed()
    finally:
        await cluster.stop()
        await smtp.stop()


# (where the server waits, whether the database holds the statement that follows, what the
# messages' status is at the kill, and whether the server then has the complete messages)
STEPS: dict[str, tuple[Step, str | None, str, bool]] = {
    "before DATA": ("RCPT", None, "pending", False),
    "after the text, before the 'sending' commit": ("DATA", "status = 'sending'", "pending", False),
    "after the end of data, before the reply": ("END", None, "sending", True),
    "after the reply, before the result is recorded": ("END", "status = 'sent'", "sending", True),
}


@pytest.mark.parametrize("step", list(STEPS))
async def test_sigkill_at_each_step_of_the_hand_over(bench: Bench, step: str) -> None:
    hold, blocked_statement, status_at_kill, server_has_them = STEPS[step]
    smtp = bench.smtp
    smtp.hold = hold
    await bench.publish_pair()
    await smtp.wait_for(f"two sessions held at {hold}", lambda: smtp.held == 2)
    locker: asyncpg.Connection | None = None
    if blocked_statement is not None:
        # The database makes the sender's next statement on these rows wait.
        locker = await asyncpg.connect(bench.dsn)
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("SELECT 1 FROM notifications.messages FOR UPDATE")
        smtp.release()
        if hold == "DATA":
            await smtp.wait_for("both texts begun", lambda: smtp.texts == 2)
        await eventually(
            lambda: bench.waiting_statements(blocked_statement),
            lambda n: n >= 1,
            what=f"the sender waiting at {blocked_statement!r}",
        )
    assert len(smtp.messages) == (2 if server_has_them else 0)
    await bench.cluster.kill(SERVICE, 0)
    if locker is not None:
        await transaction.rollback()
        await locker.close()
    smtp.release()
    # A COMMIT the kernel took before the kill is still applied after it: wait for it.
    await eventually(
        bench.messages,
        lambda rows: [r["status"] for r in rows] == [status_at_kill] * 2,
        timeout=10,
        what=f"both messages {status_at_kill!r} after the kill",
    )

    restarted = time.monotonic()
    await bench.cluster.start_instance(SERVICE, 0)
    rows = await eventually(
        bench.messages,
        lambda rows: [r["status"] for r in rows] == ["sent", "sent"],
        timeout=60,
        what="both messages recorded as sent",
    )
    settled = time.monotonic() - restarted
    ids = [r["notification_id"] for r in rows]
    await eventually(
        lambda: _async(bench.sent_events()),
        lambda events: all(events[i] >= 1 for i in ids),
        what="notification.sent for both",
    )
    receipts = smtp.message_ids()
    print(f"{step}: receipts {dict(receipts)}, settled {settled:.1f} s after the restart")
    assert len(receipts) == 2, f"lost: {receipts}"  # both emails, each with its Message-ID
    assert all(n == 1 for n in receipts.values()), f"sent twice: {receipts}"
    assert all(n == 1 for n in bench.sent_events().values()), bench.sent_events()
    # A message the server had completed was recorded without a second copy, and says so.
    unconfirmed = [r["error"] is not None for r in rows]
    assert unconfirmed == [server_has_them] * 2, rows


async def _async(value: Any) -> Any:
    return value


async def test_the_hand_over_window_is_measured(bench: Bench) -> None:
    """Send a burst and read the hand-over's figures from the service's /metrics: from each
    'sending' commit's result to its end-of-data marks (the window a SIGKILL loses a message
    in), and the commit's round trip (an upper bound on how much earlier the commit may have
    been made durable)."""
    people = 200
    items: list[BaseModel] = []
    for n in range(people // 2):
        mentor, mentee = f"WM{n}", f"WE{n}"
        items += [
            person(mentor, "mentor"),
            person(mentee, "mentee"),
            PairConfirmed(**{**PAIR, "pair_id": f"w{n}", "mentor_id": mentor, "mentee_id": mentee}),
        ]
    started = time.monotonic()
    await bench.publish(items)
    await bench.smtp.wait_for(f"{people} emails", lambda: len(bench.smtp.messages) == people)
    seconds = time.monotonic() - started
    port = bench.cluster.ports[(SERVICE, 0)]
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    figures = _histogram(text, "twoway_smtp_handover_seconds")
    exposed, commit = figures["exposed"], figures["commit"]
    commits = exposed["count"]
    print(
        f"hand-over: {people} emails in {seconds:.1f} s, {commits:.0f} 'sending' commits;"
        f" exposed (COMMIT written to the last end-of-data mark written)"
        f" {1e6 * exposed['sum'] / commits:.1f} us a commit on average, all of them within"
        f" {1e6 * exposed['le']:.0f} us; the COMMIT's reply {1e3 * commit['sum'] / commits:.2f} ms;"
        f" share of the sending time exposed to a loss {exposed['sum'] / seconds:.1e}"
    )
    assert commits >= 1
    assert exposed["sum"] / commits < 0.001, "the end-of-data marks follow the COMMIT late"


def _histogram(text: str, name: str) -> dict[str, dict[str, float]]:
    """{part: {"sum": s, "count": n, "le": the smallest bucket bound that holds every
    observation}} of a histogram labelled by part, from Prometheus' text format."""
    found: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        if not line.startswith(name + "_"):
            continue
        series, value = line.rsplit(" ", 1)
        kind, _, rest = series.removeprefix(name + "_").partition("{")
        labels = dict(item.split("=", 1) for item in rest.rstrip("}").split(","))
        part = labels["part"].strip('"')
        if kind in ("sum", "count"):
            found.setdefault(part, {})[kind] = float(value)
        elif kind == "bucket":
            buckets.setdefault(part, []).append((float(labels["le"].strip('"')), float(value)))
    for part, figures in found.items():
        figures["le"] = min(b for b, n in buckets[part] if n >= figures["count"])
    return found
