"""One function per consumed event: record the facts and the messages they make due."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from twoway_shared.contract import (
    Event,
    PairConfirmed,
    PairDeclined,
    PairEnded,
    PairProposed,
    PairResponseRejected,
    ParticipantEnrolled,
    ParticipantProfile,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    SessionBookingFailed,
    SessionCancelled,
    SessionCompleted,
    SessionMissed,
    SessionRequestRejected,
    SessionRescheduled,
    SessionScheduled,
)
from twoway_shared.contract.events import (
    CreditAwarded,
    PairCompleted,
    PairHealthChanged,
    PairRematchRequested,
)
from twoway_shared.contract.values import pair_members
from twoway_shared.enrolment import Enrolment, decide_withdrawal, profile_applies
from twoway_shared.platform.consumer import BatchHandler, Handler
from twoway_shared.platform.uow import UnitOfWork

from twoway_notifications.domain.cancellations import (
    CancellationNews,
    cancellation_group,
    cancellation_news,
)
from twoway_notifications.domain.ids import coordinator_id, notification_id
from twoway_notifications.domain.model import NEEDS_PARTNER, Session, Template
from twoway_notifications.domain.rules import (
    DEFAULT_REMINDER_MINUTES,
    feedback_request_time,
    reminder_times,
)
from twoway_notifications.storage import NewMessage, PairRow, ProfileRow, SessionRow, Storage

# Messages about a session that its time, cancellation or outcome make obsolete.
SESSION_TIMED = (Template.REMINDER, Template.SESSION_RESCHEDULED, Template.FEEDBACK_REQUEST)


def _pair_of(mentor_id: str, mentee_id: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """(recipient, partner) for each of the two people: one email per person, never one to both."""
    return ((mentor_id, mentee_id), (mentee_id, mentor_id))


def _both(
    uow: UnitOfWork,
    template: Template,
    pair_id: str,
    mentor_id: str,
    mentee_id: str,
    *,
    cause_id: str,
    details: dict[str, Any] | None = None,
) -> list[NewMessage]:
    """One message about the pair to each of its two people (never one email to both)."""
    return [
        _message(
            uow,
            template,
            recipient,
            partner,
            pair_id,
            pair_id=pair_id,
            session_id=None,
            cause_id=cause_id,
            details=details,
        )
        for recipient, partner in _pair_of(mentor_id, mentee_id)
    ]


def _message(
    uow: UnitOfWork,
    template: Template,
    recipient: str,
    partner: str | None,
    *about: str | int,
    pair_id: str | None,
    session_id: str | None,
    cause_id: str,
    due_at: datetime | None = None,
    group_key: str | None = None,
    details: dict[str, Any] | None = None,
) -> NewMessage:
    """A message to `recipient`, its id stable from the template, recipient and `about`."""
    return NewMessage(
        notification_id=notification_id(template, recipient, *about),
        template=template.value,
        participant_id=recipient,
        partner_id=partner,
        needs_partner=template in NEEDS_PARTNER,
        pair_id=pair_id,
        session_id=session_id,
        cause_id=cause_id,
        due_at=due_at or uow.now,
        group_key=group_key,
        details=details,
        traceparent=uow.effects_traceparent(),
    )


async def _add(store: Storage, uow: UnitOfWork, message: NewMessage) -> str:
    """Record `message` (once per id); its id."""
    await store.add_message(message, uow.now)
    return message.notification_id


# ---------------------------------------------------------------- enrolments.v1


async def on_profiles(items: Sequence[tuple[Event[ParticipantProfile], UnitOfWork]]) -> None:
    """Enrolled or updated, a run at once (a batch handler; a record alone is a run of one):
    new contact details apply to every message not yet sent.

    The rule is applied to the run's records in memory, in record order, from the people's
    enrolments read and locked in one statement; then one upsert of each person's last
    applied profile and one release of the messages that waited for any of them.
    """
    store = Storage(items[0][1].conn)
    known = await store.enrolments(event.data.participant_id for event, _ in items)
    latest: dict[str, ProfileRow] = {}
    arrived: dict[str, datetime] = {}  # when each person's first applied profile came
    for event, uow in items:
        p = event.data
        if not profile_applies(known.get(p.participant_id), event.type, p):
            continue  # stale, or withdrawn (maybe erased) until a newer enrolment
        known[p.participant_id] = Enrolment(p.programme_id, p.role, p.revision, withdrawn=False)
        latest[p.participant_id] = ProfileRow(
            participant_id=p.participant_id,
            programme_id=p.programme_id,
            role=p.role,
            display_name=p.display_name,
            email=str(p.email),
            timezone=p.timezone,
            locale=p.locale,
            notify_email=p.notify.email,
            notify_reminders=p.notify.reminders,
            revision=p.revision,
            updated_at=uow.now,
        )
        arrived.setdefault(p.participant_id, uow.now)
    if not latest:
        return
    applied = await store.upsert_profiles(list(latest.values()))
    await store.release_waiting_of([(who, at) for who, at in arrived.items() if who in applied])


async def on_withdrawn(event: Event[ParticipantWithdrawn], uow: UnitOfWork) -> None:
    """Without erasure the person still gets their cancellations; with it, nothing more."""
    w = event.data
    store = Storage(uow.conn)
    decide_withdrawal(
        await store.enrolment(w.participant_id),
        participant_id=w.participant_id,
        programme_id=w.programme_id,
    ).applies()
    await store.withdraw(w.participant_id, w.programme_id, erase=w.erase)
    if w.erase:
        await store.skip_unsent_to(w.participant_id, "recipient erased")
        await store.erase_learning_of(w.participant_id)


# ---------------------------------------------------------------- programmes.v1


async def on_programme_configured(event: Event[ProgrammeConfigured], uow: UnitOfWork) -> None:
    """New reminder offsets apply to every reminder not yet sent."""
    programme = event.data
    store = Storage(uow.conn)
    weeks = 2 if programme.cadence == "fortnightly" else 1
    await store.save_programme(programme.programme_id, list(programme.reminder_minutes), weeks)
    email = None if programme.coordinator_email is None else str(programme.coordinator_email)
    coordinator = coordinator_id(programme.programme_id)
    await store.save_coordinator(coordinator, programme.programme_id, email)
    await store.release_waiting(coordinator, uow.now)
    await store.drop_unsent_reminders_of_programme(programme.programme_id, uow.now)
    for session, cause_id in await store.future_sessions_of_programme(
        programme.programme_id, uow.now
    ):
        await store.add_messages(
            _reminders(uow, session, list(programme.reminder_minutes), cause_id), uow.now
        )


# ---------------------------------------------------------------- pairs.v1


async def on_pairs_proposed(items: Sequence[tuple[Event[PairProposed], UnitOfWork]]) -> None:
    """A run of `pair.proposed` (a batch handler): keep what each side learns; only a proposal
    that needs acceptance (it has an expiry) asks people to respond."""
    store = Storage(items[0][1].conn)
    # A pair proposed twice in the run keeps its last proposal, as one upsert after another.
    latest = {event.data.pair_id: event.data for event, _ in items}
    await store.save_pairs(
        [
            PairRow(
                **pair_members(pair),
                mentee_learns=list(pair.reasons.mentee_learns),
                mentor_learns=list(pair.reasons.mentor_learns),
            )
            for pair in latest.values()
        ]
    )
    messages: list[NewMessage] = []
    for event, uow in items:
        pair = event.data
        if pair.expires_at is None:
            continue
        details = {
            "mentee_learns": list(pair.reasons.mentee_learns),
            "mentor_learns": list(pair.reasons.mentor_learns),
            "languages": list(pair.reasons.languages),
            "expires_at": pair.expires_at.isoformat(),
        }
        messages += _both(
            uow,
            Template.PAIR_PROPOSED,
            pair.pair_id,
            pair.mentor_id,
            pair.mentee_id,
            cause_id=event.id,
            details=details,
        )
    await store.add_messages(messages, items[0][1].now)


async def on_pairs_confirmed(items: Sequence[tuple[Event[PairConfirmed], UnitOfWork]]) -> None:
    """A run of `pair.confirmed` (a batch handler): both people's emails, one statement."""
    messages: list[NewMessage] = []
    for event, uow in items:
        pair = event.data
        messages += _both(
            uow,
            Template.PAIR_CONFIRMED,
            pair.pair_id,
            pair.mentor_id,
            pair.mentee_id,
            cause_id=event.id,
        )
    await Storage(items[0][1].conn).add_messages(messages, items[0][1].now)


