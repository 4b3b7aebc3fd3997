"""One function per consumed event type, each inside the unit of work the platform opens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Applied:
    """A profile record that applies: its unit of work, and the person before and after it."""

    uow: UnitOfWork
    before: Participant | None
    after: Participant


async def on_profiles(items: Sequence[tuple[Event[ParticipantProfile], UnitOfWork]]) -> None:
    """`participant.enrolled` and `participant.updated`, a run at once (a batch handler; a
    record alone is a run of one): upsert, refit, book waiting pairs, in record order.

    The rule is applied to the run's records in memory, one after another, from the people's
    rows read and locked in one statement; then one upsert of the final rows and one booking
    of the pairs the run makes bookable, each booked by the record that made it bookable with
    the people as they were then. A record that changes the times of a person with future
    sessions (or pairs waiting to be booked) is applied on its own, its sessions refitted as
    they would be one record at a time.
    """
    store = Storage(items[0][1].conn)
    known = dict(
        await store.lock_participants(sorted({event.data.participant_id for event, _ in items}))
    )
    applied: list[_Applied] = []
    booked: set[str] | None = None  # people who have or may get sessions to refit
    for event, uow in items:
        data = event.data
        existing = known.get(data.participant_id)
        if not profile_applies(
            None if existing is None else _enrolment(existing), event.type, data
        ):
            continue  # stale, or withdrawn until a newer enrolment
        person = person_of(data)
        after = Participant(
            data.participant_id, data.programme_id, data.role, data.revision, False, person
        )
        known[data.participant_id] = after
        moved = existing is not None and existing.person is not None and existing.person != person
        if moved and booked is None:  # read once, when a run first changes someone's times
            # Everyone in the run, not only those known so far: someone new later in the run
            # may complete a waiting pair and then change their times, as one at a time would
            # book and then refit.
            booked = await store.may_have_sessions(
                sorted({e.data.participant_id for e, _ in items}), min(u.now for _, u in items)
            )
        if moved and booked is not None and data.participant_id in booked:
            await _apply_profiles(store, applied)
            await _apply_profiles(store, [_Applied(uow, existing, after)], refit=True)
            applied = []
        else:
            applied.append(_Applied(uow, existing, after))
    await _apply_profiles(store, applied)


async def _apply_profiles(
    store: Storage, applied: Sequence[_Applied], *, refit: bool = False
) -> None:
    """Store the profiles (the last of each person), refit the sessions of a lone `refit`
    record, then book the waiting pairs of their people that became bookable."""
    if not applied:
        return
    await store.save_participants(list({a.after.participant_id: a.after for a in applied}.values()))
    if refit:
        (only,) = applied
        await _refit_future_sessions(store, only.uow, only.after.participant_id)
    waiting = await store.waiting_pairs_of(sorted({a.after.participant_id for a in applied}))
    if not waiting:
        return
    stored = await store.lock_participants(
        sorted({who for pair in waiting for who in (pair.mentor_id, pair.mentee_id)})
    )
    of_person: dict[str, list[Pair]] = {}
    for pair in waiting:
        for who in (pair.mentor_id, pair.mentee_id):
            of_person.setdefault(who, []).append(pair)
    # The people of the records as they were before the first of them, then record by record.
    as_of: dict[str, Participant | None] = {}
    for a in applied:
        as_of.setdefault(a.after.participant_id, a.before)
    settled: set[str] = set()
    bookable: list[_Bookable] = []
    for a in applied:
        as_of[a.after.participant_id] = a.after
        for pair in of_person.get(a.after.participant_id, ()):
            if pair.pair_id in settled:
                continue
            mentor, mentee = (
                as_of[who] if who in as_of else stored.get(who)
                for who in (pair.mentor_id, pair.mentee_id)
            )
            if booking_of(mentor, mentee) != "wait":
                settled.add(pair.pair_id)
                bookable.append((pair, a.uow, mentor, mentee))
    await _settle(store, bookable)


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


_Bookable = tuple[Pair, UnitOfWork, Participant | None, Participant | None]
"""A waiting pair, the unit of work it is booked in, and its two people as stored then."""


def booking_of(
    mentor: Participant | None, mentee: Participant | None
) -> Literal["wait", "end"] | tuple[Person, Person]:
    """What becomes of a waiting pair with these two people: it waits, ends, or is booked
    around the two persons given."""
    if mentor is None or mentee is None:
        return "wait"  # the other profile arrives on another topic
    if mentor.withdrawn or mentee.withdrawn:
        return "end"
    if mentor.person is not None and mentee.person is not None:
        return (mentor.person, mentee.person)
    return "wait"


async def _book(store: Storage, pairs: Sequence[tuple[Pair, UnitOfWork]]) -> None:
    """Book the series of waiting pairs whose both profiles are known, in the given order.

    Their people are locked in id order, so instances never deadlock.
    """
    if not pairs:
        return
    people = await store.lock_participants(
        sorted({who for pair, _ in pairs for who in (pair.mentor_id, pair.mentee_id)})
    )
    await _settle(
        store,
        [
            (pair, uow, people.get(pair.mentor_id), people.get(pair.mentee_id))
            for pair, uow in pairs
        ],
    )


async def _settle(store: Storage, pairs: Sequence[_Bookable]) -> None:
    """Book or end waiting pairs, in the given order, with the people given.

    Three round trips however many pairs: the programmes' rules, the people's busy times
    (read once their locks are held), then all sessions and the pairs' new statuses. Each
    planned series is added to both people's busy times, so a mentor with several new pairs
    is never double-booked.
    """
    if not pairs:
        return
    rules_of = await store.rules_of({pair.programme_id for pair, *_ in pairs})
    statuses: dict[str, str] = {}
    ready: list[tuple[Pair, UnitOfWork, Person, Person]] = []
    for pair, uow, mentor, mentee in pairs:
        verdict = booking_of(mentor, mentee)
        if isinstance(verdict, tuple):
            ready.append((pair, uow, *verdict))
        elif verdict == "end":
            statuses[pair.pair_id] = "ended"
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
