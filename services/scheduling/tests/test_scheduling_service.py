"""The scheduling service on the real broker and database: every event in and out, and replay."""

from __future__ import annotations

import base64
import itertools
import random
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import icalendar
import pytest
import vobject
from twoway_dev.testing.calendar_client import expand
from twoway_dev.testing.kafka import ToSend
from twoway_dev.testing.oidc import TestProvider
from twoway_dev.testing.service import Sandbox, ServiceHarness
from twoway_scheduling.app import create_spec
from twoway_scheduling.config import SchedulingSettings
from twoway_scheduling.read_api import read_routes
from twoway_shared.contract import (
    calendar_token,
)
from twoway_shared.platform.http import create_http_app
from twoway_shared.platform.metrics import Metrics

pytestmark = pytest.mark.infra
Harness = ServiceHarness

NOW = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
MENTOR, MENTEE, PAIR, PROGRAMME = "M1", "E1", "P1", "RM"
CALENDAR_KEYS = "new-calendar-key-0123456789abcdef,old-calendar-key-0123456789abcdef"
WINDOW = (datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))
OFFICE_HOURS = [{"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed")]


@pytest.fixture
async def service(sandbox: Sandbox) -> AsyncIterator[Harness]:
    """Scheduling on a fixed clock, with calendar links signed by two keys."""
    links: dict[str, Any] = {
        "calendar_keys": CALENDAR_KEYS,
        "calendar_base_url": "https://cal.example.test/",
    }
    async with sandbox.service(create_spec(), SchedulingSettings, clock=lambda: NOW, **links) as h:
        yield h


def profile(h: Harness, participant_id: str, role: str, **changes: Any) -> ToSend:
    fields = {
        "participant_id": participant_id,
        "programme_id": PROGRAMME,
        "role": role,
        "timezone": "Europe/London",
        "availability": OFFICE_HOURS,
        "manager_id": None,
    }
    event_type = changes.pop("event_type", "participant.enrolled")
    return h.record(event_type, **(fields | changes))


def programme(h: Harness, **changes: Any) -> ToSend:
    fields: dict[str, Any] = {"programme_id": PROGRAMME, "sessions": 3, "starts_on": "2027-01-11"}
    return h.record("programme.configured", **(fields | changes))


def pair(
    h: Harness, event_type: str = "pair.confirmed", event_id: str | None = None, **changes: Any
) -> ToSend:
    fields = {"pair_id": PAIR, "programme_id": PROGRAMME, "mentor_id": MENTOR, "mentee_id": MENTEE}
    return h.record(event_type, event_id, **fields, **changes)


async def book(h: Harness) -> list[dict[str, Any]]:
    await h.send(programme(h), profile(h, MENTOR, "mentor"), profile(h, MENTEE, "mentee"))
    await h.barrier()  # topics have no mutual order: settings and profiles first
    await h.send(pair(h))
    return await h.wait("session.scheduled", 3)


async def test_confirmed_pair_is_booked_once_even_when_replayed(service: Harness) -> None:
    h = service
    confirmation = pair(h, event_id="confirm-1")
    records = [programme(h), profile(h, MENTOR, "mentor"), profile(h, MENTEE, "mentee")]
    await h.send(*records)
    await h.barrier()  # the profiles first, so the confirmation is what books the series
    records.append(confirmation)
    await h.send(confirmation)
    booked = await h.wait("session.scheduled", 3)
    assert [(s["sequence"], s["total"], s["starts_at"]) for s in booked] == [
        (1, 3, "2027-01-11T09:00:00Z"),
        (2, 3, "2027-01-18T09:00:00Z"),
        (3, 3, "2027-01-25T09:00:00Z"),
    ]
    assert {s["revision"] for s in booked} == {0}
    events = h.events("session.scheduled")
    assert {e["causationid"] for e in events} == {"confirm-1"}
    # The same records again, and the same confirmation under a new event id: nothing new.
    await h.send(*records, pair(h))
    await h.barrier()
    assert len(h.events("session.scheduled")) == 3
    assert len({e["id"] for e in events}) == 3


async def test_pair_confirmed_before_enrolments_waits_for_both(service: Harness) -> None:
    h = service
    await h.send(programme(h))
    await h.barrier()  # the settings apply to the booking below
    await h.send(pair(h), profile(h, MENTOR, "mentor"))
    await h.barrier()
    assert h.events("session.scheduled") == []
    await h.send(profile(h, MENTEE, "mentee"))
    booked = await h.wait("session.scheduled", 3)
    assert booked[0]["pair_id"] == PAIR


