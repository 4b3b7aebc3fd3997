"""One function per consumed event type, each inside the unit of work the platform opens."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from twoway_shared.contract import (
    Event,
    PairConfirmed,
    PairEnded,
    ParticipantProfile,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    SessionBookingFailed,
    SessionCancelled,
    SessionCompleted,
    SessionMissed,
    SessionScheduled,
    Topic,
)
from twoway_shared.contract.events import (
    CreditAwarded,
    PairCompleted,
    PairGoalsSet,
    PairHealthChanged,
    PairRematchRequested,
    SessionFeedbackSubmitted,
)
from twoway_shared.contract.values import pair_members
from twoway_shared.enrolment import Enrolment, after_withdrawal, decide_withdrawal, profile_applies
from twoway_shared.errors import Rejected
from twoway_shared.ids import StableIds
from twoway_shared.platform.uow import UnitOfWork

from twoway_progress.domain import rules as r
from twoway_progress.domain.model import PairState, Role, Rules
from twoway_progress.domain.xapi import Attended, CompletedCredit
from twoway_progress.storage import Credit, Pair, Participant, Storage

# Ids derived from what they name, so a replay or redelivery produces the same ids.
stable_id = StableIds("5d2a8c4e-7f13-4b6a-8e90-1c3b5d7f9a2e")


def credit_id_for(pair_id: str, participant_id: str) -> str:
    """The same pair and person always give the same credit id."""
    return stable_id("credit", pair_id, participant_id)


# ---------------------------------------------------------------- programmes and people


async def on_programme_configured(event: Event[ProgrammeConfigured], uow: UnitOfWork) -> None:
    data, store = event.data, Storage(uow.conn)
    settings = data.progress
    rules = Rules(
        fit_check=settings.fit_check,
        inactive_warning_days=settings.inactive_warning_days,
        inactive_close_days=settings.inactive_close_days,
        credit_minutes=settings.credit_minutes,
    )
    await store.save_programme(data.programme_id, data.name, rules)
    await store.recheck_programme(data.programme_id, uow.now)


async def on_profile(event: Event[ParticipantProfile], uow: UnitOfWork) -> None:
    """`participant.enrolled` and `participant.updated`: keep the role and the display name."""
    data, store = event.data, Storage(uow.conn)
    existing = await store.lock_participant(data.participant_id)
    if not profile_applies(None if existing is None else _enrolment(existing), event.type, data):
        return  # stale, or withdrawn until a newer enrolment
    await store.save_participant(
        data.participant_id, data.programme_id, data.role, data.display_name, data.revision
    )


def _enrolment(p: Participant) -> Enrolment:
    return Enrolment.stored(p.programme_id, p.role, p.revision, p.withdrawn)


async def on_withdrawn(event: Event[ParticipantWithdrawn], uow: UnitOfWork) -> None:
    """The pairs end with matching's `pair.ended`; with `erase`, the person's text goes now."""
    data, store = event.data, Storage(uow.conn)
    existing = await store.lock_participant(data.participant_id)
    stored = None if existing is None else _enrolment(existing)
    decide_withdrawal(
        stored, participant_id=data.participant_id, programme_id=data.programme_id
    ).applies()
    kept = after_withdrawal(stored, data.programme_id)
    await store.withdraw_participant(data.participant_id, kept.programme_id, kept.revision)
    if data.erase:
        await store.erase_participant(data.participant_id)


# ---------------------------------------------------------------- pairs and sessions


async def _pair_of(store: Storage, data: Any) -> Pair:
    """The pair an event names, added from the event's own fields when new, locked."""
    return await store.lock_or_add_pair(
        data.pair_id, data.programme_id, data.mentor_id, data.mentee_id
    )


async def on_pair_confirmed(event: Event[PairConfirmed], uow: UnitOfWork) -> None:
    store = Storage(uow.conn)
    await reassess(store, uow, await _pair_of(store, event.data))


async def on_pair_ended(event: Event[PairEnded], uow: UnitOfWork) -> None:
    """Timers stop; nothing more is assessed or awarded for an ended pair."""
    store = Storage(uow.conn)
    pair = await _pair_of(store, event.data)
    if pair.active:
        await store.end_pair(pair.pair_id, event.data.reason)


async def on_session_scheduled(event: Event[SessionScheduled], uow: UnitOfWork) -> None:
    """`session.scheduled` and `session.rescheduled`: the session's current time."""
    data, store = event.data, Storage(uow.conn)
    pair = await _pair_of(store, data)
    pair = await store.set_series(pair.pair_id, total=data.total, booked=None)
    await store.save_session_time(
        data.session_id, data.pair_id, data.sequence, data.starts_at, data.ends_at
    )
    await reassess(store, uow, pair)


