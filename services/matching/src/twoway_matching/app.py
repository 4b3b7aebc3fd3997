"""Wires the matching service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from twoway_shared.contract.events import (
    CreditAwarded,
    PairCompleted,
    PairHealthChanged,
    PairRematchRequested,
    PairResponseSubmitted,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
)
from twoway_shared.platform.runtime import ServiceSpec, service_spec

from twoway_matching import handlers, read_api
from twoway_matching.workers import matching_worker


def create_spec() -> ServiceSpec:
    """The matching service as the platform runs it."""
    return service_spec(
        "matching",
        __file__,
        handlers={
            ProgrammeConfigured: handlers.configure_programme,
            ProgrammeMatchingRequested: handlers.request_matching,
            ParticipantWithdrawn: handlers.withdraw,
            PairResponseSubmitted: handlers.respond,
            PairRematchRequested: handlers.request_rematch,
            PairCompleted: handlers.complete,
        },
        # Set-based: a run of enrolments in a handful of statements.
        batch_handlers={
            ParticipantEnrolled: handlers.enrol,
            ParticipantUpdated: handlers.enrol,
        },
        routes=read_api.routes,
        workers=(matching_worker,),
        # Read past on purpose: they change no pair and no pool.
        ignores=(PairHealthChanged, CreditAwarded),
    )
