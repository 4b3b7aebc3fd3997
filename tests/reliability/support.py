"""Fault-injection helpers: services as processes (several instances each), a programme run
on them, and the figures of a run compared with a clean run of the same pool."""

from __future__ import annotations

import asyncio
import email.policy
import functools
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
from pydantic import BaseModel
from twoway_dev.localstack.mailsink import MailSinkProcess
from twoway_dev.localstack.stack import LocalStack
from twoway_dev.testing.infra import Infra, unique_name
from twoway_dev.testing.kafka import (
    TopicReader,
    ToSend,
    eventually,
    publish,
    wait_until_consumed,
)
from twoway_dev.toolkit.generate import generate_cohort
from twoway_shared.contract import (
    ParticipantEnrolled,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    Topic,
    topic_name,
)
from twoway_shared.contract.access import all_acls
from twoway_shared.platform.kafka_acls import grant
from twoway_shared.platform.roles import migration_dsns, provision

from tests.e2e_support import CALENDAR_KEYS, CONSUMES, free_port, next_monday, script

# The services between an enrolment and an email; the others are not part of these runs.
SERVICES = ("matching", "scheduling", "notifications")
PROGRAMME = "RM-FAULTS"
PEOPLE = 120
OUTPUTS = (Topic.PAIRS, Topic.SESSIONS, Topic.NOTIFICATIONS)


def infra_of(stack: LocalStack) -> Infra:
    """The suite's own stack as the test helpers address it."""
    info = stack.info
    return Infra(info.kafka_bootstrap, info.admin_dsn, "reliability stack", info.kafka_passwords)


# ---------------------------------------------------------------- mail


