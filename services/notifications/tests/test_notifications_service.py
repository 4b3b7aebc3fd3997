"""The service against the real broker, database and an SMTP server in the test process."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from icalendar import Calendar
from pydantic import BaseModel, SecretStr
from twoway_dev.localstack.mailsink import OffersPipelining
from twoway_dev.testing.calendar_client import Meeting, expand
from twoway_dev.testing.kafka import eventually
from twoway_dev.testing.oidc import TestProvider
from twoway_dev.testing.service import Sandbox, ServiceHarness, example
from twoway_notifications.app import create_spec
from twoway_notifications.config import NotificationsSettings
from twoway_notifications.sender import SenderOptions
from twoway_shared.contract import (
    ParticipantEnrolled,
    ParticipantWithdrawn,
    Topic,
)
from twoway_shared.contract.calendar_token import parse_keys, sign, verify
from twoway_shared.contract.events import (
    CreditAwarded,
    PairConfirmed,
    PairEnded,
    PairHealthChanged,
    ProgrammeConfigured,
    SessionCancelled,
    SessionCompleted,
    SessionRescheduled,
    SessionScheduled,
)
from twoway_shared.contract.examples import EXAMPLE_DATA

pytestmark = pytest.mark.infra
Harness = ServiceHarness

FAST = SenderOptions(retry_base=timedelta(milliseconds=300), poll_seconds=0.2)


# ---------------------------------------------------------------- SMTP server


@dataclass
class Sink(OffersPipelining):
    """An aiosmtpd handler that keeps what it accepts and can answer scripted errors; it
    offers PIPELINING, as real servers do."""

    port: int
    mails: list[EmailMessage] = field(default_factory=list)
    # address -> replies to give to DATA for it, in order, before accepting
    script: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                if self.script.get(rcpt):
                    return self.script[rcpt].pop(0)
            mail = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(mail, EmailMessage)
            self.mails.append(mail)
        return "250 OK"

    def to(self, address: str, template: str | None = None) -> list[EmailMessage]:
        with self.lock:
            return [
                m
                for m in self.mails
                if address in str(m["To"])
                and (template is None or m["X-Twoway-Template"] == template)
            ]


def prop(component: Any, name: str) -> Any:
    """A property of an icalendar component (the library's union types are too wide to use)."""
    return component[name]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A real SMTP server in the test process, on a free port."""
    found = Sink(free_port())
    controller = Controller(found, hostname="127.0.0.1", port=found.port)
    controller.start()
    try:
        yield found
    finally:
        controller.stop()


# ---------------------------------------------------------------- the service


@pytest.fixture
async def harness(sandbox: Sandbox, sink: Sink) -> AsyncIterator[Harness]:
    """Notifications with a fast sender, sending to the test's SMTP server."""
    smtp: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": sink.port}
    async with sandbox.service(
        create_spec(FAST), NotificationsSettings, portal_url="https://portal.example", **smtp
    ) as running:
        yield running


# ---------------------------------------------------------------- facts


def person(pid: str, role: str, email: str, **changes: Any) -> ParticipantEnrolled:
    """The contract's example enrolment, for `pid` at `email`, in English."""
    fields = dict(participant_id=pid, role=role, email=email, display_name=f"Person {pid}")
    return example(ParticipantEnrolled, **(fields | {"locale": "en"} | changes))


PAIR = {"pair_id": "pair-1", "programme_id": "RM-2027", "mentor_id": "M1", "mentee_id": "E1"}
MENTOR, MENTEE = "m1@example.com", "e1@example.com"


def series(total: int, first: datetime) -> list[SessionScheduled]:
    return [
        SessionScheduled(
            session_id=f"s{n}",
            sequence=n,
            total=total,
            starts_at=first + timedelta(weeks=n - 1),
            ends_at=first + timedelta(weeks=n - 1, minutes=30),
            revision=0,
            **PAIR,
        )
        for n in range(1, total + 1)
    ]


WINDOW = (datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))


def ics_of(mail: EmailMessage) -> bytes:
    [part] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def calendar_of(mail: EmailMessage) -> Calendar:
    return Calendar.from_ical(ics_of(mail))


def times(meetings: list[Meeting]) -> list[tuple[datetime, datetime]]:
    return [(m.starts_at, m.ends_at) for m in meetings]


