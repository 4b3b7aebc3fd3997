"""One function per consumed event type, and the round and expiry steps the workers run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from twoway_shared.contract import (
    Event,
    PairConfirmed,
    PairDeclined,
    PairEnded,
    PairProposed,
    PairReasons,
    PairResponseSubmitted,
    ParticipantProfile,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    Topic,
    primary_subtag,
)
from twoway_shared.contract.events import PairCompleted, PairRematchRequested, PairResponseRejected
from twoway_shared.contract.values import pair_members, rfc3339
from twoway_shared.enrolment import Enrolment, decide_withdrawal, profile_applies
from twoway_shared.ids import StableIds
from twoway_shared.platform.consumer import Rejected
from twoway_shared.platform.uow import UnitOfWork

from twoway_matching import storage
from twoway_matching.domain.model import Proposal
from twoway_matching.domain.pool import round_follows_change, round_input, round_may_run
from twoway_matching.domain.solver import RoundResult, run_round
from twoway_matching.storage import Pair

DeclineReason = Literal["declined", "expired", "withdrawn"]
EndReason = Literal["withdrawn", "not_a_fit", "inactive", "completed"]

_IDS = StableIds("7c0b8d1e-2f43-4d8a-9a51-6f2e0c9b3a17")


def pair_id_for(programme_id: str, mentor_id: str, mentee_id: str) -> str:
    """Stable: two people are paired at most once per programme."""
    return _IDS("pair", programme_id, mentor_id, mentee_id)


def event_id_for(pair_id: str, what: str) -> str:
    """Stable event ids: the same fact published again carries the same id."""
    return _IDS("event", pair_id, what)


# ------------------------------------------------------------------ programmes


async def configure_programme(event: Event[ProgrammeConfigured], uow: UnitOfWork) -> None:
    """Save the settings; a continuous programme gets a round for the pool waiting so far."""
    programme = event.data
    if programme.starts_on is None:
        programme = programme.model_copy(update={"starts_on": uow.now.date()})
    await storage.save_programme(uow.conn, programme)
    if round_follows_change(programme.matching.mode):
        await storage.request_round(uow.conn, programme.programme_id, uow.now, at_once=False)


async def request_matching(event: Event[ProgrammeMatchingRequested], uow: UnitOfWork) -> None:
    """One round now, in any mode, with the defaults if the programme has no settings yet."""
    await storage.request_round(uow.conn, event.data.programme_id, uow.now, at_once=True)


async def _pool_changed(uow: UnitOfWork, programme_id: str) -> None:
    """A round soon, only for a programme known to be continuous (contract 1.1)."""
    await _pools_changed([(programme_id, uow)])


async def _pools_changed(changes: Sequence[tuple[str, UnitOfWork]]) -> None:
    """`_pool_changed` for each (programme, unit of work) in order, in two statements per
    programme at most: one request per programme asks for what the first asks (the earliest
    due time) and carries the last one's trace, as the requests one after another would."""
    if not changes:
        return
    first: dict[str, UnitOfWork] = {}
    last: dict[str, UnitOfWork] = {}
    for programme_id, uow in changes:
        first.setdefault(programme_id, uow)
        last[programme_id] = uow
    conn = changes[0][1].conn
    settings = await storage.settings_of(conn, list(first))
    for programme_id, uow in first.items():
        found = settings.get(programme_id)
        if round_follows_change(found.matching.mode if found else None):
            await storage.request_round(
                conn,
                programme_id,
                uow.now,
                at_once=False,
                traceparent=last[programme_id].effects_traceparent(),
            )


# ------------------------------------------------------------------ enrolments


def matching_profile(profile: ParticipantProfile) -> dict[str, Any]:
    """What matching keeps of a profile: no name, no email, no location."""
    return {
        "grade": profile.grade,
        "department": profile.department,
        "manager_id": profile.manager_id,
        "timezone": profile.timezone,
        "languages": sorted({primary_subtag(x) for x in profile.languages}),
        "offers": list(profile.offers),
        "wants": list(profile.wants),
        "availability": [[w.weekday, w.start_minute, w.end_minute] for w in profile.availability],
        "capacity": profile.capacity,
    }


