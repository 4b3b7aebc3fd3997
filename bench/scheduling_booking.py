"""Benchmark: book N confirmed pairs x 12 sessions through the real scheduling service.

Usage (the tests' infrastructure, bench/bench_support.py, e.g. a shared project stack):
    TWOWAY_TEST_STACK_DIR=/path/to/stack uv run python bench/scheduling_booking.py --pairs 10000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime

from bench_support import Place, bench_infra, fresh_place, load_average
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import TopicReader, ToSend, publish
from twoway_scheduling.app import create_spec
from twoway_scheduling.config import SchedulingSettings
from twoway_shared.contract import (
    PairConfirmed,
    ParticipantEnrolled,
    ProgrammeConfigured,
    Topic,
)
from twoway_shared.platform.runtime import Runtime, run_migrations

NOW = datetime(2027, 1, 1, 9, tzinfo=UTC)
ZONES = ("Europe/London", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu")
MENTEES_PER_MENTOR = 3


def person(participant_id: str, role: str, rng: random.Random) -> ParticipantEnrolled:
    # Office-ish hours on four weekdays, in zones that share some working time.
    start = rng.choice((7, 8, 9, 10))
    days = rng.sample(("mon", "tue", "wed", "thu", "fri"), 4)
    return ParticipantEnrolled.model_validate(
        {
            "participant_id": participant_id,
            "programme_id": "BENCH",
            "role": role,
            "display_name": participant_id,
            "email": f"{participant_id.lower()}@example.com",
            "grade": 5 if role == "mentor" else 20,
            "department": "Bench",
            "timezone": rng.choice(ZONES),
            "languages": ["en"],
            "offers": [],
            "wants": [],
            "availability": [
                {"day": d, "start": f"{start:02d}:00", "end": f"{start + 10:02d}:00"} for d in days
            ],
        }
    )


def to_send(
    settings: SchedulingSettings, data: ProgrammeConfigured | ParticipantEnrolled | PairConfirmed
) -> ToSend:
    return ToSend.event(settings.topic_prefix, data, source="/bench")


async def run(infra: Infra, pairs: int) -> float:
    """Confirmed pairs booked per second."""
    async with fresh_place(infra) as place:
        return await _book(place, pairs)


async def _book(place: Place, pairs: int) -> float:
    bootstrap = place.infra.kafka_bootstrap
    settings = place.settings(SchedulingSettings, "scheduling")
    spec = create_spec()
    await run_migrations(spec, settings)
    runtime = Runtime(spec, settings, clock=lambda: NOW)
    await runtime.start()
    rng = random.Random(7)
    mentors = (pairs + MENTEES_PER_MENTOR - 1) // MENTEES_PER_MENTOR
    setup = [
        to_send(
            settings,
            ProgrammeConfigured(programme_id="BENCH", starts_on=NOW.date()),
        ),
        *(to_send(settings, person(f"M{i}", "mentor", rng)) for i in range(mentors)),
        *(to_send(settings, person(f"E{i}", "mentee", rng)) for i in range(pairs)),
    ]
    confirmations = [
        to_send(
            settings,
            PairConfirmed(
                pair_id=f"P{i}",
                programme_id="BENCH",
                mentor_id=f"M{i // MENTEES_PER_MENTOR}",
                mentee_id=f"E{i}",
            ),
        )
        for i in range(pairs)
    ]
    try:
        await publish(bootstrap, setup)
        while (  # noqa: ASYNC110 - polling the database the service writes
            await runtime.pool.fetchval("SELECT count(*) FROM scheduling.participants")
            < mentors + pairs
        ):
            await asyncio.sleep(0.2)
        async with TopicReader(bootstrap, [settings.topic(Topic.SESSIONS)]) as reader:
            started, cpu_started = time.perf_counter(), time.process_time()
            await publish(bootstrap, confirmations)
            expected = await runtime.pool.fetchval(
                "SELECT count(*) FROM scheduling.pairs WHERE status = 'booked'"
            )
            while expected < pairs:
                await asyncio.sleep(0.2)
                expected = await runtime.pool.fetchval(
                    "SELECT count(*) FROM scheduling.pairs WHERE status = 'booked'"
                )
            booked = await runtime.pool.fetchval("SELECT count(*) FROM scheduling.sessions")
            failed = await runtime.pool.fetchval(
                "SELECT count(*) FROM scheduling.pairs p WHERE (SELECT count(*) FROM"
                " scheduling.sessions s WHERE s.pair_id = p.pair_id) < 12"
            )
            events = booked + failed
            await reader.wait_for(
                lambda records: len(records) >= events, timeout=3600, what="all events"
            )
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
    finally:
        await runtime.stop()
    print(
        f"scheduling: {pairs} pairs ({failed} with booking_failed), {booked} sessions, "
        f"{events} events in {elapsed:.1f} s (confirmations published -> last event read) = "
        f"{pairs / elapsed:.0f} pairs/s, {events / elapsed:.0f} events/s; this process's CPU "
        f"{cpu / pairs * 1000:.2f} ms per pair (service, its relay and the reader); "
        f"load average {load_average()}"
    )
    return pairs / elapsed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    with bench_infra() as found:
        asyncio.run(run(found, parser.parse_args().pairs))