def uids_and_sequences(mail: EmailMessage) -> list[tuple[str, int]]:
    return [
        (str(prop(e, "UID")), int(prop(e, "SEQUENCE"))) for e in calendar_of(mail).walk("VEVENT")
    ]


# ---------------------------------------------------------------- tests


async def test_booking_update_cancel_replay_and_read_api(
    harness: Harness, sink: Sink, oidc: TestProvider
) -> None:
    notifications = harness.topic(Topic.NOTIFICATIONS)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    booked = series(3, first)
    facts: list[BaseModel] = [
        person("M1", "mentor", MENTOR, timezone="Europe/London"),
        person("E1", "mentee", MENTEE, timezone="America/New_York"),
        PairConfirmed(**PAIR),
        *booked,
    ]
    await harness.send(*facts)
    await eventually(
        lambda: _count(sink),
        lambda n: n >= 4,
        what="pair_confirmed and booking to both",
    )
    for address in (MENTOR, MENTEE):
        [booking] = await eventually(mails_to(sink, address, "booking"), lambda b: len(b) == 1)
        # One recurring series: one UID, the mentee's zone, every session expanded.
        assert uids_and_sequences(booking) == [("pair-1@twoway", 0)]
        cal = calendar_of(booking)
        assert str(prop(cal, "METHOD")) == "REQUEST"
        event = cal.walk("VEVENT")[0]
        assert prop(event, "DTSTART").params["TZID"] == "America/New_York"
        assert event.decoded("DTSTART") == first
        assert times(expand(ics_of(booking), *WINDOW)) == [(s.starts_at, s.ends_at) for s in booked]
        attendees = sorted(str(a) for a in prop(event, "ATTENDEE"))
        assert attendees == [f"mailto:{MENTEE}", f"mailto:{MENTOR}"]
        assert booking["Message-ID"].endswith("@twoway>")
        assert booking["Auto-Submitted"] == "auto-generated"
    text = sink.to(MENTEE, "booking")[0].get_body(("plain",))
    assert text is not None
    assert "(America/New_York)" in str(text.get_content())

    # A reschedule: one update per person with only the changed VEVENT.
    moved = booked[1].starts_at + timedelta(days=1)
    await harness.send(
        SessionRescheduled(
            **{
                **booked[1].model_dump(),
                "starts_at": moved,
                "ends_at": moved + timedelta(minutes=30),
                "previous_starts_at": booked[1].starts_at,
                "reason": "requested",
                "revision": 1,
            }
        )
    )
    for address in (MENTOR, MENTEE):
        [update] = await eventually(
            mails_to(sink, address, "session_rescheduled"),
            lambda u: len(u) == 1,
            what="one update",
        )
        assert uids_and_sequences(update) == [("pair-1@twoway", 1)]
        [override] = calendar_of(update).walk("VEVENT")
        assert override.decoded("RECURRENCE-ID") == booked[1].starts_at
        assert override.decoded("DTSTART") == moved

    # The pair ends: every cancelled session in one METHOD:CANCEL email per person.
    cancels = [
        SessionCancelled(
            **{k: v for k, v in s.model_dump().items() if k in SessionCancelled.model_fields}
            | {"revision": 2 if s.session_id == "s2" else 1, "reason": "pair_ended"}
        )
        for s in booked
    ]
    await harness.send(*cancels)
    for address in (MENTOR, MENTEE):
        [cancel] = await eventually(
            mails_to(sink, address, "session_cancelled"),
            lambda c: len(c) == 1,
            what="one cancellation",
        )
        assert str(prop(calendar_of(cancel), "METHOD")) == "CANCEL"
        # Nothing of the series is left: the whole series, above every earlier SEQUENCE.
        assert uids_and_sequences(cancel) == [("pair-1@twoway", 3)]
        assert "RECURRENCE-ID" not in calendar_of(cancel).walk("VEVENT")[0]

    await harness.reader.wait_for(
        lambda _: len(harness.data("notification.sent")) >= 8,
        what="notification.sent for each email",
    )
    # Nothing Twoway produces holds an address or a name.
    for record in harness.reader.on(notifications):
        assert b"@example.com" not in (record.value or b"")
        assert b"Person " not in (record.value or b"")

    # The same facts again under new event ids send nothing new; a marker shows they were
    # all processed (same partition key, so it is consumed after them).
    before = _snapshot(sink)
    await harness.send(*facts, *cancels, PairEnded(**PAIR, reason="withdrawn", withdrawn_by="M1"))
    await eventually(
        lambda: _async(sink.to(MENTEE, "partner_withdrew")),
        lambda w: len(w) == 1,
        what="the marker email",
    )
    await harness.until(
        "SELECT 1 FROM notifications.inbox",
        holds=lambda rows: len(rows) == 20,
        what="every replayed record processed",
    )
    # Nothing is left to send now (every due message was sent and recorded: an email the
    # sink holds may still be 'sending' until its result is written), so the sink holds
    # everything the replay could have caused.
    await harness.until(
        "SELECT template, status FROM notifications.messages"
        " WHERE status IN ('pending', 'sending') AND due_at <= now()",
        holds=lambda rows: rows == [],
        what="no due message left unsent or unrecorded",
    )
    assert _snapshot(sink) == [*before, (MENTEE, "partner_withdrew")]

    # The read API, newest first.
    url = "/participants"
    async with harness.http(token="") as client:
        assert (await client.get(f"{url}/E1/notifications")).status_code == 401
        client.headers["Authorization"] = f"Bearer {oidc.token()}"
        body = (await client.get(f"{url}/E1/notifications")).json()
        assert body["participant_id"] == "E1"
        listing = body["notifications"]
        assert listing[0]["template"] == "partner_withdrew"
        assert {n["template"] for n in listing} >= {
            "pair_confirmed",
            "booking",
            "session_rescheduled",
            "session_cancelled",
        }
        assert all(
            n["status"] == "sent" and n["channel"] == "email"
            for n in listing
            if n["template"] != "reminder"
        )
        assert (await client.get(f"{url}/nobody/notifications")).status_code == 404