async def enrol(items: Sequence[tuple[Event[ParticipantProfile], UnitOfWork]]) -> None:
    """participant.enrolled and participant.updated, a run at once (a batch handler; a record
    alone is a run of one): upserts ordered by revision, applied in record order.

    A constant number of statements per run: the people's rows (locked), their new rows, the
    programmes' settings, and at most one round request per programme.
    """
    conn = items[0][1].conn
    known = dict(
        await storage.participants(conn, {event.data.participant_id for event, _ in items})
    )
    rows: dict[str, storage.ProfileRow] = {}
    changed: list[tuple[str, UnitOfWork]] = []
    for event, uow in items:
        profile = event.data
        stored = known.get(profile.participant_id)
        if not profile_applies(None if stored is None else _enrolment(stored), event.type, profile):
            continue  # stale, or withdrawn until an enrolment with a higher revision
        # Enrolling again with a higher revision ends the pause after a completed pair.
        resumes = (
            event.type == "participant.enrolled"
            and stored is not None
            and profile.revision > stored.revision
        )
        earlier = rows.get(profile.participant_id)
        rows[profile.participant_id] = storage.ProfileRow(
            participant_id=profile.participant_id,
            programme_id=profile.programme_id,
            role=profile.role,
            revision=profile.revision,
            profile=matching_profile(profile),
            resume=resumes or (earlier is not None and earlier.resume),
        )
        known[profile.participant_id] = storage.StoredParticipant(
            participant_id=profile.participant_id,
            programme_id=profile.programme_id,
            role=profile.role,
            revision=profile.revision,
            active=True,
            erased=False,
            paused_after_completion=stored is not None
            and stored.paused_after_completion
            and not resumes,
        )
        changed.append((profile.programme_id, uow))
    if rows:
        await storage.upsert_profiles(conn, list(rows.values()))
    await _pools_changed(changed)


def _enrolment(stored: storage.StoredParticipant) -> Enrolment:
    return Enrolment.stored(stored.programme_id, stored.role, stored.revision, not stored.active)


async def withdraw(event: Event[ParticipantWithdrawn], uow: UnitOfWork) -> None:
    """Decline or end the person's active pairs; the partners return to the pool."""
    data = event.data
    stored = await storage.participant(uow.conn, data.participant_id, lock=True)
    decide_withdrawal(
        None if stored is None else _enrolment(stored),
        participant_id=data.participant_id,
        programme_id=data.programme_id,
    ).applies()
    if stored is None:  # never enrolled here: remember the withdrawal only
        await storage.withdraw_participant(
            uow.conn, data.participant_id, data.programme_id, erase=data.erase
        )
        return
    for active in await storage.active_pairs_of(uow.conn, data.participant_id):
        if active.status == "proposed":
            await _decline(uow, active, "withdrawn", by=data.participant_id)
        else:
            await _end(uow, active, "withdrawn", by=data.participant_id)
    await storage.withdraw_participant(
        uow.conn, data.participant_id, data.programme_id, erase=data.erase
    )
    await _pool_changed(uow, stored.programme_id)


# ------------------------------------------------------------------ responses


UNKNOWN_PAIR = "There is no such pairing: check the link or the pair id you used."
NOT_IN_PAIR = "You are not one of the two people of this pairing, so you cannot answer for it."


