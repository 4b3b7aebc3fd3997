"""All SQL of the matching service (schema `matching`)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from twoway_shared.contract import ProgrammeConfigured
from twoway_shared.contract.values import rfc3339
from twoway_shared.platform.db import from_row
from twoway_shared.platform.tracing import current_traceparent
from twoway_shared.wallclock import Window

from twoway_matching.domain.model import MatchingRules, Participant
from twoway_matching.domain.pool import PastPair

# Rounds in continuous mode wait this long for more changes, and run at most this often.
ROUND_DEBOUNCE = timedelta(seconds=1)
ROUND_MIN_INTERVAL = timedelta(seconds=3)
# A claimed round not finished within this time (its instance died) is due again.
ROUND_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class StoredParticipant:
    participant_id: str
    programme_id: str
    role: str | None
    revision: int
    active: bool
    erased: bool
    paused_after_completion: bool


@dataclass(frozen=True)
class Pair:
    pair_id: str
    programme_id: str
    mentor_id: str
    mentee_id: str
    status: str
    score: float
    reasons: dict[str, Any]
    proposed_at: datetime
    expires_at: datetime | None
    mentor_accepted: bool
    mentee_accepted: bool
    closed_at: datetime | None
    closed_reason: str | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Pair:
        return from_row(cls, row, reasons=json.loads(row["reasons"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "programme_id": self.programme_id,
            "mentor_id": self.mentor_id,
            "mentee_id": self.mentee_id,
            "status": self.status,
            "score": self.score,
            "reasons": self.reasons,
            "proposed_at": rfc3339(self.proposed_at),
            "expires_at": rfc3339(self.expires_at) if self.expires_at else None,
            "closed_at": rfc3339(self.closed_at) if self.closed_at else None,
            "closed_reason": self.closed_reason,
        }


# ------------------------------------------------------------------ programmes


async def save_programme(conn: asyncpg.Connection, programme: ProgrammeConfigured) -> None:
    await conn.execute(
        """INSERT INTO matching.programmes (programme_id, settings) VALUES ($1, $2::jsonb)
           ON CONFLICT (programme_id)
           DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()""",
        programme.programme_id,
        programme.model_dump_json(),
    )


async def programme_settings(
    conn: asyncpg.Connection, programme_id: str
) -> ProgrammeConfigured | None:
    raw = await conn.fetchval(
        "SELECT settings FROM matching.programmes WHERE programme_id = $1", programme_id
    )
    return None if raw is None else ProgrammeConfigured.model_validate_json(raw)


async def settings_of(
    conn: asyncpg.Connection, programme_ids: Collection[str]
) -> dict[str, ProgrammeConfigured]:
    """The settings of those of these programmes that have some."""
    rows = await conn.fetch(
        """SELECT programme_id, settings FROM matching.programmes
           WHERE programme_id = ANY($1::text[])""",
        list(programme_ids),
    )
    return {r["programme_id"]: ProgrammeConfigured.model_validate_json(r["settings"]) for r in rows}


def rules_of(settings: ProgrammeConfigured | None, today: date) -> MatchingRules:
    if settings is None:
        return MatchingRules(starts_on=today)
    return MatchingRules(
        starts_on=settings.starts_on or today,
        session_minutes=settings.session_minutes,
        min_grade_gap=settings.matching.min_grade_gap,
        cross_department=settings.matching.cross_department,
        min_score=settings.matching.min_score,
    )


# ------------------------------------------------------------------ participants


async def participant(
    conn: asyncpg.Connection, participant_id: str, *, lock: bool = False
) -> StoredParticipant | None:
    row = await conn.fetchrow(
        """SELECT participant_id, programme_id, role, revision, active, profile IS NULL AS erased,
                  paused_after_completion
           FROM matching.participants WHERE participant_id = $1"""
        + (" FOR UPDATE" if lock else ""),
        participant_id,
    )
    return None if row is None else StoredParticipant(**dict(row))


@dataclass(frozen=True)
class ProfileRow:
    """A profile to store; `resume` ends a pause after a completed pair."""

    participant_id: str
    programme_id: str
    role: str
    revision: int
    profile: dict[str, Any]
    resume: bool


async def participants(
    conn: asyncpg.Connection, participant_ids: Collection[str]
) -> dict[str, StoredParticipant]:
    """The stored rows of these people, locked in id order (one order avoids deadlocks)."""
    rows = await conn.fetch(
        """SELECT participant_id, programme_id, role, revision, active, profile IS NULL AS erased,
                  paused_after_completion
           FROM matching.participants WHERE participant_id = ANY($1::text[])
           ORDER BY participant_id FOR UPDATE""",
        sorted(participant_ids),
    )
    return {r["participant_id"]: StoredParticipant(**dict(r)) for r in rows}


async def upsert_profiles(conn: asyncpg.Connection, rows: Sequence[ProfileRow]) -> None:
    """Insert or replace active profiles, one row per person, in one statement (two when a
    pause after a completed pair ends)."""
    ordered = sorted(rows, key=lambda r: r.participant_id)
    await conn.execute(
        """INSERT INTO matching.participants
               (participant_id, programme_id, role, revision, active, profile)
           SELECT n.participant_id, n.programme_id, n.role, n.revision, true, n.profile::jsonb
           FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])
               AS n(participant_id, programme_id, role, revision, profile)
           ORDER BY n.participant_id
           ON CONFLICT (participant_id) DO UPDATE SET role = EXCLUDED.role,
               revision = EXCLUDED.revision, active = true,
               profile = EXCLUDED.profile, updated_at = now()""",
        [r.participant_id for r in ordered],
        [r.programme_id for r in ordered],
        [r.role for r in ordered],
        [r.revision for r in ordered],
        [json.dumps(r.profile) for r in ordered],
    )
    if resumed := [r.participant_id for r in ordered if r.resume]:
        await conn.execute(
            """UPDATE matching.participants SET paused_after_completion = false
               WHERE participant_id = ANY($1::text[]) AND paused_after_completion""",
            resumed,
        )


async def pause_after_completion(conn: asyncpg.Connection, participant_ids: list[str]) -> None:
    await conn.execute(
        """UPDATE matching.participants SET paused_after_completion = true, updated_at = now()
           WHERE participant_id = ANY($1::text[])""",
        participant_ids,
    )


async def withdraw_participant(
    conn: asyncpg.Connection, participant_id: str, programme_id: str, *, erase: bool
) -> None:
    """Leave the pool; a person not seen before is kept as a tombstone (no role, revision -1)."""
    await conn.execute(
        """INSERT INTO matching.participants AS p
               (participant_id, programme_id, role, revision, active, profile)
           VALUES ($1, $2, NULL, -1, false, NULL)
           ON CONFLICT (participant_id) DO UPDATE
           SET active = false, updated_at = now(),
               profile = CASE WHEN $3 THEN NULL ELSE p.profile END""",
        participant_id,
        programme_id,
        erase,
    )
    if erase:
        await erase_traces(conn, participant_id)


async def erase_traces(conn: asyncpg.Connection, participant_id: str) -> None:
    """Forget what pairs and round summaries say about a person: their tags, their name."""
    # The reasons of their pairs are their skills and wants: kept empty, the pair stays.
    await conn.execute(
        """UPDATE matching.pairs
           SET reasons = reasons
               || '{"mentee_learns": [], "mentor_learns": [], "languages": []}'::jsonb
           WHERE $1::text IN (mentor_id, mentee_id)""",
        participant_id,
    )
    await conn.execute(
        """UPDATE matching.rounds
           SET summary = jsonb_set(summary, '{unmatched}', COALESCE(
               (SELECT jsonb_agg(u) FROM jsonb_array_elements(summary->'unmatched') AS u
                WHERE u->>'participant_id' <> $1::text), '[]'::jsonb))
           WHERE summary->'unmatched'
                 @> jsonb_build_array(jsonb_build_object('participant_id', $1::text))""",
        participant_id,
    )


def to_domain(row: asyncpg.Record) -> Participant:
    profile = json.loads(row["profile"])
    return Participant(
        participant_id=row["participant_id"],
        role=row["role"],
        grade=profile["grade"],
        department=profile["department"],
        timezone=profile["timezone"],
        languages=frozenset(profile["languages"]),
        availability=tuple(Window(*w) for w in profile["availability"]),
        offers=frozenset(profile["offers"]),
        wants=frozenset(profile["wants"]),
        manager_id=profile["manager_id"],
        capacity=profile["capacity"],
    )


async def lock_pool(
    conn: asyncpg.Connection, programme_id: str
) -> tuple[list[Participant], frozenset[str]]:
    """The active participants of a programme and which of them are paused, share-locked.

    The lock lasts until the round commits: it makes a withdrawal wait for a running round, so
    the withdrawal sees the pairs the round made.
    """
    rows = await conn.fetch(
        """SELECT participant_id, role, profile, paused_after_completion
           FROM matching.participants
           WHERE programme_id = $1 AND active AND profile IS NOT NULL
           ORDER BY participant_id FOR SHARE""",
        programme_id,
    )
    paused = frozenset(r["participant_id"] for r in rows if r["paused_after_completion"])
    return [to_domain(r) for r in rows], paused


# ------------------------------------------------------------------ pairs


_PAIR_COLUMNS = """pair_id, programme_id, mentor_id, mentee_id, status, score, reasons,
    proposed_at, expires_at, mentor_accepted, mentee_accepted, closed_at, closed_reason"""


async def pair(conn: asyncpg.Connection, pair_id: str, *, lock: bool = False) -> Pair | None:
    row = await conn.fetchrow(
        f"SELECT {_PAIR_COLUMNS} FROM matching.pairs WHERE pair_id = $1"
        + (" FOR UPDATE" if lock else ""),
        pair_id,
    )
    return None if row is None else Pair.from_row(row)


async def active_pairs_of(conn: asyncpg.Connection, participant_id: str) -> list[Pair]:
    rows = await conn.fetch(
        f"""SELECT {_PAIR_COLUMNS} FROM matching.pairs
            WHERE (mentor_id = $1 OR mentee_id = $1) AND status IN ('proposed', 'confirmed')
            ORDER BY pair_id FOR UPDATE""",
        participant_id,
    )
    return [Pair.from_row(r) for r in rows]


async def pairs_of_participant(conn: asyncpg.Connection, participant_id: str) -> list[Pair]:
    rows = await conn.fetch(
        f"""SELECT {_PAIR_COLUMNS} FROM matching.pairs
            WHERE mentor_id = $1 OR mentee_id = $1 ORDER BY proposed_at, pair_id""",
        participant_id,
    )
    return [Pair.from_row(r) for r in rows]


async def pairs_of_programme(conn: asyncpg.Connection, programme_id: str) -> list[Pair]:
    rows = await conn.fetch(
        f"""SELECT {_PAIR_COLUMNS} FROM matching.pairs
            WHERE programme_id = $1 ORDER BY proposed_at, pair_id""",
        programme_id,
    )
    return [Pair.from_row(r) for r in rows]


async def pair_history(conn: asyncpg.Connection, programme_id: str) -> list[PastPair]:
    rows = await conn.fetch(
        """SELECT mentor_id, mentee_id, status IN ('proposed', 'confirmed') AS active
           FROM matching.pairs WHERE programme_id = $1""",
        programme_id,
    )
    return [PastPair(r["mentor_id"], r["mentee_id"], r["active"]) for r in rows]


async def insert_pairs(conn: asyncpg.Connection, pairs: Sequence[Pair]) -> set[str]:
    """Insert new pairs in one statement; returns the ids inserted (a pair whose two people
    already have one in the programme is left out)."""
    rows = await conn.fetch(
        """INSERT INTO matching.pairs (pair_id, programme_id, mentor_id, mentee_id, status,
               score, reasons, proposed_at, expires_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
               $6::float8[], $7::jsonb[], $8::timestamptz[], $9::timestamptz[])
           ON CONFLICT DO NOTHING RETURNING pair_id""",
        [p.pair_id for p in pairs],
        [p.programme_id for p in pairs],
        [p.mentor_id for p in pairs],
        [p.mentee_id for p in pairs],
        [p.status for p in pairs],
        [p.score for p in pairs],
        [json.dumps(p.reasons) for p in pairs],
        [p.proposed_at for p in pairs],
        [p.expires_at for p in pairs],
    )
    return {r["pair_id"] for r in rows}


async def set_acceptance(
    conn: asyncpg.Connection, pair_id: str, *, mentor: bool, mentee: bool
) -> None:
    await conn.execute(
        "UPDATE matching.pairs SET mentor_accepted = $2, mentee_accepted = $3 WHERE pair_id = $1",
        pair_id,
        mentor,
        mentee,
    )


async def set_status(
    conn: asyncpg.Connection,
    pair_id: str,
    status: str,
    now: datetime,
    by: str | None = None,
    reason: str | None = None,
) -> None:
    """Move a pair on; closing it (declined, expired, ended) records when, by whom and why."""
    closes = status in ("declined", "expired", "ended")
    await conn.execute(
        """UPDATE matching.pairs SET status = $2,
               closed_at = CASE WHEN $3 THEN $4 ELSE closed_at END,
               closed_by = CASE WHEN $3 THEN $5 ELSE closed_by END,
               closed_reason = CASE WHEN $3 THEN $6 ELSE closed_reason END
           WHERE pair_id = $1""",
        pair_id,
        status,
        closes,
        now,
        by,
        reason,
    )


async def claim_expired(conn: asyncpg.Connection, now: datetime, limit: int = 500) -> list[Pair]:
    rows = await conn.fetch(
        f"""SELECT {_PAIR_COLUMNS} FROM matching.pairs
            WHERE status = 'proposed' AND expires_at <= $1
            ORDER BY expires_at, pair_id LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [Pair.from_row(r) for r in rows]


