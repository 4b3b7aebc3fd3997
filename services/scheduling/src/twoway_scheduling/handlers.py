"""One function per consumed event type, each inside the unit of work the platform opens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from twoway_shared.contract import (
    Event,
    PairConfirmed,
    PairEnded,
    ParticipantProfile,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    Ratings,
    SessionAttendanceRecorded,
    SessionBookingFailed,
    SessionCancelled,
    SessionCompleted,
    SessionMissed,
    SessionRequestRejected,
    SessionRescheduled,
    SessionRescheduleRequested,
    SessionScheduled,
    Topic,
)
from twoway_shared.contract.values import pair_members
from twoway_shared.enrolment import Enrolment, decide_withdrawal, profile_applies
from twoway_shared.ids import StableIds
from twoway_shared.platform.uow import UnitOfWork
from twoway_shared.wallclock import Window

from twoway_scheduling.domain.model import Person, SeriesRules
from twoway_scheduling.domain.requests import attendance_refusal, outcome, reschedule_refusal
from twoway_scheduling.domain.slots import (
    SEARCH_WEEKS,
    SlotFinder,
    find_move,
    plan_series,
    refit_session,
)
from twoway_scheduling.storage import Pair, Participant, Session, Storage

CancelReason = Literal["pair_ended", "participant_withdrawn", "no_slot"]
MoveReason = Literal["requested", "availability_changed"]

# Ids derived from what they name, so a replay or redelivery produces the same ids.
stable_id = StableIds("3f1c9a0e-5b7d-4e8a-9c61-2d4f6b8e0a17")


def session_id_for(pair_id: str, sequence: int) -> str:
    return stable_id("session", pair_id, sequence)


def person_of(profile: ParticipantProfile) -> Person:
    windows = sorted(Window(w.weekday, w.start_minute, w.end_minute) for w in profile.availability)
    return Person(profile.timezone, tuple(dict.fromkeys(windows)))


# ---------------------------------------------------------------- programmes


async def on_programme_configured(event: Event[ProgrammeConfigured], uow: UnitOfWork) -> None:
    data = event.data
    starts_on = data.starts_on if data.starts_on is not None else uow.now.astimezone(UTC).date()
    rules = SeriesRules(
        session_minutes=data.session_minutes,
        cadence=data.cadence,
        sessions=data.sessions,
        starts_on=starts_on,
        min_notice_hours=data.min_notice_hours,
    )
    await Storage(uow.conn).save_programme(data.programme_id, rules, starts_on)


# ---------------------------------------------------------------- enrolments


async def on_profile(event: Event[ParticipantProfile], uow: UnitOfWork) -> None:
    """`participant.enrolled` and `participant.updated`: upsert, refit, book waiting pairs."""
    data, store = event.data, Storage(uow.conn)
    existing = (await store.lock_participants([data.participant_id])).get(data.participant_id)
    if not profile_applies(None if existing is None else _enrolment(existing), event.type, data):
        return  # stale, or withdrawn until a newer enrolment
    person = person_of(data)
    await store.save_participant(
        data.participant_id, data.programme_id, data.role, person, data.revision, False
    )
    if existing is not None and existing.person is not None and existing.person != person:
        await _refit_future_sessions(store, uow, data.participant_id)
    pairs = await store.active_pairs_of(data.participant_id)
    await _book(store, [(pair, uow) for pair in pairs if pair.status == "waiting"])


def _enrolment(p: Participant) -> Enrolment:
    return Enrolment.stored(p.programme_id, p.role, p.revision, p.withdrawn)


async def on_withdrawn(event: Event[ParticipantWithdrawn], uow: UnitOfWork) -> None:
    data, store = event.data, Storage(uow.conn)
    existing = (await store.lock_participants([data.participant_id])).get(data.participant_id)
    decide_withdrawal(
        None if existing is None else _enrolment(existing),
        participant_id=data.participant_id,
        programme_id=data.programme_id,
    ).applies()
    await store.withdraw_participant(data.participant_id, data.programme_id)
    for pair in await store.active_pairs_of(data.participant_id):
        await _end_pair(store, uow, pair, "participant_withdrawn")
    if data.erase:
        await store.erase_participant(data.participant_id)


# ---------------------------------------------------------------- pairs


async def on_pairs_confirmed(items: Sequence[tuple[Event[PairConfirmed], UnitOfWork]]) -> None:
    """A run of `pair.confirmed` (a batch handler): record the new pairs, book those ready."""
    store = Storage(items[0][1].conn)
    pairs = [(_waiting(event.data), uow) for event, uow in items]
    added = await store.add_pairs([pair for pair, _ in pairs])
    new: list[tuple[Pair, UnitOfWork]] = []
    for pair, uow in pairs:
        if pair.pair_id in added:  # else known already: a replay or a late confirmation
            added.discard(pair.pair_id)  # a second confirmation in the run is one too
            new.append((pair, uow))
    await _book(store, new)


def _waiting(data: PairConfirmed) -> Pair:
    return Pair(data.pair_id, data.programme_id, data.mentor_id, data.mentee_id, "waiting")


async def on_pair_ended(event: Event[PairEnded], uow: UnitOfWork) -> None:
    data, store = event.data, Storage(uow.conn)
    pair = await store.lock_pair(data.pair_id)
    if pair is None:  # ended before scheduling saw it confirmed: never book it
        await store.add_pair(
            Pair(data.pair_id, data.programme_id, data.mentor_id, data.mentee_id, "ended")
        )
    elif pair.status != "ended":  # else a withdrawal got there first: nothing left to do
        await _end_pair(store, uow, pair, "pair_ended")


async def _book(store: Storage, pairs: Sequence[tuple[Pair, UnitOfWork]]) -> None:
    """Book the series of waiting pairs whose both profiles are known, in the given order.

    Four round trips however many pairs: their people (locked, in id order, so instances
    never deadlock), the programmes' rules, the people's busy times (read once the locks are
    held), then all sessions and the pairs' new statuses. Each planned series is added to
    both people's busy times, so a mentor with several new pairs is never double-booked.
    """
    if not pairs:
        return
    people = await store.lock_participants(
        sorted({who for pair, _ in pairs for who in (pair.mentor_id, pair.mentee_id)})
    )
    rules_of = await store.rules_of({pair.programme_id for pair, _ in pairs})
    statuses: dict[str, str] = {}
    ready: list[tuple[Pair, UnitOfWork, Person, Person]] = []
    for pair, uow in pairs:
        mentor, mentee = people.get(pair.mentor_id), people.get(pair.mentee_id)
        if mentor is None or mentee is None:
            continue  # kept waiting: the other profile arrives on another topic
        if mentor.withdrawn or mentee.withdrawn:
            statuses[pair.pair_id] = "ended"
        elif mentor.person is not None and mentee.person is not None:
            ready.append((pair, uow, mentor.person, mentee.person))
    busy: dict[str, list[tuple[datetime, datetime]]] = {}
    if ready:
        busy = await store.busy_of(
            sorted({who for pair, *_ in ready for who in (pair.mentor_id, pair.mentee_id)}),
            min(uow.now for _, uow, *_ in ready),
        )
    sessions: list[Session] = []
    for pair, uow, mentor_person, mentee_person in ready:
        series = _plan(pair, uow, mentor_person, mentee_person, rules_of[pair.programme_id], busy)
        for member in (pair.mentor_id, pair.mentee_id):
            busy.setdefault(member, []).extend((s.starts_at, s.ends_at) for s in series)
        sessions.extend(series)
        statuses[pair.pair_id] = "booked"
    if statuses:
        await store.book(sessions, statuses)


def _plan(
    pair: Pair,
    uow: UnitOfWork,
    mentor: Person,
    mentee: Person,
    rules: SeriesRules,
    busy: dict[str, list[tuple[datetime, datetime]]],
) -> list[Session]:
    """Plan one pair's series around both people's busy times; emit its events."""
    plan = plan_series(
        mentor,
        mentee,
        rules,
        uow.now,
        [*busy.get(pair.mentor_id, ()), *busy.get(pair.mentee_id, ())],
    )
    length = timedelta(minutes=rules.session_minutes)
    sessions = [
        Session(
            session_id=session_id_for(pair.pair_id, sequence),
            **pair_members(pair),
            sequence=sequence,
            total=rules.sessions,
            starts_at=start,
            ends_at=start + length,
            revision=0,
            status="scheduled",
        )
        for sequence, start in enumerate(plan.starts, start=1)
    ]
    for session in sessions:
        # Not validated again: the fields are the planner's (whole-minute UTC starts inside
        # the series, ends after them) and the pair's, validated when the pair came in.
        uow.emit(
            Topic.SESSIONS,
            SessionScheduled.model_construct(
                session_id=session.session_id,
                **pair_members(session),
                sequence=session.sequence,
                total=session.total,
                starts_at=session.starts_at,
                ends_at=session.ends_at,
                revision=session.revision,
            ),
            event_id=stable_id(session.session_id, 0, "scheduled"),
        )
    if plan.failure is not None:
        uow.emit(
            Topic.SESSIONS,
            SessionBookingFailed(
                **pair_members(pair),
                booked=len(sessions),
                total=rules.sessions,
                reason=plan.failure,
            ),
            event_id=stable_id(pair.pair_id, "booking_failed"),
        )
    return sessions


async def _end_pair(store: Storage, uow: UnitOfWork, pair: Pair, reason: CancelReason) -> None:
    await store.set_pair_status(pair.pair_id, "ended")
    for session in await store.future_sessions_of_pair(pair.pair_id, uow.now):
        await _cancel(store, uow, session, reason)


async def _cancel(store: Storage, uow: UnitOfWork, session: Session, reason: CancelReason) -> None:
    await store.cancel_session(session.session_id)
    revision = session.revision + 1
    uow.emit(
        Topic.SESSIONS,
        SessionCancelled(
            **session.event_fields(),
            revision=revision,
            reason=reason,
        ),
        event_id=stable_id(session.session_id, revision, "cancelled"),
    )


async def _move(
    store: Storage, uow: UnitOfWork, session: Session, starts_at: datetime, reason: MoveReason
) -> None:
    ends_at = starts_at + (session.ends_at - session.starts_at)
    await store.move_session(session.session_id, starts_at, ends_at)
    revision = session.revision + 1
    fields = session.event_fields(booked=True) | {
        "starts_at": starts_at,
        "ends_at": ends_at,
        "revision": revision,
    }
    uow.emit(
        Topic.SESSIONS,
        SessionRescheduled(
            **fields,
            previous_starts_at=session.starts_at,
            reason=reason,
        ),
        event_id=stable_id(session.session_id, revision, "rescheduled"),
    )


async def _finder_for(
    store: Storage, uow: UnitOfWork, session: Session
) -> tuple[SlotFinder, set[date]] | None:
    """A slot finder for moving `session`, and the mentee-local weeks its pair already uses."""
    people = await store.lock_participants([session.mentor_id, session.mentee_id])
    mentor, mentee = _person(people, session.mentor_id), _person(people, session.mentee_id)
    if mentor is None or mentee is None:
        return None
    busy = await store.busy(
        [session.mentor_id, session.mentee_id], uow.now, except_session=session.session_id
    )
    finder = SlotFinder(mentor, mentee, session.minutes, busy)
    others = await store.pair_session_starts(session.pair_id, session.session_id)
    return finder, {finder.week_of(start) for start in others}


def _person(people: dict[str, Participant], participant_id: str) -> Person | None:
    participant = people.get(participant_id)
    return None if participant is None else participant.person


async def _refit_future_sessions(store: Storage, uow: UnitOfWork, participant_id: str) -> None:
    """After a timezone or availability change, move or cancel sessions that no longer fit."""
    for session in await store.future_sessions_of(participant_id, uow.now):
        found = await _finder_for(store, uow, session)
        if found is None:
            continue
        finder, pair_weeks = found
        rules = await store.programme_rules(session.programme_id)
        refit = refit_session(
            finder,
            session.starts_at,
            uow.now + rules.min_notice,
            pair_weeks,
        )
        if refit.action == "move" and refit.starts_at is not None:
            await _move(store, uow, session, refit.starts_at, "availability_changed")
        elif refit.action == "cancel":
            await _cancel(store, uow, session, "no_slot")


# ---------------------------------------------------------------- session requests


def _reject(
    uow: UnitOfWork,
    event: Event[SessionRescheduleRequested] | Event[SessionAttendanceRecorded],
    requested_by: str,
    request: Literal["reschedule", "attendance"],
    reason: str,
) -> None:
    data = event.data
    uow.emit(
        Topic.SESSIONS,
        SessionRequestRejected(
            session_id=data.session_id,
            pair_id=data.pair_id,
            requested_by=requested_by,
            request=request,
            reason=reason,
        ),
        event_id=stable_id(event.source, event.id, "rejected"),
    )


async def on_reschedule_requested(
    event: Event[SessionRescheduleRequested], uow: UnitOfWork
) -> None:
    data, store = event.data, Storage(uow.conn)
    session = await store.lock_session(data.session_id)
    rules = None if session is None else await store.programme_rules(session.programme_id)
    refusal = reschedule_refusal(
        session,
        session_id=data.session_id,
        pair_id=data.pair_id,
        requested_by=data.requested_by,
        now=uow.now,
        min_notice_hours=rules.min_notice_hours if rules else 0,
    )
    if refusal is not None or session is None or rules is None:
        return _reject(uow, event, data.requested_by, "reschedule", refusal or "")
    earliest = uow.now + rules.min_notice
    found = await _finder_for(store, uow, session)
    new_start = None
    if found is not None:
        finder, pair_weeks = found
        not_before = max(earliest, data.not_before) if data.not_before else earliest
        new_start = find_move(finder, session.starts_at, not_before, pair_weeks)
    if new_start is None:
        return _reject(
            uow,
            event,
            data.requested_by,
            "reschedule",
            f"No other time in the {SEARCH_WEEKS} weeks searched fits both people's "
            "availability without clashing with another session or a week that already "
            "holds one of this pair's sessions; the session stays at its current time.",
        )
    await _move(store, uow, session, new_start, "requested")


async def on_attendance_recorded(event: Event[SessionAttendanceRecorded], uow: UnitOfWork) -> None:
    data, store = event.data, Storage(uow.conn)
    session = await store.lock_session(data.session_id)
    refusal = attendance_refusal(
        session,
        session_id=data.session_id,
        pair_id=data.pair_id,
        participant_id=data.participant_id,
    )
    if refusal is not None or session is None:
        return _reject(uow, event, data.participant_id, "attendance", refusal or "")
    if session.status != "scheduled":
        return  # the outcome is published; later records have no effect
    await store.record_attendance(
        session.session_id, data.participant_id, data.attended, data.rating
    )
    records = await store.attendance(session.session_id)
    result = outcome(records.get(session.mentor_id), records.get(session.mentee_id))
    if result is None:
        return
    await store.set_outcome(session.session_id, result.status)
    event_id = stable_id(session.session_id, "outcome")
    if result.status == "completed":
        uow.emit(
            Topic.SESSIONS,
            SessionCompleted(
                **session.event_fields(),
                minutes=session.minutes,
                ratings=Ratings(mentor=result.mentor_rating, mentee=result.mentee_rating),
            ),
            event_id=event_id,
        )
    else:
        uow.emit(
            Topic.SESSIONS,
            SessionMissed(**session.event_fields(), absent=list(result.absent)),
            event_id=event_id,
        )
