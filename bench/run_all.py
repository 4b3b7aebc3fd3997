"""Every benchmark of docs/benchmarks.md in one run (`make bench`), on one infrastructure.

The infrastructure is the tests' (bench/bench_support.py): a shared project stack named by
`TWOWAY_TEST_STACK_DIR`, external PLAINTEXT endpoints, or a local stack of its own on a fresh
machine. Each figure is printed with the load average at its end and, for the services, as a
ratio to the batched floor measured first in the same run.

Usage:
    uv run python bench/run_all.py [--quick] [--skip programme ...]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import compose_email
import floor
import latency
import notifications_reminder_lateness
import notifications_send_rate
import programme
import progress_throughput
import scheduling_booking
from bench_support import bench_infra, load_average
from twoway_dev.testing.infra import Infra

HERE = Path(__file__).resolve().parent


async def measure(infra: Infra, quick: bool, skip: set[str]) -> list[str]:
    """Run each benchmark in turn; one summary line each."""
    summary: list[str] = []
    started = time.perf_counter()

    async def step(name: str, what: Callable[[], Awaitable[str]]) -> None:
        if name in skip:
            return
        print(f"\n== {name} (load average {load_average()})", flush=True)
        began = time.perf_counter()
        try:
            line = await what()
        except Exception as exc:
            line = f"failed: {type(exc).__name__}: {exc}"
        summary.append(
            f"{name}: {line} [{time.perf_counter() - began:.0f} s, load {load_average()}]"
        )
        print(summary[-1], flush=True)

    batched = 0.0

    async def the_floor() -> str:
        nonlocal batched
        per_record, batched = await floor.run(infra, 5_000 if quick else 20_000)
        return f"per record {per_record:,.0f} records/s, batched {batched:,.0f} records/s"

    def ratio(rate: float) -> str:
        return f" = {rate / batched:.3f} of the batched floor" if batched else ""

    async def scheduling() -> str:
        pairs = await scheduling_booking.run(infra, 300 if quick else 2_000)
        return f"{pairs:,.0f} pairs/s, about {pairs * 12:,.0f} session events/s{ratio(pairs * 12)}"

    async def notifications() -> str:
        count = 1_000 if quick else 10_000
        mixed = await notifications_send_rate.run(infra, count, "programme")
        plain = await notifications_send_rate.run(infra, count, "pair_confirmed")
        return (
            f"{mixed:,.0f} emails/s of the programme's mix{ratio(mixed)}; "
            f"{plain:,.0f} emails/s of pair_confirmed alone"
        )

    async def reminders() -> str:
        p99 = await notifications_reminder_lateness.run(
            infra, 10_000 if quick else 100_000, 200 if quick else 1_000, 20.0
        )
        return f"lateness p99 {p99 * 1000:.0f} ms"

    async def progress() -> str:
        rate = await progress_throughput.run(infra, 200 if quick else 2_000, True, False)
        return f"{rate:,.0f} events/s{ratio(rate)}"

    async def the_latency() -> str:
        p99 = await latency.run(infra, 500, 5 if quick else 20)
        return f"p99 {p99 * 1000:.0f} ms at 500 events/s"

    async def the_programme() -> str:
        people = 300 if quick else 10_000
        seconds = await programme.run(infra, people)
        return f"{people:,} people, first enrolment to last email {seconds:.1f} s"

    async def composing() -> str:
        return compose_email.measure(20 if quick else 200)

    await step("compose", composing)
    await step("floor", the_floor)
    await step("scheduling", scheduling)
    await step("notifications", notifications)
    await step("reminders", reminders)
    await step("progress", progress)
    await step("latency", the_latency)
    await step("programme", the_programme)
    print(f"\nall benchmarks in {time.perf_counter() - started:.0f} s")
    return summary


def matching(quick: bool) -> None:
    """The matching round needs no broker: its own script, one process per pool size."""
    sizes = ["1000"] if quick else ["1000", "5000"]
    print(f"\n== matching (load average {load_average()})", flush=True)
    subprocess.run(
        [sys.executable, str(HERE / "matching_round.py"), "--sizes", *sizes], check=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="compose floor scheduling notifications reminders progress latency programme matching",
    )
    args = parser.parse_args()
    skip = set(args.skip)
    with bench_infra() as infra:
        print(f"infrastructure: {infra.origin}, Kafka {infra.kafka_bootstrap}")
        summary = asyncio.run(measure(infra, args.quick, skip))
    if "matching" not in skip:
        matching(args.quick)
    print("\nsummary", *summary, sep="\n  ")


if __name__ == "__main__":
    main()
