"""The services as `twoway-<svc> run` processes on the session's broker and database, for
end-to-end tests: `running_stack` gives each stack its own database, roles, topic prefix, mail
sink and ports; `Stack` publishes, waits for the services and calls their read APIs; `View`
reads what they produced. The same verbs as the in-process `ServiceHarness`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from pydantic import BaseModel
from twoway_shared.contract import ProgrammeConfigured, Topic, topic_name
from twoway_shared.contract.access import SERVICES, all_acls, consumes
from twoway_shared.platform.kafka_acls import grant, revoke
from twoway_shared.platform.roles import migration_dsns, provision

from twoway_dev.localstack.mailsink import MailSink
from twoway_dev.testing.infra import Infra, unique_name
from twoway_dev.testing.kafka import (
    Received,
    TopicReader,
    ToSend,
    eventually,
    publish,
    wait_until_consumed,
)
from twoway_dev.testing.oidc import TestProvider

SOURCE = "/tests/e2e"
CALENDAR_KEYS = "e2e-calendar-key-0123456789abcdef"

CONSUMES: dict[str, tuple[Topic, ...]] = {service: consumes(service) for service in SERVICES}
"""Each service's input topics, as the contract's access list gives them."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def script(service: str) -> str:
    found = shutil.which(f"twoway-{service}", path=os.path.dirname(sys.executable))
    assert found is not None, f"twoway-{service} is not installed"
    return found


@dataclass
class Stack:
    """The services as `twoway-<svc> run` processes on their own ports and topic prefix."""

    kafka: str
    admin_dsn: str
    dsns: dict[str, str]
    prefix: str
    log_dir: Path
    mail: MailSink
    infra: Infra
    owner_dsns: dict[str, str]
    oidc: TestProvider | None = None
    ports: dict[str, int] = field(default_factory=lambda: {s: free_port() for s in SERVICES})
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """service -> more TWOWAY_* settings (e.g. progress's xAPI endpoint)."""
    _token: str | None = None

    def topic(self, topic: Topic) -> str:
        return topic_name(self.prefix, topic)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self, service: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWOWAY_")}
        env.update(
            **self.infra.kafka_env(service),
            TWOWAY_DATABASE_URL=self.dsns[service],
            TWOWAY_DATABASE_MIGRATION_URL=self.owner_dsns[service],
            TWOWAY_HTTP_PORT=str(self.ports[service]),
            TWOWAY_TOPIC_PREFIX=self.prefix,
            TWOWAY_SMTP_HOST="127.0.0.1",
            TWOWAY_SMTP_PORT=str(self.mail.port),
            TWOWAY_PORTAL_URL="http://portal.test",
            TWOWAY_LOG_LEVEL="INFO",
            TWOWAY_HTTP_HOST="127.0.0.1",
            TWOWAY_CALENDAR_KEYS=CALENDAR_KEYS,
            TWOWAY_CALENDAR_BASE_URL=self.url("scheduling"),
        )
        if self.oidc is not None:
            env.update(self.oidc.env())
        env.update(self.extra_env.get(service, {}))
        return env

    async def start(self) -> None:
        """Migrate each service with its own role, start it, and wait until /readyz is 200."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            with (self.log_dir / f"{name}.log").open("ab") as log:
                migrate = await asyncio.create_subprocess_exec(
                    script(name), "migrate", env=self.env(name), stdout=log, stderr=log
                )
                assert await migrate.wait() == 0, f"twoway-{name} migrate failed; see {log.name}"
                self.processes[name] = await asyncio.create_subprocess_exec(
                    script(name), "run", env=self.env(name), stdout=log, stderr=log
                )
        async with httpx.AsyncClient() as client:
            for name in SERVICES:
                process = self.processes[name]

                async def readyz(
                    name: str = name, process: asyncio.subprocess.Process = process
                ) -> int:
                    if process.returncode is not None:
                        raise AssertionError(f"twoway-{name} exited with {process.returncode}")
                    try:
                        return (await client.get(f"{self.url(name)}/readyz")).status_code
                    except httpx.TransportError:
                        return 0

                await eventually(
                    readyz, lambda code: code == 200, timeout=90, what=f"{name} /readyz"
                )

    async def stop(self) -> dict[str, int]:
        """SIGTERM every service and wait for it to drain; service -> exit code."""
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self.processes.items():
            try:
                codes[name] = await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                codes[name] = await process.wait()
        self.processes.clear()
        return codes

    def alive(self) -> bool:
        return all(p.returncode is None for p in self.processes.values())

    async def send(self, *items: BaseModel) -> list[str]:
        """Publish contract events in order, each on its topic with its key; their ids.

        Programme settings go first and are consumed by every service before the rest:
        topics have no mutual order, and the settings should apply to what follows.
        """
        settings = [i for i in items if isinstance(i, ProgrammeConfigured)]
        rest = [i for i in items if not isinstance(i, ProgrammeConfigured)]
        ids = await self._publish(settings)
        if settings and rest:
            await self.barrier()
        return ids + await self._publish(rest)

    async def _publish(self, items: Sequence[BaseModel]) -> list[str]:
        records, ids = [], []
        for data in items:
            record = ToSend.event(self.prefix, data, source=SOURCE)
            ids.append(orjson.loads(record.value or b"{}")["id"])
            records.append(record)
        if records:
            await publish(self.kafka, records)
        return ids

    async def barrier(self, services: Iterable[str] = SERVICES, timeout: float = 60) -> None:
        """Barrier: each service has committed every record now on its input topics."""
        for name in services:
            await wait_until_consumed(
                self.kafka,
                f"{self.prefix}{name}",
                [self.topic(t) for t in CONSUMES[name]],
                timeout=timeout,
            )

    async def fetch(self, service: str, path: str, token: str | None = None) -> httpx.Response:
        """GET with `token` as the bearer token (none when empty)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.url(service), timeout=10) as client:
            return await client.get(path, headers=headers)

    async def get(self, service: str, path: str) -> Any:
        """GET as a `twoway.reader` with a token from the provider's token endpoint."""
        if self.oidc is not None and self._token is None:
            self._token = await asyncio.to_thread(self.oidc.token)
        response = await self.fetch(service, path, self._token)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        if response.headers["content-type"].startswith("application/json"):
            return response.json()
        return response.text


