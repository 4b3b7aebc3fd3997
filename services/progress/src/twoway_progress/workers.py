"""Background work of a progress instance: durable pair timers and the xAPI statement sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import httpx
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


class DueLoop:
    """Runs `work` whenever something may be due: on NOTIFY, at the next due time, or a poll."""

    def __init__(
        self,
        runtime: Runtime,
        options: WorkerOptions,
        work: Callable[[], Awaitable[int]],
        next_due: Callable[[Storage], Awaitable[datetime | None]],
        name: str,
    ) -> None:
        self._runtime, self._options = runtime, options
        self._work, self._next_due, self._name = work, next_due, name
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                try:
                    await self._listen()
                    self._wake.clear()
                    if await self._work() > 0:
                        continue
                    await self._sleep(stopping)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning(
                        f"{self._name} lost the database; retrying", extra={"error": str(exc)}
                    )
                    await self._drop_listener()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), 1.0)
        finally:
            await self._drop_listener()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = await asyncpg.connect(self._runtime.settings.database_url)
        await self._listener.add_listener(DUE_CHANNEL, lambda *_: self._wake.set())

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=5)

    async def _sleep(self, stopping: asyncio.Event) -> None:
        async with self._runtime.pool.acquire() as conn:
            due = await self._next_due(Storage(conn))
        timeout = self._options.poll_seconds
        if due is not None:
            timeout = max(0.0, min(timeout, (due - self._runtime.clock()).total_seconds()))
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stopping.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


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

        await DueLoop(runtime, chosen, work, Storage.next_check, "pair timers").run(stopping)

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
            while not stopping.is_set():
                async with runtime.pool.acquire() as conn:
                    await Storage(conn).drop_statements()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), chosen.poll_seconds)
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
            await DueLoop(
                runtime, chosen, sender.send_due, Storage.next_statement, "xAPI sender"
            ).run(stopping)

    return statements