# ------------------------------------------------------------------ rounds


async def request_round(
    conn: asyncpg.Connection,
    programme_id: str,
    now: datetime,
    *,
    at_once: bool,
    traceparent: str | None = None,
) -> None:
    """Ask for a round; a round already due keeps its earlier time, so changes batch together.

    `at_once` is programme.matching_requested: the round is due now and marked requested, so
    it runs whatever the programme's mode. `traceparent`: the trace the round continues
    (by default the current span's).
    """
    due = now if at_once else now + ROUND_DEBOUNCE
    await conn.execute(
        """INSERT INTO matching.rounds (programme_id, due_at, requested, traceparent)
           VALUES ($1, $2, $3, $5)
           ON CONFLICT (programme_id) DO UPDATE SET
               requested = matching.rounds.requested OR EXCLUDED.requested,
               traceparent = COALESCE(EXCLUDED.traceparent, matching.rounds.traceparent),
               due_at = LEAST(
               COALESCE(matching.rounds.due_at, 'infinity'::timestamptz),
               CASE WHEN $3 THEN EXCLUDED.due_at
                    ELSE GREATEST(
                        EXCLUDED.due_at,
                        COALESCE(matching.rounds.last_run_at + $4::interval, EXCLUDED.due_at))
               END)""",
        programme_id,
        due,
        at_once,
        ROUND_MIN_INTERVAL,
        traceparent or current_traceparent(),
    )


