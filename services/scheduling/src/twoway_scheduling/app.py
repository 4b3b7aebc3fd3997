"""Wires the scheduling service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from starlette.routing import BaseRoute
from twoway_shared.contract import Topic
from twoway_shared.platform.consumer import Handler
from twoway_shared.platform.runtime import Runtime, ServiceSpec

from twoway_scheduling import handlers
from twoway_scheduling.read_api import read_routes

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
if not MIGRATIONS.is_dir():  # an editable install: the folder beside src/
    MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

# pair.proposed and pair.declined need nothing from scheduling: only confirmed pairs are booked.
HANDLERS: dict[str, Handler] = {
    "programme.configured": handlers.on_programme_configured,
    "participant.enrolled": handlers.on_profile,
    "participant.updated": handlers.on_profile,
    "participant.withdrawn": handlers.on_withdrawn,
    "pair.confirmed": handlers.on_pair_confirmed,
    "pair.ended": handlers.on_pair_ended,
    "session.reschedule_requested": handlers.on_reschedule_requested,
    "session.attendance_recorded": handlers.on_attendance_recorded,
}


def _routes(runtime: Runtime) -> Sequence[BaseRoute]:
    return read_routes(runtime.pool)


def create_spec() -> ServiceSpec:
    """The scheduling service as the platform runs it."""
    return ServiceSpec(
        name="scheduling",
        consumes=(Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIRS, Topic.SESSION_REQUESTS),
        produces=(Topic.SESSIONS,),
        handlers=HANDLERS,
        migrations_dir=MIGRATIONS,
        routes=_routes,
    )
