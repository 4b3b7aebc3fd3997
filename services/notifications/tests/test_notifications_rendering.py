"""Pure tests: ids, reminder and retry rules, every template rendered, calendars parsed back."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import vobject
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from icalendar import Calendar
from twoway_dev.localstack.stack import process_alive
from twoway_dev.testing.calendar_client import CalendarClient, Meeting
from twoway_notifications import compose as compose_module
from twoway_notifications.compose import (
    Draft,
    MailSettings,
    NotComposed,
    compose,
    compose_drafts,
    compose_in_turn,
    compose_off_loop,
)
from twoway_notifications.domain.ids import notification_id
from twoway_notifications.domain.model import Contact, Message, Session, Template
from twoway_notifications.domain.rules import (
    Verdict,
    backoff,
    decide,
    gives_up,
    local_span,
    local_time,
    reminder_times,
    smtp_error,
)
from twoway_notifications.mailer import Email, _data_text
from twoway_shared.contract.calendar_token import sign

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")
SETTINGS = MailSettings(mail_from="Twoway <no-reply@twoway.local>", portal_url="https://portal.x/")
DANA = Contact("E1", "mentee", "Dana Whitfield", "dana@example.com", "Europe/London", "en-GB")
SAM = Contact("E2", "mentor", "Sam Okafor", "sam@example.com", "America/New_York", "fr")


def prop(component: Any, name: str) -> Any:
    """A property of an icalendar component (the library's union types are too wide to use)."""
    return component[name]


def session(n: int, *, revision: int = 0, status: str = "scheduled") -> Session:
    starts = datetime(2027, 3, 3, 10, 30, tzinfo=UTC) + timedelta(weeks=n - 1)
    return Session(
        f"s{n}", "p1", "E2", "E1", n, 3, starts, starts + timedelta(minutes=30), revision, status
    )


def message(template: Template, **kw: object) -> Message:
    fields: dict[str, object] = {
        "notification_id": notification_id(template, "E1", "p1"),
        "template": template,
        "participant_id": "E1",
        "partner_id": "E2",
        "pair_id": "p1",
        "session_id": None,
        "cause_id": "ev-1",
    }
    fields.update(kw)
    return Message(**fields)  # type: ignore[arg-type]


def parsed(mail: Email) -> EmailMessage:
    """The email as the server receives it."""
    back = message_from_bytes(mail.data, policy=policy.default)
    assert isinstance(back, EmailMessage)
    return back


def calendar_of(mail: EmailMessage) -> Calendar:
    parts = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return Calendar.from_ical(payload)


def bodies(mail: EmailMessage) -> tuple[str, str]:
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()), str(html.get_content())


def test_ids_depend_on_facts_only() -> None:
    a = notification_id(Template.REMINDER, "E1", "s1", 0, 60)
    assert a == notification_id(Template.REMINDER, "E1", "s1", 0, 60)
    assert a != notification_id(Template.REMINDER, "E2", "s1", 0, 60)
    assert a != notification_id(Template.REMINDER, "E1", "s1", 1, 60)


def test_reminders_already_past_are_skipped() -> None:
    starts = NOW + timedelta(hours=2)
    due = reminder_times(starts, [1440, 60, 60], NOW)
    assert due == [(60, starts - timedelta(minutes=60))]


def test_backoff_starts_within_30s_and_grows() -> None:
    base = timedelta(seconds=15)
    assert [backoff(n, base).total_seconds() for n in (1, 2, 3)] == [15, 30, 60]
    assert backoff(30, base) == timedelta(hours=1)
    assert not gives_up(NOW, NOW + timedelta(hours=23))
    assert gives_up(NOW, NOW + timedelta(hours=24))


def test_local_time_names_the_zone() -> None:
    at = datetime(2027, 3, 3, 10, 30, tzinfo=UTC)
    assert local_time(at, "Europe/London") == "Wednesday 3 March 2027, 10:30 (Europe/London)"
    assert local_time(at, "America/New_York") == "Wednesday 3 March 2027, 05:30 (America/New_York)"


