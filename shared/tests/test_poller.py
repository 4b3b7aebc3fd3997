"""The wake-and-poll loop on its own: wake-ups, polls, due times, error backoff and stopping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from twoway_shared.platform.poller import Backoff, Poller, wait_for

DEADLINE = 5.0


async def until(condition: Callable[[], bool], seconds: float = DEADLINE) -> None:
    """Wait until `condition` holds, failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.005)


class Steps:
    """A step that records when it ran and returns the results it is given, then False."""

    def __init__(self, *results: bool | int | Exception) -> None:
        self.results = list(results)
        self.times: list[float] = []

    async def __call__(self) -> bool | int:
        self.times.append(time.monotonic())
        if not self.results:
            return False
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


async def started(poller: Poller, stopping: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(poller.run(stopping))


async def stop(task: asyncio.Task[None], stopping: asyncio.Event) -> float:
    """Set `stopping` and return how long the loop took to return."""
    begun = time.monotonic()
    stopping.set()
    await asyncio.wait_for(task, DEADLINE)
    return time.monotonic() - begun


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff(first=0.5, most=3.0)
    assert [backoff.after(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert Backoff().after(7) == 1.0


async def test_wait_for_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_for(event, 0.01) is False
    event.set()
    assert await wait_for(event, 10.0) is True


async def test_a_wake_up_cuts_the_sleep_short() -> None:
    steps, stopping = Steps(), asyncio.Event()
    poller = Poller("test", steps, poll_seconds=60.0)
    task = await started(poller, stopping)
    await until(lambda: len(steps.times) == 1)
    woken = time.monotonic()
    poller.wake()
    await until(lambda: len(steps.times) == 2)
    assert steps.times[1] - woken < 1.0
    assert await stop(task, stopping) < 1.0


async def test_without_a_wake_up_it_polls() -> None:
    steps, stopping = Steps(), asyncio.Event()
    task = await started(Poller("test", steps, poll_seconds=0.05), stopping)
    await until(lambda: len(steps.times) >= 4)
    gaps = [b - a for a, b in zip(steps.times, steps.times[1:], strict=False)]
    assert all(gap >= 0.04 for gap in gaps)
    await stop(task, stopping)


async def test_a_busy_step_runs_again_at_once() -> None:
    steps, stopping = Steps(True, 3, True), asyncio.Event()
    task = await started(Poller("test", steps, poll_seconds=60.0), stopping)
    await until(lambda: len(steps.times) == 4)
    assert steps.times[3] - steps.times[0] < 1.0
    await stop(task, stopping)
    assert len(steps.times) == 4  # idle after the fourth: it slept until the stop


async def test_the_next_due_time_shortens_the_sleep() -> None:
    steps, stopping = Steps(), asyncio.Event()

    async def in_a_moment() -> float | None:
        return 0.05

    task = await started(Poller("test", steps, poll_seconds=60.0, until_due=in_a_moment), stopping)
    await until(lambda: len(steps.times) >= 3)
    await stop(task, stopping)


async def test_a_failed_step_is_retried_after_a_growing_backoff() -> None:
    steps = Steps(OSError("database away"), RuntimeError("bug"), False)
    stopping, recovered = asyncio.Event(), []

    async def recover() -> None:
        recovered.append(time.monotonic())

    poller = Poller(
        "test", steps, poll_seconds=60.0, recover=recover, backoff=Backoff(first=0.1, most=1.0)
    )
    task = await started(poller, stopping)
    await until(lambda: len(steps.times) == 3)
    assert len(recovered) == 2
    assert steps.times[1] - steps.times[0] >= 0.09  # first backoff
    assert steps.times[2] - steps.times[1] >= 0.19  # doubled
    assert not task.done()
    await stop(task, stopping)


async def test_errors_outside_retry_on_end_the_loop() -> None:
    steps, stopping = Steps(ValueError("not a database error")), asyncio.Event()
    poller = Poller("test", steps, poll_seconds=60.0, retry_on=(OSError,))
    with pytest.raises(ValueError, match="not a database error"):
        await asyncio.wait_for(poller.run(stopping), DEADLINE)


async def test_prepare_runs_before_every_step_and_its_failure_is_retried() -> None:
    steps, stopping, prepared = Steps(True, False), asyncio.Event(), []

    async def prepare() -> None:
        prepared.append(len(steps.times))
        if len(prepared) == 1:
            raise OSError("no connection yet")

    poller = Poller(
        "test", steps, poll_seconds=60.0, prepare=prepare, backoff=Backoff(first=0.01, most=0.01)
    )
    task = await started(poller, stopping)
    await until(lambda: len(steps.times) == 2)
    assert prepared == [0, 0, 1]
    await stop(task, stopping)


async def test_a_stop_ends_the_sleep_and_the_backoff_and_starts_no_step() -> None:
    steps, stopping = Steps(), asyncio.Event()
    task = await started(Poller("test", steps, poll_seconds=60.0), stopping)
    await until(lambda: len(steps.times) == 1)
    assert await stop(task, stopping) < 1.0
    assert len(steps.times) == 1

    failing, stopping = Steps(OSError("away")), asyncio.Event()
    backing_off = Poller("test", failing, poll_seconds=60.0, backoff=Backoff(60.0, 60.0))
    task = await started(backing_off, stopping)
    await until(lambda: len(failing.times) == 1)
    assert await stop(task, stopping) < 1.0
    assert len(failing.times) == 1


async def test_a_stopped_loop_never_steps() -> None:
    steps, stopping = Steps(), asyncio.Event()
    stopping.set()
    await asyncio.wait_for(Poller("test", steps, poll_seconds=60.0).run(stopping), DEADLINE)
    assert steps.times == []


async def test_drain_steps_on_after_a_stop_until_nothing_is_left() -> None:
    steps, stopping = Steps(), asyncio.Event()
    task = await started(Poller("test", steps, poll_seconds=60.0, drain=True), stopping)
    await until(lambda: len(steps.times) == 1)
    steps.results = [True, True, False]  # committed meanwhile: three batches to publish
    await stop(task, stopping)
    assert len(steps.times) == 4