@asynccontextmanager
async def running_stack(
    infra: Infra,
    root: Path,
    extra_env: dict[str, dict[str, str]] | None = None,
    oidc: TestProvider | None = None,
) -> AsyncIterator[Stack]:
    """A fresh database with least-privileged roles, an SMTP sink, and the four services,
    trusting `oidc` for read-API tokens (without it the read APIs answer 401).

    On a broker that enforces ACLs each service runs as its own principal with exactly its
    ACLs under the stack's topic prefix.
    """
    admin_dsn = infra.admin_dsn
    database = unique_name("t_")
    dsns = await provision(admin_dsn, database, role_prefix=f"{database}_")
    owners = migration_dsns(admin_dsn, database, role_prefix=f"{database}_")
    parts = urlsplit(admin_dsn)
    database_dsn = urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
    prefix = f"{unique_name('t')}."
    acls = all_acls(prefix) if infra.kafka_secured else []
    await grant(infra.kafka_admin_options(), acls)
    sink = MailSink(root / "mail", port=free_port())
    sink.start()
    stack = Stack(
        infra.kafka_bootstrap,
        database_dsn,
        dsns,
        prefix,
        root / "logs",
        sink,
        infra,
        owners,
        oidc,
        extra_env=extra_env or {},
    )
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()
        sink.stop()
        await revoke(infra.kafka_admin_options(), acls)


# ---------------------------------------------------------------- events read back


def event(record: Received) -> dict[str, Any]:
    """The CloudEvent of a record Twoway produced, with `kind` = the short type."""
    document: dict[str, Any] = json.loads(record.value or b"{}")
    document["kind"] = document["type"].removeprefix("twoway.").removesuffix(".v1")
    return document


def events(
    records: Sequence[Received], topic: str, kind: str | None = None
) -> list[dict[str, Any]]:
    """Events Twoway produced on `topic`; records a test wrote there (no content-type) are not."""
    found = [event(r) for r in records if r.topic == topic and "content-type" in r.headers]
    return [e for e in found if kind is None or e["kind"] == kind]


class View:
    """Shorthands over what a stack's services produced (a reader of their topics)."""

    def __init__(self, stack: Stack, reader: TopicReader, timeout: float = 90) -> None:
        self.stack, self.reader, self.timeout = stack, reader, timeout

    def of(self, topic: Topic, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """The events on `topic` (of `kind`) whose data has the `match` values."""
        found = events(self.reader.records, self.stack.topic(topic), kind)
        return [e for e in found if all(e["data"].get(k) == v for k, v in match.items())]

    def data(self, topic: Topic, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [e["data"] for e in self.of(topic, kind, **match)]

    def pairs(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return self.of(Topic.PAIRS, kind, **match)

    def sessions(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return self.of(Topic.SESSIONS, kind, **match)

    def sent(self, **match: Any) -> list[dict[str, Any]]:
        return self.of(Topic.NOTIFICATIONS, "notification.sent", **match)

    async def until(
        self, condition: Callable[[], bool], what: str, timeout: float | None = None
    ) -> None:
        await self.reader.wait_for(
            lambda _: condition(), timeout=timeout or self.timeout, what=what
        )

    async def pair_of(self, mentee: str) -> dict[str, Any]:
        """The data of the first pair.confirmed of `mentee`, once there is one."""
        await self.until(lambda: bool(self.pairs("pair.confirmed", mentee_id=mentee)), mentee)
        return self.data(Topic.PAIRS, "pair.confirmed", mentee_id=mentee)[0]

    async def series(self, pair_id: str, total: int) -> list[dict[str, Any]]:
        """The data of a pair's `total` scheduled sessions, in order, once all are out."""
        await self.until(
            lambda: len(self.sessions("session.scheduled", pair_id=pair_id)) == total,
            f"{total} sessions of {pair_id}",
        )
        scheduled = self.data(Topic.SESSIONS, "session.scheduled", pair_id=pair_id)
        return sorted(scheduled, key=lambda s: s["sequence"])


PRODUCED = (Topic.PAIRS, Topic.SESSIONS, Topic.NOTIFICATIONS, Topic.PROGRESS, Topic.DEADLETTER)
"""What the services write, all read by a stack's `View`."""
