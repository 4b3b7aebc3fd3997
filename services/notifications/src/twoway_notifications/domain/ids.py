"""Stable notification ids derived from what a message is about, and ids of the events out."""

from __future__ import annotations

from twoway_shared.ids import StableIds

from twoway_notifications.domain.model import Template

_IDS = StableIds("6f1d2c1e-5b8a-4e0b-9a55-2f9d7f3c0a11", sep="|")


def notification_id(template: Template, recipient: str, *about: str | int) -> str:
    """The same facts give the same id whatever event ids carried them."""
    return _IDS(template.value, recipient, *about)


def coordinator_id(programme_id: str) -> str:
    """The recipient id of a programme's coordinator (not a participant), a valid contract id."""
    candidate = f"coordinator:{programme_id}"
    if len(candidate) <= 64:
        return candidate
    return f"coordinator:{_IDS('coordinator', programme_id)}"


def outcome_event_id(notification_id: str, outcome: str) -> str:
    """One notification.sent (or failed) event id per message, so a retry publishes no copy."""
    return _IDS(notification_id, outcome)