def test_the_two_half_past_ones_of_a_night_the_clocks_go_back_are_told_apart() -> None:
    """They compare equal as wall-clock times an hour apart; the texts are kept by instant."""
    first = datetime(2027, 10, 31, 1, 30, tzinfo=ZoneInfo("Europe/London"))
    second = first.replace(fold=1)
    assert first == second  # Python's rule for times in the same zone
    assert local_time(first, "UTC") == "Sunday 31 October 2027, 00:30 (UTC)"
    assert local_time(second, "UTC") == "Sunday 31 October 2027, 01:30 (UTC)"
    assert local_span(first, first + timedelta(minutes=30), "UTC").startswith(
        "Sunday 31 October 2027, 00:30"
    )
    assert local_span(second, second + timedelta(minutes=30), "UTC").startswith(
        "Sunday 31 October 2027, 01:30"
    )


def test_smtp_error_holds_no_address() -> None:
    assert smtp_error(550, "5.1.1 <dana@example.com>: mailbox unavailable") == (
        "SMTP 550 5.1.1 <recipient>: mailbox unavailable"
    )


def test_decide_waits_skips_and_sends() -> None:
    m = message(Template.BOOKING)
    assert decide(m, None, SAM).verdict is Verdict.WAIT
    assert decide(m, DANA, None).verdict is Verdict.WAIT
    assert decide(m, DANA, SAM).verdict is Verdict.SEND
    erased = Contact("E2", "mentor", None, None, None, erased=True)
    assert decide(m, DANA, erased).verdict is Verdict.SKIP
    assert decide(message(Template.PARTNER_WITHDREW), DANA, erased).verdict is Verdict.SEND
    opted_out = Contact("E1", "mentee", "D", "d@x.org", "UTC", notify_reminders=False)
    assert decide(message(Template.REMINDER), opted_out, SAM).verdict is Verdict.SKIP
    assert decide(m, opted_out, SAM).verdict is Verdict.SEND
    no_email = Contact("E1", "mentee", "D", "d@x.org", "UTC", notify_email=False)
    assert decide(m, no_email, SAM).verdict is Verdict.SKIP


DETAILS: dict[str, object] = {
    "mentee_learns": ["generative-ai", "data-visualisation"],
    "mentor_learns": ["leadership"],
    "expires_at": "2027-03-04T09:00:00+00:00",
    "people": ["E2", "E1"],
    "mentor_id": "E2",
    "mentee_id": "E1",
    "health": "at_risk",
    "reasons": ["low_rating", "missed_in_a_row"],
    "sessions_completed": 3,
    "sessions_missed": 2,
    "last_activity_at": "2027-02-20T10:30:00+00:00",
    "credit_id": "cr-1",
    "credits": 1.2,
    "minutes": 360,
    "topics": ["generative-ai", "prompt-engineering"],
}


@pytest.mark.parametrize("template", list(Template))
def test_every_template_renders_html_and_text(template: Template) -> None:
    m = message(template, session_id="s1", session_ids=("s1",), details=DETAILS)
    sessions = [
        session(1, status="cancelled" if template is Template.SESSION_CANCELLED else "scheduled")
    ]
    people = {"E1": DANA, "E2": SAM}
    composed = compose(m, DANA, SAM, sessions, SETTINGS, NOW, people)
    assert composed is not None
    mail = parsed(composed)
    assert mail["Message-ID"] == f"<{m.notification_id}@twoway>"
    assert mail["To"] == "Dana Whitfield <dana@example.com>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Subject"]
    text, html = bodies(mail)
    assert "Dana Whitfield" in text
    assert "<p>Hello Dana Whitfield,</p>" in html
    if template in (
        Template.REMINDER,
        Template.BOOKING,
        Template.SESSION_RESCHEDULED,
        Template.SESSION_CANCELLED,
        Template.FEEDBACK_REQUEST,
    ):
        # Start and end in the recipient's zone, and the partner's own time (zones differ).
        assert "Wednesday 3 March 2027, 10:30\u201311:00 (Europe/London)" in text
    if template in (Template.REMINDER, Template.BOOKING, Template.SESSION_RESCHEDULED):
        partner_time = "Wednesday 3 March 2027, 05:30\u201306:00 (America/New_York)"
        assert f"Sam Okafor's time: {partner_time}" in text
    if template is Template.PAIR_PROPOSED:
        assert "https://portal.x/pairs/p1" in text
        assert "You would learn: generative AI and data visualisation" in text
        assert "generative-ai" not in text + html
        assert "by Thursday 4 March 2027, 09:00 (Europe/London)" in text
    if template is Template.SESSION_CANCELLED:
        assert "with Sam Okafor" in str(mail["Subject"])
        assert "This session with Sam Okafor is cancelled" in text
    if template is Template.PARTNER_WITHDREW:
        assert "Sam" not in text
    if template is Template.FEEDBACK_REQUEST:
        assert "https://portal.x/sessions/s1/feedback" in text
    if template is Template.PAIR_CLOSED:
        assert "nobody's fault" in text
        assert "not a fit" not in text.lower()
    if template is Template.PAIR_AT_RISK:
        assert "Dana Whitfield (mentee) and Sam Okafor (mentor) is at risk" in text
        assert "the last two sessions were missed" in text
        assert "recent sessions were rated low" in text
    if template is Template.COMPLETION:
        assert "Continuing-education credits: 1.2" in text
        assert "360 minutes" in text
        assert "generative AI and prompt engineering" in text
        assert "https://portal.x/credits/cr-1" in text


