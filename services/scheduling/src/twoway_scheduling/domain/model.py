"""Plain data the slot finder works on: people and programme rules (windows: wallclock)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Literal

from twoway_shared.wallclock import Window

Cadence = Literal["weekly", "fortnightly"]


@dataclass(frozen=True)
class Person:
    """What the slot finder needs of one participant: their zone and weekly windows."""

    timezone: str
    windows: tuple[Window, ...]

    @cached_property
    def _hash(self) -> int:
        return hash((self.timezone, self.windows))

    def __hash__(self) -> int:
        # Hashed once: the slot finder looks people up in a cache for every start it checks.
        return self._hash


@dataclass(frozen=True)
class SeriesRules:
    """The programme settings a booking applies."""

    session_minutes: int = 30
    cadence: Cadence = "weekly"
    sessions: int = 12
    starts_on: date | None = None  # None: the day the booking is made
    min_notice_hours: int = 24

    @property
    def period(self) -> timedelta:
        return timedelta(weeks=2 if self.cadence == "fortnightly" else 1)

    @property
    def min_notice(self) -> timedelta:
        return timedelta(hours=self.min_notice_hours)


@dataclass(frozen=True)
class SeriesPlan:
    """The start times booked for a series (in order), and why it stopped short, if it did."""

    starts: tuple[datetime, ...]
    failure: str | None = None