async def round_traceparent(conn: asyncpg.Connection, programme_id: str) -> str | None:
    """The trace context of the last request for a programme's round, if it had one."""
    value = await conn.fetchval(
        "SELECT traceparent FROM matching.rounds WHERE programme_id = $1", programme_id
    )
    return value if isinstance(value, str) else None


async def claim_due_round(conn: asyncpg.Connection, now: datetime) -> tuple[str, datetime] | None:
    """Lease one due round: (programme, lease end), or None; other instances skip the row.

    The round stays due at the lease's end until `finish_round` clears it in the round's own
    transaction, so a round lost to a crash or an outage runs again.
    """
    row = await conn.fetchrow(
        """UPDATE matching.rounds SET due_at = $2, last_run_at = $1
           WHERE programme_id = (
               SELECT programme_id FROM matching.rounds WHERE due_at <= $1
               ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING programme_id, due_at""",
        now,
        now + ROUND_LEASE,
    )
    return None if row is None else (row["programme_id"], row["due_at"])


async def finish_round(conn: asyncpg.Connection, programme_id: str, lease_end: datetime) -> None:
    """Clear the lease; a change that asked for a round meanwhile moved due_at and keeps it."""
    await conn.execute(
        """UPDATE matching.rounds SET due_at = NULL, requested = false
           WHERE programme_id = $1 AND due_at = $2""",
        programme_id,
        lease_end,
    )


