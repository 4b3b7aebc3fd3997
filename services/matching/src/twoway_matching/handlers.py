"""One function per consumed event type, and the round and expiry steps the workers run."""

from __future__ import annotations

import asyncio
from dataclasses import replace
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
from twoway_shared.enrolment import (
    Enrolment,
    decide_profile,
    decide_withdrawal,
    profile_event_type,
)
from twoway_shared.ids import StableIds
from twoway_shared.platform.consumer import Rejected
from twoway_shared.platform.uow import UnitOfWork

from twoway_matching import storage
from twoway_matching.domain.model import Proposal, RoundInput
from twoway_matching.domain.solver import RoundResult, run_round
from twoway_matching.storage import Pair

DeclineReason = Literal["declined", "expired", "withdrawn"]

_IDS = StableIds("7c0b8d1e-2f43-4d8a-9a51-6f2e0c9b3a17")


def pair_id_for(programme_id: str, mentor_id: str, mentee_id: str) -> str:
    """Stable: two people are paired at most once per programme."""
    return _IDS("pair", programme_id, mentor_id, mentee_id)


def event_id_for(pair_id: str, what: str) -> str:
    """Stable event ids: the same fact published again carries the same id."""
    return _IDS("event", pair_id, what)


# ------------------------------------------------------------------ programmes


async def configure_programme(event: Event[ProgrammeConfigured], uow: UnitOfWork) -> None:
    programme = event.data
    if programme.starts_on is None:
        programme = programme.model_copy(update={"starts_on": uow.now.date()})
    await storage.save_programme(uow.conn, programme)
    if programme.matching.mode == "continuous":
        await storage.request_round(uow.conn, programme.programme_id, uow.now, at_once=False)


async def request_matching(event: Event[ProgrammeMatchingRequested], uow: UnitOfWork) -> None:
    await storage.request_round(uow.conn, event.data.programme_id, uow.now, at_once=True)


async def _pool_changed(uow: UnitOfWork, programme_id: str) -> None:
    settings = await storage.programme_settings(uow.conn, programme_id)
    if settings is None or settings.matching.mode == "continuous":
        await storage.request_round(uow.conn, programme_id, uow.now, at_once=False)


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


async def enrol(event: Event[ParticipantProfile], uow: UnitOfWork) -> None:
    """participant.enrolled and participant.updated: upserts ordered by revision."""
    profile = event.data
    stored = await storage.participant(uow.conn, profile.participant_id, lock=True)
    if not decide_profile(
        None if stored is None else _enrolment(stored),
        event_type=profile_event_type(event.type),
        participant_id=profile.participant_id,
        programme_id=profile.programme_id,
        role=profile.role,
        revision=profile.revision,
    ).applies():
        return  # stale, or withdrawn until an enrolment with a higher revision
    await storage.upsert_participant(
        uow.conn,
        participant_id=profile.participant_id,
        programme_id=profile.programme_id,
        role=profile.role,
        revision=profile.revision,
        active=True,
        profile=matching_profile(profile),
    )
    await _pool_changed(uow, profile.programme_id)


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
            await storage.set_status(
                uow.conn, active.pair_id, "ended", uow.now, data.participant_id
            )
            uow.emit(
                Topic.PAIRS,
                PairEnded(**_members(active), reason="withdrawn", withdrawn_by=data.participant_id),
                event_id=event_id_for(active.pair_id, "ended"),
            )
    await storage.withdraw_participant(
        uow.conn, data.participant_id, data.programme_id, erase=data.erase
    )
    await _pool_changed(uow, stored.programme_id)


# ------------------------------------------------------------------ responses


async def respond(event: Event[PairResponseSubmitted], uow: UnitOfWork) -> None:
    data = event.data
    current = await storage.pair(uow.conn, data.pair_id, lock=True)
    if current is None:
        raise Rejected(f"pair {data.pair_id} is unknown: check the pair_id of the response")
    if data.participant_id not in (current.mentor_id, current.mentee_id):
        raise Rejected(
            f"participant {data.participant_id} is not one of the two people of pair "
            f"{data.pair_id}; only they can accept or decline it"
        )
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


def _members(pair: Pair) -> dict[str, str]:
    return {
        "pair_id": pair.pair_id,
        "programme_id": pair.programme_id,
        "mentor_id": pair.mentor_id,
        "mentee_id": pair.mentee_id,
    }


