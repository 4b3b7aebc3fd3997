"""Background work of the matching service: due rounds and expired proposals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from twoway_shared.platform.poller import Backoff, Poller
from twoway_shared.platform.runtime import Runtime
from twoway_shared.platform.tracing import span
from twoway_shared.platform.uow import Database

from twoway_matching import handlers, storage
from twoway_matching.domain.solver import RoundResult
from twoway_matching.metrics import round_metrics

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


async def matching_worker(runtime: Runtime, stopping: asyncio.Event) -> None:
    """Expire proposals and run every due round, until the service stops."""

    async def step() -> bool:
        async with runtime.db.unit_of_work() as uow:
            await handlers.expire_proposals(uow)
        return await _run_one_round(runtime)  # True: another round may be due at once

    poller = Poller(
        "matching worker",
        step,
        poll_seconds=POLL_SECONDS,
        backoff=Backoff(first=POLL_SECONDS, most=POLL_SECONDS),
    )
    await poller.run(stopping)


async def _run_one_round(runtime: Runtime) -> bool:
    started = time.perf_counter()
    ran = await run_due_round(runtime.db)
    if ran is None:
        return False
    programme_id, result = ran
    if result is None:
        log.info(
            "matching round not run: the programme is not known to be continuous and no "
            "programme.matching_requested asked for it",
            extra={"programme_id": programme_id},
        )
        return True
    seconds = time.perf_counter() - started
    round_metrics(runtime.metrics.registry).observe(
        seconds, len(result.proposals), len(result.unmatched)
    )
    log.info(
        "matching round",
        extra={
            "programme_id": programme_id,
            "pairs": len(result.proposals),
            "unmatched": len(result.unmatched),
            "seconds": round(seconds, 3),
        },
    )
    return True


async def run_due_round(db: Database) -> tuple[str, RoundResult | None] | None:
    """Claim one due round and run it: (programme, its result or None if it may not run).

    None when no round is due.
    """
    async with db.unit_of_work() as uow:
        claimed = await storage.claim_due_round(uow.conn, uow.now)
    if claimed is None:
        return None
    programme_id, lease_end = claimed
    try:
        # The round continues the trace of the last event that asked for it.
        async with db.unit_of_work() as uow:
            traceparent = await storage.round_traceparent(uow.conn, programme_id)
        with span("matching round", parent=traceparent, attributes={"programme_id": programme_id}):
            async with db.unit_of_work() as uow:
                result = await handlers.run_matching_round(uow, programme_id)
                await storage.finish_round(uow.conn, programme_id, lease_end)
    except Exception:
        # The lease keeps the round due; ask for it sooner when the database still answers.
        with contextlib.suppress(Exception):
            async with db.unit_of_work() as uow:
                await storage.request_round(uow.conn, programme_id, uow.now, at_once=False)
        raise
    return programme_id, result
