"""The read API: a pair's progress, a person's credits and certificates, programme health."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from twoway_shared.contract.values import rfc3339
from twoway_shared.platform.http import READER, programme_access, read_route
from twoway_shared.platform.openapi import documented
from twoway_shared.platform.runtime import Runtime

from twoway_progress.certificate import CertificateFacts, render_certificate
from twoway_progress.domain import rules as r
from twoway_progress.domain.model import Role
from twoway_progress.domain.report import FeedbackRow, health_row, programme_health
from twoway_progress.storage import Credit, Storage


def _time(value: Any) -> str | None:
    return rfc3339(value) if value is not None else None


def credit_json(credit: Credit) -> dict[str, Any]:
    return {
        "credit_id": credit.credit_id,
        "participant_id": credit.participant_id,
        "programme_id": credit.programme_id,
        "pair_id": credit.pair_id,
        "role": credit.role,
        "sessions_completed": credit.sessions_completed,
        "minutes": credit.minutes,
        "credits": credit.credits,
        "topics": credit.topics,
        "issued_at": rfc3339(credit.issued_at),
        "certificate": f"/credits/{credit.credit_id}/certificate.pdf",
    }


def _not_found(what: str) -> Response:
    return JSONResponse({"error": f"{what} is not known to progress"}, status_code=404)


_STRING = {"type": "string"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_DIRECTION = {
    "type": "object",
    "properties": {
        "participant_id": _STRING,
        "goals": {"type": "array", "items": {"type": "object"}},
        "learned": {"type": "array", "items": _STRING},
    },
}


CREDIT = {
    "type": "object",
    "properties": {
        "credit_id": _STRING,
        "participant_id": _STRING,
        "programme_id": _STRING,
        "pair_id": _STRING,
        "role": {"enum": ["mentor", "mentee"]},
        "sessions_completed": {"type": "integer"},
        "minutes": {"type": "integer"},
        "credits": {"type": "number"},
        "topics": {"type": "array", "items": _STRING},
        "issued_at": {"type": "string", "format": "date-time"},
        "certificate": {"type": "string", "description": "Path of the PDF certificate."},
    },
}


def read_routes(pool: asyncpg.Pool) -> Sequence[BaseRoute]:
    """`/pairs/{id}/progress`, `/participants/{id}/credits`, certificates, programme health."""

    @documented(
        "A pair's progress: sessions, health, and what each side learned of their goals",
        response={
            "type": "object",
            "properties": {
                "pair_id": _STRING,
                "programme_id": _STRING,
                "mentor_id": _STRING,
                "mentee_id": _STRING,
                "status": _STRING,
                "ended_reason": {"type": ["string", "null"]},
                "health": _STRING,
                "reasons": {"type": "array", "items": _STRING},
                "rematch_requested": {"type": "boolean"},
                "completed": {"type": "boolean"},
                "sessions_completed": {"type": "integer"},
                "sessions_missed": {"type": "integer"},
                "last_activity_at": _TIME,
                "sessions": {"type": "array", "items": {"type": "object"}},
                "mentee": _DIRECTION,
                "mentor": _DIRECTION,
            },
        },
        not_found="The pair is unknown to progress.",
    )
    async def pair_progress(request: Request) -> Response:
        pair_id = request.path_params["pair_id"]
        async with pool.acquire() as conn:
            store = Storage(conn)
            pair = await store.pair(pair_id)
            if pair is None:
                return _not_found(f"pair {pair_id}")
            state = await store.pair_state(pair)
            goals = await store.goals_of(pair_id)
        people: dict[Role, str] = {"mentor": pair.mentor_id, "mentee": pair.mentee_id}
        directions = {}
        for role, participant_id in people.items():
            learned = r.learned_by(state, role)
            directions[role] = {
                "participant_id": participant_id,
                "goals": [
                    {"tag": g.tag, "note": g.note, "matched": g.matched}
                    for g in r.goal_progress(goals.get(participant_id, []), learned)
                ],
                "learned": learned,
            }
        body = {
            "pair_id": pair.pair_id,
            "programme_id": pair.programme_id,
            "mentor_id": pair.mentor_id,
            "mentee_id": pair.mentee_id,
            "status": pair.status,
            "ended_reason": pair.ended_reason,
            "health": pair.health,
            "reasons": list(pair.reasons),
            "rematch_requested": pair.rematch_requested,
            "completed": pair.completed_at is not None,
            "sessions_completed": sum(s.status == "completed" for s in state.sessions),
            "sessions_missed": sum(s.status == "missed" for s in state.sessions),
            "last_activity_at": _time(r.last_completed_end(state)),
            "sessions": [
                {
                    "session_id": s.session_id,
                    "sequence": s.sequence,
                    "starts_at": _time(s.starts_at),
                    "ends_at": _time(s.ends_at),
                    "status": s.status,
                    "minutes": s.minutes,
                }
                for s in state.sessions
            ],
            # Each side: their goals, and whether what they reported learning matched them.
            "mentee": directions["mentee"],
            "mentor": directions["mentor"],
        }
        return JSONResponse(body)

    @documented(
        "A participant's credits",
        response={"type": "array", "items": CREDIT},
        not_found="The participant is unknown to progress.",
    )
    async def credits(request: Request) -> Response:
        participant_id = request.path_params["participant_id"]
        async with pool.acquire() as conn:
            store = Storage(conn)
            person = await store.participant(participant_id)
            found = await store.credits_of(participant_id)
            in_pairs = bool(await store.pairs_of_participant(participant_id))
        if (person is None or person.erased) and not found and not in_pairs:
            return _not_found(f"participant {participant_id}")
        return JSONResponse([credit_json(c) for c in found])

    @documented(
        "The PDF certificate of a credit",
        response={"type": "string", "format": "binary"},
        media_type="application/pdf",
        not_found="The credit (or its holder's name) is unknown to progress.",
    )
    async def certificate(request: Request) -> Response:
        credit_id = request.path_params["credit_id"]
        async with pool.acquire() as conn:
            store = Storage(conn)
            credit = await store.credit(credit_id)
            if credit is None:
                return _not_found(f"credit {credit_id}")
            person = await store.participant(credit.participant_id)
            programme_name = await store.programme_name(credit.programme_id)
        name = person.display_name if person is not None else None
        if not name:
            return _not_found(f"the holder of credit {credit_id}")
        pdf = render_certificate(
            CertificateFacts(
                credit_id=credit.credit_id,
                display_name=name,
                role=credit.role,
                programme_name=programme_name,
                programme_id=credit.programme_id,
                first_session_at=credit.first_session_at,
                last_session_at=credit.last_session_at,
                sessions_completed=credit.sessions_completed,
                minutes=credit.minutes,
                credits=credit.credits,
                topics=credit.topics,
                issued_at=credit.issued_at,
            )
        )
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="twoway-{credit_id}.pdf"'},
        )

    @documented(
        "A programme's health: pairs by health, sessions, feedback",
        response={"type": "object"},
        not_found="The programme is unknown to progress.",
    )
    async def health(request: Request) -> Response:
        programme_id = request.path_params["programme_id"]
        async with pool.acquire() as conn:
            store = Storage(conn)
            if not await store.programme_known(programme_id):
                return _not_found(f"programme {programme_id}")
            pairs = await store.programme_pairs(programme_id)
            counts = await store.programme_session_counts(programme_id)
            feedback = await store.programme_feedback(programme_id)
        return JSONResponse(
            programme_health(
                programme_id,
                [health_row(p) for p in pairs],
                counts,
                [
                    FeedbackRow(f["participant_id"], f["role"], f["rating"], tuple(f["learned"]))
                    for f in feedback
                ],
            )
        )

    return [
        read_route("/pairs/{pair_id}/progress", pair_progress, access=READER),
        read_route("/participants/{participant_id}/credits", credits, access=READER),
        read_route("/credits/{credit_id}/certificate.pdf", certificate, access=READER),
        read_route("/programmes/{programme_id}/health", health, access=programme_access()),
    ]


def routes(runtime: Runtime) -> Sequence[BaseRoute]:
    return read_routes(runtime.pool)
