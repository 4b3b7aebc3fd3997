"""Benchmark: a whole programme end to end, the three services as processes.

The fault-injection suite's programme (tests/reliability/support.py) at a chosen size, on
the given broker and database: programme configured (batch matching), N enrolments, one
matching round, every pair booked, every pair_confirmed and booking email delivered to a
local SMTP server. Reports the time from the first enrolment to the last email, and from
the matching request to the last email.

Usage (real Kafka and PostgreSQL, e.g. the shared test stack):
    TWOWAY_TEST_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 \
    TWOWAY_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:35432/postgres \
    uv run python bench/programme.py --people 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twoway_dev.testing.infra import Infra

from tests.reliability.support import Run


async def main(people: int) -> None:
    infra = Infra(
        os.environ["TWOWAY_TEST_KAFKA_BOOTSTRAP_SERVERS"],
        os.environ["TWOWAY_TEST_DATABASE_URL"],
        "external",
    )
    run = Run(infra, Path(tempfile.mkdtemp(prefix="twoway-bench-")), people=people)
    outcome, seconds, _ = await run.execute(None, timeout=1800)
    emails = sum(outcome.emails.values())
    print(
        f"{people} people: {len(outcome.pairs)} pairs, {len(outcome.sessions)} sessions, "
        f"{emails} emails, {outcome.events} events"
    )
    print(f"first enrolment to last email: {run.from_first_enrolment:.1f} s")
    print(f"matching requested to last email: {seconds:.1f} s")
    if run.unsettled:
        print("left in flight:", *run.unsettled[:10], sep="\n  ")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().people))