async def test_no_common_time_gives_booking_failed(service: Harness) -> None:
    h = service
    friday = [{"day": "fri", "start": "09:00", "end": "10:00"}]
    await h.send(programme(h), profile(h, MENTOR, "mentor", availability=friday))
    await h.send(profile(h, MENTEE, "mentee"))
    await h.barrier()
    await h.send(pair(h))
    failed = await h.wait("session.booking_failed", 1)
    assert failed[0]["booked"] == 0
    assert failed[0]["total"] == 3
    assert "availability" in failed[0]["reason"]


async def test_reschedule_moves_or_explains_refusals(service: Harness) -> None:
    h = service
    booked = await book(h)
    first = booked[0]["session_id"]
    await h.send(
        h.record(
            "session.reschedule_requested",
            session_id=first,
            pair_id=PAIR,
            requested_by=MENTEE,
            not_before="2027-01-12T10:00:00Z",
        ),
        h.record(
            "session.reschedule_requested",
            session_id=first,
            pair_id=PAIR,
            requested_by="X9",
            not_before=None,
        ),
        h.record(
            "session.reschedule_requested",
            session_id="nope",
            pair_id=PAIR,
            requested_by=MENTEE,
            not_before=None,
        ),
    )
    moved = (await h.wait("session.rescheduled", 1))[0]
    assert moved["starts_at"] == "2027-01-12T10:00:00Z"
    assert moved["previous_starts_at"] == "2027-01-11T09:00:00Z"
    assert (moved["revision"], moved["reason"]) == (1, "requested")
    rejected = await h.wait("session.request_rejected", 2)
    reasons = " ".join(r["reason"] for r in rejected)
    assert "Only the mentor or the mentee" in reasons
    assert "There is no session nope" in reasons
    # A week holding another session of the pair is not offered: 19 January is in week 2.
    await h.send(
        h.record(
            "session.reschedule_requested",
            session_id=first,
            pair_id=PAIR,
            requested_by=MENTOR,
            not_before="2027-01-19T10:00:00Z",
        )
    )
    again = (await h.wait("session.rescheduled", 2))[1]
    assert again["starts_at"] == "2027-02-01T09:00:00Z"
    body = (await h.get(f"/participants/{MENTEE}/sessions")).json()
    assert body["participant_id"] == MENTEE
    listed = body["sessions"]
    assert [s["revision"] for s in listed if s["session_id"] == first] == [2]
    # The feed is the pair's recurring series: expanded, exactly the sessions as they are now.
    feed = await h.get(f"/participants/{MENTEE}/calendar.ics")
    meetings = expand(feed.content, *WINDOW)
    assert {m.uid for m in meetings} == {f"{PAIR}@twoway"}
    assert [(m.starts_at, m.ends_at) for m in meetings] == sorted(
        (datetime.fromisoformat(s["starts_at"]), datetime.fromisoformat(s["ends_at"]))
        for s in listed
    )
    assert vobject.readOne(feed.text).name == "VCALENDAR"
    assert (await h.get("/participants/nobody/sessions")).status_code == 404


async def test_attendance_completes_or_misses_a_session(service: Harness) -> None:
    h = service
    booked = await book(h)
    one, two = booked[0]["session_id"], booked[1]["session_id"]

    def attend(session_id: str, who: str, attended: bool, rating: int | None = None) -> ToSend:
        return h.record(
            "session.attendance_recorded",
            session_id=session_id,
            pair_id=PAIR,
            participant_id=who,
            attended=attended,
            rating=rating,
        )

    await h.send(
        attend(one, MENTOR, False),
        attend(one, MENTOR, True, 4),  # replaces the first record
        attend(one, MENTEE, True, 5),
        attend(one, MENTEE, False),  # after the outcome: no effect
        attend(two, MENTOR, True),
        attend(two, MENTEE, False),
        attend(two, "X9", True),
    )
    completed = (await h.wait("session.completed", 1))[0]
    assert completed["minutes"] == 30
    assert completed["ratings"] == {"mentor": 4, "mentee": 5}
    missed = (await h.wait("session.missed", 1))[0]
    assert missed["absent"] == [MENTEE]
    rejected = await h.wait("session.request_rejected", 1)
    assert rejected[0]["request"] == "attendance"
    await h.barrier()
    assert len(h.events("session.completed")) == 1
    assert len(h.events("session.missed")) == 1