async def _confirm(uow: UnitOfWork, pair: Pair) -> None:
    await storage.set_status(uow.conn, pair.pair_id, "confirmed", uow.now)
    uow.emit(
        Topic.PAIRS,
        PairConfirmed(**_members(pair)),
        event_id=event_id_for(pair.pair_id, "confirmed"),
    )


async def _decline(uow: UnitOfWork, pair: Pair, reason: DeclineReason, *, by: str | None) -> None:
    status = "expired" if reason == "expired" else "declined"
    await storage.set_status(uow.conn, pair.pair_id, status, uow.now, by)
    uow.emit(
        Topic.PAIRS,
        PairDeclined(**_members(pair), declined_by=by, reason=reason),
        event_id=event_id_for(pair.pair_id, "declined"),
    )


# ------------------------------------------------------------------ workers' steps


async def expire_proposals(uow: UnitOfWork) -> int:
    """Decline the proposals whose time to accept has run out; how many."""
    expired = await storage.claim_expired(uow.conn, uow.now)
    for pair in expired:
        await _decline(uow, pair, "expired", by=None)
    for programme_id in sorted({p.programme_id for p in expired}):
        await _pool_changed(uow, programme_id)
    return len(expired)


async def run_matching_round(uow: UnitOfWork, programme_id: str) -> RoundResult:
    """One round for a programme, inside the caller's transaction."""
    await storage.lock_programme_round(uow.conn, programme_id)
    settings = await storage.programme_settings(uow.conn, programme_id)
    rules = storage.rules_of(settings, uow.now.date())
    pool = await storage.lock_pool(uow.conn, programme_id)
    history = await storage.pair_history(uow.conn, programme_id)
    active_count: dict[str, int] = {}
    for row in history:
        if row["status"] in ("proposed", "confirmed"):
            for who in (row["mentor_id"], row["mentee_id"]):
                active_count[who] = active_count.get(who, 0) + 1
    people = [storage.to_domain(row) for row in pool]
    mentors = tuple(
        replace(p, capacity=p.capacity - active_count.get(p.participant_id, 0))
        for p in people
        if p.role == "mentor" and p.capacity > active_count.get(p.participant_id, 0)
    )
    mentees = tuple(
        p for p in people if p.role == "mentee" and p.participant_id not in active_count
    )
    never_again = frozenset((r["mentor_id"], r["mentee_id"]) for r in history)
    round_input = RoundInput(rules, mentors, mentees, never_again)
    # The solver is CPU-bound: off the event loop, so consumers and HTTP keep answering.
    result = await asyncio.to_thread(run_round, round_input)
    acceptance = settings is not None and settings.matching.acceptance_required
    ttl = timedelta(hours=settings.matching.proposal_ttl_hours if settings else 72)
    for proposal in result.proposals:
        await _propose(uow, programme_id, proposal, uow.now + ttl if acceptance else None)
    await storage.save_round_summary(
        uow.conn,
        programme_id,
        {
            "ran_at": uow.now.isoformat(),
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


async def _propose(uow: UnitOfWork, programme_id: str, proposal: Proposal, expires_at: Any) -> None:
    pair_id = pair_id_for(programme_id, proposal.mentor_id, proposal.mentee_id)
    reasons = {
        "mentee_learns": list(proposal.reasons.mentee_learns),
        "mentor_learns": list(proposal.reasons.mentor_learns),
        "languages": list(proposal.reasons.languages),
        "weekly_overlap_minutes": proposal.reasons.weekly_overlap_minutes,
    }
    new = Pair(
        pair_id=pair_id,
        programme_id=programme_id,
        mentor_id=proposal.mentor_id,
        mentee_id=proposal.mentee_id,
        status="proposed",
        score=proposal.score,
        reasons=reasons,
        proposed_at=uow.now,
        expires_at=expires_at,
        mentor_accepted=False,
        mentee_accepted=False,
        closed_at=None,
    )
    if not await storage.insert_pair(uow.conn, new):
        return
    uow.emit(
        Topic.PAIRS,
        PairProposed(
            **_members(new),
            score=proposal.score,
            reasons=PairReasons(**reasons),
            expires_at=expires_at,
        ),
        event_id=event_id_for(pair_id, "proposed"),
    )
    if expires_at is None:
        await _confirm(uow, new)
