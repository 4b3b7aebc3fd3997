"""The matching read API: a programme's pairs and a participant's pair."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from twoway_shared.platform.http import READER, programme_access, read_route
from twoway_shared.platform.runtime import Runtime

from twoway_matching import storage


def routes(runtime: Runtime) -> Sequence[BaseRoute]:
    async def programme_pairs(request: Request) -> Response:
        programme_id = request.path_params["programme_id"]
        async with runtime.pool.acquire() as conn:
            if not await storage.programme_known(conn, programme_id):
                return JSONResponse({"error": f"unknown programme {programme_id}"}, 404)
            pairs = await storage.pairs_of_programme(conn, programme_id)
            summary = await storage.round_summary(conn, programme_id)
        return JSONResponse(
            {
                "programme_id": programme_id,
                "pairs": [p.to_json() for p in pairs],
                "last_round": summary,
            }
        )

    async def participant_pair(request: Request) -> Response:
        participant_id = request.path_params["participant_id"]
        async with runtime.pool.acquire() as conn:
            stored = await storage.participant(conn, participant_id)
            if stored is None:
                return JSONResponse({"error": f"unknown participant {participant_id}"}, 404)
            history = await storage.pairs_of_participant(conn, participant_id)
        active = [p for p in history if p.status in ("proposed", "confirmed")]
        return JSONResponse(
            {
                "participant_id": participant_id,
                "programme_id": stored.programme_id,
                "role": stored.role,
                "active": stored.active,
                # Completed a pair: no new partner until enrolled again with a higher revision.
                "paused_after_completion": stored.paused_after_completion,
                "pair": active[-1].to_json() if active else None,
                "pairs": [p.to_json() for p in history],
            }
        )

    return [
        read_route("/programmes/{programme_id}/pairs", programme_pairs, access=programme_access()),
        read_route("/participants/{participant_id}/pair", participant_pair, access=READER),
    ]
