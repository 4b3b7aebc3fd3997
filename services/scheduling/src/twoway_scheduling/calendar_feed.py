"""The iCalendar feed of a participant's sessions, for Outlook or Google Calendar to subscribe."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby

from twoway_shared.calendar import SeriesText, feed, pair_series

from twoway_scheduling.storage import Session

_TEXT = SeriesText(
    summary="Reverse mentoring (Twoway)",
    description="A reverse-mentoring session of your Twoway pair. "
    "Changes arrive here and by email.",
)


def calendar_feed(sessions: Sequence[Session], now: datetime) -> bytes:
    """One recurring series per pair, with the same UIDs and occurrences as the invitations.

    A pair's cancelled sessions are EXDATEs of its series; a series with nothing left stays in
    the feed with STATUS:CANCELLED, so subscribed calendars drop it rather than keep a copy.
    """
    series = []
    by_pair = sorted(sessions, key=lambda s: (s.pair_id, s.sequence))
    for pair_id, group in groupby(by_pair, key=lambda s: s.pair_id):
        plan = pair_series(pair_id, list(group))
        if plan is not None:
            series.append((plan, _TEXT))
    series.sort(key=lambda item: item[0].anchor)
    return feed(series, now, "Twoway mentoring sessions")
