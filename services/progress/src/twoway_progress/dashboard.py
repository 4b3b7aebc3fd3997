"""The coordinators' dashboard: its event handlers, its pages, its CSV tables, its assets."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute
from twoway_shared.contract import Event
from twoway_shared.contract.events import (
    NotificationFailed,
    NotificationSent,
    PairDeclined,
    PairProposed,
)
from twoway_shared.platform.http import ANY_ROLE, principal_of, programme_access, read_route
from twoway_shared.platform.openapi import documented
from twoway_shared.platform.runtime import Runtime
from twoway_shared.platform.uow import UnitOfWork

from twoway_progress import charts
from twoway_progress.dashboard_storage import DashboardStorage
from twoway_progress.domain import dashboard as d
from twoway_progress.domain import rules as r
from twoway_progress.domain.report import FeedbackRow, health_row, programme_health
from twoway_progress.storage import Storage

# ---------------------------------------------------------------- event handlers

_HTML = {"type": "string", "description": "An HTML page."}


async def on_pair_proposed(event: Event[PairProposed], uow: UnitOfWork) -> None:
    data = event.data
    await DashboardStorage(uow.conn).save_proposal(
        data.pair_id, data.programme_id, data.mentor_id, data.mentee_id, data.score
    )


async def on_pair_declined(event: Event[PairDeclined], uow: UnitOfWork) -> None:
    data = event.data
    await DashboardStorage(uow.conn).save_decline(
        data.pair_id, data.programme_id, data.mentor_id, data.mentee_id, data.reason
    )


async def on_notification_sent(event: Event[NotificationSent], uow: UnitOfWork) -> None:
    data = event.data
    await DashboardStorage(uow.conn).save_delivery(
        data.notification_id, data.participant_id, data.template, delivered=True
    )


async def on_notification_failed(event: Event[NotificationFailed], uow: UnitOfWork) -> None:
    data = event.data
    await DashboardStorage(uow.conn).save_delivery(
        data.notification_id, data.participant_id, data.template, delivered=False
    )


# ---------------------------------------------------------------- what the page shows

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""Nothing but the service's own script and stylesheet: no CDN, no inline script, no request
anywhere else (a browser refuses and reports any)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ASSETS = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Table:
    """One table of the dashboard; the page and its CSV show the same cells."""

    key: str
    title: str
    headers: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    note: str = ""


def _zone(request: Request) -> tuple[ZoneInfo, str]:
    name = request.query_params.get("tz") or "UTC"
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC"), "UTC"


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment is not None else ""


async def _facts(pool: asyncpg.Pool, programme_id: str) -> dict[str, Any] | None:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        store, board = Storage(conn), DashboardStorage(conn)
        if not await store.programme_known(programme_id):
            return None
        return {
            "name": await store.programme_name(programme_id),
            "rules": await store.programme_rules(programme_id),
            "people": await board.people(programme_id),
            "proposals": await board.proposals(programme_id),
            "pairs": await board.pairs(programme_id),
            "deliveries": await board.deliveries(programme_id),
            "credits": await board.credits(programme_id),
        }


def build(programme_id: str, facts: dict[str, Any], zone: ZoneInfo, now: datetime) -> Any:
    """Everything the page and the CSV files show, from the programme's facts."""
    pairs: list[d.PairFacts] = facts["pairs"]
    people: list[d.Person] = facts["people"]
    names = {p.participant_id: p.display_name or p.participant_id for p in people}
    counts: dict[str, int] = {}
    for pair in pairs:
        for s in pair.state.sessions:
            counts[s.status] = counts.get(s.status, 0) + 1
    health = programme_health(
        programme_id,
        [health_row(p) for p in pairs],
        counts,
        [
            FeedbackRow(f.participant_id, f.role, f.rating, f.learned)
            for p in pairs
            for f in p.state.feedback
        ],
    )
    stages = d.funnel(people, facts["proposals"], pairs)
    weeks = d.weeks(pairs, facts["rules"], now, zone)
    by_id = {p.state.pair_id: p for p in pairs}
    attention = [
        (
            a["pair_id"],
            names.get(by_id[a["pair_id"]].state.mentee_id, ""),
            names.get(by_id[a["pair_id"]].state.mentor_id, ""),
            a["health"].replace("_", " "),
            ", ".join(reason.replace("_", " ") for reason in a["reasons"]),
            _local(r.last_completed_end(by_id[a["pair_id"]].state), zone),
        )
        for a in health["attention"]
    ]
    mentee_topics = health["feedback"]["mentee"]["top_learned"]
    mentor_topics = health["feedback"]["mentor"]["top_learned"]
    topics = [
        (
            i + 1,
            mentee_topics[i]["tag"] if i < len(mentee_topics) else "",
            mentee_topics[i]["people"] if i < len(mentee_topics) else "",
            mentor_topics[i]["tag"] if i < len(mentor_topics) else "",
            mentor_topics[i]["people"] if i < len(mentor_topics) else "",
        )
        for i in range(max(len(mentee_topics), len(mentor_topics)))
    ]
    minimum = health["feedback"]["minimum_people"]
    ratings = [
        (
            side,
            health["feedback"][role]["people"] if not health["feedback"][role]["withheld"] else "",
            health["feedback"][role]["average_rating"]
            if not health["feedback"][role]["withheld"]
            else f"withheld (fewer than {minimum} people)",
        )
        for side, role in (("senior leaders (mentees)", "mentee"), ("junior mentors", "mentor"))
    ]
    # In this order on a wide screen: two narrow tables a row, the wide ones (more than four
    # columns) a row each, so the grid leaves no holes.
    tables = [
        Table("funnel", "Funnel (people)", ("stage", "people"), list(stages)),
        Table(
            "sessions",
            "Sessions per week",
            ("week starting", "completed", "missed"),
            [(w.label, w.completed, w.missed) for w in weeks],
        ),
        Table(
            "health",
            "Pairs by health per week",
            ("week starting", "on track", "at risk", "inactive"),
            [(w.label, *(w.health[h] for h in d.HEALTHS)) for w in weeks],
            "Each week's health is progress's own rules applied to what was known at its end.",
        ),
        Table(
            "unmatched",
            "People without a partner",
            ("participant", "name", "role", "reason"),
            [
                (p.participant_id, p.display_name or "", p.role or "", why)
                for p, why in d.unmatched(people, facts["proposals"], pairs)
            ],
        ),
        Table(
            "attention",
            "Pairs at risk or inactive",
            ("pair", "senior leader", "junior mentor", "health", "reasons", "last session"),
            attention,
        ),
        Table(
            "topics",
            "Top topics learned",
            (
                "rank",
                "senior leaders learned",
                "people",
                "junior mentors learned",
                "people",
            ),
            topics,
            f"A topic is listed once at least {minimum} people reported learning it.",
        ),
        Table(
            "ratings",
            "Session ratings",
            ("who rated", "people", "average rating (1-5)"),
            ratings,
            f"Shown only when at least {minimum} people rated; never one person's rating.",
        ),
        Table(
            "emails",
            "Emails",
            ("template", "sent", "failed"),
            [
                *facts["deliveries"],
                (
                    "all",
                    sum(x[1] for x in facts["deliveries"]),
                    sum(x[2] for x in facts["deliveries"]),
                ),
            ],
        ),
        Table(
            "credits",
            "Credits awarded",
            ("role", "people", "credits", "minutes"),
            [(role, n, f"{credits:g}", minutes) for role, n, credits, minutes in facts["credits"]],
        ),
    ]
    labels = [w.label for w in weeks]
    chart_svgs = {
        "funnel": charts.funnel_chart(stages, "Funnel: people at each stage"),
        "sessions": charts.weekly_chart(
            "chart-sessions",
            "Sessions completed and missed per week",
            labels,
            [("completed", [w.completed for w in weeks]), ("missed", [w.missed for w in weeks])],
            stacked=False,
        ),
        "health": charts.weekly_chart(
            "chart-health",
            "Pairs by health per week",
            labels,
            [(h, [w.health[h] for w in weeks]) for h in d.HEALTHS],
            stacked=True,
        ),
    }
    return health, tables, chart_svgs


