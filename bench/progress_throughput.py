"""Benchmark: does progress keep up with scheduling's session stream of a big programme?

A programme of N people (N/2 pairs, 12 weekly sessions each) as scheduling publishes it:
`pair.confirmed`, then every `session.scheduled`, then (with --outcomes) every session's
outcome, which makes each pair complete and earn credits. The records are published first;
then a progress instance starts and drains them. The same backlog drained by the platform with
handlers that do nothing (inbox, transaction, offset commit only) is the raw floor of the
platform, and scheduling's own booking rate (docs/benchmarks.md) is the rate to keep up with.

Usage (the tests' infrastructure, bench/bench_support.py, e.g. a shared project stack):
    TWOWAY_TEST_STACK_DIR=/path/to/stack \
    uv run python bench/progress_throughput.py --people 10000 --outcomes
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench_support import bench_infra, fresh_place
from pydantic import BaseModel
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import ToSend, publish, wait_until_consumed
from twoway_progress.app import create_spec
from twoway_progress.config import ProgressSettings
from twoway_shared.contract import (
    PairConfirmed,
    ProgrammeConfigured,
    SessionCompleted,
    SessionMissed,
    SessionScheduled,
)
from twoway_shared.platform.consumer import Handler
from twoway_shared.platform.runtime import Runtime, ServiceSpec, run_migrations
from twoway_shared.platform.uow import UnitOfWork

START = datetime(2027, 1, 11, 9, tzinfo=UTC)
SESSIONS = 12


def stream(prefix: str, people: int, outcomes: bool) -> list[ToSend]:
    """The programme's records in the order scheduling would publish them."""

    def send(data: BaseModel) -> ToSend:
        return ToSend.event(prefix, data, source="/bench")

    records = [send(ProgrammeConfigured(programme_id="BENCH", sessions=SESSIONS))]
    pairs = people // 2
    for i in range(pairs):
        members: dict[str, Any] = {
            "pair_id": f"P{i}",
            "programme_id": "BENCH",
            "mentor_id": f"M{i}",
            "mentee_id": f"E{i}",
        }
        records.append(send(PairConfirmed(**members)))
        starts = START + timedelta(minutes=15 * (i % 32))
        for k in range(1, SESSIONS + 1):
            at = starts + timedelta(weeks=k - 1)
            records.append(
                send(
                    SessionScheduled(
                        **members,
                        session_id=f"P{i}-S{k}",
                        sequence=k,
                        total=SESSIONS,
                        starts_at=at,
                        ends_at=at + timedelta(minutes=30),
                    )
                )
            )
    if outcomes:
        for i in range(pairs):
            members = {"pair_id": f"P{i}", "programme_id": "BENCH", "mentor_id": f"M{i}"}
            members["mentee_id"] = f"E{i}"
            for k in range(1, SESSIONS + 1):
                session = {**members, "session_id": f"P{i}-S{k}", "sequence": k}
                if (i + k) % 10 == 0:
                    records.append(send(SessionMissed(**session, absent=[f"M{i}"])))
                else:
                    records.append(send(SessionCompleted(**session, minutes=30)))
    return records


async def _nothing(event: Any, uow: UnitOfWork) -> None:
    return None


def floor_spec() -> ServiceSpec:
    """Progress's topics and schema with handlers that do nothing: the platform's own cost."""
    spec = create_spec()
    handlers: dict[type[BaseModel], Handler] = {m: _nothing for m in spec.handlers}
    return replace(spec, handlers=handlers, workers=())


async def drain(infra: Infra, spec: ServiceSpec, people: int, outcomes: bool) -> tuple[int, float]:
    async with fresh_place(infra) as place:
        bootstrap = infra.kafka_bootstrap
        settings = place.settings(ProgressSettings, "progress")
        return await _drain(bootstrap, settings, spec, people, outcomes)


async def _drain(
    bootstrap: str, settings: ProgressSettings, spec: ServiceSpec, people: int, outcomes: bool
) -> tuple[int, float]:
    await run_migrations(spec, settings)
    records = stream(settings.topic_prefix, people, outcomes)
    runtime = Runtime(spec, settings, clock=lambda: START - timedelta(days=1))
    await runtime.start()  # creates the topics; nothing to consume yet
    await runtime.stop()
    await publish(bootstrap, records)
    runtime = Runtime(spec, settings, clock=lambda: START - timedelta(days=1))
    started = time.perf_counter()
    await runtime.start()
    try:
        await wait_until_consumed(
            bootstrap,
            settings.consumer_group("progress"),
            [settings.topic(t) for t in spec.consumes],
            timeout=7200,
        )
        elapsed = time.perf_counter() - started
        if spec.workers:
            completed = await runtime.pool.fetchval(
                "SELECT count(*) FROM progress.pairs WHERE completed_at IS NOT NULL"
            )
            print(f"  pairs completed: {completed}")
    finally:
        await runtime.stop()
    return len(records), elapsed


async def run(infra: Infra, people: int, outcomes: bool, floor: bool) -> float:
    """Progress's events/s (the platform's no-op floor printed too with `floor`)."""
    what = "scheduled + outcomes" if outcomes else "scheduled"
    print(f"progress: {people} people, {people // 2} pairs x {SESSIONS} sessions ({what})")
    count, elapsed = await drain(infra, create_spec(), people, outcomes)
    rate = count / elapsed
    print(f"progress:   {count} records in {elapsed:.1f} s = {rate:.0f} events/s")
    if floor:
        count, elapsed = await drain(infra, floor_spec(), people, outcomes)
        print(f"raw floor:  {count} records in {elapsed:.1f} s = {count / elapsed:.0f} events/s")
    return rate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--outcomes", action="store_true", help="also every session's outcome")
    parser.add_argument("--floor", action="store_true", help="also the no-op platform floor")
    args = parser.parse_args()
    with bench_infra() as found:
        asyncio.run(run(found, args.people, args.outcomes, args.floor))
