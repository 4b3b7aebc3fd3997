"""The read API: a participant's sessions as JSON and as an iCalendar feed, and the feed by
its capability URL (CONTRACT.md section 8)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from twoway_shared.contract import calendar_token
from twoway_shared.contract.values import rfc3339
from twoway_shared.platform.http import CAPABILITY, read_route
from twoway_shared.platform.openapi import documented
from twoway_shared.platform.settings import CalendarSettings

from twoway_scheduling.calendar_feed import calendar_feed
from twoway_scheduling.storage import Session, Storage


def session_json(session: Session) -> dict[str, Any]:
    """The event fields of a session plus its `status`."""
    return session.event_fields(booked=True) | {
        "starts_at": rfc3339(session.starts_at),
        "ends_at": rfc3339(session.ends_at),
        "status": session.status,
    }


SESSION = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "pair_id": {"type": "string"},
        "programme_id": {"type": "string"},
        "mentor_id": {"type": "string"},
        "mentee_id": {"type": "string"},
        "sequence": {"type": "integer"},
        "total": {"type": "integer"},
        "starts_at": {"type": "string", "format": "date-time"},
        "ends_at": {"type": "string", "format": "date-time"},
        "revision": {"type": "integer"},
        "status": {"enum": ["scheduled", "cancelled", "completed", "missed"]},
    },
}
FEED = {"type": "string", "description": "RFC 5545 text; cancelled sessions kept."}


def read_routes(pool: asyncpg.Pool, settings: CalendarSettings) -> Sequence[BaseRoute]:
    """`GET /participants/{id}/sessions`, `.../calendar.ics` and `.../calendar` (bearer), and
    `GET /calendars/{token}.ics` (the URL is the credential)."""
    keys = calendar_token.parse_keys(
        settings.calendar_keys.get_secret_value() if settings.calendar_keys else None
    )
    base_url = settings.calendar_base_url.rstrip("/")

    async def sessions_or_none(participant_id: str) -> list[Session] | None:
        async with pool.acquire() as conn:
            store = Storage(conn)
            if not await store.participant_exists(participant_id):
                return None
            return await store.sessions_of(participant_id)

    def unknown(participant_id: str) -> Response:
        return JSONResponse(
            {"error": f"no participant {participant_id} is known to scheduling"}, status_code=404
        )

    def feed(found: list[Session]) -> Response:
        return Response(
            calendar_feed(found, datetime.now(UTC)),
            media_type="text/calendar; charset=utf-8",
            headers={
                "Content-Disposition": 'inline; filename="twoway.ics"',
                "Cache-Control": "private, no-store",
            },
        )

    @documented(
        "A participant's sessions, by start",
        response={
            "type": "object",
            "properties": {
                "participant_id": {"type": "string"},
                "sessions": {"type": "array", "items": SESSION},
            },
        },
        not_found="The participant is unknown to scheduling.",
    )
    async def sessions(request: Request) -> Response:
        participant_id = request.path_params["participant_id"]
        found = await sessions_or_none(participant_id)
        if found is None:
            return unknown(participant_id)
        return JSONResponse(
            {"participant_id": participant_id, "sessions": [session_json(s) for s in found]}
        )

    @documented(
        "A participant's sessions as an iCalendar feed",
        response=FEED,
        media_type="text/calendar",
        not_found="The participant is unknown to scheduling.",
    )
    async def calendar(request: Request) -> Response:
        participant_id = request.path_params["participant_id"]
        found = await sessions_or_none(participant_id)
        if found is None:
            return unknown(participant_id)
        return feed(found)

    @documented(
        "A participant's subscribable calendar link (the URL is the credential)",
        response={"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}},
        not_found="The participant is unknown to scheduling, or erased.",
        unavailable="Calendar links are not configured (TWOWAY_CALENDAR_KEYS).",
    )
    async def calendar_link(request: Request) -> Response:
        participant_id = request.path_params["participant_id"]
        if not keys:
            return JSONResponse({"error": "calendar links are not configured"}, status_code=503)
        async with pool.acquire() as conn:
            subscribable = await Storage(conn).feed_subscribable(participant_id)
        if not subscribable:
            return unknown(participant_id)
        token = calendar_token.sign(participant_id, keys)
        return JSONResponse({"url": f"{base_url}/calendars/{token}.ics"})

    @documented(
        "A calendar feed by its token; no bearer token needed",
        response=FEED,
        media_type="text/calendar",
        not_found="The token is not valid, or its person is unknown or erased.",
    )
    async def calendar_by_token(request: Request) -> Response:
        # One answer for every failure (malformed, forged, revoked key, unknown, erased), and
        # the database is asked only once the MAC is right: a forgery costs the same whether
        # or not the person exists.
        participant_id = calendar_token.verify(request.path_params["token"], keys)
        found = None
        if participant_id is not None:
            async with pool.acquire() as conn:
                store = Storage(conn)
                if await store.feed_subscribable(participant_id):
                    found = await store.sessions_of(participant_id)
        if found is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return feed(found)

    return [
        read_route("/participants/{participant_id}/sessions", sessions),
        read_route("/participants/{participant_id}/calendar.ics", calendar),
        read_route("/participants/{participant_id}/calendar", calendar_link),
        read_route("/calendars/{token}.ics", calendar_by_token, access=CAPABILITY),
    ]