def test_unknown_locale_falls_back_to_english() -> None:
    mail = compose(message(Template.PAIR_CONFIRMED), SAM, DANA, [], SETTINGS, NOW)
    assert mail is not None
    assert "reverse-mentoring partners" in bodies(parsed(mail))[0]


def test_html_escapes_names() -> None:
    odd = Contact("E2", "mentor", "<b>Sam</b>", "sam@example.com", "UTC")
    mail = compose(message(Template.PAIR_CONFIRMED), DANA, odd, [], SETTINGS, NOW)
    assert mail is not None
    assert "&lt;b&gt;Sam&lt;/b&gt;" in bodies(parsed(mail))[1]


def test_line_breaks_in_names_never_reach_headers() -> None:
    """The contract allows any display name; a header may hold no line break."""
    dana = Contact("E1", "mentee", "Dana\nWhitfield\r", "dana@example.com", "Europe/London")
    sam = Contact("E2", "mentor", "Sam\x00 Okafor", "sam@example.com", "UTC")
    composed = compose(message(Template.BOOKING), dana, sam, [session(1)], SETTINGS, NOW)
    assert composed is not None
    mail = parsed(composed)
    assert mail["To"] == "Dana Whitfield <dana@example.com>"
    assert "\n" not in str(mail["Subject"])
    calendar = next(p for p in mail.walk() if p.get_content_type() == "text/calendar")
    assert 'CN="Sam Okafor"' in calendar.get_content()


def test_names_and_subjects_arrive_intact_and_the_wire_is_7_bit() -> None:
    """Headers RFC 2047 encoded, bodies quoted-printable or base64: no 8-bit byte reaches an
    SMTP server, and every name decodes back to what was given."""
    zoe = replace(DANA, display_name="Zo\u00eb \u00c5ngstr\u00f6m \u5c71\u7530")
    jose = replace(SAM, display_name="Jos\u00e9 M\u00fcller-\u0141ukasiewicz")
    french = replace(SETTINGS, mail_from="\u00c9quipe Twoway <no-reply@twoway.local>")
    for template in (Template.PAIR_CONFIRMED, Template.BOOKING):
        composed = compose(message(template), zoe, jose, [session(1)], french, NOW)
        assert composed is not None
        assert composed.data.isascii()
        assert (composed.sender, composed.recipients) == (
            "no-reply@twoway.local",
            ("dana@example.com",),
        )
        mail = parsed(composed)
        [to] = mail["To"].addresses
        assert (to.display_name, to.addr_spec) == (zoe.display_name, "dana@example.com")
        assert mail["From"].addresses[0].display_name == "\u00c9quipe Twoway"
        assert str(mail["Subject"]).endswith(f" {jose.display_name}")
        text, html = bodies(mail)
        assert f"Hello {zoe.display_name}," in text
        assert f"<p>Hello {zoe.display_name},</p>" in html
        if template is Template.BOOKING:
            attendees = prop(calendar_of(mail).walk("VEVENT")[0], "ATTENDEE")
            assert {str(a.params["CN"]) for a in attendees} == {zoe.display_name, jose.display_name}
    # Quotes and commas in an ASCII name; a name and a subject longer than one encoded word
    # (split into several, which RFC 2047 decoders join back).
    quoted = replace(DANA, display_name='Dana "DW" Whitfield, PhD')
    long = replace(SAM, display_name="Jos\u00e9 " + "M\u00fcller-\u0141ukasiewicz " * 6 + "Jr")
    composed = compose(message(Template.PAIR_CONFIRMED), quoted, long, [], SETTINGS, NOW)
    assert composed is not None
    assert composed.data.isascii()
    mail = parsed(composed)
    assert mail["To"].addresses[0].display_name == quoted.display_name
    assert str(mail["Subject"]).endswith(f", {long.display_name}")
    composed = compose(message(Template.PAIR_CONFIRMED), long, quoted, [], SETTINGS, NOW)
    assert composed is not None
    raw = message_from_bytes(composed.data)  # compat32: each header as written
    assert str(make_header(decode_header(raw["To"]))) == f"{long.display_name} <sam@example.com>"
    assert all(len(line) <= 78 for line in composed.data.splitlines())


