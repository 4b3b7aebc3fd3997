"""The booking invitation in a real calendar application: khal (Debian) imports and lists it.

khal stands for the calendar clients people use: it expands the series with its own
recurrence code (python-dateutil and icalendar of the system), not the one the other tests
use. `make system-deps` installs it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from twoway_notifications.compose import MailSettings, compose
from twoway_notifications.domain.model import Contact, Message, Session, Template

KHAL = shutil.which("khal")
FORMAT = "{start} {end} {title}"
pytestmark = pytest.mark.skipif(KHAL is None, reason="khal is not installed (make system-deps)")

LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")
DANA = Contact("E1", "mentee", "Dana Whitfield", "dana@example.com", "Europe/London")
SAM = Contact("M1", "mentor", "Sam Okafor", "sam@example.com", "America/New_York")
SETTINGS = MailSettings(mail_from="Twoway <mentoring@example.com>", portal_url="https://p.example")


def sessions() -> list[Session]:
    """Eight Wednesdays at 13:00 London from 3 March 2027, across both countries' DST changes.

    Week 3 (the US changed clocks, the UK not yet) moved to Thursday, week 5 was skipped,
    session 4 was later rescheduled to a Friday morning, session 6 cancelled.
    """
    out = []
    weeks = [0, 1, 2, 3, 5, 6, 7, 8]
    for n, week in enumerate(weeks, start=1):
        local = datetime(2027, 3, 3, 13, 0, tzinfo=LONDON) + timedelta(weeks=week)
        local = datetime.combine(local.date(), local.time(), LONDON)
        starts = local.astimezone(UTC)
        out.append(
            Session(
                f"s{n}", "pair-7", "M1", "E1", n, 8, starts, starts + timedelta(minutes=30), 0,
                "scheduled", series_zone="Europe/London", series_weeks=1,
            )
        )  # fmt: skip
    moved = datetime(2027, 3, 18, 13, 0, tzinfo=LONDON).astimezone(UTC)
    out[2] = replace(
        out[2], starts_at=moved, ends_at=moved + timedelta(minutes=30), first_starts_at=moved
    )
    later = datetime(2027, 3, 26, 9, 0, tzinfo=LONDON).astimezone(UTC)
    out[3] = replace(
        out[3],
        starts_at=later,
        ends_at=later + timedelta(minutes=45),
        revision=1,
        first_starts_at=out[3].starts_at,
    )
    out[5] = replace(out[5], status="cancelled", revision=1, first_starts_at=out[5].starts_at)
    return out


def booking_ics(recipient: Contact, partner: Contact, pair: list[Session]) -> bytes:
    message = Message(
        "n-1", Template.BOOKING, recipient.participant_id, partner.participant_id, "pair-7",
        None, "ev-1", details={"mentee_learns": ["generative-ai"], "mentor_learns": ["strategy"]},
    )  # fmt: skip
    composed = compose(
        message, recipient, partner, pair, SETTINGS, datetime(2027, 2, 1, tzinfo=UTC)
    )
    assert composed is not None
    mail = message_from_bytes(composed.data, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    [part] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def khal_list(tmp: Path, ics: bytes, zone: str) -> list[str]:
    """Import one invitation into a fresh khal calendar and list what khal shows."""
    calendar = tmp / "calendars" / "twoway"
    calendar.mkdir(parents=True)
    config = tmp / "khal.conf"
    config.write_text(
        f"[calendars]\n[[twoway]]\npath = {calendar}\n"
        "[locale]\ntimeformat = %H:%M\ndateformat = %Y-%m-%d\nlongdateformat = %Y-%m-%d\n"
        "datetimeformat = %Y-%m-%d %H:%M\nlongdatetimeformat = %Y-%m-%d %H:%M\n"
        f"local_timezone = {zone}\ndefault_timezone = {zone}\n"
        "[default]\ndefault_calendar = twoway\n"
    )
    invite = tmp / "invite.ics"
    invite.write_bytes(ics)
    env = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"), "PATH": "/usr/bin:/bin"}
    khal = [str(KHAL), "-c", str(config)]
    subprocess.run(
        [*khal, "import", "--batch", "-a", "twoway", str(invite)], env=env, check=True, timeout=60
    )
    listed = subprocess.run(
        [*khal, "list", "--day-format", "", "--format", FORMAT, "2027-01-01", "2027-12-31"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return [line for line in listed.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize(("recipient", "partner"), [(DANA, SAM), (SAM, DANA)])
def test_khal_shows_exactly_the_booked_sessions(
    tmp_path: Path, recipient: Contact, partner: Contact
) -> None:
    pair = sessions()
    zone = ZoneInfo(recipient.timezone or "UTC")
    listed = khal_list(tmp_path, booking_ics(recipient, partner, pair), str(zone))
    expected = [
        f"{s.starts_at.astimezone(zone):%Y-%m-%d %H:%M} {s.ends_at.astimezone(zone):%Y-%m-%d %H:%M}"
        f" Reverse mentoring with {partner.display_name}"
        for s in pair
        if s.is_held and s.starts_at is not None and s.ends_at is not None
    ]
    assert len(expected) == 7
    assert listed == expected
