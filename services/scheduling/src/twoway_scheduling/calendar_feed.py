"""The iCalendar feed of a participant's sessions, for Outlook or Google Calendar to subscribe."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby

from twoway_shared.calendar import SeriesSession, SeriesText, feed, plan_series

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
        of_pair = list(group)
        first = of_pair[0]
        plan = plan_series(
            pair_id,
            [
                SeriesSession(
                    s.session_id,
                    s.sequence,
                    s.revision,
                    s.status,
                    s.starts_at,
                    s.ends_at,
                    s.first_starts_at,
                )
                for s in of_pair
            ],
            first.series_zone or "UTC",
            first.series_weeks or 1,
        )
        if plan is not None:
            series.append((plan, _TEXT))
    series.sort(key=lambda item: item[0].anchor)
    return feed(series, now, "Twoway mentoring sessions")
