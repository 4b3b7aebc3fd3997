"""All SQL of the scheduling service: programmes, participants, pairs, sessions, attendance."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson
from twoway_shared.contract.values import pair_members
from twoway_shared.platform.db import from_row
from twoway_shared.wallclock import Window

from twoway_scheduling.domain.model import Person, SeriesRules
from twoway_scheduling.domain.requests import Attendance


@dataclass(frozen=True)
class Participant:
    """Scheduling's copy of one enrolment; `person` is None when unknown or erased."""

    participant_id: str
    programme_id: str
    role: str | None
    revision: int
    withdrawn: bool
    person: Person | None


@dataclass(frozen=True)
class Pair:
    """A confirmed pair and where its booking stands."""

    pair_id: str
    programme_id: str
    mentor_id: str
    mentee_id: str
    status: str  # waiting | booked | ended


@dataclass(frozen=True)
class Session:
    """One booked session as stored."""

    session_id: str
    pair_id: str
    programme_id: str
    mentor_id: str
    mentee_id: str
    sequence: int
    total: int
    starts_at: datetime
    ends_at: datetime
    revision: int
    status: str  # scheduled | cancelled | completed | missed
    # Set by the database when the session is added: its place in the pair's series.
    first_starts_at: datetime | None = None
    series_zone: str | None = None
    series_weeks: int | None = None

    @property
    def minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds()) // 60

    def event_fields(self, *, booked: bool = False) -> dict[str, object]:
        """The fields every session event carries; `booked`: with its time and revision too,
        as session.scheduled carries them."""
        fields: dict[str, object] = {
            "session_id": self.session_id,
            **pair_members(self),
            "sequence": self.sequence,
        }
        if booked:
            fields |= {
                "total": self.total,
                "starts_at": self.starts_at,
                "ends_at": self.ends_at,
                "revision": self.revision,
            }
        return fields

    @staticmethod
    def from_row(row: asyncpg.Record) -> Session:
        return from_row(Session, row)


SESSION_COLUMNS = (
    "session_id, pair_id, programme_id, mentor_id, mentee_id, sequence, total, starts_at,"
    " ends_at, revision, status"
)
"""The columns `Session.from_row` reads, in the order of the dataclass."""


def windows_json(windows: Sequence[Window]) -> str:
    return orjson.dumps([[w.weekday, w.start_minute, w.end_minute] for w in windows]).decode()


def _person(row: asyncpg.Record) -> Person | None:
    if row["timezone"] is None or row["availability"] is None:
        return None
    raw: list[list[int]] = orjson.loads(row["availability"])
    return Person(row["timezone"], tuple(sorted(Window(*w) for w in raw)))


_INSERT_SESSIONS = (
    "INSERT INTO scheduling.sessions (session_id, pair_id, programme_id, mentor_id,"
    " mentee_id, sequence, total, starts_at, ends_at, revision, status,"
    " first_starts_at, series_zone, series_weeks)"
    " SELECT n.*, n.starts_at,"
    " (SELECT p.timezone FROM scheduling.participants p"
    "  WHERE p.participant_id = n.mentee_id),"
    " (SELECT CASE g.cadence WHEN 'fortnightly' THEN 2 ELSE 1 END"
    "  FROM scheduling.programmes g WHERE g.programme_id = n.programme_id)"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::int[], $7::int[], $8::timestamptz[], $9::timestamptz[], $10::int[], $11::text[])"
    " AS n(session_id, pair_id, programme_id, mentor_id, mentee_id, sequence, total,"
    " starts_at, ends_at, revision, status)"
    " ON CONFLICT DO NOTHING RETURNING session_id"
)
"""Sessions from eleven parallel arrays ($1-$11, see `_columns`); new ones' ids returned."""


def _known(participant: Participant) -> Person:
    if participant.person is None:
        raise ValueError(f"participant {participant.participant_id} has no times to store")
    return participant.person


def _participant(row: asyncpg.Record) -> Participant:
    return from_row(Participant, row, person=_person(row))