async def on_pair_ended(event: Event[PairEnded], uow: UnitOfWork) -> None:
    """The remaining partner hears a new match will be looked for; never why.

    A pair closed as not a fit or inactive tells both the same, never who answered what.
    """
    pair = event.data
    if pair.reason in ("not_a_fit", "inactive"):
        messages = _both(
            uow,
            Template.PAIR_CLOSED,
            pair.pair_id,
            pair.mentor_id,
            pair.mentee_id,
            cause_id=event.id,
        )
        await Storage(uow.conn).add_messages(messages, uow.now)
        return
    if pair.reason != "withdrawn" or pair.withdrawn_by is None:
        return
    remaining = pair.mentee_id if pair.withdrawn_by == pair.mentor_id else pair.mentor_id
    await _add(
        Storage(uow.conn),
        uow,
        _message(
            uow,
            Template.PARTNER_WITHDREW,
            remaining,
            pair.withdrawn_by,
            pair.pair_id,
            pair_id=pair.pair_id,
            session_id=None,
            cause_id=event.id,
        ),
    )


# ---------------------------------------------------------------- sessions.v1


def _session_message(
    uow: UnitOfWork,
    template: Template,
    s: SessionScheduled | Session,
    recipient: str,
    partner: str,
    cause_id: str,
    *about: str | int,
    due_at: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> NewMessage:
    """A message about one session (at its revision) to one of its two people."""
    return _message(
        uow,
        template,
        recipient,
        partner,
        s.session_id,
        s.revision,
        *about,
        pair_id=s.pair_id,
        session_id=s.session_id,
        cause_id=cause_id,
        due_at=due_at,
        details=details,
    )


def _reminders(
    uow: UnitOfWork, s: SessionScheduled | Session, minutes: list[int], cause_id: str
) -> list[NewMessage]:
    assert s.starts_at is not None
    return [
        _session_message(
            uow, Template.REMINDER, s, recipient, partner, cause_id, offset, due_at=due_at
        )
        for offset, due_at in reminder_times(s.starts_at, minutes, uow.now)
        for recipient, partner in _pair_of(s.mentor_id, s.mentee_id)
    ]


def _feedback_requests(uow: UnitOfWork, s: SessionScheduled, cause_id: str) -> list[NewMessage]:
    """Ask both people about the session shortly after it ends (durable, like reminders)."""
    return [
        _session_message(
            uow,
            Template.FEEDBACK_REQUEST,
            s,
            recipient,
            partner,
            cause_id,
            due_at=feedback_request_time(s.ends_at),
        )
        for recipient, partner in _pair_of(s.mentor_id, s.mentee_id)
    ]


async def _add_booking(
    store: Storage, uow: UnitOfWork, pair_id: str, mentor_id: str, mentee_id: str, cause_id: str
) -> None:
    messages = _both(
        uow,
        Template.BOOKING,
        pair_id,
        mentor_id,
        mentee_id,
        cause_id=cause_id,
        details=await store.learning_of_pair(pair_id),
    )
    await store.add_messages(messages, uow.now)


async def _keep_current_times(
    store: Storage, items: Sequence[tuple[SessionScheduled, UnitOfWork, str]]
) -> None:
    """Keep sessions' current times (scheduled or rescheduled), what set them, their
    reminders and feedback requests; then, for each pair whose first series is now whole,
    the booking emails. `items`: (session, its unit of work, the id of the event) in record
    order, each session once. Four statements whatever the number of sessions.
    """
    saved = await store.save_sessions(
        [
            SessionRow(
                session_id=s.session_id,
                **pair_members(s),
                sequence=s.sequence,
                total=s.total,
                starts_at=s.starts_at,
                ends_at=s.ends_at,
                revision=s.revision,
                status="scheduled",
                cause_id=cause_id,
                # A session first seen moved was first booked at its previous time (or
                # earlier).
                first_starts_at=s.previous_starts_at
                if isinstance(s, SessionRescheduled)
                else s.starts_at,
            )
            for s, _, cause_id in items
        ],
        newer_only=True,
    )
    kept = [item for item in items if item[0].session_id in saved]  # else not newer
    if not kept:
        return
    progress = await store.series_progress(
        (s.pair_id for s, _, _ in kept), (s.programme_id for s, _, _ in kept)
    )
    messages: list[NewMessage] = []
    for s, uow, cause_id in kept:
        minutes = progress.reminder_minutes.get(s.programme_id)
        if minutes is None:
            minutes = list(DEFAULT_REMINDER_MINUTES)
        messages += _feedback_requests(uow, s, cause_id) + _reminders(uow, s, minutes, cause_id)
    # The booking emails of each pair whose first series became whole: caused by the
    # session that completed it, as if the sessions had been handled one at a time.
    in_run = Counter(s.pair_id for s, _, _ in kept)
    seen = {pair_id: n - in_run[pair_id] for pair_id, n in progress.seen.items()}
    completing: dict[str, tuple[SessionScheduled, UnitOfWork, str]] = {}
    for s, uow, cause_id in kept:
        seen[s.pair_id] = seen.get(s.pair_id, 0) + 1
        if seen[s.pair_id] >= s.total and s.pair_id not in completing:
            completing[s.pair_id] = (s, uow, cause_id)
    learning = await store.learning_of_pairs(completing)
    for pair_id, (s, uow, cause_id) in completing.items():
        messages += _both(
            uow,
            Template.BOOKING,
            pair_id,
            s.mentor_id,
            s.mentee_id,
            cause_id=cause_id,
            details=learning[pair_id],
        )
    await store.add_messages(messages, kept[0][1].now)


async def on_sessions_scheduled(
    items: Sequence[tuple[Event[SessionScheduled], UnitOfWork]],
) -> None:
    """A run of `session.scheduled` (a batch handler): four statements for the run."""
    store = Storage(items[0][1].conn)
    if len({event.data.session_id for event, _ in items}) < len(items):
        # The same session twice in one run (a replay): one at a time, in order.
        for event, uow in items:
            await _keep_current_times(store, [(event.data, uow, event.id)])
        return
    await _keep_current_times(store, [(event.data, uow, event.id) for event, uow in items])


async def on_session_rescheduled(event: Event[SessionRescheduled], uow: UnitOfWork) -> None:
    """Reminders move; people whose booking already went out get an update."""
    s = event.data
    store = Storage(uow.conn)
    known = await store.session(s.session_id)
    if known is not None and known.revision >= s.revision:
        return
    await store.drop_unsent(s.session_id, SESSION_TIMED, uow.now)
    await _keep_current_times(store, [(s, uow, event.id)])
    for recipient, partner in _pair_of(s.mentor_id, s.mentee_id):
        # Before the booking email goes out, it will show the new time itself.
        if await store.booking_went_out(s.pair_id, recipient, uow.now):
            await _add(
                store,
                uow,
                _session_message(
                    uow,
                    Template.SESSION_RESCHEDULED,
                    s,
                    recipient,
                    partner,
                    event.id,
                    details=await store.learning_of_pair(s.pair_id),
                ),
            )


async def on_session_cancelled(event: Event[SessionCancelled], uow: UnitOfWork) -> None:
    """Reminders vanish; cancellations of one cause join one email per person."""
    s = event.data
    store = Storage(uow.conn)
    known = await store.session(s.session_id)
    news = cancellation_news(known, s.revision)
    if news is CancellationNews.STALE:
        return
    await store.save_session(
        SessionRow(
            session_id=s.session_id,
            **pair_members(s),
            sequence=s.sequence,
            total=None,
            starts_at=None,
            ends_at=None,
            revision=s.revision,
            status="cancelled",
            cause_id=event.id,
        )
    )
    await store.drop_unsent(s.session_id, SESSION_TIMED, uow.now)
    if news is CancellationNews.RECORD:
        return
    group = cancellation_group(s.pair_id, s.reason, event.envelope.causationid or event.id, uow.now)
    for recipient, partner in _pair_of(s.mentor_id, s.mentee_id):
        if not await store.booking_went_out(s.pair_id, recipient, uow.now):
            continue  # the booking email will show the current state
        nid = await store.open_group(recipient, group.key, uow.now)
        if nid is None:
            nid = await _add(
                store,
                uow,
                _message(
                    uow,
                    Template.SESSION_CANCELLED,
                    recipient,
                    partner,
                    s.pair_id,
                    group.key,
                    s.session_id,
                    s.revision,
                    pair_id=s.pair_id,
                    session_id=s.session_id,
                    cause_id=event.id,
                    due_at=group.send_at,
                    group_key=group.key,
                    details=await store.learning_of_pair(s.pair_id),
                ),
            )
        await store.join_group(nid, s.session_id)


async def on_session_outcome(
    event: Event[SessionCompleted] | Event[SessionMissed], uow: UnitOfWork
) -> None:
    """A session with an outcome needs no reminder any more (its feedback request stays)."""
    s = event.data
    store = Storage(uow.conn)
    if await store.record_outcome(s.session_id, event.type.removeprefix("session.")):
        await store.drop_unsent(s.session_id, (Template.REMINDER,), uow.now)


async def on_booking_failed(event: Event[SessionBookingFailed], uow: UnitOfWork) -> None:
    """A series that stopped short still gets its booking email for what was booked."""
    b = event.data
    if b.booked == 0:
        return
    store = Storage(uow.conn)
    if await store.sessions_seen(b.pair_id) >= b.booked:
        await _add_booking(store, uow, b.pair_id, b.mentor_id, b.mentee_id, event.id)


# ---------------------------------------------------------------- progress.v1 (1.1)


async def on_pair_health_changed(event: Event[PairHealthChanged], uow: UnitOfWork) -> None:
    """The programme's coordinator hears of a pair at risk or inactive, and why; no more.

    Topics have no order between them: an alert that arrives before its programme's settings
    waits for them, and is skipped if the programme has no coordinator.
    """
    h = event.data
    if h.health not in ("at_risk", "inactive"):
        return
    store = Storage(uow.conn)
    coordinator = coordinator_id(h.programme_id)
    reasons = sorted(h.reasons)
    last = None if h.last_activity_at is None else h.last_activity_at.isoformat()
    await _add(
        store,
        uow,
        _message(
            uow,
            Template.PAIR_AT_RISK,
            coordinator,
            None,
            h.pair_id,
            h.health,
            ",".join(reasons),
            h.sessions_completed,
            h.sessions_missed,
            last or "",
            pair_id=h.pair_id,
            session_id=None,
            cause_id=event.id,
            details={
                "people": [h.mentor_id, h.mentee_id],
                "mentor_id": h.mentor_id,
                "mentee_id": h.mentee_id,
                "health": h.health,
                "reasons": reasons,
                "sessions_completed": h.sessions_completed,
                "sessions_missed": h.sessions_missed,
                "last_activity_at": last,
            },
        ),
    )


async def on_credit_awarded(event: Event[CreditAwarded], uow: UnitOfWork) -> None:
    """The person hears what they earned, with a link to the certificate."""
    c = event.data
    await _add(
        Storage(uow.conn),
        uow,
        _message(
            uow,
            Template.COMPLETION,
            c.participant_id,
            None,
            c.credit_id,
            pair_id=c.pair_id,
            session_id=None,
            cause_id=event.id,
            details={
                "credit_id": c.credit_id,
                "credits": c.credits,
                "minutes": c.minutes,
                "sessions_completed": c.sessions_completed,
                "topics": list(c.topics),
            },
        ),
    )


# Recorded set-based: a run of scheduled sessions (a pair's series arrives as one) in four
# statements, a run of profiles (an enrolment wave) in three.
BATCH_HANDLERS: dict[type[BaseModel], BatchHandler] = {
    SessionScheduled: on_sessions_scheduled,
    PairProposed: on_pairs_proposed,
    PairConfirmed: on_pairs_confirmed,
    ParticipantEnrolled: on_profiles,
    ParticipantUpdated: on_profiles,
}
HANDLERS: dict[type[BaseModel], Handler] = {
    ParticipantWithdrawn: on_withdrawn,
    ProgrammeConfigured: on_programme_configured,
    PairEnded: on_pair_ended,
    SessionRescheduled: on_session_rescheduled,
    SessionCancelled: on_session_cancelled,
    SessionBookingFailed: on_booking_failed,
    SessionCompleted: on_session_outcome,
    SessionMissed: on_session_outcome,
    PairHealthChanged: on_pair_health_changed,
    CreditAwarded: on_credit_awarded,
}
"""Contract model -> handler."""

IGNORES = (
    ProgrammeMatchingRequested,
    PairDeclined,
    PairResponseRejected,
    SessionRequestRejected,
    PairRematchRequested,
    PairCompleted,
)
"""Event types that cause no email (a declined proposal is told by the portal; a rematch and
a completion are told through pair.ended and credit.awarded)."""