def attachment(mail: EmailMessage) -> bytes:
    [part] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    # Two independent parsers read every attachment.
    assert vobject.readOne(payload.decode("utf-8")).name == "VCALENDAR"
    return payload


def test_booking_is_one_recurring_series_with_names_and_a_description() -> None:
    sessions = [session(1), session(2, revision=1), session(3, status="cancelled")]
    keyed = replace(SETTINGS, organizer="mentoring@corp.example", calendar_keys=(b"k1",))
    m = message(Template.BOOKING, details=DETAILS)
    mail = compose(m, DANA, SAM, sessions, keyed, NOW)
    assert mail is not None
    cal = calendar_of(parsed(mail))
    assert str(prop(cal, "METHOD")) == "REQUEST"
    [master] = cal.walk("VEVENT")
    assert str(prop(master, "UID")) == "p1@twoway"
    assert prop(master, "RRULE").to_ical() == b"FREQ=WEEKLY;COUNT=3"
    assert prop(master, "DTSTART").params["TZID"] == "Europe/London"  # the mentee's zone
    assert [str(z["TZID"]) for z in cal.walk("VTIMEZONE")] == ["Europe/London"]
    assert master.decoded("EXDATE").dts[0].dt == datetime(2027, 3, 17, 10, 30, tzinfo=LONDON)
    assert int(prop(master, "SEQUENCE")) == 1
    assert str(prop(master, "X-TWOWAY-SESSION-ID")) == "s1"
    assert str(prop(master, "ORGANIZER")) == "mailto:mentoring@corp.example"
    assert sorted((str(a), str(a.params["CN"])) for a in prop(master, "ATTENDEE")) == [
        ("mailto:dana@example.com", "Dana Whitfield"),
        ("mailto:sam@example.com", "Sam Okafor"),
    ]
    assert str(prop(master, "SUMMARY")) == "Reverse mentoring with Sam Okafor"
    description = str(prop(master, "DESCRIPTION"))
    assert "Dana Whitfield learns: generative AI and data visualisation." in description
    assert "Sam Okafor learns: leadership." in description
    assert "https://portal.x/pairs/p1" in description
    # The subscription link: the person's token under the first key.
    text, html = bodies(parsed(mail))
    token = sign("E1", [b"k1"])
    assert f"http://localhost:8082/calendars/{token}.ics" in text
    assert f"/calendars/{token}.ics" in html
    plain = compose(m, DANA, SAM, sessions, SETTINGS, NOW)
    assert plain is not None
    assert "/calendars/" not in bodies(parsed(plain))[0]
    assert "mailto:no-reply@twoway.local" in attachment(parsed(plain)).decode()


