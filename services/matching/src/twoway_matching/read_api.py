"""The matching read API: a programme's pairs and a participant's pair."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from twoway_shared.platform.http import READER, programme_access, read_route
from twoway_shared.platform.openapi import documented
from twoway_shared.platform.runtime import Runtime

from twoway_matching import storage

PAIR = {
    "type": "object",
    "properties": {
        "pair_id": {"type": "string"},
        "programme_id": {"type": "string"},
        "mentor_id": {"type": "string"},
        "mentee_id": {"type": "string"},
        "status": {"enum": ["proposed", "confirmed", "declined", "ended"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reasons": {
            "type": "object",
            "description": "What each learns, shared languages, weekly overlap minutes.",
        },
        "proposed_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "closed_at": {"type": ["string", "null"], "format": "date-time"},
    },
}


UNMATCHED = {
    "type": "object",
    "properties": {
        "participant_id": {"type": "string"},
        "role": {"enum": ["mentor", "mentee"]},
        "reason": {"enum": ["no eligible partner", "eligible partners all taken"]},
        "blocking_rules": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "Rule -> how many candidates it ruled out.",
        },
    },
}


def routes(runtime: Runtime) -> Sequence[BaseRoute]:
    @documented(
        "A programme's pairs and its last matching round",
        response={
            "type": "object",
            "properties": {
                "programme_id": {"type": "string"},
                "pairs": {"type": "array", "items": PAIR},
                "last_round": {
                    "type": ["object", "null"],
                    "properties": {
                        "ran_at": {"type": "string", "format": "date-time"},
                        "mentors_available": {"type": "integer"},
                        "mentees_available": {"type": "integer"},
                        "pairs_proposed": {"type": "integer"},
                        "unmatched": {"type": "array", "items": UNMATCHED},
                    },
                },
            },
        },
        not_found="The programme is unknown to matching.",
    )
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

    @documented(
        "A participant's current pair and pair history",
        response={
            "type": "object",
            "properties": {
                "participant_id": {"type": "string"},
                "programme_id": {"type": "string"},
                "role": {"enum": ["mentor", "mentee"]},
                "active": {"type": "boolean"},
                "pair": {"oneOf": [PAIR, {"type": "null"}]},
                "pairs": {"type": "array", "items": PAIR},
            },
        },
        not_found="The participant is unknown to matching.",
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
