"""The dashboard's SQL: proposals, deliveries, and a programme's facts read in one go."""

from __future__ import annotations

import asyncpg
from twoway_shared.platform.db import from_row

from twoway_progress.domain.dashboard import PairFacts, Person, Proposal
from twoway_progress.domain.model import Feedback, PairState, SessionState


class DashboardStorage:
    """Reads and writes of the dashboard on one connection (schema `progress`)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    # ------------------------------------------------------------ writes, from events

    async def save_proposal(
        self, pair_id: str, programme_id: str, mentor_id: str, mentee_id: str, score: float
    ) -> None:
        await self._conn.execute(
            """INSERT INTO progress.proposals (pair_id, programme_id, mentor_id, mentee_id, score)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (pair_id) DO UPDATE SET score = $5""",
            pair_id,
            programme_id,
            mentor_id,
            mentee_id,
            score,
        )

    async def save_decline(
        self, pair_id: str, programme_id: str, mentor_id: str, mentee_id: str, reason: str
    ) -> None:
        await self._conn.execute(
            """INSERT INTO progress.proposals (pair_id, programme_id, mentor_id, mentee_id,
                   declined_reason)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (pair_id) DO UPDATE SET declined_reason = $5""",
            pair_id,
            programme_id,
            mentor_id,
            mentee_id,
            reason,
        )

    async def save_delivery(
        self, notification_id: str, participant_id: str, template: str, delivered: bool
    ) -> None:
        """Once a message was delivered it stays delivered, whatever arrives later."""
        await self._conn.execute(
            """INSERT INTO progress.deliveries AS d (notification_id, participant_id, template,
                   delivered)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (notification_id) DO UPDATE SET delivered = d.delivered OR $4""",
            notification_id,
            participant_id,
            template,
            delivered,
        )

    # ------------------------------------------------------------ reads

    async def programmes(self) -> list[tuple[str, str]]:
        """Every programme progress knows of: (id, name), by name."""
        rows = await self._conn.fetch(
            """SELECT programme_id, max(name) AS name FROM (
                   SELECT programme_id, name FROM progress.programmes
                   UNION ALL SELECT programme_id, '' FROM progress.pairs
                   UNION ALL SELECT programme_id, '' FROM progress.participants
                       WHERE role IS NOT NULL) AS known
               GROUP BY programme_id ORDER BY max(name), programme_id"""
        )
        return [(r["programme_id"], r["name"]) for r in rows]

    async def people(self, programme_id: str) -> list[Person]:
        rows = await self._conn.fetch(
            """SELECT participant_id, role, display_name, withdrawn FROM progress.participants
               WHERE programme_id = $1 ORDER BY participant_id""",
            programme_id,
        )
        return [Person(**dict(r)) for r in rows]

    async def proposals(self, programme_id: str) -> list[Proposal]:
        rows = await self._conn.fetch(
            """SELECT pair_id, mentor_id, mentee_id, score, declined_reason
               FROM progress.proposals WHERE programme_id = $1 ORDER BY pair_id""",
            programme_id,
        )
        return [Proposal(**dict(r)) for r in rows]

    async def pairs(self, programme_id: str) -> list[PairFacts]:
        """The programme's confirmed pairs with their sessions and feedback."""
        pair_rows = await self._conn.fetch(
            """SELECT pair_id, mentor_id, mentee_id, status, ended_reason, total, booked,
                      health, reasons, rematch_requested, completed_at
               FROM progress.pairs WHERE programme_id = $1 ORDER BY pair_id""",
            programme_id,
        )
        session_rows = await self._conn.fetch(
            """SELECT s.pair_id, s.session_id, s.sequence, s.status, s.starts_at, s.ends_at,
                      s.minutes
               FROM progress.sessions s JOIN progress.pairs p USING (pair_id)
               WHERE p.programme_id = $1 ORDER BY s.pair_id, s.sequence""",
            programme_id,
        )
        feedback_rows = await self._conn.fetch(
            """SELECT pair_id, session_id, participant_id, role, sequence, rating, learned, fit
               FROM progress.feedback WHERE programme_id = $1
               ORDER BY pair_id, sequence, submitted_at""",
            programme_id,
        )
        sessions: dict[str, list[SessionState]] = {}
        for row in session_rows:
            sessions.setdefault(row["pair_id"], []).append(from_row(SessionState, row))
        feedback: dict[str, list[Feedback]] = {}
        for row in feedback_rows:
            feedback.setdefault(row["pair_id"], []).append(
                from_row(Feedback, row, learned=tuple(row["learned"]))
            )
        return [
            PairFacts(
                state=PairState(
                    pair_id=p["pair_id"],
                    mentor_id=p["mentor_id"],
                    mentee_id=p["mentee_id"],
                    sessions=tuple(sessions.get(p["pair_id"], ())),
                    feedback=tuple(feedback.get(p["pair_id"], ())),
                    total=p["total"],
                    booked=p["booked"],
                ),
                status=p["status"],
                ended_reason=p["ended_reason"],
                completed_at=p["completed_at"],
                rematch_requested=p["rematch_requested"],
                health=p["health"],
                reasons=tuple(p["reasons"]),
            )
            for p in pair_rows
        ]

    async def deliveries(self, programme_id: str) -> list[tuple[str, int, int]]:
        """(template, sent, failed) for the programme's people."""
        rows = await self._conn.fetch(
            """SELECT d.template, count(*) FILTER (WHERE d.delivered) AS sent,
                      count(*) FILTER (WHERE NOT d.delivered) AS failed
               FROM progress.deliveries d JOIN progress.participants p USING (participant_id)
               WHERE p.programme_id = $1 GROUP BY d.template ORDER BY d.template""",
            programme_id,
        )
        return [(r["template"], int(r["sent"]), int(r["failed"])) for r in rows]

    async def credits(self, programme_id: str) -> list[tuple[str, int, float, int]]:
        """(role, people, credits, minutes) awarded in the programme."""
        rows = await self._conn.fetch(
            """SELECT role, count(DISTINCT participant_id) AS people, sum(credits) AS credits,
                      sum(minutes) AS minutes
               FROM progress.credits WHERE programme_id = $1 GROUP BY role ORDER BY role""",
            programme_id,
        )
        return [(r["role"], int(r["people"]), float(r["credits"]), int(r["minutes"])) for r in rows]
