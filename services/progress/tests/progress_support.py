"""A running progress service in the test process, a reader of its output and ways to feed it."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
from pydantic import BaseModel
from starlette.applications import Starlette
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import Received, TopicReader, ToSend, publish, wait_until_consumed
from twoway_dev.testing.service import MovableClock, running_service
from twoway_progress.app import create_spec
from twoway_progress.config import ProgressSettings
from twoway_progress.read_api import read_routes
from twoway_progress.workers import WorkerOptions
from twoway_shared.contract import (
    EVENT_MODELS,
    EVENT_TOPIC,
    Topic,
    encode,
    new_event,
    partition_key,
)
from twoway_shared.contract.examples import EXAMPLE_DATA
from twoway_shared.contract.values import rfc3339
from twoway_shared.platform.kafka import ensure_topics
from twoway_shared.platform.runtime import Runtime

MENTOR, MENTEE, PAIR, PROGRAMME = "M1", "E1", "P1", "RM"
FAST = WorkerOptions(
    poll_seconds=0.5, retry_base=timedelta(milliseconds=200), retry_max=timedelta(seconds=1)
)


class Harness:
    """Feeds the service records and reads `progress.v1` and the dead-letter topic."""

    def __init__(
        self, settings: ProgressSettings, clock: MovableClock, reader: TopicReader
    ) -> None:
        self.settings, self.clock, self.reader = settings, clock, reader
        self.runtime: Runtime | None = None
        self._counter = 0

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.runtime is not None
        return self.runtime.pool

    def record(self, event_type: str, event_id: str | None = None, **data: Any) -> ToSend:
        model: type[BaseModel] = EVENT_MODELS[event_type]
        payload = model.model_validate({**copy.deepcopy(EXAMPLE_DATA[event_type]), **data})
        self._counter += 1
        event = new_event(payload, source="/test", event_id=event_id or f"in-{self._counter}")
        topic = EVENT_TOPIC[event_type]
        return ToSend(self.settings.topic(topic), encode(event), partition_key(topic, payload))

    async def send(self, *records: ToSend) -> None:
        await publish(self.bootstrap, records)

    async def barrier(self) -> None:
        """Wait until everything sent so far is processed (its offset is committed)."""
        spec = create_spec()
        await wait_until_consumed(
            self.bootstrap,
            self.settings.consumer_group("progress"),
            [self.settings.topic(t) for t in spec.consumes],
        )

    def out(self, event_type: str | None = None) -> list[dict[str, Any]]:
        topic = self.settings.topic(Topic.PROGRESS)
        found = [orjson.loads(r.value or b"{}") for r in self.reader.on(topic)]
        return [e for e in found if event_type is None or e["type"] == f"twoway.{event_type}.v1"]

    def data(self, event_type: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.out(event_type)]

    def dead_letters(self) -> list[Received]:
        return self.reader.on(self.settings.topic(Topic.DEADLETTER))

    async def wait(self, event_type: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        def enough(_: list[Received]) -> bool:
            return len(self.out(event_type)) >= count

        await self.reader.wait_for(enough, what=f"{count} x {event_type}", timeout=timeout)
        return self.data(event_type)

    async def wait_dead_letters(self, count: int) -> list[Received]:
        await self.reader.wait_for(
            lambda _: len(self.dead_letters()) >= count, what=f"{count} dead letter(s)"
        )
        return self.dead_letters()

    async def get(self, path: str) -> httpx.Response:
        app = Starlette(routes=list(read_routes(self.pool)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://progress") as client:
            return await client.get(path)

    @asynccontextmanager
    async def running(self, options: WorkerOptions = FAST) -> AsyncIterator[Runtime]:
        async with running_service(create_spec(options), self.settings, self.clock) as runtime:
            self.runtime = runtime
            try:
                yield runtime
            finally:
                self.runtime = None

    # ------------------------------------------------------------ records of a pair

    def programme(self, **changes: Any) -> ToSend:
        fields: dict[str, Any] = {
            "programme_id": PROGRAMME,
            "name": "Digital Leaders",
            "sessions": 3,
        }
        return self.record("programme.configured", **(fields | changes))

    def profile(self, participant_id: str, role: str, **changes: Any) -> ToSend:
        fields = {
            "participant_id": participant_id,
            "programme_id": PROGRAMME,
            "role": role,
            "manager_id": None,
            "display_name": f"Person {participant_id}",
        }
        return self.record("participant.enrolled", **(fields | changes))

    def pair_fields(self, pair_id: str = PAIR) -> dict[str, str]:
        return {
            "pair_id": pair_id,
            "programme_id": PROGRAMME,
            "mentor_id": MENTOR,
            "mentee_id": MENTEE,
        }

    def confirmed(self, pair_id: str = PAIR) -> ToSend:
        return self.record("pair.confirmed", **self.pair_fields(pair_id))

    def scheduled(
        self,
        sequence: int,
        starts_at: datetime,
        total: int = 3,
        pair_id: str = PAIR,
        minutes: int = 30,
    ) -> ToSend:
        return self.record(
            "session.scheduled",
            **self.pair_fields(pair_id),
            session_id=f"{pair_id}-S{sequence}",
            sequence=sequence,
            total=total,
            starts_at=rfc3339(starts_at),
            ends_at=rfc3339(starts_at + timedelta(minutes=minutes)),
            revision=0,
        )

    def completed(self, sequence: int, pair_id: str = PAIR, minutes: int = 30) -> ToSend:
        return self.record(
            "session.completed",
            **self.pair_fields(pair_id),
            session_id=f"{pair_id}-S{sequence}",
            sequence=sequence,
            minutes=minutes,
            ratings={"mentor": 4, "mentee": 5},
        )

    def missed(self, sequence: int, pair_id: str = PAIR) -> ToSend:
        return self.record(
            "session.missed",
            **self.pair_fields(pair_id),
            session_id=f"{pair_id}-S{sequence}",
            sequence=sequence,
            absent=[MENTOR],
        )

    def feedback(
        self, sequence: int, participant_id: str, pair_id: str = PAIR, **changes: Any
    ) -> ToSend:
        fields: dict[str, Any] = {
            "session_id": f"{pair_id}-S{sequence}",
            "pair_id": pair_id,
            "participant_id": participant_id,
            "learned": [],
            "rating": 4,
            "fit": "good",
            "comment": f"private words of {participant_id}",
        }
        return self.record("session.feedback_submitted", **(fields | changes))

    def goals(
        self, participant_id: str, goals: list[dict[str, Any]], pair_id: str = PAIR
    ) -> ToSend:
        return self.record(
            "pair.goals_set", pair_id=pair_id, participant_id=participant_id, goals=goals
        )


@asynccontextmanager
async def harness(
    infra: Infra, dsn: str, topic_prefix: str, **settings: Any
) -> AsyncIterator[Harness]:
    kafka = infra.kafka_bootstrap
    chosen = ProgressSettings(
        **infra.kafka_settings("progress"),
        database_url=dsn,
        topic_prefix=topic_prefix,
        topic_partitions=3,
        http_port=0,
        **settings,
    )
    topics = [chosen.topic(Topic.PROGRESS), chosen.topic(Topic.DEADLETTER)]
    await ensure_topics(chosen, topics)
    async with TopicReader(kafka, topics) as reader:
        yield Harness(chosen, MovableClock(), reader)