async def test_pair_ended_cancels_then_withdrawal_is_a_no_op(service: Harness) -> None:
    h = service
    booked = await book(h)
    await h.send(pair(h, "pair.ended", reason="withdrawn", withdrawn_by=MENTEE))
    cancelled = await h.wait("session.cancelled", 3)
    assert {(c["reason"], c["revision"]) for c in cancelled} == {("pair_ended", 1)}
    # Sent only now: the two topics have no mutual order.
    await h.send(
        h.record("participant.withdrawn", participant_id=MENTEE, programme_id=PROGRAMME, erase=True)
    )
    await h.barrier()
    assert len(h.events("session.cancelled")) == 3
    feed = await h.get(f"/participants/{MENTOR}/calendar.ics")
    assert feed.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(feed.content)
    # The pair's series, with the invitations' UID; nothing is left, so it stays CANCELLED.
    [event] = calendar.walk("VEVENT")
    assert str(event["uid"]) == f"{PAIR}@twoway"
    assert str(event["status"]) == "CANCELLED"
    assert str(event["X-TWOWAY-SESSION-ID"]) == booked[0]["session_id"]
    assert expand(feed.content, *WINDOW) == []
    erased = await h.rows(
        "SELECT timezone, availability FROM scheduling.participants WHERE participant_id = $1",
        MENTEE,
    )
    assert [tuple(r) for r in erased] == [(None, None)]


async def test_withdrawal_cancels_and_late_pair_ended_is_a_no_op(service: Harness) -> None:
    h = service
    await book(h)
    await h.send(h.record("participant.withdrawn", participant_id=MENTOR, programme_id=PROGRAMME))
    cancelled = await h.wait("session.cancelled", 3)
    assert {c["reason"] for c in cancelled} == {"participant_withdrawn"}
    await h.send(pair(h, "pair.ended", reason="withdrawn", withdrawn_by=MENTOR))
    await h.barrier()
    assert len(h.events("session.cancelled")) == 3


async def test_availability_change_moves_or_cancels_future_sessions(service: Harness) -> None:
    h = service
    await book(h)  # Mondays 09:00 London
    tuesdays = [{"day": "tue", "start": "14:00", "end": "15:00"}]
    await h.send(
        profile(
            h, MENTOR, "mentor", event_type="participant.updated", revision=1, availability=tuesdays
        )
    )
    moved = await h.wait("session.rescheduled", 3)
    assert [m["starts_at"] for m in moved] == [
        "2027-01-12T14:00:00Z",
        "2027-01-19T14:00:00Z",
        "2027-01-26T14:00:00Z",
    ]
    assert {m["reason"] for m in moved} == {"availability_changed"}
    # A stale update has no effect; an availability nobody shares cancels with no_slot.
    await h.send(profile(h, MENTOR, "mentor", event_type="participant.updated", revision=0))
    await h.send(
        profile(
            h,
            MENTEE,
            "mentee",
            event_type="participant.updated",
            revision=1,
            availability=[{"day": "sun", "start": "09:00", "end": "10:00"}],
        )
    )
    cancelled = await h.wait("session.cancelled", 3)
    assert {(c["reason"], c["revision"]) for c in cancelled} == {("no_slot", 2)}


async def test_two_instances_never_double_book_a_mentor(sandbox: Sandbox) -> None:
    """Pairs of one mentor confirmed at once on two instances get non-overlapping series."""
    async with (
        sandbox.service(create_spec(), SchedulingSettings, topic_partitions=4) as h,
        h.another_instance(),
    ):
        mentees = [f"E{k}" for k in range(6)]
        await h.send(programme(h), profile(h, MENTOR, "mentor"))
        await h.send(*(profile(h, e, "mentee") for e in mentees))
        await h.barrier()
        # Six pairs of the same mentor, keyed by pair id so they spread over the partitions
        # and so over both instances.
        await h.send(
            *(
                h.record(
                    "pair.confirmed",
                    pair_id=f"P{k}",
                    programme_id=PROGRAMME,
                    mentor_id=MENTOR,
                    mentee_id=e,
                )
                for k, e in enumerate(mentees)
            )
        )
        booked = await h.wait("session.scheduled", 6 * 3)
    assert len({s["session_id"] for s in booked}) == 18
    spans = sorted((s["starts_at"], s["ends_at"]) for s in booked)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, "the mentor has two sessions at once"


def feed_path(url: str) -> str:
    assert url.startswith("https://cal.example.test/calendars/"), url
    assert url.endswith(".ics"), url
    return url.removeprefix("https://cal.example.test")