async def round_requested(conn: asyncpg.Connection, programme_id: str) -> bool:
    """Whether the due round was asked for by programme.matching_requested."""
    return bool(
        await conn.fetchval(
            "SELECT requested FROM matching.rounds WHERE programme_id = $1", programme_id
        )
    )


async def lock_programme_round(conn: asyncpg.Connection, programme_id: str) -> None:
    """Never two rounds for one programme at once, whichever instance runs them."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        f"twoway.matching.round.{programme_id}",
    )


async def save_round_summary(
    conn: asyncpg.Connection, programme_id: str, summary: dict[str, Any]
) -> None:
    await conn.execute(
        "UPDATE matching.rounds SET summary = $2::jsonb WHERE programme_id = $1",
        programme_id,
        json.dumps(summary),
    )


async def round_summary(conn: asyncpg.Connection, programme_id: str) -> dict[str, Any] | None:
    raw = await conn.fetchval(
        "SELECT summary FROM matching.rounds WHERE programme_id = $1", programme_id
    )
    return None if raw is None else dict(json.loads(raw))


async def programme_known(conn: asyncpg.Connection, programme_id: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM matching.programmes WHERE programme_id = $1)
                   OR EXISTS (SELECT 1 FROM matching.participants WHERE programme_id = $1)""",
            programme_id,
        )
    )