async def test_reminder_fires_on_time_and_survives_a_restart(harness: Harness, sink: Sink) -> None:
    # Reminders 1 minute before: the first due in ~4 s, the second in ~12 s.
    now = datetime.now(UTC)
    early = now + timedelta(minutes=1, seconds=4)
    late = now + timedelta(minutes=1, seconds=12)
    pair = {**PAIR, "pair_id": "pair-r"}
    sessions = [
        SessionScheduled(
            session_id=sid,
            sequence=n,
            total=2,
            starts_at=at,
            ends_at=at + timedelta(minutes=30),
            revision=0,
            **pair,
        )
        for n, (sid, at) in enumerate((("r1", early), ("r2", late)), start=1)
    ]
    await harness.send(
        ProgrammeConfigured(programme_id="RM-2027", reminder_minutes=[1, 2880]),
        person("M1", "mentor", MENTOR),
        person("E1", "mentee", MENTEE, notify={"email": True, "reminders": False}),
        *sessions,
    )
    reminders = await eventually(
        lambda: _async(sink.to(MENTOR, "reminder")), lambda r: len(r) == 1, timeout=20
    )
    arrived = datetime.now(UTC)
    due = early - timedelta(minutes=1)
    assert due <= arrived < due + timedelta(seconds=10)
    assert "Session" in str(reminders[0]["Subject"]) or reminders[0]["Subject"]

    # Stop before the second reminder is due; a new instance sends it, once.
    await harness.stop()
    assert datetime.now(UTC) < late - timedelta(minutes=1)
    await harness.start()
    await eventually(lambda: _async(sink.to(MENTOR, "reminder")), lambda r: len(r) == 2, timeout=30)
    assert datetime.now(UTC) >= late - timedelta(minutes=1)
    # /metrics: how late the reminder this instance sent went out.
    assert harness.runtime is not None
    samples = harness.runtime.metrics.registry

    async def counted() -> tuple[float | None, float | None]:
        # Counted as the delivery completes and commits, a moment after the sink has it.
        await asyncio.sleep(0.05)
        return (
            samples.get_sample_value("twoway_reminder_lateness_seconds_count"),
            samples.get_sample_value("twoway_emails_sent_total", {"template": "reminder"}),
        )

    await eventually(counted, lambda found: found == (1, 1), timeout=10, what="counted")
    assert 0 <= (samples.get_sample_value("twoway_reminder_lateness_seconds_sum") or -1) < 10
    # The mentee opted out of reminders: nothing, and no failure.
    assert sink.to(MENTEE, "reminder") == []
    # The mentee's second reminder is due with the mentor's: wait until it is resolved too.
    statuses = await harness.until(
        "SELECT participant_id, status FROM notifications.messages WHERE template = 'reminder'",
        holds=lambda rows: all(r["status"] not in ("pending", "sending") for r in rows),
        what="every due reminder resolved",
    )
    assert sorted((r["participant_id"], r["status"]) for r in statuses) == [
        ("E1", "skipped"),
        ("E1", "skipped"),
        ("M1", "sent"),
        ("M1", "sent"),
    ]


