"""The read API: `GET /participants/{id}/notifications`."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from twoway_shared.platform.http import READER, read_route
from twoway_shared.platform.openapi import documented
from twoway_shared.platform.runtime import Runtime

from twoway_notifications.storage import Storage

NOTIFICATION = {
    "type": "object",
    "properties": {
        "notification_id": {"type": "string"},
        "template": {"type": "string"},
        "channel": {"const": "email"},
        "status": {"type": "string"},
        "sent_at": {"type": ["string", "null"], "format": "date-time"},
        "session_id": {"type": ["string", "null"]},
    },
}


def routes(runtime: Runtime) -> Sequence[BaseRoute]:
    @documented(
        "A participant's notifications, newest first",
        response={
            "type": "object",
            "properties": {
                "participant_id": {"type": "string"},
                "notifications": {"type": "array", "items": NOTIFICATION},
            },
        },
        not_found="The participant is unknown to notifications.",
    )
    async def notifications_of(request: Request) -> Response:
        participant_id = request.path_params["participant_id"]
        async with runtime.pool.acquire() as conn:
            store = Storage(conn)
            if not await store.participant_known(participant_id):
                return JSONResponse({"error": "unknown participant"}, status_code=404)
            rows = await store.notifications_of(participant_id)
        listed = [
            {
                "notification_id": r["notification_id"],
                "template": r["template"],
                "channel": "email",
                "status": r["status"],
                "sent_at": None
                if r["sent_at"] is None
                else r["sent_at"].isoformat().replace("+00:00", "Z"),
                "session_id": r["session_id"],
            }
            for r in rows
        ]
        return JSONResponse({"participant_id": participant_id, "notifications": listed})

    return [
        read_route("/participants/{participant_id}/notifications", notifications_of, access=READER)
    ]
