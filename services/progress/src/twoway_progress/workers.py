"""Background work of a progress instance: durable pair timers and the xAPI statement sender."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from twoway_shared.platform.poller import DATABASE_AWAY, Listener, Poller
from twoway_shared.platform.runtime import Runtime, Worker
from twoway_shared.platform.tracing import delivery_span, failed

from twoway_progress.config import ProgressSettings
from twoway_progress.domain.xapi import XAPI_VERSION, statement
from twoway_progress.handlers import fact_from_json, reassess
from twoway_progress.storage import DUE_CHANNEL, PendingStatement, Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    """Tunable in tests; the defaults suit production."""

    poll_seconds: float = 30.0
    batch_size: int = 100
    retry_base: timedelta = timedelta(seconds=2)
    retry_max: timedelta = timedelta(minutes=15)
    send_lease: timedelta = timedelta(minutes=2)
    http_timeout: float = 10.0


def backoff(attempts: int, base: timedelta, ceiling: timedelta) -> timedelta:
    """Exponential: base, 2 base, 4 base, ... never more than `ceiling`."""
    grown: timedelta = base * 2 ** max(0, attempts - 1)
    return min(grown, ceiling)


async def run_when_due(
    runtime: Runtime,
    options: WorkerOptions,
    work: Callable[[], Awaitable[int]],
    next_due: Callable[[Storage], Awaitable[datetime | None]],
    name: str,
    stopping: asyncio.Event,
) -> None:
    """Runs `work` whenever something may be due: on NOTIFY, at the next due time, or a poll."""

    async def until_due() -> float | None:
        async with runtime.pool.acquire() as conn:
            due = await next_due(Storage(conn))
        return None if due is None else (due - runtime.clock()).total_seconds()

    listener = Listener(runtime.settings.database_url, DUE_CHANNEL, lambda: poller.wake())
    poller = Poller(
        name,
        work,
        poll_seconds=options.poll_seconds,
        until_due=until_due,
        prepare=listener.ensure,
        recover=listener.drop,
        retry_on=DATABASE_AWAY,
    )
    try:
        await poller.run(stopping)
    finally:
        await listener.drop()


# ---------------------------------------------------------------- pair timers


async def check_due_pairs(runtime: Runtime, limit: int = 100) -> int:
    """Assess every pair whose timer is due (inactivity warning, close); returns how many."""
    async with runtime.db.unit_of_work() as uow:
        store = Storage(uow.conn)
        due = await store.claim_due_pairs(uow.now, limit)
        for pair in due:
            await reassess(store, uow, pair)
            if pair.completed_at is not None or not pair.active:
                await store.save_assessment(
                    pair.pair_id,
                    health=pair.health,
                    reasons=pair.reasons,
                    next_check_at=None,
                    rematch_requested=None,
                    completed_at=None,
                )
    return len(due)


def timer_worker(options: WorkerOptions | None = None) -> Worker:
    """Durable timers: `progress.pairs.next_check_at`, claimed with SKIP LOCKED by any instance."""
    chosen = options or WorkerOptions()

    async def timers(runtime: Runtime, stopping: asyncio.Event) -> None:
        async def work() -> int:
            return await check_due_pairs(runtime, chosen.batch_size)

        await run_when_due(runtime, chosen, work, Storage.next_check, "pair timers", stopping)

    return timers


# ---------------------------------------------------------------- xAPI statements


class StatementSender:
    """PUTs queued statements to the LRS; failures wait with backoff, never blocking consumption."""

    def __init__(self, runtime: Runtime, options: WorkerOptions, client: httpx.AsyncClient) -> None:
        settings = runtime.settings
        assert isinstance(settings, ProgressSettings)
        self._runtime, self._options, self._client = runtime, options, client
        self._portal = settings.portal_url
        assert settings.xapi_endpoint is not None
        self._url = settings.xapi_endpoint.rstrip("/") + "/statements"

    async def send_due(self) -> int:
        """Claim one batch of due statements and send it; returns how many were claimed."""
        async with self._runtime.db.unit_of_work() as uow:
            batch = await Storage(uow.conn).claim_statements(
                uow.now, uow.now + self._options.send_lease, self._options.batch_size
            )
        if not batch:
            return 0
        results = await asyncio.gather(*(self._put(item) for item in batch))
        async with self._runtime.db.unit_of_work() as uow:
            store = Storage(uow.conn)
            for item, error in zip(batch, results, strict=True):
                if error is None:
                    await store.statement_done(item.statement_id)
                    self._runtime.metrics.produced.labels("xapi").inc()
                else:
                    attempts = item.attempts + 1
                    delay = backoff(attempts, self._options.retry_base, self._options.retry_max)
                    await store.statement_retry(item.statement_id, attempts, uow.now + delay, error)
        failed = sum(e is not None for e in results)
        if failed:
            log.warning("LRS did not take statements; retrying later", extra={"failed": failed})
        return len(batch) - failed

    async def _put(self, item: PendingStatement) -> str | None:
        """Send one statement in an "lrs send" span, counting the outcome (the LRS alerts)."""
        with delivery_span("lrs", "send", parent=None, kind=item.kind) as span:
            error = await self._put_once(item)
            if error is not None:
                failed(span, error)
        outcome = "sent" if error is None else "temporary"
        self._runtime.metrics.deliveries.labels("lrs", outcome).inc()
        return error

    async def _put_once(self, item: PendingStatement) -> str | None:
        """None when the LRS holds the statement (now or from an earlier send), else the error."""
        body = statement(fact_from_json(item.kind, item.fact), self._portal)
        try:
            response = await self._client.put(
                self._url, params={"statementId": item.statement_id}, json=body
            )
        except httpx.HTTPError as exc:
            return f"LRS unreachable ({type(exc).__name__})"
        # 409: the LRS already holds a statement with this id, so a resend changes nothing.
        if response.status_code in (200, 204, 409):
            return None
        return f"LRS answered HTTP {response.status_code}"


def statement_worker(options: WorkerOptions | None = None) -> Worker:
    """Sends learning records when `TWOWAY_XAPI_ENDPOINT` is set; does nothing otherwise."""
    chosen = options or WorkerOptions()

    async def statements(runtime: Runtime, stopping: asyncio.Event) -> None:
        settings = runtime.settings
        assert isinstance(settings, ProgressSettings)
        if settings.xapi_endpoint is None:
            # "Unset: no statements are sent": the queue is emptied instead of growing.

            async def drop() -> bool:
                async with runtime.pool.acquire() as conn:
                    await Storage(conn).drop_statements()
                return False

            poller = Poller(
                "xAPI queue", drop, poll_seconds=chosen.poll_seconds, retry_on=DATABASE_AWAY
            )
            await poller.run(stopping)
            return
        auth = None
        if settings.xapi_username is not None:
            password = settings.xapi_password.get_secret_value() if settings.xapi_password else ""
            auth = httpx.BasicAuth(settings.xapi_username, password)
        async with httpx.AsyncClient(
            auth=auth,
            headers={"X-Experience-API-Version": XAPI_VERSION},
            timeout=chosen.http_timeout,
        ) as client:
            sender = StatementSender(runtime, chosen, client)
            await run_when_due(
                runtime, chosen, sender.send_due, Storage.next_statement, "xAPI sender", stopping
            )

    return statements
