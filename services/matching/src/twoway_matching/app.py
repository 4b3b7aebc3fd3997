"""Wires the matching service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from twoway_shared.contract import Topic, access
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
from twoway_shared.platform.migrations import migrations_dir
from twoway_shared.platform.runtime import ServiceSpec

from twoway_matching import handlers, read_api
from twoway_matching.workers import matching_worker

MIGRATIONS = migrations_dir(__file__)


def create_spec() -> ServiceSpec:
    """The matching service as the platform runs it."""
    return ServiceSpec(
        name="matching",
        consumes=access.consumes("matching"),
        produces=(Topic.PAIRS,),
        handlers={
            ProgrammeConfigured: handlers.configure_programme,
            ProgrammeMatchingRequested: handlers.request_matching,
            ParticipantEnrolled: handlers.enrol,
            ParticipantUpdated: handlers.enrol,
            ParticipantWithdrawn: handlers.withdraw,
            PairResponseSubmitted: handlers.respond,
            PairRematchRequested: handlers.request_rematch,
            PairCompleted: handlers.complete,
        },
        migrations_dir=MIGRATIONS,
        routes=read_api.routes,
        workers=(matching_worker,),
        # Read past on purpose: they change no pair and no pool.
        ignores=(PairHealthChanged, CreditAwarded),
    )
