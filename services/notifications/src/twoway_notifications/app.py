"""Wires the notifications service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from pathlib import Path

from twoway_shared.contract import Topic
from twoway_shared.platform.runtime import ServiceSpec

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
if not MIGRATIONS.is_dir():  # an editable install: the folder beside src/
    MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_spec() -> ServiceSpec:
    """The notifications service as the platform runs it."""
    return ServiceSpec(
        name="notifications",
        consumes=(Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIRS, Topic.SESSIONS),
        produces=(Topic.NOTIFICATIONS,),
        handlers={},
        migrations_dir=MIGRATIONS,
    )
