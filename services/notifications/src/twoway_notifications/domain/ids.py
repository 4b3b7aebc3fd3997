"""Stable notification ids derived from what a message is about, and ids of the events out."""

from __future__ import annotations

import uuid

from twoway_notifications.domain.model import Template

_NAMESPACE = uuid.UUID("6f1d2c1e-5b8a-4e0b-9a55-2f9d7f3c0a11")


def notification_id(template: Template, recipient: str, *about: str | int) -> str:
    """The same facts give the same id whatever event ids carried them."""
    return str(uuid.uuid5(_NAMESPACE, "|".join([template.value, recipient, *map(str, about)])))


def outcome_event_id(notification_id: str, outcome: str) -> str:
    """One notification.sent (or failed) event id per message, so a retry publishes no copy."""
    return str(uuid.uuid5(_NAMESPACE, f"{notification_id}|{outcome}"))