async def test_temporary_then_permanent_smtp_failures(harness: Harness, sink: Sink) -> None:
    sink.script[MENTOR] = ["451 4.3.0 try again later"]
    sink.script[MENTEE] = ["550 5.1.1 mailbox unavailable"] * 100
    await harness.send(
        person("M1", "mentor", MENTOR), person("E1", "mentee", MENTEE), PairConfirmed(**PAIR)
    )
    await harness.reader.wait_for(
        lambda _: (
            bool(harness.data("notification.sent")) and bool(harness.data("notification.failed"))
        ),
        what="one sent and one failed",
    )
    [failed] = harness.data("notification.failed")
    assert failed["participant_id"] == "E1"
    assert failed["error"] == "SMTP 550 5.1.1 mailbox unavailable"
    [sent] = harness.data("notification.sent")
    assert sent["participant_id"] == "M1"
    assert sent["template"] == "pair_confirmed"
    assert len(sink.to(MENTOR)) == 1
    assert sink.to(MENTEE) == []
    assert harness.runtime is not None
    samples = harness.runtime.metrics.registry
    assert samples.get_sample_value("twoway_smtp_errors_total", {"kind": "temporary"}) == 1
    assert samples.get_sample_value("twoway_smtp_errors_total", {"kind": "permanent"}) == 1
    sent = {"template": "pair_confirmed"}
    assert samples.get_sample_value("twoway_emails_sent_total", sent) == 1
    assert samples.get_sample_value("twoway_emails_failed_total", sent) == 1


async def test_messages_wait_for_contact_details_and_honour_opt_out(
    harness: Harness, sink: Sink
) -> None:
    # The pair is confirmed before anyone's details arrive.
    await harness.send(PairConfirmed(**PAIR), person("M1", "mentor", MENTOR))
    await harness.until(
        "SELECT status FROM notifications.messages WHERE participant_id = 'M1'",
        holds=lambda rows: [r["status"] for r in rows] == ["waiting"],
        what="the mentor's message waiting for the mentee's details",
    )
    other = {**PAIR, "pair_id": "pair-2", "mentee_id": "E2"}
    await harness.send(
        person("E1", "mentee", MENTEE),
        person("E2", "mentee", "e2@example.com", notify={"email": False, "reminders": True}),
        PairConfirmed(**other),
    )
    await eventually(lambda: _count(sink), lambda n: n >= 3, what="three introductions")
    assert len(sink.to(MENTOR, "pair_confirmed")) == 2
    assert len(sink.to(MENTEE, "pair_confirmed")) == 1
    await harness.until(
        "SELECT status FROM notifications.messages WHERE participant_id = 'E2'",
        holds=lambda rows: [r["status"] for r in rows] == ["skipped"],
    )
    assert sink.to("e2@example.com") == []


async def _count(sink: Sink) -> int:
    with sink.lock:
        return len(sink.mails)


def mails_to(
    sink: Sink, address: str, template: str
) -> Callable[[], Awaitable[list[EmailMessage]]]:
    async def probe() -> list[EmailMessage]:
        return sink.to(address, template)

    return probe


