"""Wires the notifications service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from twoway_shared.contract import Topic
from twoway_shared.contract.access import consumes
from twoway_shared.platform.migrations import migrations_dir
from twoway_shared.platform.runtime import ServiceSpec

from twoway_notifications import read_api
from twoway_notifications.handlers import HANDLERS, IGNORES
from twoway_notifications.sender import SenderOptions, sender_worker

MIGRATIONS = migrations_dir(__file__)


def create_spec(sender: SenderOptions | None = None) -> ServiceSpec:
    """The notifications service as the platform runs it; tests may tune the sender."""
    return ServiceSpec(
        name="notifications",
        consumes=consumes("notifications"),
        produces=(Topic.NOTIFICATIONS,),
        handlers=HANDLERS,
        ignores=IGNORES,
        migrations_dir=MIGRATIONS,
        routes=read_api.routes,
        workers=(sender_worker(sender),),
    )
