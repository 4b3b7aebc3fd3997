"""Wires the notifications service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from pathlib import Path

from twoway_shared.contract import Topic
from twoway_shared.platform.runtime import ServiceSpec

from twoway_notifications import read_api
from twoway_notifications.handlers import HANDLERS, IGNORES
from twoway_notifications.sender import SenderOptions, sender_worker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
if not MIGRATIONS.is_dir():  # an editable install: the folder beside src/
    MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_spec(sender: SenderOptions | None = None) -> ServiceSpec:
    """The notifications service as the platform runs it; tests may tune the sender."""
    return ServiceSpec(
        name="notifications",
        consumes=(Topic.PROGRAMMES, Topic.ENROLMENTS, Topic.PAIRS, Topic.SESSIONS),
        produces=(Topic.NOTIFICATIONS,),
        handlers=HANDLERS,
        ignores=IGNORES,
        migrations_dir=MIGRATIONS,
        routes=read_api.routes,
        workers=(sender_worker(sender),),
    )
