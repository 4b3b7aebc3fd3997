"""The wake-and-poll loop every background worker runs: step, then sleep until woken or due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

DATABASE_AWAY: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
"""Errors of a database that restarts or is out of reach: logged without a traceback."""

Step = Callable[[], Awaitable[bool | int]]
"""One unit of work; truthy (True, or how many things it did) means "there may be more now"."""


@dataclass(frozen=True)
class Backoff:
    """How long to wait after a failed step: `first`, doubling up to `most`."""

    first: float = 1.0
    most: float = 1.0

    def after(self, failures: int) -> float:
        """The wait after the `failures`-th failure in a row (1, 2, ...)."""
        return float(min(self.first * 2 ** max(0, failures - 1), self.most))


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; True when it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


class Poller:
    """Runs `step` until stopped: again at once while it finds work, otherwise after a wake-up
    (`wake()`, for example from a LISTEN), the time `until_due` returns, or `poll_seconds`,
    whichever comes first. A failed step is logged, `recover` runs (for example to drop a
    broken connection), and the next step waits for the backoff. With `drain`, a stop lets
    the steps run on until one finds nothing to do (the outbox relay publishes what is
    committed); without it, no step starts after the stop.
    """

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        poll_seconds: float,
        until_due: Callable[[], Awaitable[float | None]] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        recover: Callable[[], Awaitable[None]] | None = None,
        backoff: Backoff = Backoff(),
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        drain: bool = False,
    ) -> None:
        self.name = name
        self._step = step
        self._poll_seconds = poll_seconds
        self._until_due = until_due
        self._prepare = prepare
        self._recover = recover
        self._backoff = backoff
        self._retry_on = retry_on
        self._drain = drain
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Cut the current sleep short (safe to call from a LISTEN callback)."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Step and sleep until `stopping` is set (and, with `drain`, nothing is left)."""
        failures = 0
        while self._drain or not stopping.is_set():
            try:
                if self._prepare is not None:
                    await self._prepare()
                # Cleared before the step: a wake-up during the step makes the sleep short.
                self._wake.clear()
                busy = await self._step()
                failures = 0
                if busy:
                    continue
                if stopping.is_set():
                    return
                await self._sleep(stopping)
            except self._retry_on as exc:
                failures += 1
                log.warning(
                    f"{self.name} failed; retrying",
                    exc_info=not isinstance(exc, DATABASE_AWAY),
                    extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
                )
                if self._recover is not None:
                    with contextlib.suppress(Exception):
                        await self._recover()
                if await wait_for(stopping, self._backoff.after(failures)):
                    return

    async def _sleep(self, stopping: asyncio.Event) -> None:
        timeout = self._poll_seconds
        if self._until_due is not None:
            due = await self._until_due()
            if due is not None:
                timeout = max(0.0, min(timeout, due))
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stopping.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


class Listener:
    """A dedicated connection that LISTENs on one channel and calls `on_notify` per NOTIFY."""

    def __init__(self, dsn: str, channel: str, on_notify: Callable[[], None]) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._conn: asyncpg.Connection | None = None

    async def ensure(self) -> None:
        """Connect and listen, unless already listening on a live connection."""
        if self._conn is not None and not self._conn.is_closed():
            return
        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.add_listener(self._channel, lambda *_: self._on_notify())

    async def drop(self) -> None:
        """Close the connection (quietly); the next `ensure` opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
