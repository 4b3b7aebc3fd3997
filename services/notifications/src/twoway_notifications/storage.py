"""All SQL of the notifications service (schema `notifications`, asyncpg, $n parameters)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
from twoway_shared.enrolment import Enrolment
from twoway_shared.platform.db import from_row

from twoway_notifications.domain.model import Contact, Message, Session, Template
from twoway_notifications.domain.rules import Verdict, decide

DUE_CHANNEL = "twoway_notifications_due"
"""LISTEN/NOTIFY channel that wakes the senders when a message becomes due."""

UNSENT = ("pending", "waiting")


def _contact(row: asyncpg.Record) -> Contact:
    return from_row(Contact, row)


def _session(row: asyncpg.Record) -> Session:
    return from_row(Session, row)


def _message(row: asyncpg.Record, session_ids: tuple[str, ...] = ()) -> Message:
    return from_row(
        Message,
        row,
        template=Template(row["template"]),
        details=json.loads(row["details"]),
        session_ids=session_ids,
    )


class NewMessage(NamedTuple):
    """A message to record (the fields in the order `add_messages` stores them); a tuple, made
    by the hundred thousand in a large booking."""

    notification_id: str
    template: str
    participant_id: str
    partner_id: str | None
    needs_partner: bool
    pair_id: str | None
    session_id: str | None
    cause_id: str
    due_at: datetime
    group_key: str | None = None
    details: dict[str, Any] | None = None
    traceparent: str | None = None  # of the record that caused it, for the sender's span


class PairRow(NamedTuple):
    """A pair and what each side learns, as `save_pairs` keeps it."""

    pair_id: str
    programme_id: str
    mentor_id: str
    mentee_id: str
    mentee_learns: list[str]
    mentor_learns: list[str]


class SessionRow(NamedTuple):
    """A session as `save_sessions` keeps it (the fields in the order of its columns)."""

    session_id: str
    pair_id: str
    programme_id: str
    mentor_id: str
    mentee_id: str
    sequence: int
    total: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    revision: int
    status: str
    cause_id: str
    first_starts_at: datetime | None = None


@dataclass(frozen=True)
class SeriesProgress:
    """Sessions known per pair, and reminder minutes per programme (None: not configured)."""

    seen: dict[str, int]
    reminder_minutes: dict[str, list[int] | None]


@dataclass(frozen=True)
class ProfileRow:
    """A person's contact details and preferences, as stored (the columns, in order)."""

    participant_id: str
    programme_id: str
    role: str
    display_name: str
    email: str
    timezone: str
    locale: str
    notify_email: bool
    notify_reminders: bool
    revision: int
    updated_at: datetime


