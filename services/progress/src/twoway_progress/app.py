"""Wires the progress service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from pydantic import BaseModel
from twoway_shared.contract import Topic
from twoway_shared.contract.events import (
    PairConfirmed,
    PairDeclined,
    PairEnded,
    PairGoalsSet,
    PairProposed,
    PairResponseRejected,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    SessionBookingFailed,
    SessionCancelled,
    SessionCompleted,
    SessionFeedbackSubmitted,
    SessionMissed,
    SessionRequestRejected,
    SessionRescheduled,
    SessionScheduled,
)
from twoway_shared.platform.consumer import Handler
from twoway_shared.platform.migrations import migrations_dir
from twoway_shared.platform.runtime import ServiceSpec

from twoway_progress import handlers, read_api
from twoway_progress.workers import WorkerOptions, statement_worker, timer_worker

MIGRATIONS = migrations_dir(__file__)

HANDLERS: dict[type[BaseModel], Handler] = {
    ProgrammeConfigured: handlers.on_programme_configured,
    ParticipantEnrolled: handlers.on_profile,
    ParticipantUpdated: handlers.on_profile,
    ParticipantWithdrawn: handlers.on_withdrawn,
    PairConfirmed: handlers.on_pair_confirmed,
    PairEnded: handlers.on_pair_ended,
    SessionScheduled: handlers.on_session_scheduled,
    SessionRescheduled: handlers.on_session_scheduled,
    SessionCancelled: handlers.on_session_cancelled,
    SessionCompleted: handlers.on_session_completed,
    SessionMissed: handlers.on_session_missed,
    SessionBookingFailed: handlers.on_booking_failed,
    SessionFeedbackSubmitted: handlers.on_feedback_submitted,
    PairGoalsSet: handlers.on_goals_set,
}
# Progress follows confirmed pairs only; rounds, proposals and rejected requests change nothing.
IGNORES = (
    ProgrammeMatchingRequested,
    PairProposed,
    PairDeclined,
    PairResponseRejected,
    SessionRequestRejected,
)


def create_spec(options: WorkerOptions | None = None) -> ServiceSpec:
    """The progress service as the platform runs it; tests may tune the workers."""
    return ServiceSpec(
        name="progress",
        consumes=(
            Topic.PROGRAMMES,
            Topic.ENROLMENTS,
            Topic.PAIRS,
            Topic.SESSIONS,
            Topic.FEEDBACK,
        ),
        produces=(Topic.PROGRESS,),
        handlers=HANDLERS,
        ignores=IGNORES,
        migrations_dir=MIGRATIONS,
        routes=read_api.routes,
        workers=(timer_worker(options), statement_worker(options)),
    )
