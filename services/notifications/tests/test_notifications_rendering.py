"""Pure tests: ids, reminder and retry rules, every template rendered, calendars parsed back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from icalendar import Calendar
from twoway_notifications.compose import MailSettings, compose
from twoway_notifications.domain.ids import notification_id
from twoway_notifications.domain.model import Contact, Message, Session, Template
from twoway_notifications.domain.rules import (
    Verdict,
    backoff,
    decide,
    gives_up,
    local_time,
    reminder_times,
    smtp_error,
)

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
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


def parsed(mail: EmailMessage) -> EmailMessage:
    back = message_from_bytes(mail.as_bytes(), policy=policy.default)
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


@pytest.mark.parametrize("template", list(Template))
def test_every_template_renders_html_and_text(template: Template) -> None:
    details = {"mentee_learns": ["generative-ai"], "mentor_learns": ["leadership"]}
    m = message(template, session_id="s1", session_ids=("s1",), details=details)
    sessions = [
        session(1, status="cancelled" if template is Template.SESSION_CANCELLED else "scheduled")
    ]
    mail = compose(m, DANA, SAM, sessions, SETTINGS, NOW)
    assert mail is not None
    mail = parsed(mail)
    assert mail["Message-ID"] == f"<{m.notification_id}@twoway>"
    assert mail["To"] == "Dana Whitfield <dana@example.com>"
    assert mail["Subject"]
    text, html = bodies(mail)
    assert "Dana Whitfield" in text
    assert "<p>Hello Dana Whitfield,</p>" in html
    if template in (Template.REMINDER, Template.BOOKING, Template.SESSION_RESCHEDULED):
        assert "Wednesday 3 March 2027, 10:30 (Europe/London)" in text
    if template is Template.PAIR_PROPOSED:
        assert "https://portal.x/pairs/p1" in text
        assert "generative-ai" in text
    if template is Template.PARTNER_WITHDREW:
        assert "Sam" not in text


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
    mail = compose(message(Template.BOOKING), dana, sam, [session(1)], SETTINGS, NOW)
    assert mail is not None
    assert mail["To"] == "Dana Whitfield <dana@example.com>"
    assert "\n" not in str(mail["Subject"])
    calendar = next(p for p in mail.walk() if p.get_content_type() == "text/calendar")
    assert 'CN="Sam Okafor"' in calendar.get_content()


def test_booking_calendar_holds_every_session() -> None:
    sessions = [session(1), session(2, revision=1), session(3, status="cancelled")]
    mail = compose(message(Template.BOOKING), DANA, SAM, sessions, SETTINGS, NOW)
    assert mail is not None
    cal = calendar_of(parsed(mail))
    assert str(prop(cal, "METHOD")) == "REQUEST"
    events = cal.walk("VEVENT")
    # The booking shows the current state: the cancelled session is not offered.
    assert [str(prop(e, "UID")) for e in events] == ["s1@twoway", "s2@twoway"]
    assert [int(prop(e, "SEQUENCE")) for e in events] == [0, 1]
    assert events[0].decoded("DTSTART") == datetime(2027, 3, 3, 10, 30, tzinfo=UTC)
    assert events[0]["DTSTART"].to_ical() == b"20270303T103000Z"
    attendees = sorted(str(a) for a in prop(events[0], "ATTENDEE"))
    assert attendees == ["mailto:dana@example.com", "mailto:sam@example.com"]


def test_update_holds_only_the_changed_session() -> None:
    m = message(Template.SESSION_RESCHEDULED, session_id="s2")
    mail = compose(m, DANA, SAM, [session(1), session(2, revision=1)], SETTINGS, NOW)
    assert mail is not None
    cal = calendar_of(parsed(mail))
    assert str(prop(cal, "METHOD")) == "REQUEST"
    [event] = cal.walk("VEVENT")
    assert (str(prop(event, "UID")), int(prop(event, "SEQUENCE"))) == ("s2@twoway", 1)


def test_cancellation_holds_every_cancelled_session() -> None:
    m = message(Template.SESSION_CANCELLED, session_ids=("s1", "s2"))
    cancelled = [
        session(1, revision=1, status="cancelled"),
        session(2, revision=2, status="cancelled"),
    ]
    mail = compose(m, DANA, None, cancelled, SETTINGS, NOW)
    assert mail is not None
    cal = calendar_of(parsed(mail))
    assert str(prop(cal, "METHOD")) == "CANCEL"
    events = cal.walk("VEVENT")
    assert [(str(prop(e, "UID")), int(prop(e, "SEQUENCE"))) for e in events] == [
        ("s1@twoway", 1),
        ("s2@twoway", 2),
    ]
    assert all(str(prop(e, "STATUS")) == "CANCELLED" for e in events)


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
