"""Wires the progress service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from pydantic import BaseModel
from twoway_shared.contract.events import (
    NotificationFailed,
    NotificationSent,
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
from twoway_shared.platform.runtime import ServiceSpec, service_spec

from twoway_progress import dashboard, handlers, read_api
from twoway_progress.workers import WorkerOptions, statement_worker, timer_worker

HANDLERS: dict[type[BaseModel], Handler] = {
    ProgrammeConfigured: handlers.on_programme_configured,
    ParticipantEnrolled: handlers.on_profile,
    ParticipantUpdated: handlers.on_profile,
    ParticipantWithdrawn: handlers.on_withdrawn,
    PairConfirmed: handlers.on_pair_confirmed,
    PairEnded: handlers.on_pair_ended,
    SessionScheduled: handlers.on_session_scheduled,
    SessionRescheduled: handlers.on_session_scheduled,
    SessionCancelled: handlers.on_session_status,
    SessionCompleted: handlers.on_session_completed,
    SessionMissed: handlers.on_session_status,
    SessionBookingFailed: handlers.on_booking_failed,
    SessionFeedbackSubmitted: handlers.on_feedback_submitted,
    PairGoalsSet: handlers.on_goals_set,
    # The coordinators' dashboard: proposals, declines and email deliveries.
    PairProposed: dashboard.on_pair_proposed,
    PairDeclined: dashboard.on_pair_declined,
    NotificationSent: dashboard.on_notification_sent,
    NotificationFailed: dashboard.on_notification_failed,
}
# Progress follows confirmed pairs (proposals only feed the dashboard); rounds and rejected
# requests change nothing.
IGNORES = (
    ProgrammeMatchingRequested,
    PairResponseRejected,
    SessionRequestRejected,
)


def create_spec(options: WorkerOptions | None = None) -> ServiceSpec:
    """The progress service as the platform runs it; tests may tune the workers."""
    return service_spec(
        "progress",
        __file__,
        handlers=HANDLERS,
        ignores=IGNORES,
        routes=lambda runtime: [*read_api.routes(runtime), *dashboard.routes(runtime)],
        workers=(timer_worker(options), statement_worker(options)),
    )