class Storage:
    """The scheduling schema, through one connection (inside the caller's transaction)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    # ------------------------------------------------------------ programmes

    async def save_programme(self, programme_id: str, rules: SeriesRules, starts_on: date) -> None:
        await self._conn.execute(
            "INSERT INTO scheduling.programmes (programme_id, session_minutes, cadence, sessions,"
            " starts_on, min_notice_hours) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (programme_id) DO UPDATE SET session_minutes = EXCLUDED.session_minutes,"
            " cadence = EXCLUDED.cadence, sessions = EXCLUDED.sessions,"
            " starts_on = EXCLUDED.starts_on, min_notice_hours = EXCLUDED.min_notice_hours",
            programme_id,
            rules.session_minutes,
            rules.cadence,
            rules.sessions,
            starts_on,
            rules.min_notice_hours,
        )

    async def programme_rules(self, programme_id: str) -> SeriesRules:
        """The programme's settings, or the contract defaults when it was never configured."""
        row = await self._conn.fetchrow(
            "SELECT session_minutes, cadence, sessions, starts_on, min_notice_hours"
            " FROM scheduling.programmes WHERE programme_id = $1",
            programme_id,
        )
        return SeriesRules() if row is None else SeriesRules(**dict(row))

    async def rules_of(self, programme_ids: Collection[str]) -> dict[str, SeriesRules]:
        """The settings of each programme; the contract defaults for one never configured."""
        rows = await self._conn.fetch(
            "SELECT programme_id, session_minutes, cadence, sessions, starts_on, min_notice_hours"
            " FROM scheduling.programmes WHERE programme_id = ANY($1::text[])",
            list(programme_ids),
        )
        found = {r["programme_id"]: from_row(SeriesRules, r) for r in rows}
        return {p: found.get(p, SeriesRules()) for p in programme_ids}

    # ------------------------------------------------------------ participants

    async def lock_participants(self, ids: Sequence[str]) -> dict[str, Participant]:
        """Lock the rows of `ids` in id order (one order everywhere avoids deadlocks)."""
        rows = await self._conn.fetch(
            "SELECT participant_id, programme_id, role, revision, withdrawn, timezone, availability"
            " FROM scheduling.participants WHERE participant_id = ANY($1::text[])"
            " ORDER BY participant_id FOR UPDATE",
            list(ids),
        )
        return {r["participant_id"]: _participant(r) for r in rows}

    async def participant_exists(self, participant_id: str) -> bool:
        found = await self._conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM scheduling.participants WHERE participant_id = $1)"
            " OR EXISTS (SELECT 1 FROM scheduling.sessions WHERE mentor_id = $1 OR mentee_id = $1)",
            participant_id,
        )
        return bool(found)

    async def feed_subscribable(self, participant_id: str) -> bool:
        """Known by an enrolment and not erased: only then does a calendar feed link work."""
        erased = await self._conn.fetchval(
            "SELECT erased FROM scheduling.participants"
            " WHERE participant_id = $1 AND revision >= 0",
            participant_id,
        )
        return erased is False

    async def save_participants(self, people: Sequence[Participant]) -> None:
        """Insert or replace enrolled people (each with a person, none withdrawn), one row
        each, in one statement."""
        ordered = sorted(people, key=lambda p: p.participant_id)
        await self._conn.execute(
            "INSERT INTO scheduling.participants (participant_id, programme_id, role, timezone,"
            " availability, revision, withdrawn, erased)"
            " SELECT n.participant_id, n.programme_id, n.role, n.timezone, n.availability::jsonb,"
            " n.revision, false, false"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[])"
            " AS n(participant_id, programme_id, role, timezone, availability, revision)"
            " ORDER BY n.participant_id"
            " ON CONFLICT (participant_id) DO UPDATE SET role = EXCLUDED.role,"
            " timezone = EXCLUDED.timezone, availability = EXCLUDED.availability,"
            " revision = EXCLUDED.revision, withdrawn = false, erased = false",
            [p.participant_id for p in ordered],
            [p.programme_id for p in ordered],
            [p.role for p in ordered],
            [_known(p).timezone for p in ordered],
            [windows_json(_known(p).windows) for p in ordered],
            [p.revision for p in ordered],
        )

    async def withdraw_participant(self, participant_id: str, programme_id: str) -> None:
        # A withdrawal seen before any enrolment leaves a stub (revision -1) so a pair
        # confirmed later is not booked, while any later enrolment still counts as newer.
        await self._conn.execute(
            "INSERT INTO scheduling.participants (participant_id, programme_id, revision,"
            " withdrawn) VALUES ($1, $2, -1, true)"
            " ON CONFLICT (participant_id) DO UPDATE SET withdrawn = true",
            participant_id,
            programme_id,
        )

    async def erase_participant(self, participant_id: str) -> None:
        await self._conn.execute(
            "UPDATE scheduling.participants SET timezone = NULL, availability = NULL,"
            " erased = true WHERE participant_id = $1",
            participant_id,
        )
        # Their attendance and ratings: the outcomes are settled (published), and their
        # sessions still to come were cancelled with the withdrawal.
        await self._conn.execute(
            "DELETE FROM scheduling.attendance WHERE participant_id = $1", participant_id
        )

    # ------------------------------------------------------------ pairs

    async def add_pair(self, pair: Pair) -> bool:
        """Record a pair; False when it was known already (a replay or a late confirmation)."""
        added = await self._conn.fetchval(
            "INSERT INTO scheduling.pairs (pair_id, programme_id, mentor_id, mentee_id, status)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pair_id) DO NOTHING RETURNING true",
            pair.pair_id,
            pair.programme_id,
            pair.mentor_id,
            pair.mentee_id,
            pair.status,
        )
        return bool(added)

    async def add_pairs(self, pairs: Sequence[Pair]) -> set[str]:
        """Record pairs, in id order; the ids of those that were new (not a replay)."""
        ordered = sorted(pairs, key=lambda p: p.pair_id)
        rows = await self._conn.fetch(
            "INSERT INTO scheduling.pairs (pair_id, programme_id, mentor_id, mentee_id, status)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"
            " ORDER BY 1 ON CONFLICT (pair_id) DO NOTHING RETURNING pair_id",
            [p.pair_id for p in ordered],
            [p.programme_id for p in ordered],
            [p.mentor_id for p in ordered],
            [p.mentee_id for p in ordered],
            [p.status for p in ordered],
        )
        return {r["pair_id"] for r in rows}

    async def lock_pair(self, pair_id: str) -> Pair | None:
        row = await self._conn.fetchrow(
            "SELECT pair_id, programme_id, mentor_id, mentee_id, status"
            " FROM scheduling.pairs WHERE pair_id = $1 FOR UPDATE",
            pair_id,
        )
        return None if row is None else Pair(**dict(row))

    async def set_pair_status(self, pair_id: str, status: str) -> None:
        await self._conn.execute(
            "UPDATE scheduling.pairs SET status = $2 WHERE pair_id = $1", pair_id, status
        )

    async def waiting_pairs_of(self, participant_ids: Sequence[str]) -> list[Pair]:
        """Waiting pairs of any of these people, locked, in id order."""
        rows = await self._conn.fetch(
            "SELECT pair_id, programme_id, mentor_id, mentee_id, status FROM scheduling.pairs"
            " WHERE (mentor_id = ANY($1::text[]) OR mentee_id = ANY($1::text[]))"
            " AND status = 'waiting' ORDER BY pair_id FOR UPDATE",
            list(participant_ids),
        )
        return [Pair(**dict(r)) for r in rows]

    async def may_have_sessions(self, participant_ids: Sequence[str], after: datetime) -> set[str]:
        """Those of these people with sessions to come after `after` or pairs waiting to be
        booked: the only ones whose sessions a change of times may have to move."""
        rows = await self._conn.fetch(
            "SELECT mentor_id AS participant_id FROM scheduling.sessions"
            " WHERE mentor_id = ANY($1::text[]) AND status = 'scheduled' AND starts_at > $2"
            " UNION SELECT mentee_id FROM scheduling.sessions"
            " WHERE mentee_id = ANY($1::text[]) AND status = 'scheduled' AND starts_at > $2"
            " UNION SELECT mentor_id FROM scheduling.pairs"
            " WHERE mentor_id = ANY($1::text[]) AND status = 'waiting'"
            " UNION SELECT mentee_id FROM scheduling.pairs"
            " WHERE mentee_id = ANY($1::text[]) AND status = 'waiting'",
            list(participant_ids),
            after,
        )
        return {r["participant_id"] for r in rows}

    async def active_pairs_of(self, participant_id: str) -> list[Pair]:
        """Waiting and booked pairs of a participant, locked, in id order."""
        rows = await self._conn.fetch(
            "SELECT pair_id, programme_id, mentor_id, mentee_id, status FROM scheduling.pairs"
            " WHERE (mentor_id = $1 OR mentee_id = $1) AND status <> 'ended'"
            " ORDER BY pair_id FOR UPDATE",
            participant_id,
        )
        return [Pair(**dict(r)) for r in rows]

    # ------------------------------------------------------------ sessions

    async def busy(
        self, participant_ids: Sequence[str], after: datetime, *, except_session: str = ""
    ) -> list[tuple[datetime, datetime]]:
        """Sessions (not cancelled) of any of the people that end after `after`."""
        rows = await self._conn.fetch(
            "SELECT starts_at, ends_at FROM scheduling.sessions"
            " WHERE mentor_id = ANY($1::text[]) AND ends_at > $2 AND status <> 'cancelled'"
            " AND session_id <> $3"
            " UNION SELECT starts_at, ends_at FROM scheduling.sessions"
            " WHERE mentee_id = ANY($1::text[]) AND ends_at > $2 AND status <> 'cancelled'"
            " AND session_id <> $3",
            list(participant_ids),
            after,
            except_session,
        )
        return [(r["starts_at"], r["ends_at"]) for r in rows]

    async def busy_of(
        self, participant_ids: Sequence[str], after: datetime
    ) -> dict[str, list[tuple[datetime, datetime]]]:
        """Each person's sessions (not cancelled) that end after `after`, in one statement.

        Read once the people's rows are locked, by a statement of its own: a statement's
        snapshot is taken before it waits for a lock, so it would miss the sessions that the
        instance holding the lock was committing (two instances booking one mentor).
        """
        rows = await self._conn.fetch(
            "SELECT mentor_id AS participant_id, starts_at, ends_at FROM scheduling.sessions"
            " WHERE mentor_id = ANY($1::text[]) AND ends_at > $2 AND status <> 'cancelled'"
            " UNION ALL SELECT mentee_id, starts_at, ends_at FROM scheduling.sessions"
            " WHERE mentee_id = ANY($1::text[]) AND ends_at > $2 AND status <> 'cancelled'",
            list(participant_ids),
            after,
        )
        busy: dict[str, list[tuple[datetime, datetime]]] = {}
        for r in rows:
            busy.setdefault(r["participant_id"], []).append((r["starts_at"], r["ends_at"]))
        return busy

    async def book(self, sessions: Sequence[Session], statuses: Mapping[str, str]) -> int:
        """Insert new sessions (a replay inserts none) and set pairs' statuses, in one round
        trip; returns how many sessions were new."""
        rows = await self._conn.fetch(
            "WITH new AS (" + _INSERT_SESSIONS + "),"
            " changed AS (UPDATE scheduling.pairs p SET status = s.status"
            "  FROM unnest($12::text[], $13::text[]) AS s(pair_id, status)"
            "  WHERE p.pair_id = s.pair_id)"
            " SELECT session_id FROM new",
            *_columns(sessions),
            list(statuses),
            list(statuses.values()),
        )
        return len(rows)

    async def lock_session(self, session_id: str) -> Session | None:
        row = await self._conn.fetchrow(
            "SELECT "
            + SESSION_COLUMNS
            + " FROM scheduling.sessions WHERE session_id = $1 FOR UPDATE",
            session_id,
        )
        return None if row is None else Session.from_row(row)

    async def future_sessions_of_pair(self, pair_id: str, after: datetime) -> list[Session]:
        rows = await self._conn.fetch(
            "SELECT " + SESSION_COLUMNS + " FROM scheduling.sessions WHERE pair_id = $1"
            " AND status = 'scheduled' AND starts_at > $2 ORDER BY sequence FOR UPDATE",
            pair_id,
            after,
        )
        return [Session.from_row(r) for r in rows]

    async def future_sessions_of(self, participant_id: str, after: datetime) -> list[Session]:
        rows = await self._conn.fetch(
            "SELECT " + SESSION_COLUMNS + " FROM scheduling.sessions"
            " WHERE (mentor_id = $1 OR mentee_id = $1) AND status = 'scheduled'"
            " AND starts_at > $2 ORDER BY starts_at, session_id FOR UPDATE",
            participant_id,
            after,
        )
        return [Session.from_row(r) for r in rows]

    async def pair_session_starts(self, pair_id: str, except_session: str) -> list[datetime]:
        """Starts of the pair's other sessions that are not cancelled."""
        rows = await self._conn.fetch(
            "SELECT starts_at FROM scheduling.sessions WHERE pair_id = $1"
            " AND status <> 'cancelled' AND session_id <> $2",
            pair_id,
            except_session,
        )
        return [r["starts_at"] for r in rows]

    async def move_session(self, session_id: str, starts_at: datetime, ends_at: datetime) -> None:
        await self._conn.execute(
            "UPDATE scheduling.sessions SET starts_at = $2, ends_at = $3, revision = revision + 1"
            " WHERE session_id = $1",
            session_id,
            starts_at,
            ends_at,
        )

    async def cancel_session(self, session_id: str) -> None:
        await self._conn.execute(
            "UPDATE scheduling.sessions SET status = 'cancelled', revision = revision + 1"
            " WHERE session_id = $1",
            session_id,
        )

    async def set_outcome(self, session_id: str, status: str) -> None:
        await self._conn.execute(
            "UPDATE scheduling.sessions SET status = $2 WHERE session_id = $1", session_id, status
        )

    async def sessions_of(self, participant_id: str) -> list[Session]:
        rows = await self._conn.fetch(
            "SELECT " + SESSION_COLUMNS + " FROM scheduling.sessions WHERE mentor_id = $1"
            " UNION ALL SELECT " + SESSION_COLUMNS + " FROM scheduling.sessions"
            " WHERE mentee_id = $1 AND mentor_id <> $1 ORDER BY starts_at, session_id",
            participant_id,
        )
        return [Session.from_row(r) for r in rows]

    # ------------------------------------------------------------ attendance

    async def record_attendance(
        self, session_id: str, participant_id: str, attended: bool, rating: int | None
    ) -> None:
        await self._conn.execute(
            "INSERT INTO scheduling.attendance (session_id, participant_id, attended, rating)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, participant_id)"
            " DO UPDATE SET attended = EXCLUDED.attended, rating = EXCLUDED.rating",
            session_id,
            participant_id,
            attended,
            rating,
        )

    async def attendance(self, session_id: str) -> dict[str, Attendance]:
        rows = await self._conn.fetch(
            "SELECT participant_id, attended, rating FROM scheduling.attendance"
            " WHERE session_id = $1",
            session_id,
        )
        return {r["participant_id"]: Attendance(**dict(r)) for r in rows}


def _columns(sessions: Sequence[Session]) -> list[list[Any]]:
    return [
        [s.session_id for s in sessions],
        [s.pair_id for s in sessions],
        [s.programme_id for s in sessions],
        [s.mentor_id for s in sessions],
        [s.mentee_id for s in sessions],
        [s.sequence for s in sessions],
        [s.total for s in sessions],
        [s.starts_at for s in sessions],
        [s.ends_at for s in sessions],
        [s.revision for s in sessions],
        [s.status for s in sessions],
    ]