async def _async(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


def _snapshot(sink: Sink) -> list[tuple[str, str]]:
    with sink.lock:
        return [
            (str(m["To"]).split("<")[-1].rstrip(">"), str(m["X-Twoway-Template"]))
            for m in sink.mails
        ]


async def test_erasure_forgets_details_and_partner_hears_nothing_of_why(
    harness: Harness, sink: Sink
) -> None:
    # The introductions wait for the mentor's details; the mentor leaves, erased, instead.
    await harness.send(person("E1", "mentee", MENTEE), PairConfirmed(**PAIR))
    await harness.until(
        "SELECT status FROM notifications.messages WHERE template = 'pair_confirmed'",
        holds=lambda rows: sorted(r["status"] for r in rows) == ["waiting", "waiting"],
    )
    await harness.send(
        ParticipantWithdrawn(participant_id="M1", programme_id="RM-2027", erase=True),
        PairEnded(**PAIR, reason="withdrawn", withdrawn_by="M1"),
    )
    [withdrew] = await eventually(mails_to(sink, MENTEE, "partner_withdrew"), lambda m: len(m) == 1)
    text = withdrew.get_body(("plain",))
    assert text is not None
    assert "Person M1" not in str(text.get_content())
    # The withdrawal is on another topic than the pair's end: wait until it is consumed too.
    await harness.barrier()
    [mentor] = await harness.rows(
        "SELECT display_name, email, erased FROM notifications.participants"
        " WHERE participant_id = 'M1'"
    )
    assert (mentor["display_name"], mentor["email"], mentor["erased"]) == (None, None, True)
    statuses = await harness.rows(
        "SELECT status FROM notifications.messages WHERE participant_id = 'M1'"
    )
    assert [r["status"] for r in statuses] == ["skipped"]


# ---------------------------------------------------------------- version 1.1


def _session(sid: str, n: int, total: int, starts_at: datetime, pair: dict[str, str]) -> Any:
    return SessionScheduled(
        session_id=sid,
        sequence=n,
        total=total,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30),
        revision=0,
        **pair,
    )


