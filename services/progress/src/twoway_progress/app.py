"""Wires the progress service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from pathlib import Path

from twoway_shared.contract import Topic
from twoway_shared.platform.runtime import ServiceSpec

from twoway_progress import api
from twoway_progress.handlers import HANDLERS
from twoway_progress.workers import WorkerOptions, statement_worker, timer_worker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
if not MIGRATIONS.is_dir():  # an editable install: the folder beside src/
    MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


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
        migrations_dir=MIGRATIONS,
        routes=api.routes,
        workers=(timer_worker(options), statement_worker(options)),
    )