class Mailboxes:
    """The SMTP server of a run; it can be taken away and brought back (a new folder each
    time, so the second server's numbering cannot overwrite the first one's files). It runs
    in a process of its own: in this one it shared the interpreter lock with the reading of
    the run's topics, and capped the programme benchmark's email rate."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self._generation = 0
        self._sink: MailSinkProcess | None = None
        self._sinks: list[MailSinkProcess] = []
        self._taken: dict[Path, int] = {}  # messages read from each server's folder
        self._received: list[tuple[str, str, str]] = []

    def start(self) -> None:
        self._sink = MailSinkProcess(self.root / f"mail-{self._generation}", port=self.port)
        self._sink.start()
        self._sinks.append(self._sink)
        self._generation += 1

    def stop(self) -> None:
        if self._sink is not None:
            self._sink.stop()
            self._sink = None

    def received(self) -> list[tuple[str, str, str]]:
        """(recipient, template, Message-ID) of every message received, by every server, in
        the order received (a list that only grows; callers must not change it).

        Each message is read once, and only its headers: the run's outcome is polled while it
        grows, and parsing every email again at each poll cost the 2-core machine more CPU
        than the services under test.
        """
        for sink in self._sinks:
            written = sink.written
            for path in written[self._taken.get(sink.folder, 0) :]:
                headers = _HEADERS.parsebytes(path.read_bytes(), headersonly=True)
                self._received.append(
                    (
                        parseaddr(str(headers["To"]))[1].lower(),
                        str(headers["X-Twoway-Template"]),
                        str(headers["Message-ID"]),
                    )
                )
            self._taken[sink.folder] = len(written)
        return self._received


_HEADERS = BytesParser(policy=email.policy.compat32)


# ---------------------------------------------------------------- services


class SmtpServer(Protocol):
    port: int


@dataclass
class Cluster:
    """Every service as `instances[service]` processes of `twoway-<svc> run`."""

    infra: Infra
    dsns: dict[str, str]
    owner_dsns: dict[str, str]
    prefix: str
    log_dir: Path
    mail: SmtpServer
    instances: dict[str, int]
    services: tuple[str, ...] = SERVICES
    processes: dict[tuple[str, int], asyncio.subprocess.Process] = field(default_factory=dict)
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    killed: set[int] = field(default_factory=set)  # pids this test killed on purpose

    def env(self, service: str, instance: int) -> dict[str, str]:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("TWOWAY_")}
        env.update(
            **self.infra.kafka_env(service),
            TWOWAY_DATABASE_URL=self.dsns[service],
            TWOWAY_DATABASE_MIGRATION_URL=self.owner_dsns[service],
            TWOWAY_HTTP_HOST="127.0.0.1",
            TWOWAY_CALENDAR_KEYS=CALENDAR_KEYS,
            TWOWAY_HTTP_PORT=str(self.ports[(service, instance)]),
            TWOWAY_TOPIC_PREFIX=self.prefix,
            TWOWAY_SMTP_HOST="127.0.0.1",
            TWOWAY_SMTP_PORT=str(self.mail.port),
            TWOWAY_PORTAL_URL="http://portal.test",
            TWOWAY_LOG_LEVEL="INFO",
        )
        return env

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)

        async def migrate(service: str) -> None:
            self.ports[(service, 0)] = free_port()
            with (self.log_dir / f"{service}-migrate.log").open("ab") as log:
                process = await asyncio.create_subprocess_exec(
                    script(service), "migrate", env=self.env(service, 0), stdout=log, stderr=log
                )
                assert await process.wait() == 0, f"twoway-{service} migrate failed"

        await asyncio.gather(*(migrate(service) for service in self.services))
        await asyncio.gather(
            *(
                self.start_instance(service, i)
                for service in self.services
                for i in range(self.instances.get(service, 1))
            )
        )

    async def start_instance(self, service: str, instance: int, *, wait: bool = True) -> None:
        self.ports.setdefault((service, instance), free_port())
        with (self.log_dir / f"{service}-{instance}.log").open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                script(service), "run", env=self.env(service, instance), stdout=log, stderr=log
            )
        self.processes[(service, instance)] = process
        if not wait:
            return
        url = f"http://127.0.0.1:{self.ports[(service, instance)]}/readyz"
        async with httpx.AsyncClient() as client:

            async def readyz() -> int:
                if process.returncode is not None:
                    raise AssertionError(f"twoway-{service} exited with {process.returncode}")
                try:
                    return (await client.get(url)).status_code
                except httpx.TransportError:
                    return 0

            # Generous: nine processes starting at once on two busy cores take a while.
            await eventually(readyz, lambda c: c == 200, timeout=240, what=f"{service} ready")

    async def kill(self, service: str, instance: int) -> None:
        process = self.processes[(service, instance)]
        if process.returncode is None:
            self.killed.add(process.pid)
            process.send_signal(signal.SIGKILL)
            await process.wait()

    def crashed(self) -> list[str]:
        """Instances that exited without being killed by the test."""
        return [
            f"{service}-{instance} (exit {p.returncode})"
            for (service, instance), p in self.processes.items()
            if p.returncode is not None and p.pid not in self.killed
        ]

    async def stop(self) -> dict[str, int]:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for (service, instance), process in self.processes.items():
            try:
                codes[f"{service}-{instance}"] = await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                codes[f"{service}-{instance}"] = await process.wait()
        return codes


# ---------------------------------------------------------------- the programme


def programme_events(people: int = PEOPLE) -> tuple[ProgrammeConfigured, list[ParticipantEnrolled]]:
    """The same programme every run: batch matching, so the pairs are the optimum of the pool
    and do not depend on when the enrolments arrive; sessions start the Monday after next."""
    starts_on = next_monday(datetime.now(UTC).date()) + timedelta(days=7)
    configured = ProgrammeConfigured.model_validate(
        {
            "programme_id": PROGRAMME,
            "name": "Fault injection",
            "starts_on": starts_on.isoformat(),
            "sessions": 6,
            "reminder_minutes": [60],
            "matching": {"mode": "batch"},
        }
    )
    cohort = generate_cohort(people, seed=2027, programme_id=PROGRAMME)
    return configured, [ParticipantEnrolled.model_validate(p) for p in cohort]


@dataclass
class Outcome:
    """What a run produced, read back from the output topics and the SMTP server."""

    pairs: set[tuple[str, str]] = field(default_factory=set)
    sessions: set[tuple[str, str, int, str]] = field(default_factory=set)
    emails: Counter[tuple[str, str]] = field(default_factory=Counter)
    message_ids: Counter[str] = field(default_factory=Counter)
    events: int = 0
    redelivered: int = 0  # the same event id read twice: at-least-once, consumers dedupe
    duplicate_facts: list[str] = field(default_factory=list)  # one fact under two event ids

    def complete(self, expected: Outcome) -> bool:
        return (
            self.pairs >= expected.pairs
            and self.sessions >= expected.sessions
            and all(self.emails[k] >= n for k, n in expected.emails.items())
        )


class Tally:
    """A run's outcome read as it grows: each record and each email is counted once, across
    polls (the run is polled four times a second, and recounting 60,000 events and 20,000
    emails each time cost the 2-core machine as much as a service under test)."""

    def __init__(self, mail: Mailboxes) -> None:
        self._mail = mail
        self._read = 0
        self._mailed = 0
        self._so_far = Outcome()
        self._ids: Counter[str] = Counter()
        self._facts: dict[tuple[str, ...], set[str]] = {}
        self._duplicate_facts: dict[tuple[str, ...], None] = {}  # in the order found

    def outcome(self, records: Sequence[Any]) -> Outcome:
        """The outcome of `records` (the same growing list at every call) and the mail: a
        copy, which later polls leave as it is."""
        so_far = self.current(records)
        return Outcome(
            pairs=set(so_far.pairs),
            sessions=set(so_far.sessions),
            emails=Counter(so_far.emails),
            message_ids=Counter(so_far.message_ids),
            events=so_far.events,
            redelivered=so_far.redelivered,
            duplicate_facts=[":".join(k) for k in self._duplicate_facts],
        )

    def current(self, records: Sequence[Any]) -> Outcome:
        """The outcome so far, as the tally holds it (to look at, not to keep: the next poll
        changes it)."""
        for record in records[self._read :]:
            self._add(json.loads(record.value or b"{}"))
        self._read = len(records)
        so_far = self._so_far
        received = self._mail.received()
        for to, template, message_id in received[self._mailed :]:
            so_far.emails[(to, template)] += 1
            so_far.message_ids[message_id] += 1
        self._mailed = len(received)
        return so_far

    @property
    def size(self) -> int:
        """Events and emails counted so far: whether the run is still moving."""
        return self._so_far.events + self._mailed

    def _add(self, event: dict[str, Any]) -> None:
        outcome = self._so_far
        outcome.events += 1
        self._ids[event["id"]] += 1
        if self._ids[event["id"]] > 1:
            outcome.redelivered += 1
        kind = event["type"].removeprefix("twoway.").removesuffix(".v1")
        data = event["data"]
        if kind == "pair.confirmed":
            outcome.pairs.add((data["mentor_id"], data["mentee_id"]))
            self._fact((kind, data["pair_id"]), event["id"])
        elif kind == "session.scheduled":
            outcome.sessions.add(
                (data["mentor_id"], data["mentee_id"], data["sequence"], data["starts_at"])
            )
            self._fact((kind, data["session_id"], str(data.get("revision", 0))), event["id"])
        elif kind in ("notification.sent", "notification.failed"):
            self._fact(("notification", data["notification_id"]), event["id"])

    def _fact(self, key: tuple[str, ...], event_id: str) -> None:
        ids = self._facts.setdefault(key, set())
        ids.add(event_id)
        if len(ids) > 1:
            self._duplicate_facts[key] = None


@dataclass
class Figures:
    """One run's figures, printed by each test and in the session summary."""

    name: str
    faults: int
    events: int
    emails: int
    lost: int
    duplicated: int
    redelivered: int
    seconds: float
    recovery: float
    crashed: list[str]
    detail: list[str]

    def line(self) -> str:
        return (
            f"{self.name}: faults={self.faults} events={self.events} emails={self.emails} "
            f"lost={self.lost} duplicated={self.duplicated} redelivered={self.redelivered} "
            f"run={self.seconds:.1f}s recovery={self.recovery:.1f}s "
            f"crashed={','.join(self.crashed) or 'none'}"
        )


