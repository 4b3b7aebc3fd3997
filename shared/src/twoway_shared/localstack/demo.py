"""`twoway-dev demo`: the whole system on a local stack with a synthetic programme and a report."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from twoway_shared.contract import (
    ParticipantEnrolled,
    ProgrammeConfigured,
    Topic,
    encode,
    new_event,
    partition_key,
    topic_name,
)
from twoway_shared.localstack.demo_progress import health_section, play_progress, programme_health
from twoway_shared.localstack.dev import (
    COORDINATOR_CLIENT_ID,
    DASHBOARD_PORT,
    HTTP_PORTS,
    READER_CLIENT_ID,
    ServiceProcess,
    curl_line,
    security_env,
    start_provider,
    start_services,
    stop_services,
    wait_ready,
)
from twoway_shared.localstack.mailsink import MailSink
from twoway_shared.localstack.oidc import ProviderProcess
from twoway_shared.localstack.proxy import CachedToken, ProxyThread
from twoway_shared.localstack.stack import LocalStack
from twoway_shared.platform.roles import provision
from twoway_shared.testing.kafka import TopicReader, ToSend, authenticate, publish
from twoway_shared.toolkit.generate import generate_cohort

PREFIX = "twoway."
console = Console()


@dataclass
class Tally:
    """What the services have published so far, read back from their topics."""

    confirmed: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    scores: dict[str, float] = field(default_factory=dict)
    scheduled: dict[str, set[str]] = field(default_factory=dict)  # pair -> session ids
    totals: dict[str, int] = field(default_factory=dict)
    booking_failed: dict[str, str] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    last_change: float = field(default_factory=time.monotonic)

    def add(self, event: dict[str, Any]) -> None:
        kind, data = event["type"].removeprefix("twoway.").removesuffix(".v1"), event["data"]
        if kind == "pair.proposed":
            self.scores[data["pair_id"]] = data["score"]
        elif kind == "pair.confirmed":
            self.confirmed.add(data["pair_id"])
        elif kind in ("pair.ended", "pair.declined"):
            self.ended.add(data["pair_id"])
        elif kind == "session.scheduled":
            self.scheduled.setdefault(data["pair_id"], set()).add(data["session_id"])
            self.totals[data["pair_id"]] = data["total"]
        elif kind == "session.booking_failed":
            self.booking_failed[data["pair_id"]] = data["reason"]
        elif kind == "notification.sent":
            self.sent[data["template"]] += 1
        elif kind == "notification.failed":
            self.failed += 1
        self.last_change = time.monotonic()

    def sessions(self) -> int:
        return sum(len(s) for s in self.scheduled.values())

    def fully_booked(self) -> int:
        return sum(1 for p, s in self.scheduled.items() if len(s) >= self.totals.get(p, 0))

    def settled(self) -> bool:
        pairs = self.confirmed - self.ended
        booked = all(
            p in self.booking_failed or len(self.scheduled.get(p, ())) >= self.totals.get(p, 1)
            for p in pairs
        )
        return bool(pairs) and booked and self.sent["booking"] >= 2 * self.fully_booked()


def next_monday(today: date) -> date:
    return today + timedelta(days=7 - today.weekday())


async def publish_programme(kafka: str, programme_id: str, cohort: list[dict[str, Any]]) -> date:
    starts_on = next_monday(datetime.now(UTC).date())
    programme = ProgrammeConfigured.model_validate(
        {
            "programme_id": programme_id,
            "name": "Reverse mentoring (demo)",
            "starts_on": starts_on.isoformat(),
            "sessions": 6,
            "reminder_minutes": [1440, 60],
        }
    )
    records = [
        ToSend(
            topic_name(PREFIX, Topic.PROGRAMMES),
            encode(new_event(programme, source="/twoway/demo")),
            partition_key(Topic.PROGRAMMES, programme),
        )
    ]
    for profile in cohort:
        enrolled = ParticipantEnrolled.model_validate(profile)
        records.append(
            ToSend(
                topic_name(PREFIX, Topic.ENROLMENTS),
                encode(new_event(enrolled, source="/twoway/demo")),
                partition_key(Topic.ENROLMENTS, enrolled),
            )
        )
    await publish(kafka, records)
    return starts_on


async def watch(kafka: str, people: int, timeout: float) -> Tally:
    """Show progress until pairs, sessions and booking emails have settled (or `timeout`)."""
    tally = Tally()
    topics = [topic_name(PREFIX, t) for t in (Topic.PAIRS, Topic.SESSIONS, Topic.NOTIFICATIONS)]
    async with TopicReader(kafka, topics) as reader:
        seen = 0
        columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as progress:
            pairs_bar = progress.add_task("pairs confirmed", total=people // 2)
            sessions_bar = progress.add_task("sessions booked", total=None)
            emails_bar = progress.add_task("booking emails sent", total=None)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for record in reader.records[seen:]:
                    tally.add(json.loads(record.value or b"{}"))
                seen = len(reader.records)
                pairs = len(tally.confirmed - tally.ended)
                progress.update(pairs_bar, completed=pairs, total=max(pairs, people // 2))
                expected = sum(tally.totals.get(p, 0) for p in tally.confirmed - tally.ended)
                progress.update(sessions_bar, completed=tally.sessions(), total=expected or None)
                progress.update(
                    emails_bar, completed=tally.sent["booking"], total=2 * len(tally.totals) or None
                )
                if tally.settled() and time.monotonic() - tally.last_change > 5:
                    break
                await asyncio.sleep(0.5)
    return tally


def read_api(port: int, path: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def report(
    cohort: list[dict[str, Any]],
    tally: Tally,
    programme_id: str,
    root: Path,
    provider: ProviderProcess,
) -> None:
    roles = Counter(p["role"] for p in cohort)
    pairs = tally.confirmed - tally.ended
    scores = [tally.scores[p] for p in pairs if p in tally.scores]
    table = Table(title=f"Programme {programme_id}", show_header=False)
    table.add_row(
        "people enrolled", f"{len(cohort)} ({roles['mentee']} mentees, {roles['mentor']} mentors)"
    )
    table.add_row("pairs formed", str(len(pairs)))
    table.add_row("average pair score", f"{sum(scores) / len(scores):.3f}" if scores else "-")
    token = provider.token(READER_CLIENT_ID)  # the real flow: client credentials -> JWT
    pairs_path = f"/programmes/{programme_id}/pairs"
    summary = read_api(HTTP_PORTS["matching"], pairs_path, token).get("last_round") or {}
    unmatched = summary.get("unmatched", [])
    why: Counter[str] = Counter()
    for person in unmatched:
        if person["reason"] == "no eligible partner" and person["blocking_rules"]:
            rule = max(person["blocking_rules"].items(), key=lambda kv: kv[1])[0]
            why[f"no eligible partner (mostly: {rule})"] += 1
        else:
            why[person["reason"]] += 1
    table.add_row("unmatched people", str(len(unmatched)))
    for reason, count in why.most_common():
        table.add_row("", f"{count} x {reason}")
    table.add_row(
        "sessions booked", f"{tally.sessions()} ({tally.fully_booked()} pairs fully booked)"
    )
    for pair_id, reason in tally.booking_failed.items():
        table.add_row("", f"booking failed for {pair_id}: {reason}")
    emails = ", ".join(f"{n} {t}" for t, n in tally.sent.most_common()) or "none"
    table.add_row("emails sent", f"{sum(tally.sent.values())} ({emails}); failed {tally.failed}")
    table.add_row("emails kept in", str(root / "mail"))
    some = next(iter(sorted(pairs)), None)
    mentee = next((p["participant_id"] for p in cohort if p["role"] == "mentee"), "")
    link = read_api(HTTP_PORTS["scheduling"], f"/participants/{mentee}/calendar", token)
    if some:
        table.add_row("example pair", some)
    console.print(table)
    console.print(
        f"The read APIs need a bearer token from the local OpenID Connect provider "
        f"({provider.issuer}). This one reads the pairs for an hour:"
    )
    console.print(curl_line(provider, HTTP_PORTS["matching"], pairs_path), soft_wrap=True)
    console.print("A mentee's calendar feed (the link is the credential, no token):")
    console.print(link["url"], soft_wrap=True)


def open_dashboard(provider: ProviderProcess, programme_id: str) -> ProxyThread:
    """The local stand-in for the enterprise's authenticating proxy, signed in as the
    programme's coordinator, in front of progress; prints the dashboard's address."""
    token = CachedToken(lambda: provider.token(COORDINATOR_CLIENT_ID))
    proxy = ProxyThread(DASHBOARD_PORT, f"http://127.0.0.1:{HTTP_PORTS['progress']}", token)
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
    oidc_port: int,
    timeout: float,
) -> int:
    root = Path.cwd() / ".demo"
    stack = LocalStack(root / "stack", kafka_port=kafka_port, pg_port=pg_port)
    if root.exists():
        console.print("Removing the previous demo's data ...")
        stack.down()
        shutil.rmtree(root)
    console.print(f"Starting Kafka ({kafka_port}) and PostgreSQL ({pg_port}) ...")
    info = stack.up()
    asyncio.run(provision(info.admin_dsn, "twoway", role_prefix="twoway_"))
    # The demo publishes and watches as the Kafka super-user; services run as themselves.
    authenticate(info.kafka_bootstrap, info.kafka_client_options())
    sink = MailSink(root / "mail", port=smtp_port)
    sink.start()
    console.print(f"Starting the local OpenID Connect provider ({oidc_port}) ...")
    programme_id = "RM-DEMO"
    provider = start_provider(root, oidc_port, managed=[programme_id])
    extra = {
        "TWOWAY_SMTP_HOST": "127.0.0.1",
        "TWOWAY_SMTP_PORT": str(smtp_port),
        "TWOWAY_PORTAL_URL": "http://localhost:8080",
        **security_env(root, provider),
    }
    services: list[ServiceProcess] = []
    dashboard: ProxyThread | None = None
    code = 0
    try:
        services = start_services(info, root / "logs", extra)
        wait_ready(services)
        console.print("The services are ready. Publishing a synthetic programme ...")
        cohort = generate_cohort(n, seed=seed, programme_id=programme_id)
        asyncio.run(publish_programme(info.kafka_bootstrap, programme_id, cohort))
        tally = asyncio.run(watch(info.kafka_bootstrap, len(cohort), timeout))
        report(cohort, tally, programme_id, root, provider)
        console.print("Playing the programme's weeks: attendance, goals and feedback ...")
        progress = asyncio.run(
            play_progress(info.kafka_bootstrap, PREFIX, programme_id, cohort, seed=seed)
        )
        token = provider.token(READER_CLIENT_ID)
        health = programme_health(HTTP_PORTS["progress"], programme_id, token)
        console.print(health_section(health, progress))
        dashboard = open_dashboard(provider, programme_id)
        if not tally.settled():
            console.print(
                f"[yellow]Not everything settled within {timeout:.0f} s; see {root / 'logs'}[/]"
            )
            code = 1
        if not once:
            console.print("Twoway keeps running. Press Ctrl-C to stop.")
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        console.print("Stopping ...")
        if dashboard is not None:
            dashboard.stop()
        code = stop_services(services) or code
        provider.stop()
        sink.stop()
        stack.down()
    return code
