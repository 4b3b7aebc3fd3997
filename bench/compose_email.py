"""Benchmark: CPU per email built by the notifications service (`compose`), no I/O.

Three shapes: a pair_confirmed email (text and HTML), a booking of 12 weekly sessions at the
same wall-clock time in the mentee's zone (one VEVENT and its VTIMEZONE), and a booking of 12
sessions fixed in UTC across a change of clocks (8 of them overrides). Each round builds the
two emails (the mentee's, the mentor's) of a new pair with sessions of its own, as a claim
holds them. Each figure is the best of three rounds of process CPU time, so other work on
the machine inflates it less.

Usage:
    uv run python bench/compose_email.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from twoway_notifications.compose import MailSettings, compose
from twoway_notifications.domain.model import Contact, Message, Session, Template

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
SETTINGS = MailSettings(mail_from="Twoway <no-reply@twoway.local>", portal_url="https://portal.x")
DANA = Contact("E1", "mentee", "Dana Whitfield", "dana@example.com", "Europe/London", "en-GB")
SAM = Contact("E2", "mentor", "Sam Okafor", "sam@example.com", "America/New_York", "fr")
DETAILS = {"mentee_learns": ["generative-ai"], "mentor_learns": ["leadership"]}


def weekly(first: datetime, n: int, pair: str) -> list[Session]:
    """`pair`'s n sessions a week apart at `first`'s wall-clock time in its zone."""
    starts = [first + timedelta(weeks=i) for i in range(n)]
    return [
        Session(
            f"{pair}-s{i}",
            pair,
            "E2",
            "E1",
            i,
            n,
            s.astimezone(UTC),
            (s + timedelta(minutes=30)).astimezone(UTC),
            0,
            "scheduled",
            series_zone="Europe/London",
            series_weeks=1,
        )
        for i, s in enumerate(starts, start=1)
    ]


def cpu_ms(template: Template, first: datetime | None, rounds: int) -> float:
    """CPU per email of `rounds` pairs' two emails (the mentee's, then the mentor's), each
    pair with its own sessions (a minute later than the one before), as a claim holds them:
    nothing one pair's emails make is of use to the next pair's."""
    pairs = []
    for i in range(3 * rounds + 1):
        pair = f"p{i}"
        sessions = weekly(first + timedelta(minutes=i), 12, pair) if first is not None else []
        emails = [
            (
                Message(
                    f"n{i}-{who.participant_id}",
                    template,
                    who.participant_id,
                    other.participant_id,
                    pair,
                    None,
                    f"ev-{i}",
                    details=DETAILS,
                ),
                who,
                other,
            )
            for who, other in ((DANA, SAM), (SAM, DANA))
        ]
        pairs.append((emails, sessions))
    emails, sessions = pairs.pop()
    assert all(
        compose(m, who, other, sessions, SETTINGS, NOW) is not None for m, who, other in emails
    )
    best = float("inf")
    for r in range(3):
        started = time.process_time()
        for emails, sessions in pairs[r * rounds : (r + 1) * rounds]:
            for message, who, other in emails:
                compose(message, who, other, sessions, SETTINGS, NOW)
        best = min(best, (time.process_time() - started) / (2 * rounds) * 1000)
    return best


def measure(rounds: int) -> str:
    """Print the CPU per email of each shape; one summary line."""
    regular = datetime(2027, 3, 3, 13, 0, tzinfo=ZoneInfo("Europe/London"))
    across_dst = datetime(2027, 3, 3, 10, 30, tzinfo=UTC)
    figures = []
    for name, template, first in (
        ("pair_confirmed", Template.PAIR_CONFIRMED, None),
        ("booking, 12 sessions, regular", Template.BOOKING, regular),
        ("booking, 12 sessions, 8 overrides", Template.BOOKING, across_dst),
    ):
        ms = cpu_ms(template, first, rounds)
        print(f"compose {name}: {ms:.2f} ms CPU per email")
        figures.append(f"{name} {ms:.2f} ms")
    return "CPU per email: " + ", ".join(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    measure(parser.parse_args().rounds)