def compare(name: str, expected: Outcome, got: Outcome, **figures: Any) -> Figures:
    detail = []
    lost = 0
    for pair in sorted(expected.pairs - got.pairs):
        lost += 1
        detail.append(f"lost pair {pair}")
    for session in sorted(expected.sessions - got.sessions):
        lost += 1
        detail.append(f"lost session {session}")
    for key, n in sorted(expected.emails.items()):
        if got.emails[key] < n:
            lost += n - got.emails[key]
            detail.append(f"lost email {key}")
    # An email twice: its Message-ID twice, or more emails of a kind than the clean run had.
    twice = sum(n - 1 for n in got.message_ids.values())
    extra = sum(max(0, n - expected.emails[k]) for k, n in got.emails.items())
    duplicated = max(twice, extra)
    detail += [f"email {m} received {n} times" for m, n in got.message_ids.items() if n > 1]
    for fact in got.duplicate_facts:
        duplicated += 1
        detail.append(f"one fact published under two event ids: {fact}")
    extra_pairs = got.pairs - expected.pairs
    extra_sessions = got.sessions - expected.sessions
    duplicated += len(extra_pairs) + len(extra_sessions)
    detail += [f"unexpected pair {p}" for p in sorted(extra_pairs)]
    detail += [f"unexpected session {s}" for s in sorted(extra_sessions)]
    return Figures(
        name=name,
        events=got.events,
        emails=sum(got.emails.values()),
        lost=lost,
        duplicated=duplicated,
        redelivered=got.redelivered,
        detail=detail,
        **figures,
    )


