"""Faults while a programme runs: nothing lost, nothing duplicated, compared with a clean run.

Each test runs the same programme (tests/reliability/support.py) on the suite's own broker and
database with the three services as processes, injects its faults from a fixed seed while
pairs are booked and emails sent, waits until the run has produced everything the clean run
produced, and fails on any loss or duplicate. The figures are printed per test and at the end.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from twoway_dev.localstack.stack import LocalStack

from tests.reliability.support import FIGURES, SERVICES, Fault, Figures, Outcome, Run, compare

# The first test also pays for the suite's own broker, database and clean run; on two busy
# cores that alone can take minutes.
pytestmark = [pytest.mark.reliability, pytest.mark.infra, pytest.mark.timeout(900)]


async def check(
    name: str, run: Run, clean: Outcome, faults: Fault, *, timeout: float = 150.0
) -> None:
    outcome, seconds, recovery = await run.execute(clean, faults, timeout=timeout)
    assert run.cluster is not None
    figures: Figures = compare(
        name,
        clean,
        outcome,
        faults=len(run.fault_log),
        seconds=seconds,
        recovery=recovery,
        crashed=run.crashed,
    )
    FIGURES.append(figures)
    print(figures.line())
    for line in figures.detail[:20] + run.unsettled[:20]:
        print("   ", line)
    assert figures.crashed == [], f"a service exited on its own: {figures.crashed}"
    assert run.first_fault_mid_run is not None, "no fault was noted"
    assert run.first_fault_mid_run, "the first fault came once everything was out"
    assert figures.lost == 0, figures.detail[:20]
    assert figures.duplicated == 0, figures.detail[:20]


async def first_pair(r: Run) -> None:
    """The moment every fault starts at: the first pair is out, its sessions and every
    email still to come."""
    await r.reached(lambda so_far: bool(so_far.pairs), "the first pair")


async def test_random_sigkills_of_every_service(run: Run, clean: Outcome) -> None:
    rng = random.Random(15)

    async def faults(r: Run) -> None:
        assert r.cluster is not None
        await first_pair(r)
        for n in range(8):
            pause = rng.uniform(0.5, 2.0)  # drawn every time: the seed's sequence as before
            if n:
                await asyncio.sleep(pause)
            service = rng.choice(SERVICES)
            await r.cluster.kill(service, 0)
            r.note(f"SIGKILL {service}")
            # Restarted at once, as a supervisor would; it may be killed again while starting.
            await r.cluster.start_instance(service, 0, wait=False)
            r.fault_ended()

    await check("random SIGKILLs", run, clean, faults)


async def test_broker_killed_and_restarted(run: Run, clean: Outcome, own_stack: LocalStack) -> None:
    async def faults(r: Run) -> None:
        await first_pair(r)
        await asyncio.to_thread(own_stack.kill_kafka)
        r.note("SIGKILL Kafka")
        await asyncio.sleep(10)
        await asyncio.to_thread(own_stack.up)
        r.note("Kafka back")
        r.fault_ended()

    await check("broker SIGKILL, 10 s down", run, clean, faults)


async def test_postgres_restarted(run: Run, clean: Outcome, own_stack: LocalStack) -> None:
    async def faults(r: Run) -> None:
        await first_pair(r)
        await asyncio.to_thread(own_stack.stop_postgres)
        r.note("pg_ctl stop -m fast")
        await asyncio.sleep(5)
        await asyncio.to_thread(own_stack.up)
        r.note("PostgreSQL back")
        r.fault_ended()

    await check("PostgreSQL restart, 5 s down", run, clean, faults)


@pytest.mark.parametrize("instances", [2, 3])
async def test_several_instances_with_one_killed(run: Run, clean: Outcome, instances: int) -> None:
    run.instances = dict.fromkeys(SERVICES, instances)

    async def faults(r: Run) -> None:
        assert r.cluster is not None
        await first_pair(r)
        for service in SERVICES:
            await r.cluster.kill(service, instances - 1)
            r.note(f"SIGKILL {service} instance {instances - 1} of {instances}")
            await asyncio.sleep(0.5)
        r.fault_ended()

    await check(f"{instances} instances each, one killed", run, clean, faults)


async def test_smtp_outage(run: Run, clean: Outcome) -> None:
    # A minute, as the issue asks: the sender's retries come after 15 s, 30 s and 60 s, so the
    # emails refused at the start go out about 105 s after it, with what was due meanwhile.
    async def faults(r: Run) -> None:
        assert r.mail is not None
        await first_pair(r)
        r.mail.stop()
        r.note("SMTP server stopped")
        await asyncio.sleep(60)
        r.mail.start()
        r.note("SMTP server back")
        r.fault_ended()

    await check("SMTP outage 60 s", run, clean, faults, timeout=240.0)