async def test_feedback_requests_and_no_reminder_after_an_outcome(
    harness: Harness, sink: Sink
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    pair = {**PAIR, "pair_id": "pair-f"}
    # f1 ended 11 minutes ago: its feedback request is due now. f2's is due in a few seconds,
    # but it is cancelled first, so nobody is asked. r1 and r2 start in a minute with a
    # reminder a minute before; r1's outcome is already recorded (say, attendance entered
    # early), so only r2's reminder goes out.
    ended = _session("f1", 1, 4, now - timedelta(minutes=41), pair)
    gone = _session("f2", 2, 4, now - timedelta(minutes=40) + timedelta(seconds=8), pair)
    early = _session("r1", 3, 4, now + timedelta(minutes=1, seconds=5), pair)
    later = _session("r2", 4, 4, now + timedelta(minutes=1, seconds=6), pair)
    await harness.send(
        ProgrammeConfigured(programme_id="RM-2027", reminder_minutes=[1]),
        person("M1", "mentor", MENTOR),
        person("E1", "mentee", MENTEE),
        ended,
        gone,
        SessionCancelled(
            **{k: v for k, v in gone.model_dump().items() if k in SessionCancelled.model_fields}
            | {"revision": 1, "reason": "no_slot"}
        ),
        early,
        later,
        SessionCompleted(
            **{k: v for k, v in early.model_dump().items() if k in SessionCompleted.model_fields}
            | {"minutes": 30}
        ),
    )
    for address in (MENTOR, MENTEE):
        [ask] = await eventually(mails_to(sink, address, "feedback_request"), lambda m: len(m) == 1)
        text = ask.get_body(("plain",))
        assert text is not None
        assert "https://portal.example/sessions/f1/feedback" in str(text.get_content())
    await eventually(mails_to(sink, MENTOR, "reminder"), lambda m: len(m) == 1, timeout=30)
    await eventually(mails_to(sink, MENTEE, "reminder"), lambda m: len(m) == 1, timeout=30)
    # Every reminder of r1 was dropped with its outcome; only r2's went out.
    # (The status is recorded just after the SMTP reply, so wait for it too.)
    await harness.until(
        "SELECT session_id, status FROM notifications.messages WHERE template = 'reminder'",
        holds=lambda rows: (
            sorted((r["session_id"], r["status"]) for r in rows) == [("r2", "sent"), ("r2", "sent")]
        ),
        what="only r2's reminders, sent",
    )
    # f1's requests went out, f2's were dropped with its cancellation, r1's and r2's wait.
    await harness.until(
        "SELECT session_id, status, count(*) AS n FROM notifications.messages"
        " WHERE template = 'feedback_request' GROUP BY 1, 2 ORDER BY 1, 2",
        holds=lambda rows: (
            [tuple(r) for r in rows]
            == [("f1", "sent", 2), ("r1", "pending", 2), ("r2", "pending", 2)]
        ),
        what="feedback requests: f1 sent, none for f2",
    )


async def test_pair_closed_at_risk_and_completion(harness: Harness, sink: Sink) -> None:
    coordinator = "office@example.com"
    other = {**PAIR, "pair_id": "pair-x", "programme_id": "RM-OTHER"}
    # The people are known long before their pair's health changes.
    await harness.send(
        person("M1", "mentor", MENTOR, display_name="Sam Okafor"),
        person("E1", "mentee", MENTEE, display_name="Dana Whitfield"),
    )
    await harness.until(
        "SELECT 1 FROM notifications.participants",
        holds=lambda rows: len(rows) == 2,
        what="both profiles stored",
    )
    # The alert may be consumed before the programme's settings (topics have no mutual
    # order): it waits for them.
    await harness.send(
        ProgrammeConfigured(programme_id="RM-2027", coordinator_email=coordinator),
        ProgrammeConfigured(programme_id="RM-OTHER"),
        PairHealthChanged(
            **PAIR,
            health="at_risk",
            reasons=["missed_in_a_row", "low_rating"],
            sessions_completed=3,
            sessions_missed=2,
            last_activity_at=datetime(2027, 2, 1, 9, 30, tzinfo=UTC),
        ),
        PairHealthChanged(
            **PAIR, health="on_track", reasons=[], sessions_completed=4, sessions_missed=2
        ),
        # No coordinator in that programme: nobody hears of it.
        PairHealthChanged(
            **other,
            health="inactive",
            reasons=["no_recent_session"],
            sessions_completed=0,
            sessions_missed=0,
        ),
        PairEnded(**PAIR, reason="not_a_fit"),
        CreditAwarded.model_validate(
            {**EXAMPLE_DATA["credit.awarded"], "participant_id": "E1", "credit_id": "cr-9"}
        ),
    )
    [alert] = await eventually(mails_to(sink, coordinator, "pair_at_risk"), lambda m: len(m) == 1)
    body = alert.get_body(("plain",))
    assert body is not None
    text = str(body.get_content())
    assert "Dana Whitfield (mentee) and Sam Okafor (mentor) is at risk" in text
    assert "the last two sessions were missed" in text
    assert "https://portal.example/pairs/pair-1" in text
    for address in (MENTOR, MENTEE):
        [closed] = await eventually(mails_to(sink, address, "pair_closed"), lambda m: len(m) == 1)
        content = str(closed.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        assert "new partner" in content
        assert "fit" not in content.lower()  # never who answered what
    [done] = await eventually(mails_to(sink, MENTEE, "completion"), lambda m: len(m) == 1)
    content = str(done.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert "Continuing-education credits: 6.6" in content
    assert "generative AI and prompt design" in content
    assert "https://portal.example/credits/cr-9" in content
    await harness.reader.wait_for(
        lambda _: len(harness.data("notification.sent")) >= 4,
        what="notification.sent for each",
    )
    sent = harness.data("notification.sent")
    assert ("coordinator:RM-2027", "pair_at_risk") in {
        (e["participant_id"], e["template"]) for e in sent
    }
    assert sink.to(MENTOR, "completion") == []
    # Exactly one alert: on_track sends nothing, and the coordinator-less programme's alert
    # is set aside once its settings say there is nobody to tell.
    await harness.until(
        "SELECT participant_id, status FROM notifications.messages"
        " WHERE template = 'pair_at_risk' ORDER BY participant_id",
        holds=lambda rows: (
            [tuple(r) for r in rows]
            == [("coordinator:RM-2027", "sent"), ("coordinator:RM-OTHER", "skipped")]
        ),
        what="one alert sent, one skipped",
    )
    assert len(sink.to(coordinator)) == 1


async def test_booking_carries_the_calendar_subscription_link(harness: Harness, sink: Sink) -> None:
    await harness.stop()
    await harness.start(
        calendar_keys=SecretStr("new-key,old-key"), calendar_base_url="https://cal.example"
    )
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    await harness.send(
        person("M1", "mentor", MENTOR), person("E1", "mentee", MENTEE), *series(2, first)
    )
    for pid, address in (("M1", MENTOR), ("E1", MENTEE)):
        [booking] = await eventually(mails_to(sink, address, "booking"), lambda b: len(b) == 1)
        body = booking.get_body(("plain",))
        assert body is not None
        url = f"https://cal.example/calendars/{sign(pid, [b'new-key'])}.ics"
        assert url in str(body.get_content())
        assert (
            verify(url.rsplit("/", 1)[1].removesuffix(".ics"), parse_keys("old-key,new-key")) == pid
        )


async def test_a_dead_senders_messages_are_taken_over_in_seconds_never_resent(
    harness: Harness, sink: Sink
) -> None:
    """A claim left by a dead instance: handed over ('sending') is recorded as sent without a
    second copy; not handed over ('pending') is sent by the live instance once its short
    lease expires."""
    await harness.send(
        person("M1", "mentor", MENTOR), person("E1", "mentee", MENTEE), PairConfirmed(**PAIR)
    )
    await eventually(lambda: _count(sink), lambda n: n == 2, what="both pair_confirmed emails")
    await harness.until(
        "SELECT 1 FROM notifications.messages WHERE status = 'sent'",
        holds=lambda rows: len(rows) == 2,
        what="both recorded",
    )
    # As a dead instance leaves them: one mid hand-over, one claimed and not yet sent.
    await harness.rows(
        """UPDATE notifications.messages SET status = 'sending', sent_at = NULL,
               lease_holder = 'dead', lease_until = now() - interval '1 second'
           WHERE participant_id = 'M1'"""
    )
    await harness.rows(
        """UPDATE notifications.messages SET status = 'pending', sent_at = NULL,
               lease_holder = 'dead', lease_until = now() + interval '2 seconds'
           WHERE participant_id = 'E1'"""
    )
    started = asyncio.get_running_loop().time()
    await eventually(lambda: _async(sink.to(MENTEE)), lambda m: len(m) == 2, timeout=15)
    taken_over = asyncio.get_running_loop().time() - started
    assert taken_over < 6, f"took {taken_over:.1f} s to take over"
    rows = await harness.until(
        "SELECT participant_id, status, lease_holder FROM notifications.messages"
        " ORDER BY participant_id",
        holds=lambda rows: all(r["status"] == "sent" for r in rows),
        what="both recorded as sent",
    )
    assert [(r["participant_id"], r["lease_holder"]) for r in rows] == [("E1", None), ("M1", None)]
    assert len(sink.to(MENTOR)) == 1  # the handed-over one was not sent again


async def test_a_lost_claim_stops_the_hand_over(harness: Harness, sink: Sink) -> None:
    """The 'sending' mark checks the lease holder, and a refused hand-over leaves the server
    without the message."""
    from twoway_notifications.mailer import Delivery, Email, HandOverRefused, Mailer, SmtpConfig
    from twoway_notifications.sender import Sender

    assert harness.runtime is not None
    sender = Sender(harness.runtime, FAST)
    await harness.send(PairConfirmed(**PAIR))  # waits for details: nobody sends it
    [row] = await harness.until(
        "SELECT notification_id FROM notifications.messages LIMIT 1",
        holds=lambda rows: len(rows) == 1,
    )
    nid = row["notification_id"]
    await harness.rows(
        "UPDATE notifications.messages SET status = 'pending', lease_holder = 'other',"
        " lease_until = now() + interval '1 minute' WHERE notification_id = $1",
        nid,
    )
    with pytest.raises(HandOverRefused):
        await sender.hand_over(nid, lambda: lambda: None)
    mailer = Mailer(SmtpConfig("127.0.0.1", sink.port))
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", MENTOR, "x"
    message.set_content("hello")
    mail = Email.of(message)

    async def refuse(end_of_data: Callable[[], Callable[[], None]]) -> None:
        raise HandOverRefused("lost")

    assert (await mailer.send(mail, refuse)).delivery is Delivery.ABANDONED
    await harness.rows(
        "UPDATE notifications.messages SET lease_holder = $2 WHERE notification_id = $1",
        nid,
        sender.holder,
    )
    result = await mailer.send(mail, lambda end_of_data: sender.hand_over(nid, end_of_data))
    await mailer.close()
    assert result.delivery is Delivery.SENT
    assert [str(m["Subject"]) for m in sink.mails] == ["x"]
    # The end-of-data mark follows the COMMIT's write, not its reply: wait for the commit.
    await harness.until(
        "SELECT status FROM notifications.messages WHERE notification_id = $1",
        nid,
        holds=lambda rows: [r["status"] for r in rows] == ["sending"],
        what="the hand-over committed",
    )