async def respond(event: Event[PairResponseSubmitted], uow: UnitOfWork) -> None:
    """Accept or decline; a response the pair cannot take gets pair.response_rejected (1.1)."""
    data = event.data
    current = await storage.pair(uow.conn, data.pair_id, lock=True)
    if current is None:
        _reject_response(uow, event, UNKNOWN_PAIR)
        return
    if data.participant_id not in (current.mentor_id, current.mentee_id):
        _reject_response(uow, event, NOT_IN_PAIR)
        return
    if current.status != "proposed":
        return  # already confirmed, declined or expired: no effect
    if current.expires_at is not None and current.expires_at <= uow.now:
        await _decline(uow, current, "expired", by=None)  # the expiry worker had not run yet
        await _pool_changed(uow, current.programme_id)
        return
    if data.response == "decline":
        await _decline(uow, current, "declined", by=data.participant_id)
        await _pool_changed(uow, current.programme_id)
        return
    mentor = current.mentor_accepted or data.participant_id == current.mentor_id
    mentee = current.mentee_accepted or data.participant_id == current.mentee_id
    await storage.set_acceptance(uow.conn, current.pair_id, mentor=mentor, mentee=mentee)
    if mentor and mentee:
        await _confirm(uow, current)


def _reject_response(uow: UnitOfWork, event: Event[PairResponseSubmitted], reason: str) -> None:
    """Tell the portal (and so the person) why the response had no effect."""
    data = event.data
    uow.emit(
        Topic.PAIRS,
        PairResponseRejected(
            pair_id=data.pair_id,
            participant_id=data.participant_id,
            response=data.response,
            reason=reason,
        ),
        # One rejection per response, the same id however often the response is processed.
        event_id=_IDS("rejected", event.envelope.source, event.envelope.id),
    )


async def _confirm(uow: UnitOfWork, pair: Pair) -> None:
    await storage.set_status(uow.conn, pair.pair_id, "confirmed", uow.now)
    uow.emit(
        Topic.PAIRS,
        PairConfirmed(**pair_members(pair)),
        event_id=event_id_for(pair.pair_id, "confirmed"),
    )


async def _decline(uow: UnitOfWork, pair: Pair, reason: DeclineReason, *, by: str | None) -> None:
    status = "expired" if reason == "expired" else "declined"
    await storage.set_status(uow.conn, pair.pair_id, status, uow.now, by, reason)
    uow.emit(
        Topic.PAIRS,
        PairDeclined(**pair_members(pair), declined_by=by, reason=reason),
        event_id=event_id_for(pair.pair_id, "declined"),
    )


async def _end(uow: UnitOfWork, pair: Pair, reason: EndReason, *, by: str | None) -> None:
    await storage.set_status(uow.conn, pair.pair_id, "ended", uow.now, by, reason)
    uow.emit(
        Topic.PAIRS,
        PairEnded(**pair_members(pair), reason=reason, withdrawn_by=by),
        # A pair ends once, whatever ends it.
        event_id=event_id_for(pair.pair_id, "ended"),
    )


# ------------------------------------------------------------------ progress (1.1)


async def _confirmed_pair(
    uow: UnitOfWork, event: Event[PairRematchRequested | PairCompleted]
) -> Pair | None:
    """The pair progress speaks of, locked, if it is still confirmed; None if it has ended."""
    data = event.data
    current = await storage.pair(uow.conn, data.pair_id, lock=True)
    if current is None:
        raise Rejected(
            f"pair {data.pair_id} is unknown to matching, so {event.type} cannot end it; "
            "check that progress and matching use the same topic prefix"
        )
    if pair_members(current) != pair_members(data):
        raise Rejected(
            f"{event.type} names other people or another programme than pair {data.pair_id} "
            "has; it was not applied"
        )
    return current if current.status == "confirmed" else None


async def request_rematch(event: Event[PairRematchRequested], uow: UnitOfWork) -> None:
    """End a confirmed pair (not_a_fit or inactive); both return to the pool, never together."""
    current = await _confirmed_pair(uow, event)
    if current is None:
        return  # already ended (a withdrawal, an earlier request): nothing to do
    await _end(uow, current, event.data.reason, by=None)
    await _pool_changed(uow, current.programme_id)


async def complete(event: Event[PairCompleted], uow: UnitOfWork) -> None:
    """End a completed pair; its two people get no new partner until they enrol again."""
    current = await _confirmed_pair(uow, event)
    if current is None:
        return
    await _end(uow, current, "completed", by=None)
    await storage.pause_after_completion(uow.conn, [current.mentor_id, current.mentee_id])