class Storage:
    """The service's tables, on one connection (usually a unit of work's transaction)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    # ------------------------------------------------------------------ participants

    async def upsert_profiles(self, profiles: Sequence[ProfileRow]) -> set[str]:
        """Store profiles (one per person) unless a later revision is stored, in one
        statement; the ids of those applied."""
        ordered = sorted(profiles, key=lambda p: p.participant_id)
        rows = await self._conn.fetch(
            """INSERT INTO notifications.participants AS p (participant_id, programme_id, role,
                   display_name, email, timezone, locale, notify_email, notify_reminders,
                   revision, withdrawn, erased, updated_at)
               SELECT n.participant_id, n.programme_id, n.role, n.display_name, n.email,
                   n.timezone, n.locale, n.notify_email, n.notify_reminders, n.revision,
                   false, false, n.updated_at
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                   $6::text[], $7::text[], $8::bool[], $9::bool[], $10::int[],
                   $11::timestamptz[])
                   AS n(participant_id, programme_id, role, display_name, email, timezone,
                   locale, notify_email, notify_reminders, revision, updated_at)
               ORDER BY n.participant_id
               ON CONFLICT (participant_id) DO UPDATE SET role = EXCLUDED.role,
                   display_name = EXCLUDED.display_name, email = EXCLUDED.email,
                   timezone = EXCLUDED.timezone, locale = EXCLUDED.locale,
                   notify_email = EXCLUDED.notify_email,
                   notify_reminders = EXCLUDED.notify_reminders,
                   revision = EXCLUDED.revision, withdrawn = false, erased = false,
                   updated_at = EXCLUDED.updated_at
               WHERE p.revision <= EXCLUDED.revision
               RETURNING participant_id""",
            *([getattr(p, f.name) for p in ordered] for f in fields(ProfileRow)),
        )
        return {r["participant_id"] for r in rows}

    async def enrolments(self, participant_ids: Iterable[str]) -> dict[str, Enrolment]:
        """What is stored of these people's enrolments, locked in id order for this
        transaction; the unknown are left out. Role "unknown" (revision -1) marks a
        withdrawal seen before any enrolment."""
        rows = await self._conn.fetch(
            """SELECT participant_id, programme_id, role, revision, withdrawn
               FROM notifications.participants WHERE participant_id = ANY($1::text[])
               ORDER BY participant_id FOR UPDATE""",
            sorted(set(participant_ids)),
        )
        return {
            r["participant_id"]: Enrolment.stored(
                r["programme_id"], r["role"], r["revision"], r["withdrawn"]
            )
            for r in rows
        }

    async def enrolment(self, participant_id: str) -> Enrolment | None:
        """What is stored of a person's enrolment, locked for this transaction; None if unknown."""
        return (await self.enrolments([participant_id])).get(participant_id)

    async def withdraw(self, participant_id: str, programme_id: str, *, erase: bool) -> None:
        """Mark a person withdrawn; with `erase`, forget their name and address."""
        await self._conn.execute(
            """INSERT INTO notifications.participants AS p
                   (participant_id, programme_id, role, revision, withdrawn, erased)
               VALUES ($1, $2, 'unknown', -1, true, $3)
               ON CONFLICT (participant_id) DO UPDATE SET withdrawn = true,
                   erased = p.erased OR $3,
                   display_name = CASE WHEN $3 THEN NULL ELSE p.display_name END,
                   email = CASE WHEN $3 THEN NULL ELSE p.email END,
                   timezone = CASE WHEN $3 THEN NULL ELSE p.timezone END""",
            participant_id,
            programme_id,
            erase,
        )

    async def erase_learning_of(self, participant_id: str) -> None:
        """Forget what the person's pairs were to teach and learn (their skill tags), in the
        pairs and inside every message about those pairs, the partner's included."""
        pairs = await self._conn.fetch(
            """UPDATE notifications.pairs SET mentee_learns = '{}', mentor_learns = '{}'
               WHERE $1 IN (mentor_id, mentee_id) RETURNING pair_id""",
            participant_id,
        )
        await self._conn.execute(
            """UPDATE notifications.messages
               SET details = details - 'mentee_learns' - 'mentor_learns' - 'languages'
               WHERE pair_id = ANY($1::text[]) OR participant_id = $2 OR partner_id = $2""",
            [r["pair_id"] for r in pairs],
            participant_id,
        )

    async def contacts(self, ids: Iterable[str]) -> dict[str, Contact]:
        rows = await self._conn.fetch(
            "SELECT * FROM notifications.participants WHERE participant_id = ANY($1::text[])",
            list(set(ids)),
        )
        return {r["participant_id"]: _contact(r) for r in rows}

    async def participant_known(self, participant_id: str) -> bool:
        return bool(
            await self._conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM notifications.participants
                                  WHERE participant_id = $1)
                       OR EXISTS (SELECT 1 FROM notifications.messages
                                  WHERE participant_id = $1)""",
                participant_id,
            )
        )

    # ------------------------------------------------------------------ programmes

    async def save_programme(
        self, programme_id: str, reminder_minutes: list[int], cadence_weeks: int = 1
    ) -> None:
        await self._conn.execute(
            """INSERT INTO notifications.programmes (programme_id, reminder_minutes, cadence_weeks)
               VALUES ($1, $2, $3)
               ON CONFLICT (programme_id) DO UPDATE SET
                   reminder_minutes = EXCLUDED.reminder_minutes,
                   cadence_weeks = EXCLUDED.cadence_weeks""",
            programme_id,
            reminder_minutes,
            cadence_weeks,
        )

    async def save_coordinator(
        self, coordinator_id: str, programme_id: str, email: str | None
    ) -> None:
        """The programme's coordinator as a recipient; without an address, nothing goes."""
        await self._conn.execute(
            """INSERT INTO notifications.participants AS p (participant_id, programme_id, role,
                   display_name, email, notify_email, notify_reminders)
               VALUES ($1, $2, 'coordinator', 'Programme coordinator', $3::text,
                       $3::text IS NOT NULL, false)
               ON CONFLICT (participant_id) DO UPDATE SET email = EXCLUDED.email,
                   notify_email = EXCLUDED.notify_email
               WHERE p.role = 'coordinator'""",
            coordinator_id,
            programme_id,
            email,
        )

    # ------------------------------------------------------------------ pairs

    async def save_pairs(self, pairs: Sequence[PairRow]) -> None:
        """Keep what each side of these pairs learns, in one statement (at most one row a pair:
        a statement may not change a row twice)."""
        if not pairs:
            return
        columns = list(zip(*pairs, strict=True))
        await self._conn.execute(
            """INSERT INTO notifications.pairs (pair_id, programme_id, mentor_id, mentee_id,
                   mentee_learns, mentor_learns)
               SELECT p.pair_id, p.programme_id, p.mentor_id, p.mentee_id,
                      ARRAY(SELECT t FROM jsonb_array_elements_text(p.mentee_learns::jsonb)
                            WITH ORDINALITY AS e(t, n) ORDER BY n),
                      ARRAY(SELECT t FROM jsonb_array_elements_text(p.mentor_learns::jsonb)
                            WITH ORDINALITY AS e(t, n) ORDER BY n)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[])
                    AS p(pair_id, programme_id, mentor_id, mentee_id, mentee_learns,
                         mentor_learns)
               ON CONFLICT (pair_id) DO UPDATE SET mentee_learns = EXCLUDED.mentee_learns,
                   mentor_learns = EXCLUDED.mentor_learns""",
            *columns[:4],
            [json.dumps(learns) for learns in columns[4]],
            [json.dumps(learns) for learns in columns[5]],
        )

    async def learning_of_pair(self, pair_id: str) -> dict[str, list[str]]:
        """What each side will learn, as tags; empty lists when the proposal was not seen."""
        return (await self.learning_of_pairs([pair_id]))[pair_id]

    async def learning_of_pairs(self, pair_ids: Iterable[str]) -> dict[str, dict[str, list[str]]]:
        """`learning_of_pair` for each of `pair_ids`, in one statement."""
        wanted = list(pair_ids)
        if not wanted:
            return {}
        rows = await self._conn.fetch(
            """SELECT pair_id, mentee_learns, mentor_learns FROM notifications.pairs
               WHERE pair_id = ANY($1::text[])""",
            wanted,
        )
        found = {
            r["pair_id"]: {
                "mentee_learns": list(r["mentee_learns"]),
                "mentor_learns": list(r["mentor_learns"]),
            }
            for r in rows
        }
        return {p: found.get(p, {"mentee_learns": [], "mentor_learns": []}) for p in wanted}

    # ------------------------------------------------------------------ sessions

    async def session(self, session_id: str) -> Session | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM notifications.sessions WHERE session_id = $1 FOR UPDATE", session_id
        )
        return None if row is None else _session(row)

    async def save_sessions(self, rows: Sequence[SessionRow], *, newer_only: bool) -> set[str]:
        """Keep sessions' rows, in one statement; the ids of those saved. With `newer_only`,
        a row replaces a kept one only with a higher revision.

        A cancellation carries no times: it keeps the ones already known. The first time
        seen, the mentee's zone and the cadence are kept from the first record: they place
        the session in its series for good.
        """
        if not rows:
            return set()
        condition = "WHERE s.revision < EXCLUDED.revision" if newer_only else ""
        columns = list(zip(*rows, strict=True))
        saved = await self._conn.fetch(
            f"""INSERT INTO notifications.sessions AS s (session_id, pair_id, programme_id,
                   mentor_id, mentee_id, sequence, total, starts_at, ends_at, revision,
                   status, cause_id, first_starts_at, series_zone, series_weeks)
               SELECT n.session_id, n.pair_id, n.programme_id, n.mentor_id, n.mentee_id,
                   n.sequence, n.total, n.starts_at, n.ends_at, n.revision, n.status,
                   n.cause_id, COALESCE(n.first_starts_at, n.starts_at),
                   (SELECT timezone FROM notifications.participants
                    WHERE participant_id = n.mentee_id),
                   (SELECT cadence_weeks FROM notifications.programmes
                    WHERE programme_id = n.programme_id)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                   $6::int[], $7::int[], $8::timestamptz[], $9::timestamptz[], $10::int[],
                   $11::text[], $12::text[], $13::timestamptz[])
                   AS n(session_id, pair_id, programme_id, mentor_id, mentee_id, sequence,
                        total, starts_at, ends_at, revision, status, cause_id,
                        first_starts_at)
               ORDER BY n.session_id
               ON CONFLICT (session_id) DO UPDATE SET
                   total = COALESCE(EXCLUDED.total, s.total),
                   starts_at = COALESCE(EXCLUDED.starts_at, s.starts_at),
                   ends_at = COALESCE(EXCLUDED.ends_at, s.ends_at),
                   first_starts_at = COALESCE(s.first_starts_at, EXCLUDED.first_starts_at),
                   series_zone = COALESCE(s.series_zone, EXCLUDED.series_zone),
                   series_weeks = COALESCE(s.series_weeks, EXCLUDED.series_weeks),
                   revision = EXCLUDED.revision, status = EXCLUDED.status,
                   cause_id = EXCLUDED.cause_id
               {condition}
               RETURNING session_id""",
            *columns,
        )
        return {r["session_id"] for r in saved}

    async def save_session(self, row: SessionRow) -> None:
        await self.save_sessions([row], newer_only=False)

    async def series_progress(
        self, pair_ids: Iterable[str], programme_ids: Iterable[str]
    ) -> SeriesProgress:
        """How many sessions of each pair are known, and each programme's reminder minutes
        (None when its settings are not known), in one round trip."""
        rows = await self._conn.fetch(
            """SELECT 'pair' AS kind, pair_id AS id, count(*)::int AS seen,
                   NULL::int[] AS minutes
               FROM notifications.sessions WHERE pair_id = ANY($1::text[]) GROUP BY pair_id
               UNION ALL
               SELECT 'programme', programme_id, NULL, reminder_minutes
               FROM notifications.programmes WHERE programme_id = ANY($2::text[])""",
            list(set(pair_ids)),
            list(set(programme_ids)),
        )
        seen = {r["id"]: r["seen"] for r in rows if r["kind"] == "pair"}
        minutes = {
            r["id"]: None if r["minutes"] is None else list(r["minutes"])
            for r in rows
            if r["kind"] == "programme"
        }
        return SeriesProgress(seen, minutes)

    async def record_outcome(self, session_id: str, status: str) -> bool:
        """A scheduled session took place or was missed; False if unknown or not scheduled."""
        result = await self._conn.execute(
            """UPDATE notifications.sessions SET status = $2
               WHERE session_id = $1 AND status = 'scheduled'""",
            session_id,
            status,
        )
        return bool(result != "UPDATE 0")

    async def sessions_seen(self, pair_id: str) -> int:
        return int(
            await self._conn.fetchval(
                "SELECT count(*) FROM notifications.sessions WHERE pair_id = $1", pair_id
            )
        )

    async def sessions_of_pairs(self, pair_ids: Iterable[str]) -> dict[str, list[Session]]:
        rows = await self._conn.fetch(
            """SELECT * FROM notifications.sessions WHERE pair_id = ANY($1::text[])
               ORDER BY pair_id, sequence""",
            list(set(pair_ids)),
        )
        found: dict[str, list[Session]] = {}
        for row in rows:
            found.setdefault(row["pair_id"], []).append(_session(row))
        return found

    async def future_sessions_of_programme(
        self, programme_id: str, now: datetime
    ) -> list[tuple[Session, str]]:
        """Scheduled sessions still ahead, with the id of the event that set their time."""
        rows = await self._conn.fetch(
            """SELECT * FROM notifications.sessions
               WHERE programme_id = $1 AND status = 'scheduled' AND starts_at > $2""",
            programme_id,
            now,
        )
        return [(_session(r), r["cause_id"]) for r in rows]

    # ------------------------------------------------------------------ messages (handlers)

    async def add_message(self, message: NewMessage, now: datetime) -> bool:
        """Record a message once per id; True when it is new."""
        return await self.add_messages([message], now) > 0

    async def add_messages(self, messages: Sequence[NewMessage], now: datetime) -> int:
        """Record messages once per id, in one statement; how many were new.

        The sender's wake-up is sent in the same round trip, only when a row is new.
        """
        if not messages:
            return 0
        columns = list(zip(*messages, strict=True))
        added = await self._conn.fetchval(
            """WITH added AS (
                   INSERT INTO notifications.messages (notification_id, template,
                       participant_id, partner_id, needs_partner, pair_id, session_id,
                       cause_id, due_at, group_key, details, created_at, traceparent)
                   SELECT m.notification_id, m.template, m.participant_id, m.partner_id,
                          m.needs_partner, m.pair_id, m.session_id, m.cause_id, m.due_at,
                          m.group_key, m.details::jsonb, $13, m.traceparent
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[],
                               $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                               $10::text[], $11::text[], $12::text[])
                        AS m(notification_id, template, participant_id, partner_id,
                             needs_partner, pair_id, session_id, cause_id, due_at,
                             group_key, details, traceparent)
                   ON CONFLICT (notification_id) DO NOTHING
                   RETURNING true),
               woken AS (SELECT (SELECT true FROM pg_notify($14, '')) AS sent FROM added)
               SELECT count(*) FILTER (WHERE sent) FROM woken""",
            *columns[:10],
            [json.dumps(d or {}) for d in columns[10]],
            columns[11],
            now,
            DUE_CHANNEL,
        )
        return int(added or 0)

    async def drop_unsent(
        self, session_id: str, templates: Iterable[Template], now: datetime
    ) -> None:
        """Forget unsent, unclaimed messages about a session (its time or status changed)."""
        await self._conn.execute(
            """DELETE FROM notifications.messages
               WHERE session_id = $1 AND template = ANY($2::text[])
                 AND status = ANY($3::text[]) AND (lease_until IS NULL OR lease_until < $4)""",
            session_id,
            [t.value for t in templates],
            list(UNSENT),
            now,
        )

    async def drop_unsent_reminders_of_programme(self, programme_id: str, now: datetime) -> None:
        """Forget the programme's reminders still in the future; ones already due stay due."""
        await self._conn.execute(
            """DELETE FROM notifications.messages m USING notifications.sessions s
               WHERE m.session_id = s.session_id AND s.programme_id = $1
                 AND m.template = 'reminder' AND m.status = ANY($2::text[])
                 AND m.due_at > $3
                 AND (m.lease_until IS NULL OR m.lease_until < $3)""",
            programme_id,
            list(UNSENT),
            now,
        )

    async def booking_went_out(self, pair_id: str, participant_id: str, now: datetime) -> bool:
        """Whether the booking email to this person was sent or is being sent."""
        return bool(
            await self._conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM notifications.messages
                   WHERE pair_id = $1 AND participant_id = $2 AND template = 'booking'
                     AND (status IN ('sent', 'sending')
                          OR (status = 'pending' AND lease_until > $3)))""",
                pair_id,
                participant_id,
                now,
            )
        )

    async def open_group(self, participant_id: str, group_key: str, now: datetime) -> str | None:
        """An unsent, unclaimed grouped message another session can still join."""
        value = await self._conn.fetchval(
            """SELECT notification_id FROM notifications.messages
               WHERE participant_id = $1 AND group_key = $2 AND status = ANY($3::text[])
                 AND (lease_until IS NULL OR lease_until < $4)
               ORDER BY created_at LIMIT 1 FOR UPDATE""",
            participant_id,
            group_key,
            list(UNSENT),
            now,
        )
        return None if value is None else str(value)

    async def join_group(self, notification_id: str, session_id: str) -> None:
        await self._conn.execute(
            """INSERT INTO notifications.message_sessions (notification_id, session_id)
               VALUES ($1, $2) ON CONFLICT DO NOTHING""",
            notification_id,
            session_id,
        )
        # A message about several sessions is about no single one (notification.sent rule).
        await self._conn.execute(
            """UPDATE notifications.messages SET session_id = NULL
               WHERE notification_id = $1 AND (SELECT count(*) FROM
                   notifications.message_sessions WHERE notification_id = $1) > 1""",
            notification_id,
        )

    async def release_waiting(self, participant_id: str, now: datetime) -> None:
        """Messages waiting for this person's details become due again."""
        await self.release_waiting_of([(participant_id, now)])

    async def release_waiting_of(self, arrivals: Sequence[tuple[str, datetime]]) -> None:
        """Messages waiting for the details of any of these people become due again, each
        no earlier than the first of its two people's arrivals (person, when) in the list."""
        if not arrivals:
            return
        released = await self._conn.fetchval(
            """WITH arrived AS (
                   SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS a(participant_id, at)),
               due AS (
                   SELECT notification_id, min(at) AS at FROM (
                       SELECT m.notification_id, a.at FROM notifications.messages m
                       JOIN arrived a ON a.participant_id = m.participant_id
                       WHERE m.status = 'waiting'
                       UNION ALL
                       SELECT m.notification_id, a.at FROM notifications.messages m
                       JOIN arrived a ON a.participant_id = m.partner_id
                       WHERE m.status = 'waiting') AS w
                   GROUP BY notification_id),
               released AS (
                   UPDATE notifications.messages m SET status = 'pending',
                       due_at = GREATEST(m.due_at, due.at)
                   FROM due WHERE m.notification_id = due.notification_id
                   RETURNING 1)
               SELECT count(*) FROM released""",
            [who for who, _ in arrivals],
            [at for _, at in arrivals],
        )
        if released:
            await self._conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)

    async def release_resolved_waiting(self, now: datetime, limit: int = 500) -> None:
        """A sweep for the rare wait recorded just as the awaited details arrived.

        Whether a message may go is decided by the one rule, `domain.rules.decide`: a waiting
        message is released when that rule would no longer make it wait.
        """
        rows = await self._conn.fetch(
            """SELECT * FROM notifications.messages WHERE status = 'waiting'
               ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
        if not rows:
            return
        waiting = [_message(r) for r in rows]
        contacts = await self.contacts(
            {m.participant_id for m in waiting} | {m.partner_id for m in waiting if m.partner_id}
        )
        resolved = [
            m.notification_id
            for m in waiting
            if decide(m, contacts.get(m.participant_id), contacts.get(m.partner_id or "")).verdict
            is not Verdict.WAIT
        ]
        if resolved:
            await self._conn.execute(
                """UPDATE notifications.messages SET status = 'pending',
                       due_at = GREATEST(due_at, $2)
                   WHERE notification_id = ANY($1::text[]) AND status = 'waiting'""",
                resolved,
                now,
            )
            await self._conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)

    async def skip_unsent_to(self, participant_id: str, why: str) -> None:
        await self._conn.execute(
            """UPDATE notifications.messages SET status = 'skipped', error = $2
               WHERE participant_id = $1 AND status = ANY($3::text[])""",
            participant_id,
            why,
            list(UNSENT),
        )

    # ------------------------------------------------------------------ messages (sender)

    async def claim_due(
        self, now: datetime, lease: timedelta, limit: int, holder: str
    ) -> list[Message]:
        """Lease due messages no other instance holds (SKIP LOCKED), oldest first."""
        rows = await self._conn.fetch(
            """UPDATE notifications.messages m SET lease_until = $2, lease_holder = $4
               WHERE notification_id IN (
                   SELECT notification_id FROM notifications.messages
                   WHERE status = 'pending' AND due_at <= $1
                     AND (lease_until IS NULL OR lease_until < $1)
                   ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
               RETURNING m.*""",
            now,
            now + lease,
            limit,
            holder,
        )
        return await self._messages(rows)

    async def _messages(self, rows: list[asyncpg.Record]) -> list[Message]:
        if not rows:
            return []
        grouped = await self._conn.fetch(
            """SELECT notification_id, session_id FROM notifications.message_sessions
               WHERE notification_id = ANY($1::text[]) ORDER BY session_id""",
            [r["notification_id"] for r in rows],
        )
        sessions: dict[str, list[str]] = {}
        for g in grouped:
            sessions.setdefault(g["notification_id"], []).append(g["session_id"])
        ordered = sorted(rows, key=lambda r: r["due_at"])
        return [_message(r, tuple(sessions.get(r["notification_id"], ()))) for r in ordered]

    async def settle_abandoned_sends(self, now: datetime) -> list[Message]:
        """Messages a dead sender was handing over (status 'sending', lease expired): the
        server most probably has them (docs/reliability.md: the hand-over window), so they
        are recorded as sent, with a note saying no reply was seen, and never sent again."""
        rows = await self._conn.fetch(
            """UPDATE notifications.messages m SET status = 'sent', sent_at = $1,
                   lease_until = NULL, lease_holder = NULL, attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, $1),
                   error = 'no reply recorded: its sender stopped mid hand-over'
               WHERE notification_id IN (
                   SELECT notification_id FROM notifications.messages
                   WHERE status = 'sending' AND lease_until < $1 FOR UPDATE SKIP LOCKED)
               RETURNING m.*""",
            now,
        )
        return await self._messages(rows)

    async def renew_leases(self, ids: list[str], holder: str, until: datetime) -> int:
        """Extend this holder's claims still open; returns how many it still holds."""
        result = await self._conn.execute(
            """UPDATE notifications.messages SET lease_until = $3
               WHERE notification_id = ANY($1::text[]) AND lease_holder = $2
                 AND status IN ('pending', 'sending')""",
            ids,
            holder,
            until,
        )
        return int(result.split()[-1])

    async def mark_sending(self, ids: list[str], holder: str, until: datetime) -> set[str]:
        """Record that these messages are being handed to the SMTP server; only the ones
        this holder still claims are marked (and returned)."""
        rows = await self._conn.fetch(
            """UPDATE notifications.messages SET status = 'sending', lease_until = $3
               WHERE notification_id = ANY($1::text[]) AND lease_holder = $2
                 AND status = 'pending'
               RETURNING notification_id""",
            ids,
            holder,
            until,
        )
        return {r["notification_id"] for r in rows}

    async def next_due(self) -> datetime | None:
        value = await self._conn.fetchval(
            """SELECT min(GREATEST(due_at, COALESCE(lease_until, due_at)))
               FROM notifications.messages WHERE status IN ('pending', 'sending')"""
        )
        return value if isinstance(value, datetime) else None

    async def mark_sent(self, ids: list[str], now: datetime, holder: str) -> set[str]:
        """Record deliveries; returns the ids this holder still held (the others were settled
        by another instance, which reported them)."""
        rows = await self._conn.fetch(
            """UPDATE notifications.messages SET status = 'sent', sent_at = $2,
                   lease_until = NULL, lease_holder = NULL, attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, $2), error = NULL
               WHERE notification_id = ANY($1::text[]) AND lease_holder = $3
                 AND status IN ('pending', 'sending')
               RETURNING notification_id""",
            ids,
            now,
            holder,
        )
        return {r["notification_id"] for r in rows}

    async def mark_failed(
        self, notification_id: str, error: str, now: datetime, holder: str
    ) -> bool:
        result = await self._conn.execute(
            """UPDATE notifications.messages SET status = 'failed', error = $2,
                   lease_until = NULL, lease_holder = NULL, attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, $3)
               WHERE notification_id = $1 AND lease_holder = $4
                 AND status IN ('pending', 'sending')""",
            notification_id,
            error,
            now,
            holder,
        )
        return bool(result != "UPDATE 0")

    async def mark_retry(
        self, notification_id: str, error: str, now: datetime, due_at: datetime, holder: str
    ) -> None:
        # 'sending' goes back to 'pending': the server answered the end of data with a
        # temporary refusal, so it did not take the message.
        await self._conn.execute(
            """UPDATE notifications.messages SET status = 'pending', due_at = $4, error = $2,
                   lease_until = NULL, lease_holder = NULL, attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, $3)
               WHERE notification_id = $1 AND lease_holder = $5
                 AND status IN ('pending', 'sending')""",
            notification_id,
            error,
            now,
            due_at,
            holder,
        )

    async def release(self, ids: list[str], holder: str) -> None:
        """Give up claims on messages not handed over, so they are sent again soon; one whose
        'sending' mark was committed though the hand-over then failed (its end of data never
        written) goes back to 'pending'."""
        await self._conn.execute(
            """UPDATE notifications.messages SET lease_until = NULL, lease_holder = NULL,
                   status = 'pending'
               WHERE notification_id = ANY($1::text[]) AND lease_holder = $2
                 AND status IN ('pending', 'sending')""",
            ids,
            holder,
        )

    async def mark(self, notification_id: str, status: str, why: str, holder: str) -> None:
        """Set a message aside: waiting for details, or skipped (never reported as failed)."""
        await self._conn.execute(
            """UPDATE notifications.messages SET status = $2, error = $3, lease_until = NULL,
                   lease_holder = NULL
               WHERE notification_id = $1 AND status = 'pending' AND lease_holder = $4""",
            notification_id,
            status,
            why,
            holder,
        )

    async def notifications_of(self, participant_id: str) -> list[dict[str, Any]]:
        rows = await self._conn.fetch(
            """SELECT notification_id, template, sent_at, session_id,
                   -- a message being handed over is still pending to the reader
                   CASE status WHEN 'sending' THEN 'pending' ELSE status END AS status
               FROM notifications.messages WHERE participant_id = $1
               ORDER BY COALESCE(sent_at, created_at) DESC, created_at DESC, notification_id""",
            participant_id,
        )
        return [dict(r) for r in rows]
