"""The one enrolment rule gives the same outcome in matching, scheduling, notifications, progress.

The cases that drifted before it was one rule: a withdrawal seen before the enrolment (the
person must end up enrolled with their role everywhere), and a withdrawal naming the wrong
programme (dead-lettered by every service, erasing nothing anywhere).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import TopicReader, ToSend, publish, wait_until_consumed
from twoway_dev.testing.service import running_service
from twoway_matching.app import create_spec as matching_spec
from twoway_matching.config import MatchingServiceSettings
from twoway_notifications.app import create_spec as notifications_spec
from twoway_notifications.config import NotificationsSettings
from twoway_progress.app import create_spec as progress_spec
from twoway_progress.config import ProgressSettings
from twoway_scheduling.app import create_spec as scheduling_spec
from twoway_scheduling.config import SchedulingSettings
from twoway_shared.contract import (
    EVENT_MODELS,
    Topic,
)
from twoway_shared.contract.examples import EXAMPLE_DATA
from twoway_shared.platform.runtime import Runtime

pytestmark = pytest.mark.infra

SERVICES = (
    ("matching", matching_spec, MatchingServiceSettings),
    ("scheduling", scheduling_spec, SchedulingSettings),
    ("notifications", notifications_spec, NotificationsSettings),
    ("progress", progress_spec, ProgressSettings),
)


def record(prefix: str, event_type: str, event_id: str, **data: Any) -> ToSend:
    model: type[BaseModel] = EVENT_MODELS[event_type]
    payload = model.model_validate({**copy.deepcopy(EXAMPLE_DATA[event_type]), **data})
    return ToSend.event(prefix, payload, source="/test", event_id=event_id)


@pytest.fixture
async def runtimes(
    infra: Infra, service_dsns: dict[str, str], topic_prefix: str
) -> AsyncIterator[list[Runtime]]:
    async with AsyncExitStack() as stack:
        started = []
        for name, spec, settings_class in SERVICES:
            settings = settings_class(
                **infra.kafka_settings(name),
                database_url=service_dsns[name],
                topic_prefix=topic_prefix,
                topic_partitions=2,
                http_port=0,
            )
            started.append(await stack.enter_async_context(running_service(spec(), settings)))
        yield started


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


async def test_drifted_orderings_now_agree(
    runtimes: list[Runtime], infra: Infra, topic_prefix: str
) -> None:
    late, wrong = "E-LATE", "E-WRONG"
    enrol = "participant.enrolled"
    records = [
        # A withdrawal that arrives before the enrolment, then the enrolment (revision 0).
        record(topic_prefix, "participant.withdrawn", "w1", participant_id=late, erase=False),
        record(topic_prefix, enrol, "e1", participant_id=late, role="mentor", revision=0),
        # An enrolment, then a withdrawal (with erasure) that names another programme.
        record(topic_prefix, enrol, "e2", participant_id=wrong, revision=0),
        record(
            topic_prefix, "participant.withdrawn", "w2",
            participant_id=wrong, programme_id="SOMEWHERE-ELSE", erase=True,
        ),
        # An update after that: still accepted, the person was never withdrawn.
        record(topic_prefix, "participant.updated", "u2", participant_id=wrong, revision=1),
    ]  # fmt: skip
    async with TopicReader(
        infra.kafka_bootstrap, [f"{topic_prefix}{Topic.DEADLETTER.value}"]
    ) as dead:
        await publish(infra.kafka_bootstrap, records)
        for runtime in runtimes:
            await wait_until_consumed(
                infra.kafka_bootstrap,
                runtime.settings.consumer_group(runtime.spec.name),
                [runtime.topic(Topic.ENROLMENTS)],
            )
        await dead.wait_for(lambda got: len(got) >= len(SERVICES), what="a dead letter each")
        letters = dead.on(f"{topic_prefix}{Topic.DEADLETTER.value}")
    consumers = sorted(r.headers["x-twoway-consumer"].decode() for r in letters)
    assert consumers == ["matching", "notifications", "progress", "scheduling"]
    for letter in letters:
        reason = letter.headers["x-twoway-error"].decode()
        assert "is enrolled in programme RM-2027, not SOMEWHERE-ELSE" in reason
    for runtime in runtimes:
        people = await stored_people(runtime)
        assert people[late] == ("mentor", False, True), runtime.spec.name
        assert people[wrong] == ("mentee", False, True), runtime.spec.name