FIGURES: list[Figures] = []
"""Every run's figures in this session, printed at its end."""

Fault = Callable[["Run"], Coroutine[Any, Any, None]]


@dataclass
class Run:
    """One programme on a fresh database and topic prefix, with faults injected meanwhile."""

    infra: Infra
    root: Path
    instances: dict[str, int] = field(default_factory=dict)
    people: int = PEOPLE
    cluster: Cluster | None = None
    mail: Mailboxes | None = None
    fault_log: list[tuple[float, str]] = field(default_factory=list)
    started: float = 0.0
    last_fault_end: float = 0.0
    crashed: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    from_first_enrolment: float = 0.0  # seconds from the first enrolment to the end
    progress: bool = False  # print the pairs, sessions and emails so far every 5 s
    last_change: float = 0.0  # when the outcome last grew (monotonic)
    # Whether the run still lacked part of the clean run's outcome when the first fault
    # took effect (None: no fault, or no clean run to compare with): a fault that comes
    # once everything is out tests nothing.
    first_fault_mid_run: bool | None = None
    _outcome_now: Callable[[], Outcome] | None = field(default=None, init=False, repr=False)
    _expected: Outcome | None = field(default=None, init=False, repr=False)

    def note(self, what: str) -> None:
        """Log a fault (or its end) once it has taken effect."""
        if (
            self.first_fault_mid_run is None
            and self._outcome_now is not None
            and self._expected is not None
        ):
            self.first_fault_mid_run = not self._outcome_now().complete(self._expected)
        self.fault_log.append((time.monotonic() - self.started, what))
        print(f"  +{time.monotonic() - self.started:6.1f}s {what}", flush=True)

    async def reached(
        self, condition: Callable[[Outcome], bool], what: str, timeout: float = 60.0
    ) -> None:
        """Wait until the outcome so far satisfies `condition`: a moment in the run for a
        fault, the same on a fast machine and a slow one (a fixed delay came after the end
        of the run on a fast one)."""
        outcome_now = self._outcome_now
        assert outcome_now is not None, "only while the run executes"

        async def probe() -> Outcome:
            return outcome_now()

        await eventually(probe, condition, timeout=timeout, interval=0.02, what=what)

    def fault_ended(self) -> None:
        self.last_fault_end = time.monotonic()

    async def execute(
        self,
        expected: Outcome | None,
        faults: Fault | None = None,
        *,
        timeout: float = 150.0,
    ) -> tuple[Outcome, float, float]:
        """Run the programme; (outcome, seconds from matching requested to done, recovery)."""
        database = unique_name("r_")
        admin_dsn = self.infra.admin_dsn
        dsns = await provision(admin_dsn, database, role_prefix=f"{database}_")
        owners = migration_dsns(admin_dsn, database, role_prefix=f"{database}_")
        prefix = f"{unique_name('r')}."
        await grant(
            self.infra.kafka_admin_options(),
            all_acls(prefix) if self.infra.kafka_secured else [],
        )
        self.mail = Mailboxes(self.root / database)
        self.mail.start()
        self.cluster = cluster = Cluster(
            self.infra,
            dsns,
            owners,
            prefix,
            self.root / database / "logs",
            self.mail,
            self.instances,
        )
        configured, enrolments = programme_events(self.people)
        outputs = [topic_name(prefix, t) for t in OUTPUTS]
        try:
            began = time.monotonic()
            await cluster.start()
            print(f"  services started in {time.monotonic() - began:.1f}s", flush=True)
            await self._publish([configured], prefix)
            await self._consumed(prefix, SERVICES)
            enrolling = time.monotonic()
            await self._publish(enrolments, prefix)
            await self._consumed(prefix, SERVICES)
            print(
                f"  programme enrolled after {time.monotonic() - began:.1f}s "
                f"(enrolments consumed by every service in {time.monotonic() - enrolling:.1f}s)",
                flush=True,
            )
            async with TopicReader(self.infra.kafka_bootstrap, outputs) as reader:
                self.started = time.monotonic()
                tally = Tally(self.mail)
                self._outcome_now = functools.partial(tally.current, reader.records)
                self._expected = expected
                await self._publish([ProgrammeMatchingRequested(programme_id=PROGRAMME)], prefix)
                injector = asyncio.create_task(faults(self)) if faults else None
                outcome = await self._settle(tally, reader, expected, timeout, injector, dsns)
                if injector is not None:
                    await injector
                # To the last event or email seen: a clean run is only known to be done
                # after 3 quiet seconds, which are not part of its time.
                ended = self.last_change if expected is None else time.monotonic()
                seconds = ended - self.started
                self.from_first_enrolment = ended - enrolling
                recovery = (
                    max(0.0, time.monotonic() - self.last_fault_end) if self.last_fault_end else 0.0
                )
                # A late duplicate would show up now.
                await asyncio.sleep(3.0)
                outcome = tally.outcome(reader.records)
                self.crashed = cluster.crashed()
                self.unsettled = await unsettled(dsns)
            return outcome, seconds, recovery
        finally:
            self._outcome_now = None  # the reader is closed: nothing to poll after the run
            await cluster.stop()
            self.mail.stop()

    async def _settle(
        self,
        tally: Tally,
        reader: TopicReader,
        expected: Outcome | None,
        timeout: float,
        injector: asyncio.Task[None] | None,
        dsns: dict[str, str],
    ) -> Outcome:
        """Until the outcome is complete (or, for the clean run, quiet for 3 s with nothing
        left in flight)."""
        assert self.mail is not None
        deadline = time.monotonic() + timeout
        last_size, quiet_since = -1, time.monotonic()
        shown = time.monotonic()
        while True:
            outcome = tally.current(reader.records)
            size = tally.size
            if size != last_size:
                last_size, quiet_since = size, time.monotonic()
                self.last_change = quiet_since
            if self.progress and time.monotonic() - shown >= 5.0:
                shown = time.monotonic()
                print(
                    f"  +{shown - self.started:6.1f}s {len(outcome.pairs)} pairs, "
                    f"{len(outcome.sessions)} sessions, {sum(outcome.emails.values())} emails; "
                    f"notifications' due emails: {await due_emails(dsns['notifications'])}",
                    flush=True,
                )
            faults_done = injector is None or injector.done()
            if faults_done and expected is not None and outcome.complete(expected):
                return tally.outcome(reader.records)
            if expected is None and outcome.pairs and time.monotonic() - quiet_since > 3.0:
                if not await unsettled(dsns):
                    return tally.outcome(reader.records)
                quiet_since = time.monotonic()
            if time.monotonic() > deadline:
                return tally.outcome(reader.records)
            await asyncio.sleep(0.25)

    async def _publish(self, events: Sequence[BaseModel], prefix: str) -> None:
        await publish(
            self.infra.kafka_bootstrap,
            [ToSend.event(prefix, data, source="/tests/reliability") for data in events],
        )

    async def _consumed(self, prefix: str, services: Iterable[str]) -> None:
        for name in services:
            await wait_until_consumed(
                self.infra.kafka_bootstrap,
                f"{prefix}{name}",
                [topic_name(prefix, t) for t in CONSUMES[name]],
                timeout=max(60.0, self.people / 20),
            )


