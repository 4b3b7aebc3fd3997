"""`twoway-dev demo`: the whole system on a local stack with a synthetic programme and a report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from twoway_shared.contract import (
    ParticipantEnrolled,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    Topic,
    topic_name,
)
from twoway_shared.platform.roles import provision

from twoway_dev.demo.progress import health_section, play_progress, programme_health
from twoway_dev.demo.report import ReportData, Tally, print_report, write_csv
from twoway_dev.localstack.mailsink import MailSink
from twoway_dev.localstack.oidc import ProviderProcess
from twoway_dev.localstack.processes import (
    COORDINATOR_CLIENT_ID,
    DASHBOARD_PORT,
    HTTP_PORTS,
    OIDC_PORT,
    READER_CLIENT_ID,
    ServiceProcess,
    curl_line,
    http_ports,
    security_env,
    start_provider,
    start_services,
    stop_services,
    wait_ready,
)
from twoway_dev.localstack.proxy import CachedToken, ProxyThread
from twoway_dev.localstack.stack import HOLD_FILE, LocalStack, hold, repo_root
from twoway_dev.testing.kafka import TopicReader, ToSend, authenticate, client_options, publish
from twoway_dev.toolkit.generate import generate_cohort

PREFIX = "twoway."
PROGRAMME_ID = "RM-DEMO"
SOURCE = "/twoway/demo"
console = Console()


@dataclass(frozen=True)
class Target:
    """Where the demo publishes and reads: a broker, a topic prefix, matching's read API."""

    kafka: str
    prefix: str = PREFIX
    matching_url: str = f"http://127.0.0.1:{HTTP_PORTS['matching']}"
    token: str | None = None
    """A read-API bearer token (`twoway.reader`)."""

    def topic(self, topic: Topic) -> str:
        return topic_name(self.prefix, topic)


def next_monday(today: date) -> date:
    return today + timedelta(days=7 - today.weekday())


def demo_programme(
    programme_id: str = PROGRAMME_ID, *, starts_on: date | None = None, min_score: float = 0.0
) -> ProgrammeConfigured:
    """The synthetic programme: batch matching, so one round sees everyone at once."""
    starts = starts_on or next_monday(datetime.now(UTC).date())
    return ProgrammeConfigured.model_validate(
        {
            "programme_id": programme_id,
            "name": "Reverse mentoring (demo)",
            "starts_on": starts.isoformat(),
            "sessions": 6,
            "reminder_minutes": [1440, 60],
            "matching": {"mode": "batch", "min_score": min_score},
        }
    )


async def _publish_events(target: Target, items: Sequence[BaseModel]) -> None:
    """Each event on its contract topic under the demo's prefix, as the portal would."""
    await publish(
        target.kafka, [ToSend.event(target.prefix, data, source=SOURCE) for data in items]
    )


async def committed(target: Target, group: str, topic: Topic) -> int:
    """How many records of `topic` the consumer group has committed (a fresh topic's count)."""
    admin = AIOKafkaAdminClient(**client_options(target.kafka))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    name = target.topic(topic)
    return sum(o.offset for tp, o in offsets.items() if tp.topic == name and o.offset > 0)


async def wait_committed(
    target: Target, group: str, topic: Topic, count: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while await committed(target, group, topic) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group} did not consume {count} records of {topic.value}")
        await asyncio.sleep(0.2)


def matching_summary(target: Target, programme_id: str) -> dict[str, Any]:
    url = f"{target.matching_url}/programmes/{programme_id}/pairs"
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


async def _last_round(target: Target, programme_id: str) -> dict[str, Any] | None:
    try:
        found = await asyncio.to_thread(matching_summary, target, programme_id)
    except OSError:
        return None
    last: dict[str, Any] | None = found.get("last_round")
    return last