def test_update_is_the_override_of_one_occurrence() -> None:
    moved = replace(
        session(2, revision=1),
        starts_at=datetime(2027, 3, 11, 15, 0, tzinfo=UTC),
        ends_at=datetime(2027, 3, 11, 15, 30, tzinfo=UTC),
        first_starts_at=session(2).starts_at,
    )
    m = message(Template.SESSION_RESCHEDULED, session_id="s2")
    mail = compose(m, DANA, SAM, [session(1), moved], SETTINGS, NOW)
    assert mail is not None
    cal = calendar_of(parsed(mail))
    assert str(prop(cal, "METHOD")) == "REQUEST"
    [event] = cal.walk("VEVENT")
    assert (str(prop(event, "UID")), int(prop(event, "SEQUENCE"))) == ("p1@twoway", 1)
    assert event.decoded("RECURRENCE-ID") == datetime(2027, 3, 10, 10, 30, tzinfo=LONDON)
    assert event.decoded("DTSTART") == datetime(2027, 3, 11, 15, 0, tzinfo=LONDON)
    assert str(prop(event, "X-TWOWAY-SESSION-ID")) == "s2"


def test_cancellation_by_recurrence_id_then_of_the_whole_series() -> None:
    m = message(Template.SESSION_CANCELLED, session_ids=("s1", "s2"))
    cancelled = [
        session(1, revision=1, status="cancelled"),
        session(2, revision=2, status="cancelled"),
    ]
    mail = compose(m, DANA, None, [*cancelled, session(3)], SETTINGS, NOW)
    assert mail is not None
    cal = calendar_of(parsed(mail))
    assert str(prop(cal, "METHOD")) == "CANCEL"
    events = cal.walk("VEVENT")
    assert [(str(prop(e, "UID")), int(prop(e, "SEQUENCE"))) for e in events] == [
        ("p1@twoway", 1),
        ("p1@twoway", 2),
    ]
    assert [e.decoded("RECURRENCE-ID").day for e in events] == [3, 10]
    assert all(str(prop(e, "STATUS")) == "CANCELLED" for e in events)
    # The partner's details are gone (erased): the email says "your partner".
    assert "These sessions with your partner are cancelled" in bodies(parsed(mail))[0]
    # Once nothing of the series is left, the whole series goes: no RECURRENCE-ID.
    last = message(Template.SESSION_CANCELLED, session_ids=("s3",))
    everything = [*cancelled, session(3, revision=1, status="cancelled")]
    mail = compose(last, DANA, SAM, everything, SETTINGS, NOW)
    assert mail is not None
    [event] = calendar_of(parsed(mail)).walk("VEVENT")
    assert "RECURRENCE-ID" not in event
    assert int(prop(event, "SEQUENCE")) == 3


def _move(s: Session, by: timedelta, minutes: int = 30) -> Session:
    assert s.starts_at is not None
    starts_at = s.starts_at + by
    return replace(
        s,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=minutes),
        revision=s.revision + 1,
        first_starts_at=s.first_starts_at or s.starts_at,
    )


def _cancel(s: Session) -> Session:
    return replace(
        s,
        status="cancelled",
        revision=s.revision + 1,
        first_starts_at=s.first_starts_at or s.starts_at,
    )


def _series_in(zone: str, first: datetime, weeks: list[int], weekly: int = 1) -> list[Session]:
    """Sessions every `weekly` weeks at `first`'s wall time in `zone`, in the given weeks only."""
    tz = ZoneInfo(zone)
    out = []
    for n, w in enumerate(weeks, start=1):
        local = datetime.combine(first.date() + timedelta(weeks=w * weekly), first.time(), tz)
        out.append(
            Session(
                f"s{n}",
                "p1",
                "E2",
                "E1",
                n,
                len(weeks),
                local.astimezone(UTC),
                (local + timedelta(minutes=45)).astimezone(UTC),
                0,
                "scheduled",
                series_zone=zone,
                series_weeks=weekly,
            )
        )
    return out


def _held(sessions: list[Session]) -> list[tuple[datetime, datetime]]:
    return sorted((s.starts_at, s.ends_at) for s in sessions if s.is_held)  # type: ignore[misc]