async def due_emails(dsn: str) -> str:
    """The booking and pair_confirmed messages notifications holds, by status: whether the
    emails wait on the sender or on the messages being made (the events being consumed).
    Only a progress line: a database that does not answer is said so, never raised."""
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
        try:
            rows = await conn.fetch(
                """SELECT status, count(*) AS n FROM notifications.messages
                   WHERE template IN ('booking', 'pair_confirmed')
                   GROUP BY status ORDER BY status""",
                timeout=2,
            )
        finally:
            await conn.close(timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"not known ({type(exc).__name__})"
    return ", ".join(f"{r['n']} {r['status']}" for r in rows) or "none yet"


async def unsettled(dsns: dict[str, str]) -> list[str]:
    """What is still in flight: outbox rows not yet published, messages due and not sent."""
    found = []
    for service in SERVICES:
        try:
            conn = await asyncpg.connect(dsns[service])
        except (OSError, asyncpg.PostgresError) as exc:
            return [f"{service}: database unavailable ({type(exc).__name__})"]
        try:
            backlog = await conn.fetchval(f"SELECT count(*) FROM {service}.outbox")
            if backlog:
                found.append(f"{service}: {backlog} outbox rows")
            if service == "notifications":
                rows = await conn.fetch(
                    """SELECT participant_id, template, status, attempts, error, lease_holder,
                              lease_until, due_at
                       FROM notifications.messages
                       WHERE status NOT IN ('sent', 'skipped')
                         AND due_at < now() + interval '1 hour'"""
                )
                found += [f"message {dict(r)}" for r in rows]
        finally:
            await conn.close()
    return found
