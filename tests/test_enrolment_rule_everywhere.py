"""The one enrolment rule gives the same outcome in matching, scheduling, notifications, progress.

The cases that drifted before it was one rule: a withdrawal seen before the enrolment (the
person must end up enrolled with their role everywhere), and a withdrawal naming the wrong
programme (dead-lettered by every service, erasing nothing anywhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import asyncpg
import pytest
from twoway_dev.testing.service import Sandbox, ServiceHarness
from twoway_matching.app import create_spec as matching_spec
from twoway_matching.config import MatchingServiceSettings
from twoway_notifications.app import create_spec as notifications_spec
from twoway_notifications.config import NotificationsSettings
from twoway_progress.app import create_spec as progress_spec
from twoway_progress.config import ProgressSettings
from twoway_scheduling.app import create_spec as scheduling_spec
from twoway_scheduling.config import SchedulingSettings
from twoway_shared.platform.runtime import Runtime

pytestmark = pytest.mark.infra

SERVICES = (
    ("matching", matching_spec, MatchingServiceSettings),
    ("scheduling", scheduling_spec, SchedulingSettings),
    ("notifications", notifications_spec, NotificationsSettings),
    ("progress", progress_spec, ProgressSettings),
)


@pytest.fixture
async def harnesses(sandbox: Sandbox) -> AsyncIterator[list[ServiceHarness]]:
    """The four services, each in the test process as its own principal and role."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                sandbox.service(spec(), settings_class, topic_partitions=2)
            )
            for _, spec, settings_class in SERVICES
        ]


async def stored_people(runtime: Runtime) -> dict[str, tuple[str | None, bool, bool]]:
    """participant_id -> (role, withdrawn, still has personal data) in one service's schema."""
    schema = runtime.spec.name
    rows: list[asyncpg.Record]
    if schema == "matching":
        rows = await runtime.pool.fetch(
            "SELECT participant_id, role, NOT active AS withdrawn, profile IS NOT NULL AS data"
            " FROM matching.participants"
        )
    elif schema == "scheduling":
        rows = await runtime.pool.fetch(
            "SELECT participant_id, role, withdrawn, timezone IS NOT NULL AS data"
            " FROM scheduling.participants"
        )
    elif schema == "progress":
        rows = await runtime.pool.fetch(
            "SELECT participant_id, role, withdrawn, display_name IS NOT NULL AS data"
            " FROM progress.participants"
        )
    else:
        rows = await runtime.pool.fetch(
            "SELECT participant_id, NULLIF(role, 'unknown') AS role, withdrawn,"
            " email IS NOT NULL AS data FROM notifications.participants"
        )
    return {r["participant_id"]: (r["role"], r["withdrawn"], r["data"]) for r in rows}


async def test_drifted_orderings_now_agree(harnesses: list[ServiceHarness]) -> None:
    late, wrong = "E-LATE", "E-WRONG"
    enrol = "participant.enrolled"
    h = harnesses[0]  # any of them publishes: one topic prefix
    await h.send(
        # A withdrawal that arrives before the enrolment, then the enrolment (revision 0).
        h.record("participant.withdrawn", "w1", participant_id=late, erase=False),
        h.record(enrol, "e1", participant_id=late, role="mentor", revision=0),
        # An enrolment, then a withdrawal (with erasure) that names another programme.
        h.record(enrol, "e2", participant_id=wrong, revision=0),
        h.record(
            "participant.withdrawn", "w2",
            participant_id=wrong, programme_id="SOMEWHERE-ELSE", erase=True,
        ),
        # An update after that: still accepted, the person was never withdrawn.
        h.record("participant.updated", "u2", participant_id=wrong, revision=1),
    )  # fmt: skip
    for each in harnesses:
        await each.barrier()
    letters = await h.wait_dead_letters(len(SERVICES))  # every service's, on one topic
    consumers = sorted(r.headers["x-twoway-consumer"].decode() for r in letters)
    assert consumers == ["matching", "notifications", "progress", "scheduling"]
    for letter in letters:
        reason = letter.headers["x-twoway-error"].decode()
        assert "is enrolled in programme RM-2027, not SOMEWHERE-ELSE" in reason
    for each in harnesses:
        people = await stored_people(each.runtime)
        assert people[late] == ("mentor", False, True), each.spec.name
        assert people[wrong] == ("mentee", False, True), each.spec.name