async def drive(
    target: Target,
    programme: ProgrammeConfigured,
    cohort: list[dict[str, Any]],
    timeout: float,
    out: Console = console,
) -> tuple[Tally, dict[str, Any]]:
    """Enrol everyone, run one batch round once all enrolments are consumed, follow until settled.

    The same cohort and programme give the same pairs: the round sees the whole cohort at once.
    Returns what the services published and matching's summary of the round.
    """
    programme_id = programme.programme_id
    groups = {svc: f"{target.prefix}{svc}" for svc in ("matching", "scheduling", "notifications")}
    # Settings first, consumed by every service, so they apply to everything after them.
    await _publish_events(target, [programme])
    for group in groups.values():
        await wait_committed(target, group, Topic.PROGRAMMES, 1, timeout)
    enrolments = [ParticipantEnrolled.model_validate(p) for p in cohort]
    await _publish_events(target, enrolments)

    tally = Tally()
    summary: dict[str, Any] | None = None
    topics = [target.topic(t) for t in (Topic.PAIRS, Topic.SESSIONS, Topic.NOTIFICATIONS)]
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    async with TopicReader(target.kafka, topics) as reader:
        with Progress(*columns, console=out) as progress:
            enrolled_bar = progress.add_task("enrolments consumed", total=len(cohort))
            pairs_bar = progress.add_task("pairs confirmed", total=None, start=False)
            sessions_bar = progress.add_task("sessions booked", total=None, start=False)
            emails_bar = progress.add_task("booking emails sent", total=None, start=False)
            deadline = time.monotonic() + timeout
            requested = False
            seen = 0
            while time.monotonic() < deadline:
                if not requested:
                    done = await committed(target, groups["matching"], Topic.ENROLMENTS)
                    progress.update(enrolled_bar, completed=done)
                    if done >= len(cohort):
                        request = ProgrammeMatchingRequested(programme_id=programme_id)
                        await _publish_events(target, [request])
                        requested = True
                        for bar in (pairs_bar, sessions_bar, emails_bar):
                            progress.start_task(bar)
                elif summary is None:
                    summary = await _last_round(target, programme_id)
                for record in reader.records[seen:]:
                    tally.add(json.loads(record.value or b"{}"))
                seen = len(reader.records)
                pairs = len(tally.pairs())
                expected_pairs = summary["pairs_proposed"] if summary else None
                progress.update(pairs_bar, completed=pairs, total=expected_pairs)
                expected = sum(tally.totals.get(p, 0) for p in tally.pairs())
                progress.update(sessions_bar, completed=tally.sessions(), total=expected or None)
                progress.update(
                    emails_bar, completed=tally.sent["booking"], total=2 * len(tally.totals) or None
                )
                if (
                    summary is not None
                    and pairs >= summary["pairs_proposed"]
                    and tally.settled()
                    and time.monotonic() - tally.last_change > 3
                ):
                    break
                await asyncio.sleep(0.3)
            # Each bar ends complete (what arrived is all there is) with its elapsed time.
            for bar in (enrolled_bar, pairs_bar, sessions_bar, emails_bar):
                task = progress.tasks[bar]
                if not task.started:
                    progress.start_task(bar)
                progress.update(bar, total=task.completed)
    return tally, summary or {}


def clear_previous(root: Path, stack: LocalStack) -> None:
    """Stop a previous demo's stack left behind (nobody holds it) and remove its files."""
    if not any(entry.name != HOLD_FILE for entry in root.iterdir()):
        return
    console.print("Removing the previous demo's data ...")
    stack.down()
    for entry in root.iterdir():
        if entry.name == HOLD_FILE:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def open_dashboard(
    provider: ProviderProcess, programme_id: str, ports: dict[str, int] = HTTP_PORTS
) -> ProxyThread:
    """The local stand-in for the enterprise's authenticating proxy, signed in as the
    programme's coordinator, in front of progress; prints the dashboard's address."""
    token = CachedToken(lambda: provider.token(COORDINATOR_CLIENT_ID))
    proxy = ProxyThread(DASHBOARD_PORT, f"http://127.0.0.1:{ports['progress']}", token)
    proxy.start()
    console.print(
        f"The coordinators' dashboard of {programme_id}, opened as its manager through a local "
        "authenticating proxy (any browser on this machine):"
    )
    console.print(f"{proxy.url}/programmes/{programme_id}/dashboard", soft_wrap=True)
    return proxy


def run_demo(
    *,
    n: int,
    seed: int,
    once: bool,
    kafka_port: int,
    pg_port: int,
    smtp_port: int,
    timeout: float,
    csv_dir: Path | None = None,
    min_score: float = 0.0,
    http_port: int = HTTP_PORTS["matching"],
    oidc_port: int = OIDC_PORT,
) -> int:
    root = repo_root() / ".demo"
    stack = LocalStack(root / "stack", kafka_port=kafka_port, pg_port=pg_port)
    with contextlib.ExitStack() as held:
        # Refuses, before touching anything, when another demo runs here.
        held.enter_context(hold(root, "a demo (twoway-dev demo)"))
        clear_previous(root, stack)
        held.enter_context(hold(stack.root, "a demo (twoway-dev demo)"))
        ports = http_ports(http_port)
        return _run(
            root, stack, n, seed, once, smtp_port, timeout, csv_dir, min_score, ports, oidc_port
        )


