"""Benchmark: book N confirmed pairs x 12 sessions through the real scheduling service.

Usage (real Kafka and PostgreSQL, e.g. the shared test stack):
    TWOWAY_TEST_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 \
    TWOWAY_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:15432/postgres \
    uv run python bench/scheduling_booking.py --pairs 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from datetime import UTC, datetime

from twoway_dev.testing.infra import unique_name
from twoway_dev.testing.kafka import TopicReader, ToSend, publish
from twoway_scheduling.app import create_spec
from twoway_scheduling.config import SchedulingSettings
from twoway_shared.contract import (
    PairConfirmed,
    ParticipantEnrolled,
    ProgrammeConfigured,
    Topic,
)
from twoway_shared.platform.roles import migration_dsns, provision
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


async def main(pairs: int) -> None:
    bootstrap = os.environ["TWOWAY_TEST_KAFKA_BOOTSTRAP_SERVERS"]
    admin = os.environ["TWOWAY_TEST_DATABASE_URL"]
    database = unique_name("bench_")
    dsns = await provision(admin, database, role_prefix=f"{database}_")
    settings = SchedulingSettings(
        kafka_bootstrap_servers=bootstrap,
        database_url=dsns["scheduling"],
        database_migration_url=migration_dsns(admin, database, role_prefix=f"{database}_")[
            "scheduling"
        ],
        topic_prefix=f"{unique_name('bench')}.",
        http_port=0,
    )
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
            started = time.perf_counter()
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
        print(f"pairs booked:        {pairs} ({failed} with booking_failed)")
        print(f"sessions booked:     {booked}")
        print(f"events produced:     {events} (session.scheduled + session.booking_failed)")
        print(f"elapsed:             {elapsed:.1f} s (confirmations published -> last event read)")
        print(f"pairs per second:    {pairs / elapsed:.0f}")
        print(f"events per second:   {events / elapsed:.0f}")
    finally:
        await runtime.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().pairs))