async def on_session_status(
    event: Event[SessionCancelled] | Event[SessionMissed], uow: UnitOfWork
) -> None:
    """`session.cancelled` and `session.missed`: the session's status, the pair reassessed."""
    data, store = event.data, Storage(uow.conn)
    pair = await _pair_of(store, data)
    status = event.type.removeprefix("session.")
    await store.save_session_status(data.session_id, data.pair_id, data.sequence, status)
    await reassess(store, uow, pair)


async def on_session_completed(event: Event[SessionCompleted], uow: UnitOfWork) -> None:
    data, store = event.data, Storage(uow.conn)
    pair = await _pair_of(store, data)
    ends_at = await store.save_session_status(
        data.session_id, data.pair_id, data.sequence, "completed", data.minutes
    )
    facts = [
        Attended(
            participant_id=participant_id,
            session_id=data.session_id,
            pair_id=data.pair_id,
            programme_id=data.programme_id,
            sequence=data.sequence,
            minutes=data.minutes,
            ended_at=ends_at or uow.now,
        )
        for participant_id in (data.mentor_id, data.mentee_id)
    ]
    await store.enqueue_statements(
        "attended", [(f.statement_id, _fact_json(f)) for f in facts], uow.now
    )
    await reassess(store, uow, pair)


async def on_booking_failed(event: Event[SessionBookingFailed], uow: UnitOfWork) -> None:
    data, store = event.data, Storage(uow.conn)
    pair = await _pair_of(store, data)
    pair = await store.set_series(pair.pair_id, total=data.total, booked=data.booked)
    await reassess(store, uow, pair)


# ---------------------------------------------------------------- feedback and goals


async def _member_pair(store: Storage, pair_id: str, participant_id: str) -> tuple[Pair, Role]:
    pair = await store.lock_pair(pair_id)
    if pair is None:
        raise Rejected(f"pair {pair_id} is not known to progress (no confirmed pair by that id)")
    if participant_id == pair.mentor_id:
        return pair, "mentor"
    if participant_id == pair.mentee_id:
        return pair, "mentee"
    raise Rejected(f"participant {participant_id} is not one of the two people of pair {pair_id}")


async def on_feedback_submitted(event: Event[SessionFeedbackSubmitted], uow: UnitOfWork) -> None:
    data, store = event.data, Storage(uow.conn)
    pair, role = await _member_pair(store, data.pair_id, data.participant_id)
    found = await store.session(data.session_id)
    if found is None or found[0] != data.pair_id:
        raise Rejected(f"session {data.session_id} is not a session of pair {data.pair_id}")
    session = found[1]
    started = session.has_outcome or (
        session.starts_at is not None and session.starts_at <= uow.now
    )
    if not started:
        raise Rejected(f"session {data.session_id} has not started yet; feedback comes after it")
    person = await store.participant(data.participant_id)
    if person is not None and person.erased:
        return  # an erased person's late feedback is not kept
    await store.save_feedback(
        session_id=data.session_id,
        participant_id=data.participant_id,
        pair_id=data.pair_id,
        programme_id=pair.programme_id,
        role=role,
        sequence=session.sequence,
        rating=data.rating,
        learned=data.learned,
        fit=data.fit,
        comment=data.comment,
        now=uow.now,
    )
    await reassess(store, uow, pair)


async def on_goals_set(event: Event[PairGoalsSet], uow: UnitOfWork) -> None:
    data, store = event.data, Storage(uow.conn)
    await _member_pair(store, data.pair_id, data.participant_id)
    person = await store.participant(data.participant_id)
    if person is not None and person.erased:
        return
    goals = list(dict.fromkeys((g.tag, g.note) for g in data.goals))
    await store.replace_goals(data.pair_id, data.participant_id, goals)


# ---------------------------------------------------------------- assessment


