"""All SQL of the progress service (schema `progress`, asyncpg, $n parameters)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg
from twoway_shared.platform.db import from_row

from twoway_progress.domain.model import Feedback, PairState, Rules, SessionState

DUE_CHANNEL = "twoway_progress_due"
"""LISTEN/NOTIFY channel that wakes the timer and statement workers after a change."""


@dataclass(frozen=True)
class Pair:
    pair_id: str
    programme_id: str
    mentor_id: str
    mentee_id: str
    status: str
    total: int | None
    booked: int | None
    health: str
    reasons: tuple[str, ...]
    rematch_requested: str | None
    completed_at: datetime | None
    ended_reason: str | None = None
    next_check_at: datetime | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Pair:
        return from_row(cls, row, reasons=tuple(row["reasons"]))

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class Participant:
    participant_id: str
    programme_id: str
    role: str | None
    display_name: str | None
    revision: int
    withdrawn: bool
    erased: bool


@dataclass(frozen=True)
class Credit:
    credit_id: str
    participant_id: str
    programme_id: str
    pair_id: str
    role: str
    sessions_completed: int
    minutes: int
    credits: float
    topics: list[str]
    issued_at: datetime
    first_session_at: datetime | None
    last_session_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Credit:
        return from_row(
            cls, row, credits=float(cast(Decimal, row["credits"])), topics=list(row["topics"])
        )


@dataclass(frozen=True)
class PendingStatement:
    statement_id: str
    kind: str
    fact: dict[str, Any]
    attempts: int


_PAIR_COLUMNS = (
    "pair_id, programme_id, mentor_id, mentee_id, status, total, booked, health, reasons,"
    " rematch_requested, completed_at, ended_reason, next_check_at"
)


_SESSION_FIELDS = ("session_id", "sequence", "status", "starts_at", "ends_at", "minutes")
_FEEDBACK_FIELDS = ("session_id", "participant_id", "role", "sequence", "rating", "learned", "fit")
"""The fields of the anonymous records `assessment_inputs` reads, in their order there."""


class Storage:
    """Progress's tables, on one connection (inside the caller's transaction when there is one)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    # ------------------------------------------------------------ programmes

    async def save_programme(self, programme_id: str, name: str, rules: Rules) -> None:
        await self._conn.execute(
            """INSERT INTO progress.programmes AS p (programme_id, name, fit_check,
                   inactive_warning_days, inactive_close_days, credit_minutes)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (programme_id) DO UPDATE SET name = $2, fit_check = $3,
                   inactive_warning_days = $4, inactive_close_days = $5, credit_minutes = $6""",
            programme_id,
            name,
            rules.fit_check,
            rules.inactive_warning_days,
            rules.inactive_close_days,
            rules.credit_minutes,
        )

    async def programme_rules(self, programme_id: str) -> Rules:
        row = await self._conn.fetchrow(
            """SELECT fit_check, inactive_warning_days, inactive_close_days, credit_minutes
               FROM progress.programmes WHERE programme_id = $1""",
            programme_id,
        )
        return Rules(**dict(row)) if row is not None else Rules()

    async def programme_name(self, programme_id: str) -> str:
        name = await self._conn.fetchval(
            "SELECT name FROM progress.programmes WHERE programme_id = $1", programme_id
        )
        return str(name or "")

    async def recheck_programme(self, programme_id: str, now: datetime) -> None:
        """New settings: every active pair of the programme is assessed again now."""
        await self._conn.execute(
            """UPDATE progress.pairs SET next_check_at = $2
               WHERE programme_id = $1 AND status = 'active' AND completed_at IS NULL
                 AND rematch_requested IS NULL""",
            programme_id,
            now,
        )
        await self._conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)

    # ------------------------------------------------------------ participants

    async def lock_participant(self, participant_id: str) -> Participant | None:
        row = await self._conn.fetchrow(
            """SELECT participant_id, programme_id, role, display_name, revision, withdrawn,
                      erased
               FROM progress.participants WHERE participant_id = $1 FOR UPDATE""",
            participant_id,
        )
        return Participant(**dict(row)) if row is not None else None

    async def participant(self, participant_id: str) -> Participant | None:
        row = await self._conn.fetchrow(
            """SELECT participant_id, programme_id, role, display_name, revision, withdrawn,
                      erased
               FROM progress.participants WHERE participant_id = $1""",
            participant_id,
        )
        return Participant(**dict(row)) if row is not None else None

    async def save_participant(
        self, participant_id: str, programme_id: str, role: str, display_name: str, revision: int
    ) -> None:
        await self._conn.execute(
            """INSERT INTO progress.participants (participant_id, programme_id, role,
                   display_name, revision, withdrawn, erased)
               VALUES ($1, $2, $3, $4, $5, false, false)
               ON CONFLICT (participant_id) DO UPDATE SET programme_id = $2, role = $3,
                   display_name = $4, revision = $5, withdrawn = false, erased = false""",
            participant_id,
            programme_id,
            role,
            display_name,
            revision,
        )

    async def withdraw_participant(
        self, participant_id: str, programme_id: str, revision: int
    ) -> None:
        """Withdrawn; a person known only from the withdrawal is kept as a tombstone."""
        await self._conn.execute(
            """INSERT INTO progress.participants (participant_id, programme_id, revision,
                   withdrawn)
               VALUES ($1, $2, $3, true)
               ON CONFLICT (participant_id) DO UPDATE SET withdrawn = true""",
            participant_id,
            programme_id,
            revision,
        )

    async def erase_participant(self, participant_id: str) -> None:
        """Remove the person's name, comments, goals and feedback text; keep counts anonymous."""
        conn = self._conn
        await conn.execute(
            """UPDATE progress.participants SET display_name = NULL, erased = true
               WHERE participant_id = $1""",
            participant_id,
        )
        await conn.execute("DELETE FROM progress.goals WHERE participant_id = $1", participant_id)
        # Ratings, tags and fit answers stay for programme statistics, detached from the person.
        await conn.execute(
            """UPDATE progress.feedback
               SET comment = NULL, participant_id = 'erased:' || md5(random()::text || session_id)
               WHERE participant_id = $1""",
            participant_id,
        )
        await conn.execute("DELETE FROM progress.credits WHERE participant_id = $1", participant_id)
        # Statements about them not yet sent must not reach the LRS after the erasure.
        await conn.execute(
            "DELETE FROM progress.statements WHERE fact->>'participant_id' = $1", participant_id
        )

    # ------------------------------------------------------------ pairs

    async def lock_or_add_pair(
        self, pair_id: str, programme_id: str, mentor_id: str, mentee_id: str
    ) -> Pair:
        """The pair, locked; added from these fields first when new (one round trip).

        The no-op update on a conflict is what locks the existing row and returns it.
        """
        row = await self._conn.fetchrow(
            f"""INSERT INTO progress.pairs (pair_id, programme_id, mentor_id, mentee_id)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (pair_id) DO UPDATE SET pair_id = EXCLUDED.pair_id
                RETURNING {_PAIR_COLUMNS}""",
            pair_id,
            programme_id,
            mentor_id,
            mentee_id,
        )
        return Pair.from_row(row)

    async def lock_pair(self, pair_id: str) -> Pair | None:
        row = await self._conn.fetchrow(
            f"SELECT {_PAIR_COLUMNS} FROM progress.pairs WHERE pair_id = $1 FOR UPDATE", pair_id
        )
        return Pair.from_row(row) if row is not None else None

    async def pair(self, pair_id: str) -> Pair | None:
        row = await self._conn.fetchrow(
            f"SELECT {_PAIR_COLUMNS} FROM progress.pairs WHERE pair_id = $1", pair_id
        )
        return Pair.from_row(row) if row is not None else None

    async def pairs_of_participant(self, participant_id: str) -> list[Pair]:
        rows = await self._conn.fetch(
            f"""SELECT {_PAIR_COLUMNS} FROM progress.pairs
                WHERE $1 IN (mentor_id, mentee_id) ORDER BY pair_id""",
            participant_id,
        )
        return [Pair.from_row(r) for r in rows]

    async def end_pair(self, pair_id: str, reason: str) -> None:
        await self._conn.execute(
            """UPDATE progress.pairs SET status = 'ended', ended_reason = $2, next_check_at = NULL
               WHERE pair_id = $1""",
            pair_id,
            reason,
        )

    async def set_series(self, pair_id: str, *, total: int | None, booked: int | None) -> Pair:
        """Note the series' length (and how many were booked); the pair as it is now."""
        row = await self._conn.fetchrow(
            f"""UPDATE progress.pairs SET total = COALESCE($2, total), booked = COALESCE($3, booked)
                WHERE pair_id = $1 RETURNING {_PAIR_COLUMNS}""",
            pair_id,
            total,
            booked,
        )
        return Pair.from_row(row)

    async def save_assessment(
        self,
        pair_id: str,
        *,
        health: str,
        reasons: Sequence[str],
        next_check_at: datetime | None,
        rematch_requested: str | None,
        completed_at: datetime | None,
        wake: bool = False,
    ) -> None:
        """Store a pair's assessment; `wake` the timer workers when its timer moved earlier."""
        await self._conn.execute(
            """UPDATE progress.pairs SET health = $2, reasons = $3, next_check_at = $4,
                   rematch_requested = COALESCE(rematch_requested, $5),
                   completed_at = COALESCE(completed_at, $6)
               WHERE pair_id = $1""",
            pair_id,
            health,
            list(reasons),
            next_check_at,
            rematch_requested,
            completed_at,
        )
        # NOTIFY serialises committing transactions, so only when a worker may oversleep.
        if wake:
            await self._conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)

    async def claim_due_pairs(self, now: datetime, limit: int) -> list[Pair]:
        """Due pairs, locked for this transaction; other instances skip them."""
        rows = await self._conn.fetch(
            f"""SELECT {_PAIR_COLUMNS} FROM progress.pairs
                WHERE next_check_at <= $1 ORDER BY next_check_at
                LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )
        return [Pair.from_row(r) for r in rows]

    async def next_check(self) -> datetime | None:
        value = await self._conn.fetchval("SELECT min(next_check_at) FROM progress.pairs")
        return cast(datetime | None, value)

    # ------------------------------------------------------------ sessions

    async def save_session_time(
        self,
        session_id: str,
        pair_id: str,
        sequence: int,
        starts_at: datetime,
        ends_at: datetime,
    ) -> None:
        """A scheduled or rescheduled session; an outcome already recorded is kept."""
        await self._conn.execute(
            """INSERT INTO progress.sessions (session_id, pair_id, sequence, starts_at, ends_at,
                   status)
               VALUES ($1, $2, $3, $4, $5, 'scheduled')
               ON CONFLICT (session_id) DO UPDATE SET starts_at = $4, ends_at = $5""",
            session_id,
            pair_id,
            sequence,
            starts_at,
            ends_at,
        )

    async def save_session_status(
        self, session_id: str, pair_id: str, sequence: int, status: str, minutes: int = 0
    ) -> datetime | None:
        """Record a session's outcome; returns when it was scheduled to end, if known."""
        ends_at: datetime | None = await self._conn.fetchval(
            """INSERT INTO progress.sessions (session_id, pair_id, sequence, status, minutes)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (session_id) DO UPDATE SET status = $4, minutes = $5
               RETURNING ends_at""",
            session_id,
            pair_id,
            sequence,
            status,
            minutes,
        )
        return ends_at

    async def session(self, session_id: str) -> tuple[str, SessionState] | None:
        row = await self._conn.fetchrow(
            """SELECT pair_id, session_id, sequence, status, starts_at, ends_at, minutes
               FROM progress.sessions WHERE session_id = $1""",
            session_id,
        )
        if row is None:
            return None
        return row["pair_id"], from_row(SessionState, row)

    async def sessions_of(self, pair_id: str) -> list[SessionState]:
        rows = await self._conn.fetch(
            """SELECT session_id, sequence, status, starts_at, ends_at, minutes
               FROM progress.sessions WHERE pair_id = $1 ORDER BY sequence""",
            pair_id,
        )
        return [from_row(SessionState, r) for r in rows]

    # ------------------------------------------------------------ feedback and goals

    async def save_feedback(
        self,
        *,
        session_id: str,
        participant_id: str,
        pair_id: str,
        programme_id: str,
        role: str,
        sequence: int,
        rating: int,
        learned: Sequence[str],
        fit: str | None,
        comment: str | None,
        now: datetime,
    ) -> None:
        await self._conn.execute(
            """INSERT INTO progress.feedback (session_id, participant_id, pair_id, programme_id,
                   role, sequence, rating, learned, fit, comment, submitted_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (session_id, participant_id) DO UPDATE SET rating = $7, learned = $8,
                   fit = $9, comment = $10, submitted_at = $11""",
            session_id,
            participant_id,
            pair_id,
            programme_id,
            role,
            sequence,
            rating,
            list(learned),
            fit,
            comment,
            now,
        )

    async def feedback_of(self, pair_id: str) -> list[Feedback]:
        rows = await self._conn.fetch(
            """SELECT session_id, participant_id, role, sequence, rating, learned, fit
               FROM progress.feedback WHERE pair_id = $1 ORDER BY sequence, submitted_at""",
            pair_id,
        )
        return [from_row(Feedback, r, learned=tuple(r["learned"])) for r in rows]

    async def replace_goals(
        self, pair_id: str, participant_id: str, goals: Sequence[tuple[str, str | None]]
    ) -> None:
        await self._conn.execute(
            "DELETE FROM progress.goals WHERE pair_id = $1 AND participant_id = $2",
            pair_id,
            participant_id,
        )
        await self._conn.executemany(
            """INSERT INTO progress.goals (pair_id, participant_id, position, tag, note)
               VALUES ($1, $2, $3, $4, $5)""",
            [(pair_id, participant_id, i, tag, note) for i, (tag, note) in enumerate(goals)],
        )

    async def goals_of(self, pair_id: str) -> dict[str, list[tuple[str, str | None]]]:
        rows = await self._conn.fetch(
            """SELECT participant_id, tag, note FROM progress.goals
               WHERE pair_id = $1 ORDER BY participant_id, position""",
            pair_id,
        )
        found: dict[str, list[tuple[str, str | None]]] = {}
        for r in rows:
            found.setdefault(r["participant_id"], []).append((r["tag"], r["note"]))
        return found

    async def assessment_inputs(self, pair: Pair) -> tuple[Rules, PairState]:
        """The programme's rules and the pair's sessions and feedback, in one round trip."""
        row = await self._conn.fetchrow(
            """SELECT
                 (SELECT ROW(fit_check, inactive_warning_days, inactive_close_days,
                             credit_minutes)
                  FROM progress.programmes WHERE programme_id = $2) AS rules,
                 (SELECT array_agg(ROW(session_id, sequence, status, starts_at, ends_at, minutes)
                                   ORDER BY sequence)
                  FROM progress.sessions WHERE pair_id = $1) AS sessions,
                 (SELECT array_agg(ROW(session_id, participant_id, role, sequence, rating,
                                       learned, fit) ORDER BY sequence, submitted_at)
                  FROM progress.feedback WHERE pair_id = $1) AS feedback""",
            pair.pair_id,
            pair.programme_id,
        )
        found = row["rules"]
        rules = Rules() if found is None else Rules(*found)
        state = PairState(
            pair_id=pair.pair_id,
            mentor_id=pair.mentor_id,
            mentee_id=pair.mentee_id,
            sessions=tuple(
                from_row(SessionState, dict(zip(_SESSION_FIELDS, s, strict=True)))
                for s in row["sessions"] or ()
            ),
            feedback=tuple(
                from_row(Feedback, dict(zip(_FEEDBACK_FIELDS, f, strict=True)), learned=tuple(f[5]))
                for f in row["feedback"] or ()
            ),
            total=pair.total,
            booked=pair.booked,
        )
        return rules, state

    async def pair_state(self, pair: Pair) -> PairState:
        return PairState(
            pair_id=pair.pair_id,
            mentor_id=pair.mentor_id,
            mentee_id=pair.mentee_id,
            sessions=tuple(await self.sessions_of(pair.pair_id)),
            feedback=tuple(await self.feedback_of(pair.pair_id)),
            total=pair.total,
            booked=pair.booked,
        )

    # ------------------------------------------------------------ credits

    async def add_credit(self, credit: Credit) -> bool:
        status = await self._conn.execute(
            """INSERT INTO progress.credits (credit_id, participant_id, programme_id, pair_id,
                   role, sessions_completed, minutes, credits, topics, issued_at,
                   first_session_at, last_session_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (credit_id) DO NOTHING""",
            credit.credit_id,
            credit.participant_id,
            credit.programme_id,
            credit.pair_id,
            credit.role,
            credit.sessions_completed,
            credit.minutes,
            Decimal(str(credit.credits)),
            credit.topics,
            credit.issued_at,
            credit.first_session_at,
            credit.last_session_at,
        )
        return bool(status.endswith(" 1"))

    async def credits_of(self, participant_id: str) -> list[Credit]:
        rows = await self._conn.fetch(
            "SELECT * FROM progress.credits WHERE participant_id = $1 ORDER BY issued_at",
            participant_id,
        )
        return [Credit.from_row(r) for r in rows]

    async def credit(self, credit_id: str) -> Credit | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM progress.credits WHERE credit_id = $1", credit_id
        )
        return Credit.from_row(row) if row is not None else None

    # ------------------------------------------------------------ statements (xAPI queue)

    async def enqueue_statements(
        self, kind: str, facts: Sequence[tuple[str, dict[str, Any]]], now: datetime
    ) -> None:
        """Queue (statement id, fact) pairs of one kind for the LRS, in one statement."""
        await self._conn.execute(
            """INSERT INTO progress.statements (statement_id, kind, fact, next_attempt_at)
               SELECT s.id, $1, s.fact::jsonb, $3
               FROM unnest($2::text[], $4::text[]) AS s(id, fact)
               ON CONFLICT (statement_id) DO NOTHING""",
            kind,
            [statement_id for statement_id, _ in facts],
            now,
            [json.dumps(fact) for _, fact in facts],
        )

    async def claim_statements(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[PendingStatement]:
        """Due statements, leased so another instance does not send them at the same time."""
        rows = await self._conn.fetch(
            """UPDATE progress.statements SET next_attempt_at = $2
               WHERE statement_id IN (
                   SELECT statement_id FROM progress.statements WHERE next_attempt_at <= $1
                   ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
               RETURNING statement_id, kind, fact, attempts""",
            now,
            lease_until,
            limit,
        )
        return [
            PendingStatement(r["statement_id"], r["kind"], json.loads(r["fact"]), r["attempts"])
            for r in rows
        ]

    async def statement_done(self, statement_id: str) -> None:
        await self._conn.execute(
            "DELETE FROM progress.statements WHERE statement_id = $1", statement_id
        )

    async def statement_retry(
        self, statement_id: str, attempts: int, at: datetime, error: str
    ) -> None:
        await self._conn.execute(
            """UPDATE progress.statements SET attempts = $2, next_attempt_at = $3, last_error = $4
               WHERE statement_id = $1""",
            statement_id,
            attempts,
            at,
            error,
        )

    async def next_statement(self) -> datetime | None:
        value = await self._conn.fetchval("SELECT min(next_attempt_at) FROM progress.statements")
        return cast(datetime | None, value)

    async def drop_statements(self) -> None:
        await self._conn.execute("DELETE FROM progress.statements")

    async def statements_pending(self) -> int:
        return int(await self._conn.fetchval("SELECT count(*) FROM progress.statements"))

    # ------------------------------------------------------------ programme health

    async def programme_known(self, programme_id: str) -> bool:
        return bool(
            await self._conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM progress.programmes WHERE programme_id = $1)
                       OR EXISTS (SELECT 1 FROM progress.pairs WHERE programme_id = $1)""",
                programme_id,
            )
        )

    async def programme_pairs(self, programme_id: str) -> list[Pair]:
        rows = await self._conn.fetch(
            f"SELECT {_PAIR_COLUMNS} FROM progress.pairs WHERE programme_id = $1 ORDER BY pair_id",
            programme_id,
        )
        return [Pair.from_row(r) for r in rows]

    async def programme_session_counts(self, programme_id: str) -> dict[str, int]:
        rows = await self._conn.fetch(
            """SELECT s.status, count(*) AS n FROM progress.sessions s
               JOIN progress.pairs p USING (pair_id)
               WHERE p.programme_id = $1 GROUP BY s.status""",
            programme_id,
        )
        return {r["status"]: int(r["n"]) for r in rows}

    async def programme_feedback(self, programme_id: str) -> list[asyncpg.Record]:
        return list(
            await self._conn.fetch(
                """SELECT participant_id, role, rating, learned FROM progress.feedback
                   WHERE programme_id = $1""",
                programme_id,
            )
        )
