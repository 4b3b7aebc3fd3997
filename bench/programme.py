"""Benchmark: a whole programme end to end, the three services as processes.

The fault-injection suite's programme (tests/reliability/support.py) at a chosen size, on
the given broker and database: programme configured (batch matching), N enrolments, one
matching round, every pair booked, every pair_confirmed and booking email delivered to a
local SMTP server. Reports the time from the first enrolment to the last email, and from
the matching request to the last email.

The services run as their own Kafka principals when the broker is the project's stack.

Usage (the tests' infrastructure, bench/bench_support.py, e.g. a shared project stack):
    TWOWAY_TEST_STACK_DIR=/path/to/stack uv run python bench/programme.py --people 10000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_support import bench_infra
from twoway_dev.testing.infra import Infra

from tests.reliability.support import Run


async def run(infra: Infra, people: int) -> float:
    """Seconds from the first enrolment to the last email."""
    # The run's emails and the services' logs (about 120 MB at 10,000 people) are removed
    # once it has settled; a run that failed or left work in flight keeps them.
    root = Path(tempfile.mkdtemp(prefix="twoway-bench-"))
    programme = Run(infra, root, people=people, progress=True)
    outcome, seconds, _ = await programme.execute(None, timeout=1800)
    emails = sum(outcome.emails.values())
    print(
        f"programme: {people} people: {len(outcome.pairs)} pairs, "
        f"{len(outcome.sessions)} sessions, {emails} emails, {outcome.events} events"
    )
    print(f"programme: first enrolment to last email: {programme.from_first_enrolment:.1f} s")
    print(f"programme: matching requested to last email: {seconds:.1f} s")
    if programme.unsettled:
        print("left in flight:", *programme.unsettled[:10], sep="\n  ")
        print(f"the run's emails and logs are kept in {root}")
    else:
        shutil.rmtree(root)
    return programme.from_first_enrolment


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    with bench_infra() as found:
        asyncio.run(run(found, parser.parse_args().people))