def _csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.headers)
    writer.writerows(table.rows)
    return out.getvalue()


# ---------------------------------------------------------------- routes

_templates = Environment(
    loader=PackageLoader("twoway_progress", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _html(template: str, status: int = 200, **context: Any) -> Response:
    body = _templates.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def dashboard_routes(pool: asyncpg.Pool) -> Sequence[BaseRoute]:
    """`/programmes`, `/programmes/{id}/dashboard`, its CSV tables and its two assets."""

    @documented("The programmes the caller may see (HTML)", response=_HTML, media_type="text/html")
    async def programmes(request: Request) -> Response:
        _, zone_name = _zone(request)
        async with pool.acquire() as conn:
            known = await DashboardStorage(conn).programmes()
        principal = principal_of(request)
        if principal is not None and not principal.reader:  # a manager: their programmes
            known = [(pid, name) for pid, name in known if principal.manages(pid)]
        query = "?" + urlencode({"tz": zone_name}) if "tz" in request.query_params else ""
        return _html("programmes.html", programmes=known, query=query, zone=zone_name)

    @documented(
        "A programme's coordinators' dashboard (HTML)",
        response=_HTML,
        media_type="text/html",
        not_found="The programme is unknown to progress.",
    )
    async def dashboard(request: Request) -> Response:
        programme_id = request.path_params["programme_id"]
        zone, zone_name = _zone(request)
        facts = await _facts(pool, programme_id)
        if facts is None:
            return _html("missing.html", 404, programme_id=programme_id)
        now = datetime.now(UTC)
        health, tables, chart_svgs = build(programme_id, facts, zone, now)
        query = "?" + urlencode({"tz": zone_name})
        return _html(
            "dashboard.html",
            programme_id=programme_id,
            name=facts["name"] or programme_id,
            health=health,
            tables=tables,
            charts=chart_svgs,
            zone=zone_name,
            generated=_local(now, zone),
            query=query,
            zones=_COMMON_ZONES if zone_name in _COMMON_ZONES else (zone_name, *_COMMON_ZONES),
        )

    @documented(
        "One table of a programme's dashboard as CSV",
        response={"type": "string"},
        media_type="text/csv",
        not_found="The programme or the table is unknown.",
    )
    async def table_csv(request: Request) -> Response:
        programme_id, key = request.path_params["programme_id"], request.path_params["table"]
        zone, _ = _zone(request)
        facts = await _facts(pool, programme_id)
        if facts is None:
            return _html("missing.html", 404, programme_id=programme_id)
        _, tables, _ = build(programme_id, facts, zone, datetime.now(UTC))
        found = next((t for t in tables if t.key == key), None)
        if found is None:
            return _html("missing.html", 404, programme_id=programme_id)
        filename = f"{programme_id}-{key}.csv"
        return Response(
            _csv(found),
            media_type="text/csv; charset=utf-8",
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    @documented(
        "A static file of the dashboard (CSS, JavaScript)",
        response={"type": "string"},
        media_type="text/plain",
        not_found="No such file.",
    )
    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return Response("not found", status_code=404, media_type="text/plain")
        body = resources.files("twoway_progress").joinpath("static", name).read_bytes()
        return Response(
            body,
            media_type=ASSETS[name],
            headers={**SECURITY_HEADERS, "Cache-Control": "max-age=300"},
        )

    # A programme's pages: its manager or a reader (decided from the path, before any look-up).
    # The list and the assets: any Twoway role; the proxy sends the token with every request.
    return [
        read_route("/programmes", programmes, access=ANY_ROLE),
        read_route("/programmes/{programme_id}/dashboard", dashboard, access=programme_access()),
        read_route(
            "/programmes/{programme_id}/dashboard/{table}.csv",
            table_csv,
            access=programme_access(),
        ),
        read_route("/dashboard/static/{name}", asset, access=ANY_ROLE),
    ]


_COMMON_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Australia/Sydney",
)


def routes(runtime: Runtime) -> Sequence[BaseRoute]:
    return dashboard_routes(runtime.pool)