@pytest.mark.parametrize("weekly", [1, 2])
def test_every_attachment_of_a_pairs_life_expands_to_its_current_sessions(weekly: int) -> None:
    """Booking, updates and cancellations through compose, into a calendar, then expanded."""
    # Dana (mentee, London), Sam (mentor, New York): the US changes clocks on 14 March, the UK
    # on 28 March, so in between Sam's usual time is an hour off and scheduling moved those
    # sessions inside their weeks; week 4 was skipped (no valid start at all).
    first = datetime(2027, 3, 3, 13, 0, tzinfo=ZoneInfo("Europe/London"))
    sessions = _series_in("Europe/London", first, [0, 1, 2, 4, 5, 6, 7, 8], weekly)
    if weekly == 1:
        sessions[2] = replace(
            sessions[2],
            starts_at=datetime(2027, 3, 18, 12, 0, tzinfo=UTC),
            ends_at=datetime(2027, 3, 18, 12, 45, tzinfo=UTC),
            first_starts_at=datetime(2027, 3, 18, 12, 0, tzinfo=UTC),
        )
    clients = {"E1": CalendarClient(), "E2": CalendarClient()}
    window = (datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 6, 1, tzinfo=UTC))

    def deliver(template: Template, changed: list[str]) -> None:
        m = message(
            template,
            session_id=changed[0] if changed else None,
            session_ids=tuple(changed),
            details=DETAILS,
        )
        for me, them in ((DANA, SAM), (SAM, DANA)):
            mail = compose(m, me, them, sessions, SETTINGS, NOW)
            assert mail is not None
            clients[me.participant_id].receive(attachment(parsed(mail)))
            assert times(clients[me.participant_id].meetings(*window)) == _held(sessions)

    deliver(Template.BOOKING, [])
    sessions[1] = _move(sessions[1], timedelta(days=2))
    deliver(Template.SESSION_RESCHEDULED, ["s2"])
    sessions[1] = _move(sessions[1], timedelta(weeks=3, hours=-3))
    deliver(Template.SESSION_RESCHEDULED, ["s2"])
    sessions[4] = _move(sessions[4], timedelta(hours=1), minutes=60)
    deliver(Template.SESSION_RESCHEDULED, ["s5"])
    sessions[0] = replace(sessions[0], status="completed")
    sessions[3] = _cancel(sessions[3])
    deliver(Template.SESSION_CANCELLED, ["s4"])
    sessions[1] = _cancel(sessions[1])
    deliver(Template.SESSION_CANCELLED, ["s2"])
    # A booking sent now (say to someone whose details came late) shows the same.
    fresh = CalendarClient()
    mail = compose(message(Template.BOOKING, details=DETAILS), DANA, SAM, sessions, SETTINGS, NOW)
    assert mail is not None
    fresh.receive(attachment(parsed(mail)))
    assert times(fresh.meetings(*window)) == _held(sessions)
    # The pair ends: the rest is cancelled; the completed first session stays.
    rest = [s.session_id for s in sessions if s.status == "scheduled"]
    for i, s in enumerate(sessions):
        if s.status == "scheduled":
            sessions[i] = _cancel(s)
    deliver(Template.SESSION_CANCELLED, rest)
    assert all(len(c.meetings(*window)) == 1 for c in clients.values())


def times(meetings: list[Meeting]) -> list[tuple[datetime, datetime]]:
    return sorted((m.starts_at, m.ends_at) for m in meetings)


def test_nothing_left_to_tell_gives_no_email() -> None:
    m = message(Template.REMINDER, session_id="s1")
    assert compose(m, DANA, SAM, [session(1, status="cancelled")], SETTINGS, NOW) is None


def test_notification_ids_are_pinned() -> None:
    # Published ids never change across versions: the sender and consumers deduplicate on them.
    from twoway_notifications.domain.ids import notification_id, outcome_event_id
    from twoway_notifications.domain.model import Template

    nid = notification_id(Template.BOOKING, "E1", "P1", 0)
    assert nid == "3929f697-c4ca-52ac-9a74-577d20f6ccd2"
    assert outcome_event_id(nid, "sent") == "4a8fa781-944f-5dd2-9047-8f17a7167e13"


