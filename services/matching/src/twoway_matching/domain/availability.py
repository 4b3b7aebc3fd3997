"""Weekly availability as UTC intervals over the programme's first week."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from twoway_shared.intervals import Interval
from twoway_shared.wallclock import Window, available


def first_week_intervals(
    windows: Iterable[Window], timezone: str, starts_on: date
) -> list[Interval]:
    """The windows on the 7 dates from `starts_on`, each converted to UTC on its date, merged.

    The same wall-clock maths as scheduling's (twoway_shared.wallclock), so a pair matching
    finds time for is a pair scheduling can book.
    """
    return list(available(timezone, tuple(windows), starts_on, starts_on + timedelta(days=6)))