async def test_calendar_feed_by_capability_url(service: Harness, oidc: TestProvider) -> None:
    h = service
    assert h.runtime.http_addresses == ["127.0.0.1"]  # TWOWAY_HTTP_HOST, not every interface
    booked = await book(h)
    link = await h.get(f"/participants/{MENTEE}/calendar")
    assert link.status_code == 200
    path = feed_path(link.json()["url"])
    feed = await h.get(path, token="")  # the URL is the credential: no bearer token
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    uids = {str(e["uid"]) for e in icalendar.Calendar.from_ical(feed.content).walk("VEVENT")}
    assert uids == {f"{PAIR}@twoway"}  # the pair's series, as in the invitations
    assert [(m.starts_at, m.ends_at) for m in expand(feed.content, *WINDOW)] == [
        (datetime.fromisoformat(s["starts_at"]), datetime.fromisoformat(s["ends_at"]))
        for s in booked
    ]
    # A link signed by the older key still verifies; one signed by a removed key does not.
    old_key, removed_key = b"old-calendar-key-0123456789abcdef", b"a-key-no-longer-listed"
    old = calendar_token.sign(MENTEE, [old_key])
    assert (await h.get(f"/calendars/{old}.ics", token="")).status_code == 200
    revoked = calendar_token.sign(MENTEE, [removed_key])
    assert (await h.get(f"/calendars/{revoked}.ics", token="")).status_code == 404
    # The link itself and the feed by participant id need a reader's bearer token.
    assert (await h.get(f"/participants/{MENTEE}/calendar", token="")).status_code == 401
    assert (await h.get(f"/participants/{MENTEE}/calendar.ics", token="")).status_code == 401
    manager = oidc.mint(roles=[f"twoway.manager:{PROGRAMME}"])
    assert (await h.get(f"/participants/{MENTEE}/calendar", token=manager)).status_code == 403
    assert (await h.get(f"/participants/{MENTEE}/calendar.ics", token=manager)).status_code == 403
    assert (await h.get("/participants/nobody/calendar")).status_code == 404
    # Erasure: the link and the feed are gone (404), whatever key signed the token.
    await h.send(
        h.record("participant.withdrawn", participant_id=MENTEE, programme_id=PROGRAMME, erase=True)
    )
    await h.barrier()
    assert (await h.get(path, token="")).status_code == 404
    assert (await h.get(f"/calendars/{old}.ics", token="")).status_code == 404
    assert (await h.get(f"/participants/{MENTEE}/calendar")).status_code == 404
    mentor_link = (await h.get(f"/participants/{MENTOR}/calendar")).json()["url"]
    assert (await h.get(feed_path(mentor_link), token="")).status_code == 200


def forged(participant_id: str, rng: random.Random) -> str:
    head = base64.urlsafe_b64encode(participant_id.encode()).decode().rstrip("=")
    mac = base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")
    return f"{head}.{mac}"


async def test_calendar_tokens_cannot_be_enumerated_or_timed(service: Harness) -> None:
    """Forgeries for people who exist, for people who do not, and garbage: the same 404, in
    the same time; a lookup that reaches the database is measurably slower (the control)."""
    h = service
    await book(h)
    rng = random.Random(10)
    kinds: dict[str, list[str]] = {
        "forged, person exists": [forged(rng.choice([MENTOR, MENTEE]), rng) for _ in range(150)],
        "forged, nobody": [forged(f"E{rng.randrange(10**6):06d}", rng) for _ in range(150)],
        "garbage": [rng.randbytes(rng.randrange(4, 60)).hex() for _ in range(150)],
    }
    # Control: a valid token of someone scheduling does not know costs one database lookup
    # on top of the MAC; the measurement must be able to see that difference.
    keys = [b"new-calendar-key-0123456789abcdef"]
    kinds["valid, nobody (control)"] = [calendar_token.sign(f"X{n:05d}", keys) for n in range(150)]
    app = create_http_app(
        service="scheduling",
        metrics=Metrics(),
        checks={},
        routes=read_routes(h.runtime.pool, h.runtime.settings),  # type: ignore[arg-type]
    )
    order = [(kind, token) for kind, tokens in kinds.items() for token in tokens]
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://scheduling") as client:
        for _kind, token in order[:40]:  # warm-up
            await client.get(f"/calendars/{token}.ics")
        for _ in range(2):
            rng.shuffle(order)
            for kind, token in order:
                started = time.perf_counter()
                response = await client.get(f"/calendars/{token}.ics")
                timings[kind].append(time.perf_counter() - started)
                assert response.status_code == 404
                assert response.json() == {"error": "not found"}
    median = {kind: statistics.median(t) * 1e6 for kind, t in timings.items()}
    print({kind: f"{us:.0f} us" for kind, us in median.items()})
    base = median["garbage"]
    control_gap = median["valid, nobody (control)"] - base
    for kind in ("forged, person exists", "forged, nobody"):
        gap = abs(median[kind] - base)
        assert gap < control_gap / 5, (kind, median)