# ------------------------------------------------------------------ workers' steps


async def expire_proposals(uow: UnitOfWork) -> int:
    """Decline the proposals whose time to accept has run out; how many."""
    expired = await storage.claim_expired(uow.conn, uow.now)
    for pair in expired:
        await _decline(uow, pair, "expired", by=None)
    for programme_id in sorted({p.programme_id for p in expired}):
        await _pool_changed(uow, programme_id)
    return len(expired)


async def run_matching_round(uow: UnitOfWork, programme_id: str) -> RoundResult | None:
    """One round for a programme, inside the caller's transaction; None when it may not run.

    A due round runs only if programme.matching_requested asked for it or the programme is
    known to be continuous, as decided now rather than when it became due.
    """
    await storage.lock_programme_round(uow.conn, programme_id)
    settings = await storage.programme_settings(uow.conn, programme_id)
    requested = await storage.round_requested(uow.conn, programme_id)
    if not round_may_run(settings.matching.mode if settings else None, requested):
        return None
    rules = storage.rules_of(settings, uow.now.date())
    people, paused = await storage.lock_pool(uow.conn, programme_id)
    history = await storage.pair_history(uow.conn, programme_id)
    pool = round_input(rules, people, history, paused)
    mentors, mentees = pool.mentors, pool.mentees
    # The solver is CPU-bound: off the event loop, so consumers and HTTP keep answering.
    result = await asyncio.to_thread(run_round, pool)
    acceptance = settings is not None and settings.matching.acceptance_required
    ttl = timedelta(hours=settings.matching.proposal_ttl_hours if settings else 72)
    await _propose(uow, programme_id, result.proposals, uow.now + ttl if acceptance else None)
    await storage.save_round_summary(
        uow.conn,
        programme_id,
        {
            "ran_at": rfc3339(uow.now),
            "min_score": rules.min_score,
            "mentors_available": len(mentors),
            "mentees_available": len(mentees),
            "pairs_proposed": len(result.proposals),
            "unmatched": [
                {
                    "participant_id": u.participant_id,
                    "role": u.role,
                    "reason": u.reason,
                    "blocking_rules": u.blocking_rules,
                }
                for u in result.unmatched
            ],
        },
    )
    return result


async def _propose(
    uow: UnitOfWork, programme_id: str, proposals: Sequence[Proposal], expires_at: Any
) -> None:
    """The round's pairs, written in one statement; each new one is told as proposed, then
    as confirmed at once when the programme requires no acceptance (it is stored so)."""
    status = "proposed" if expires_at is not None else "confirmed"
    pairs = [
        Pair(
            pair_id=pair_id_for(programme_id, p.mentor_id, p.mentee_id),
            programme_id=programme_id,
            mentor_id=p.mentor_id,
            mentee_id=p.mentee_id,
            status=status,
            score=p.score,
            reasons={
                "mentee_learns": list(p.reasons.mentee_learns),
                "mentor_learns": list(p.reasons.mentor_learns),
                "languages": list(p.reasons.languages),
                "weekly_overlap_minutes": p.reasons.weekly_overlap_minutes,
            },
            proposed_at=uow.now,
            expires_at=expires_at,
            mentor_accepted=False,
            mentee_accepted=False,
            closed_at=None,
        )
        for p in proposals
    ]
    inserted = await storage.insert_pairs(uow.conn, pairs)
    for new in pairs:
        if new.pair_id not in inserted:
            continue  # the same two people already have a pair in the programme
        uow.emit(
            Topic.PAIRS,
            PairProposed(
                **pair_members(new),
                score=new.score,
                reasons=PairReasons(**new.reasons),
                expires_at=expires_at,
            ),
            event_id=event_id_for(new.pair_id, "proposed"),
        )
        if expires_at is None:
            uow.emit(
                Topic.PAIRS,
                PairConfirmed(**pair_members(new)),
                event_id=event_id_for(new.pair_id, "confirmed"),
            )
