"""Wires the scheduling service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel
from starlette.routing import BaseRoute
from twoway_shared.contract.events import (
    PairConfirmed,
    PairDeclined,
    PairEnded,
    PairProposed,
    PairResponseRejected,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    SessionAttendanceRecorded,
    SessionRescheduleRequested,
)
from twoway_shared.platform.consumer import BatchHandler, Handler
from twoway_shared.platform.runtime import Runtime, ServiceSpec, service_spec

from twoway_scheduling import handlers
from twoway_scheduling.config import SchedulingSettings
from twoway_scheduling.read_api import read_routes

HANDLERS: dict[type[BaseModel], Handler] = {
    ProgrammeConfigured: handlers.on_programme_configured,
    ParticipantWithdrawn: handlers.on_withdrawn,
    PairEnded: handlers.on_pair_ended,
    SessionRescheduleRequested: handlers.on_reschedule_requested,
    SessionAttendanceRecorded: handlers.on_attendance_recorded,
}
# Set-based: a run of confirmed pairs, or of profiles, in a handful of statements.
BATCH_HANDLERS: dict[type[BaseModel], BatchHandler] = {
    PairConfirmed: handlers.on_pairs_confirmed,
    ParticipantEnrolled: handlers.on_profiles,
    ParticipantUpdated: handlers.on_profiles,
}
# Only confirmed pairs are booked, and matching rounds are matching's business.
IGNORES = (ProgrammeMatchingRequested, PairProposed, PairDeclined, PairResponseRejected)


def _routes(runtime: Runtime) -> Sequence[BaseRoute]:
    assert isinstance(runtime.settings, SchedulingSettings)
    return read_routes(runtime.pool, runtime.settings)


def create_spec() -> ServiceSpec:
    """The scheduling service as the platform runs it."""
    return service_spec(
        "scheduling",
        __file__,
        handlers=HANDLERS,
        batch_handlers=BATCH_HANDLERS,
        ignores=IGNORES,
        routes=_routes,
    )
