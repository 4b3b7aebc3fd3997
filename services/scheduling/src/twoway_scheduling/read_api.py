"""The read API: a participant's sessions as JSON and as an iCalendar feed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from twoway_shared.contract.values import rfc3339
from twoway_shared.platform.openapi import documented

from twoway_scheduling.calendar_feed import calendar_feed
from twoway_scheduling.storage import Session, Storage


def session_json(session: Session) -> dict[str, Any]:
    """The event fields of a session plus its `status`."""
    return {
        "session_id": session.session_id,
        "pair_id": session.pair_id,
        "programme_id": session.programme_id,
        "mentor_id": session.mentor_id,
        "mentee_id": session.mentee_id,
        "sequence": session.sequence,
        "total": session.total,
        "starts_at": rfc3339(session.starts_at),
        "ends_at": rfc3339(session.ends_at),
        "revision": session.revision,
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


def read_routes(pool: asyncpg.Pool) -> Sequence[BaseRoute]:
    """`GET /participants/{id}/sessions` and `GET /participants/{id}/calendar.ics`."""

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
        response={"type": "string", "description": "RFC 5545 text; cancelled sessions kept."},
        media_type="text/calendar",
        not_found="The participant is unknown to scheduling.",
    )
    async def calendar(request: Request) -> Response:
        participant_id = request.path_params["participant_id"]
        found = await sessions_or_none(participant_id)
        if found is None:
            return unknown(participant_id)
        return Response(
            calendar_feed(found, datetime.now(UTC)),
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": 'inline; filename="twoway.ics"'},
        )

    return [
        Route("/participants/{participant_id}/sessions", sessions),
        Route("/participants/{participant_id}/calendar.ics", calendar),
    ]