async def test_a_compose_worker_that_died_while_idle_costs_no_email() -> None:
    drafts = [
        Draft(message(Template.PAIR_CONFIRMED, notification_id=f"n{i}"), DANA, SAM, ())
        for i in range(40)
    ]
    assert len(await compose_off_loop(drafts, SETTINGS, NOW)) == 40  # the pool is up
    pool = compose_module._pool
    assert pool is not None
    next(iter(pool._processes.values())).kill()
    deadline = time.monotonic() + 20
    while not pool._broken:
        assert time.monotonic() < deadline, "the pool never noticed its dead worker"
        await asyncio.sleep(0.05)
    # The broken pool refuses new work at once: the batch is built here, a new pool next time.
    built = await compose_off_loop(drafts, SETTINGS, NOW)
    assert [parsed(b)["Message-ID"] for b in built if isinstance(b, Email)] == [
        f"<n{i}@twoway>" for i in range(40)
    ]
    assert compose_module._pool is not pool
    assert len(await compose_off_loop(drafts, SETTINGS, NOW)) == 40


async def test_emails_built_in_worker_processes_are_the_ones_built_here_in_order() -> None:
    sessions = (session(1), session(2), session(3))
    drafts = [
        Draft(
            message(
                Template.REMINDER if i % 2 else Template.BOOKING,
                notification_id=f"n{i}",
                session_id="s2" if i % 2 else None,
            ),
            DANA,
            SAM,
            sessions,
        )
        for i in range(20)
    ]
    # A recipient without an address cannot be written to: that draft fails alone.
    drafts[6] = replace(drafts[6], recipient=replace(DANA, email=None))
    away = await compose_off_loop(drafts, SETTINGS, NOW)
    here = compose_drafts(drafts, SETTINGS, NOW)
    # A chunk at a time, in draft order, each chunk's results as soon as it is built.
    parts = [part async for part in compose_in_turn(drafts, SETTINGS, NOW, chunk=8)]
    assert [len(part) for part in parts] == [8, 8, 4]
    assert [
        parsed(built)["Message-ID"] if isinstance(built, Email) else built
        for part in parts
        for built in part
    ] == [f"<n{i}@twoway>" if i != 6 else NotComposed("AssertionError") for i in range(20)]
    assert len(away) == len(here) == 20
    assert away[6] == here[6] == NotComposed("AssertionError")
    for i, (a, h) in enumerate(zip(away, here, strict=True)):
        if i == 6:
            continue
        assert isinstance(a, Email)
        assert isinstance(h, Email)
        assert (a.sender, a.recipients) == (h.sender, h.recipients)
        # The bytes the SMTP client writes, whatever the server offers: the same email.
        assert a.data.isascii()
        received = [parsed(m) for m in (a, h)]
        assert received[0]["Message-ID"] == received[1]["Message-ID"] == f"<n{i}@twoway>"
        assert received[0]["Subject"] == received[1]["Subject"]
        assert bodies(received[0]) == bodies(received[1])
        if i % 2 == 0:
            assert calendar_of(received[0]).to_ical() == calendar_of(received[1]).to_ical()


def test_the_data_text_is_what_aiosmtplib_would_write() -> None:
    """Line ends made CRLF and leading dots doubled only where needed: the same bytes."""
    rng = random.Random(15)
    cases = [b"", b"a\r\n.b\r\nc", b".a\nb\r\n.c\rd\r\n\r\n..e", b"\r\r\n\n"]
    cases += [bytes(rng.choice(b"\r\n.a") for _ in range(rng.randrange(12))) for _ in range(5000)]
    booking = compose(message(Template.BOOKING), DANA, SAM, [session(1)], SETTINGS, NOW)
    assert booking is not None
    cases.append(booking.data)
    for data in cases:
        assert _data_text(data) == PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data))


_POOL_HOLDER = """
import os, sys, time
from twoway_notifications import compose
pool = compose._compose_pool()
print(*sorted({pool.submit(os.getpid).result() for _ in range(20)}), flush=True)
time.sleep(600)
"""


def test_compose_workers_leave_when_the_service_is_killed() -> None:
    """A SIGKILLed service cannot shut its pool down; its workers must not outlive it."""
    holder = subprocess.Popen([sys.executable, "-c", _POOL_HOLDER], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        workers = [int(pid) for pid in holder.stdout.readline().split()]
        assert workers
        assert all(process_alive(pid) for pid in workers)
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 20
    while any(process_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived their service"
        time.sleep(0.1)