def _run(
    root: Path,
    stack: LocalStack,
    n: int,
    seed: int,
    once: bool,
    smtp_port: int,
    timeout: float,
    csv_dir: Path | None,
    min_score: float,
    ports: dict[str, int],
    oidc_port: int,
) -> int:
    console.print(f"Starting Kafka ({stack.kafka_port}) and PostgreSQL ({stack.pg_port}) ...")
    sink = MailSink(root / "mail", port=smtp_port)
    extra = {
        "TWOWAY_SMTP_HOST": "127.0.0.1",
        "TWOWAY_SMTP_PORT": str(smtp_port),
        "TWOWAY_PORTAL_URL": "http://localhost:8080",
    }
    code = 0
    services: list[ServiceProcess] = []
    provider: ProviderProcess | None = None
    dashboard: ProxyThread | None = None
    try:
        # Inside the try: when half the stack starts and the other half fails, both stop.
        info = stack.up()
        asyncio.run(provision(info.admin_dsn, "twoway", role_prefix="twoway_"))
        # The demo publishes and watches as the Kafka super-user; services run as themselves.
        authenticate(info.kafka_bootstrap, info.kafka_client_options())
        sink.start()
        console.print(f"Starting the local OpenID Connect provider ({oidc_port}) ...")
        provider = start_provider(root, oidc_port, managed=[PROGRAMME_ID])
        extra.update(security_env(root, provider, ports))
        services = start_services(info, root / "logs", extra, ports)
        wait_ready(services)
        console.print("The three services are ready. Publishing a synthetic programme ...")
        programme = demo_programme(min_score=min_score)
        cohort = generate_cohort(n, seed=seed, programme_id=programme.programme_id)
        token = provider.token(READER_CLIENT_ID)  # the real flow: client credentials -> JWT
        matching_url = f"http://127.0.0.1:{ports['matching']}"
        target = Target(info.kafka_bootstrap, matching_url=matching_url, token=token)
        tally, summary = asyncio.run(drive(target, programme, cohort, timeout))
        console.print("Playing the programme's weeks: attendance, goals and feedback ...")
        progress = asyncio.run(
            play_progress(info.kafka_bootstrap, PREFIX, programme.programme_id, cohort, seed=seed)
        )
        token = provider.token(READER_CLIENT_ID)
        health = programme_health(ports["progress"], programme.programme_id, token)
        data = ReportData(programme, cohort, tally, summary, root, ports)
        recorder = Console(record=True, width=110)
        print_report(data, recorder)
        recorder.print(health_section(health, progress))
        dashboard = open_dashboard(provider, programme.programme_id, ports)
        # DejaVu Sans Mono's advance (0.602 em), so converters without Fira Code line up too.
        recorder.save_svg(
            str(root / "report.svg"), title="twoway-dev demo", font_aspect_ratio=0.602
        )
        pairs_path = f"/programmes/{programme.programme_id}/pairs"
        console.print(
            "The read APIs need a bearer token from the local OpenID Connect provider "
            f"({provider.issuer}). This one reads the pairs for an hour:"
        )
        console.print(curl_line(provider, ports["matching"], pairs_path), soft_wrap=True)
        if csv_dir is not None:
            written = write_csv(data, csv_dir)
            console.print(f"Wrote {len(written)} CSV files to {csv_dir}")
        if not tally.settled():
            console.print(
                f"[yellow]Not everything settled within {timeout:.0f} s; see {root / 'logs'}[/]"
            )
            code = 1
        if shutil.which("twoway") is None:
            console.print(
                "The `twoway` toolkit runs as `uv run twoway ...` here (or `make shim` puts it "
                "on your PATH); try `uv run twoway tail sessions --from-beginning --max 5`."
            )
        if not once:
            console.print("Twoway keeps running. Press Ctrl-C to stop.")
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        console.print("Stopping ...")
        if dashboard is not None:
            dashboard.stop()
        code = stop_services(services) or code
        if provider is not None:
            provider.stop()
        with contextlib.suppress(Exception):
            sink.stop()
        stack.down()
    return code
