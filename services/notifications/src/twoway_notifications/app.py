"""Wires the notifications service: its topics, handlers, migrations, HTTP routes and workers."""

from __future__ import annotations

from twoway_shared.platform.runtime import ServiceSpec, service_spec

from twoway_notifications import read_api
from twoway_notifications.handlers import BATCH_HANDLERS, HANDLERS, IGNORES
from twoway_notifications.sender import SenderOptions, sender_worker


def create_spec(sender: SenderOptions | None = None) -> ServiceSpec:
    """The notifications service as the platform runs it; tests may tune the sender."""
    return service_spec(
        "notifications",
        __file__,
        handlers=HANDLERS,
        batch_handlers=BATCH_HANDLERS,
        ignores=IGNORES,
        routes=read_api.routes,
        workers=(sender_worker(sender),),
    )
