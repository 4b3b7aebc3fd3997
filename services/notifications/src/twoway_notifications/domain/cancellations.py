"""How cancelled sessions become messages: which cancellations are news, which join one email."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from twoway_notifications.domain.model import Session

# Cancellations of one cause arrive as separate records; waiting this long before sending
# lets them join one email per person.
CANCELLATION_GROUPING = timedelta(seconds=2)


class CancellationNews(StrEnum):
    """What a `session.cancelled` means to the messages of its session."""

    STALE = "stale"  # a newer fact, or this one, is already known: nothing changes
    RECORD = "record"  # the session was never announced: record it, take nothing back
    ANNOUNCE = "announce"  # tell the people whose booking email already went out


@dataclass(frozen=True)
class CancellationGroup:
    """The message a cancellation joins: one per person and key, sent at `send_at`."""

    key: str
    send_at: datetime


def cancellation_news(known: Session | None, revision: int) -> CancellationNews:
    """Whether a cancellation at `revision` is news, given what is known of the session."""
    if known is not None and (
        known.revision > revision or (known.revision == revision and known.status != "scheduled")
    ):
        return CancellationNews.STALE
    if known is None:
        return CancellationNews.RECORD
    return CancellationNews.ANNOUNCE


def cancellation_group(
    pair_id: str, reason: str, cause_id: str, now: datetime
) -> CancellationGroup:
    """The group of a cancellation opened `now`.

    A pair ends once, so the cancellations a pair's end causes share the pair and the
    reason; a session that lost its slot (`no_slot`) is its own cause, so each such cause
    gets its own email.
    """
    key = f"{pair_id}|{reason}" + ("" if reason != "no_slot" else f"|{cause_id}")
    return CancellationGroup(key, now + CANCELLATION_GROUPING)