async def reassess(store: Storage, uow: UnitOfWork, pair: Pair) -> None:
    """Apply every rule to the pair as it is now: health, fit check, close, completion, timer."""
    if not pair.active or pair.completed_at is not None:
        return
    rules, state = await store.assessment_inputs(pair)
    now = uow.now
    health = r.assess(state, rules, now)
    if (health.health, health.reasons) != (pair.health, pair.reasons):
        uow.emit(
            Topic.PROGRESS,
            PairHealthChanged(
                **pair_members(pair),
                health=health.health,
                reasons=list(health.reasons),
                sessions_completed=sum(s.status == "completed" for s in state.sessions),
                sessions_missed=sum(s.status == "missed" for s in state.sessions),
                last_activity_at=r.last_completed_end(state),
            ),
        )
    rematch = pair.rematch_requested
    if rematch is None and r.not_a_fit(state, rules):
        rematch = "not_a_fit"
    elif rematch is None and health.health == "inactive" and r.due_for_close(state, rules, now):
        rematch = "inactive"
    if rematch is not None and pair.rematch_requested is None:
        # Never says who answered: the event is about the pair, its id about the pair only.
        uow.emit(
            Topic.PROGRESS,
            PairRematchRequested(
                **pair_members(pair),
                reason=rematch,
            ),
            event_id=stable_id(pair.pair_id, "rematch_requested"),
        )
    completed_at: datetime | None = None
    if rematch is None and r.is_complete(state):
        completed_at = now
        await _complete(store, uow, pair, state, rules)
    done = rematch is not None or completed_at is not None
    timer = None if done else r.next_check(state, rules, now)
    earlier = timer is not None and (pair.next_check_at is None or timer < pair.next_check_at)
    unchanged = (health.health, health.reasons, timer) == (
        pair.health,
        pair.reasons,
        pair.next_check_at,
    )
    if unchanged and rematch is None and completed_at is None:
        return  # nothing to store: one statement less for most records
    await store.save_assessment(
        pair.pair_id,
        health=health.health,
        reasons=health.reasons,
        next_check_at=timer,
        rematch_requested=rematch,
        completed_at=completed_at,
        wake=earlier,
    )


async def _complete(
    store: Storage, uow: UnitOfWork, pair: Pair, state: PairState, rules: Rules
) -> None:
    outcome = r.completion(state, rules)
    uow.emit(
        Topic.PROGRESS,
        PairCompleted(
            **pair_members(pair),
            sessions_completed=outcome.sessions_completed,
            sessions_missed=outcome.sessions_missed,
            minutes=outcome.minutes,
            mentee_learned=outcome.mentee_learned,
            mentor_learned=outcome.mentor_learned,
        ),
        event_id=stable_id(pair.pair_id, "completed"),
    )
    completed = [s for s in state.sessions if s.status == "completed"]
    starts = [s.starts_at for s in completed if s.starts_at is not None]
    ends = [s.ends_at for s in completed if s.ends_at is not None]
    learned = {"mentee": outcome.mentee_learned, "mentor": outcome.mentor_learned}
    people: dict[Role, str] = {"mentor": pair.mentor_id, "mentee": pair.mentee_id}
    for role, credits in outcome.credits.items():
        participant_id = people[role]
        holder = await store.participant(participant_id)
        if holder is not None and holder.erased:
            continue  # erased before the last outcome arrived: no record of them is made
        credit = Credit(
            credit_id=credit_id_for(pair.pair_id, participant_id),
            participant_id=participant_id,
            programme_id=pair.programme_id,
            pair_id=pair.pair_id,
            role=role,
            sessions_completed=outcome.sessions_completed,
            minutes=outcome.minutes,
            credits=credits,
            topics=learned[role],
            issued_at=uow.now,
            first_session_at=min(starts) if starts else None,
            last_session_at=max(ends) if ends else None,
        )
        if not await store.add_credit(credit):
            continue
        uow.emit(
            Topic.PROGRESS,
            CreditAwarded(
                credit_id=credit.credit_id,
                participant_id=participant_id,
                programme_id=pair.programme_id,
                pair_id=pair.pair_id,
                role=role,
                sessions_completed=credit.sessions_completed,
                minutes=credit.minutes,
                credits=credit.credits,
                topics=credit.topics,
                issued_at=credit.issued_at,
            ),
            event_id=stable_id(credit.credit_id, "awarded"),
        )
        fact = CompletedCredit(
            credit_id=credit.credit_id,
            participant_id=participant_id,
            pair_id=pair.pair_id,
            programme_id=pair.programme_id,
            minutes=credit.minutes,
            credits=credit.credits,
            issued_at=credit.issued_at,
        )
        await store.enqueue_statements(
            "completed", [(fact.statement_id, _fact_json(fact))], uow.now
        )


def _fact_json(fact: Attended | CompletedCredit) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(fact).items()}


def fact_from_json(kind: str, data: dict[str, Any]) -> Attended | CompletedCredit:
    """The fact a queued statement row holds, as the statement builder takes it."""
    fields = dict(data)
    if kind == "attended":
        fields["ended_at"] = datetime.fromisoformat(fields["ended_at"])
        return Attended(**fields)
    fields["issued_at"] = datetime.fromisoformat(fields["issued_at"])
    return CompletedCredit(**fields)
