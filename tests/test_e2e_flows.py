"""Cross-service end-to-end flows: the three real services, real Kafka, PostgreSQL and SMTP."""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from twoway_dev.testing.calendar_client import CalendarClient, expand
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import (
    Received,
    ToSend,
    client_options,
    eventually,
    publish,
)
from twoway_dev.testing.oidc import TestProvider
from twoway_dev.toolkit.generate import generate_cohort
from twoway_shared import contract
from twoway_shared.contract import (
    EVENT_MODELS,
    PairResponseSubmitted,
    ParticipantEnrolled,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    SessionAttendanceRecorded,
    SessionRescheduleRequested,
    Topic,
)
from twoway_shared.contract.access import SERVICES, consumes

from tests.e2e_support import (
    Stack,
    View,
    mails,
    next_monday,
    parse_time,
    person,
    running_stack,
    vevent_times,
    within_availability,
)

pytestmark = pytest.mark.infra

STARTS_ON = next_monday(datetime.now(UTC).date())

Records = list[Received]


def programme(programme_id: str, **matching: Any) -> ProgrammeConfigured:
    """A programme starting next Monday; no reminders, so no mail depends on the wall clock."""
    return ProgrammeConfigured.model_validate(
        {
            "programme_id": programme_id,
            "name": f"E2E {programme_id}",
            "starts_on": STARTS_ON.isoformat(),
            "sessions": 4,
            "reminder_minutes": [],
            "matching": matching,
        }
    )


def enrolled(profile: dict[str, Any]) -> ParticipantEnrolled:
    return ParticipantEnrolled.model_validate(profile)


# ---------------------------------------------------------------- fixtures


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, oidc: TestProvider
) -> AsyncIterator[Stack]:
    """One running set of the three services for the whole module (each test its own ids),
    trusting the session's OpenID Connect provider for read-API tokens."""
    root = tmp_path_factory.mktemp("e2e")
    async with running_stack(infra, root, oidc=oidc) as stack:
        yield stack


def session_state(view: View, pair_id: str) -> dict[str, dict[str, Any]]:
    """session_id -> the data of the latest time/status event of each session of a pair."""
    state: dict[str, dict[str, Any]] = {}
    for e in view.sessions(pair_id=pair_id):
        if e["kind"] in ("session.scheduled", "session.rescheduled", "session.cancelled"):
            previous = state.get(e["data"]["session_id"], {})
            state[e["data"]["session_id"]] = {**previous, **e["data"], "kind": e["kind"]}
    return state


async def confirmed_pair(view: View, mentor: str, mentee: str) -> dict[str, Any]:
    await view.until(
        lambda: bool(view.pairs("pair.confirmed", mentor_id=mentor, mentee_id=mentee)),
        f"pair.confirmed {mentor}/{mentee}",
    )
    data: dict[str, Any] = view.pairs("pair.confirmed", mentor_id=mentor, mentee_id=mentee)[0][
        "data"
    ]
    return data


def booking_sent(view: View, pair_id: str) -> list[dict[str, Any]]:
    """`notification.sent` of the booking emails of a pair's series (caused by its sessions)."""
    causes = {e["id"] for e in view.sessions("session.scheduled", pair_id=pair_id)}
    return [n for n in view.sent(template="booking") if n["data"]["cause_id"] in causes]


async def booked(view: View, pair_id: str, total: int = 4) -> list[dict[str, Any]]:
    """Wait until a pair's series is scheduled and both booking emails are out."""
    await view.until(
        lambda: (
            len(view.sessions("session.scheduled", pair_id=pair_id)) == total
            and len(booking_sent(view, pair_id)) == 2
        ),
        f"the series and booking emails of {pair_id}",
    )
    return [e["data"] for e in view.sessions("session.scheduled", pair_id=pair_id)]


# ---------------------------------------------------------------- 1. a cohort


async def test_cohort_flows_to_pairs_sessions_and_booking_emails(stack: Stack, view: View) -> None:
    programme_id = "E2E-COHORT"
    cohort = generate_cohort(60, seed=606, programme_id=programme_id)
    renamed = {p["participant_id"]: f"C-{p['participant_id']}" for p in cohort}
    for p in cohort:
        p["participant_id"] = renamed[p["participant_id"]]
        p["manager_id"] = renamed.get(p["manager_id"]) if p["manager_id"] else None
        p["email"] = p["email"].replace("@", f".{p['participant_id'].lower()}@")
    people = {p["participant_id"]: p for p in cohort}
    by_email = {p["email"]: p["participant_id"] for p in cohort}

    await stack.send(programme(programme_id, mode="batch"), *(enrolled(p) for p in cohort))
    await stack.barrier(["matching"])
    await stack.send(contract.ProgrammeMatchingRequested(programme_id=programme_id))
    summary = await eventually(
        lambda: stack.get("matching", f"/programmes/{programme_id}/pairs"),
        lambda body: body is not None and body["last_round"] is not None,
        timeout=60,
        what="a matching round",
    )
    pairs = {p["pair_id"]: p for p in summary["pairs"] if p["status"] == "confirmed"}
    assert len(pairs) >= 20, summary["last_round"]

    def settled() -> bool:
        confirmed = {e["data"]["pair_id"] for e in view.pairs("pair.confirmed")} & set(pairs)
        failed = {e["data"]["pair_id"] for e in view.sessions("session.booking_failed")}
        full = [
            p
            for p in pairs
            if p not in failed and len(view.sessions("session.scheduled", pair_id=p)) == 4
        ]
        booking_mails = [m for m in mails(stack.mail, by_email) if m.template == "booking"]
        return (
            confirmed == set(pairs)
            and len(full) + len(failed & set(pairs)) == len(pairs)
            and len(booking_mails) == 2 * len(full)
            and len(
                [n for n in view.sent(template="booking") if n["data"]["participant_id"] in people]
            )
            == 2 * len(full)
        )

    await view.until(settled, "every pair booked and both booking emails sent", timeout=120)

    sessions_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pair_id in pairs:
        for data in session_state(view, pair_id).values():
            assert data["kind"] == "session.scheduled"
            sessions_of[pair_id].append(data)
    assert sum(len(s) for s in sessions_of.values()) >= 4 * 20

    busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for pair_id, series in sessions_of.items():
        assert sorted(s["sequence"] for s in series) == [1, 2, 3, 4]
        for s in series:
            starts, ends = parse_time(s["starts_at"]), parse_time(s["ends_at"])
            assert (ends - starts).total_seconds() == 30 * 60
            mentee_zone = ZoneInfo(people[s["mentee_id"]]["timezone"])
            assert starts >= datetime.combine(STARTS_ON, time(), mentee_zone)
            for who in (s["mentor_id"], s["mentee_id"]):
                assert within_availability(people[who], starts, ends), (pair_id, who, s)
                busy[who].append((starts, ends))
    for who, slots in busy.items():
        slots.sort()
        for (_, end), (start, _) in itertools.pairwise(slots):
            assert end <= start, f"{who} has overlapping sessions"

    booking = [m for m in mails(stack.mail, by_email) if m.template == "booking"]
    seen: Counter[tuple[str, str]] = Counter()
    for mail in booking:
        cal = mail.calendar()
        assert cal is not None, mail.path
        assert str(cal["METHOD"]) == "REQUEST"
        recipient = by_email[mail.to]
        vevents = mail.vevents()
        pair_ids = {
            p
            for p, s in sessions_of.items()
            if any(recipient in (x["mentor_id"], x["mentee_id"]) for x in s)
        }
        assert len(pair_ids) >= 1
        # One recurring series per pair: expanded, exactly the pair's sessions.
        assert {str(v["UID"]) for v in vevents} <= {f"{p}@twoway" for p in pair_ids}
        ics = mail.ics()
        assert ics is not None
        meetings = expand(ics, datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))
        (pair_id,) = {m.uid.removesuffix("@twoway") for m in meetings}
        assert [(m.starts_at, m.ends_at) for m in meetings] == sorted(
            (parse_time(s["starts_at"]), parse_time(s["ends_at"])) for s in sessions_of[pair_id]
        ), mail.path
        assert all(int(v["SEQUENCE"]) == 0 for v in vevents)
        seen[(recipient, pair_id)] += len(meetings)
    for pair_id, series in sessions_of.items():
        for who in (series[0]["mentor_id"], series[0]["mentee_id"]):
            assert seen[(who, pair_id)] == len(series), (who, pair_id)


# ---------------------------------------------------------------- 4. withdrawal


async def personal_data_hits(stack: Stack, needles: list[str]) -> list[str]:
    """Every `schema.table.column` of the four services' schemas whose text holds a needle."""
    hits = await every_column_hits(stack, needles)
    return [
        f"{column} holds {needle!r}"
        for needle, columns in hits.items()
        for column in columns
        if column.split(".")[0] in SERVICES
    ]


async def test_withdrawal_cancels_tells_the_partner_repairs_and_erases(
    stack: Stack, view: View
) -> None:
    programme_id = "E2E-WITHDRAW"
    tag = uuid.uuid4().hex[:8]
    mentor = person("W-M1", programme_id, "mentor")
    leaver = person("W-E1", programme_id, "mentee", name=f"Quillon Vasquez{tag}")
    leaver["email"] = f"quillon.{tag}@example.org"
    await stack.send(programme(programme_id), enrolled(mentor), enrolled(leaver))
    pair = await confirmed_pair(view, "W-M1", "W-E1")
    series = await booked(view, pair["pair_id"])
    # The search does find the leaver's name and email before the withdrawal.
    assert await personal_data_hits(stack, [leaver["display_name"], leaver["email"]])
    # The leaver's calendar link works without a bearer token, until the erasure.
    link = urlsplit((await stack.get("scheduling", "/participants/W-E1/calendar"))["url"]).path
    assert (await stack.fetch("scheduling", link)).status_code == 200

    await stack.send(
        ParticipantWithdrawn(
            participant_id="W-E1", programme_id=programme_id, reason="moving on", erase=True
        )
    )
    sessions = {s["session_id"] for s in series}
    await view.until(
        lambda: (
            {
                e["data"]["session_id"]
                for e in view.sessions("session.cancelled", pair_id=pair["pair_id"])
            }
            == sessions
            and bool(view.sent(participant_id="W-M1", template="partner_withdrew"))
            and bool(view.sent(participant_id="W-M1", template="session_cancelled"))
        ),
        "cancellations and the partner's emails",
    )
    (ended,) = view.pairs("pair.ended", pair_id=pair["pair_id"])
    assert ended["data"]["reason"] == "withdrawn"
    assert ended["data"]["withdrawn_by"] == "W-E1"
    cancelled = view.sessions("session.cancelled", pair_id=pair["pair_id"])
    assert len(cancelled) == len(sessions), "one cancellation per session"
    for e in cancelled:
        assert e["data"]["reason"] in ("participant_withdrawn", "pair_ended")
        assert e["data"]["revision"] == 1

    to_partner = mails(stack.mail, [mentor["email"]])
    templates = Counter(m.template for m in to_partner)
    assert templates["partner_withdrew"] == 1
    assert templates["session_cancelled"] == 1, "one email holding every cancelled VEVENT"
    withdrew = next(m for m in to_partner if m.template == "partner_withdrew")
    assert "moving on" not in withdrew.text()
    cancel = next(m for m in to_partner if m.template == "session_cancelled")
    cal = cancel.calendar()
    assert cal is not None
    assert str(cal["METHOD"]) == "CANCEL"
    # Nothing of the series is left: one cancellation of the whole series, no RECURRENCE-ID,
    # SEQUENCE above the cancelled sessions' revision 1.
    (whole,) = cancel.vevents()
    assert str(whole["UID"]) == f"{pair['pair_id']}@twoway"
    assert "RECURRENCE-ID" not in whole
    assert int(whole["SEQUENCE"]) == 2
    erased_got = Counter(m.template for m in mails(stack.mail, [leaver["email"]]))
    assert "session_cancelled" not in erased_got, "an erased person gets nothing more"
    await eventually(
        lambda: stack.fetch("scheduling", link),
        lambda response: response.status_code == 404,
        what="the erased person's calendar feed answers 404",
    )

    newcomer = person("W-E2", programme_id, "mentee")
    await stack.send(enrolled(newcomer))
    repaired = await confirmed_pair(view, "W-M1", "W-E2")
    await booked(view, repaired["pair_id"])
    await stack.barrier()
    assert await personal_data_hits(stack, [leaver["display_name"], leaver["email"]]) == []
    assert await personal_data_hits(stack, [mentor["email"]]), "the partner's data stays"


async def every_column_hits(stack: Stack, needles: list[str]) -> dict[str, list[str]]:
    """needle -> every `schema.table.column` of every schema whose text holds it (any case)."""
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        columns = await conn.fetch(
            """SELECT table_schema, table_name, column_name, data_type
               FROM information_schema.columns JOIN information_schema.tables
                    USING (table_catalog, table_schema, table_name)
               WHERE table_type = 'BASE TABLE'
                 AND table_schema NOT IN ('pg_catalog', 'information_schema')"""
        )
        assert set(SERVICES) <= {c["table_schema"] for c in columns}
        hits: dict[str, list[str]] = {needle: [] for needle in needles}
        for c in columns:
            table = f'"{c["table_schema"]}"."{c["table_name"]}"'
            name = f'"{c["column_name"]}"'
            text = f"encode({name}, 'escape')" if c["data_type"] == "bytea" else f"{name}::text"
            for needle in needles:
                found = await conn.fetchval(
                    f"SELECT count(*) FROM {table} WHERE {text} ILIKE $1", f"%{needle}%"
                )
                if found:
                    hits[needle].append(f"{c['table_schema']}.{c['table_name']}.{name}")
        return hits
    finally:
        await conn.close()


# Where an erased person's id may stay: the keys that tie a pair's and its sessions' history
# together for the partner (who they were paired with is the partner's data too), and the
# withdrawal's own bookkeeping. Nothing there says anything about the person.
ID_MAY_STAY = {
    'matching.participants."participant_id"',
    'matching.pairs."mentor_id"',
    'matching.pairs."mentee_id"',
    'matching.pairs."pair_id"',
    'matching.pairs."closed_by"',
    'scheduling.participants."participant_id"',
    'scheduling.pairs."mentor_id"',
    'scheduling.pairs."mentee_id"',
    'scheduling.pairs."pair_id"',
    'scheduling.sessions."mentor_id"',
    'scheduling.sessions."mentee_id"',
    'scheduling.sessions."pair_id"',
    'notifications.participants."participant_id"',
    'notifications.sessions."mentor_id"',
    'notifications.sessions."mentee_id"',
    'notifications.sessions."pair_id"',
    'notifications.messages."participant_id"',
    'notifications.messages."partner_id"',
    'notifications.messages."pair_id"',
    'notifications.messages."group_key"',
    'notifications.pairs."mentor_id"',
    'notifications.pairs."mentee_id"',
    'notifications.pairs."pair_id"',
    # The dashboard's counts: who was proposed with whom, and which emails went (ids only).
    'progress.proposals."mentor_id"',
    'progress.proposals."mentee_id"',
    'progress.deliveries."participant_id"',
    'progress.participants."participant_id"',
    'progress.pairs."mentor_id"',
    'progress.pairs."mentee_id"',
    'progress.pairs."pair_id"',
}


async def test_erasure_leaves_no_value_of_the_profile_in_any_schema(
    stack: Stack, view: View
) -> None:
    """Every value of the erased profile (and their rating's comment) is searched for in every
    column of every schema; only the id stays, and only in the keys of shared history."""
    programme_id = "E2E-ERASE"
    tag = uuid.uuid4().hex[:8]
    leaver_id, mentor_id = f"X{tag}E", f"X{tag}M"
    mentor = person(mentor_id, programme_id, "mentor")
    leaver = person(leaver_id, programme_id, "mentee", name=f"Ottilie Brandvold{tag}")
    leaver.update(
        email=f"ottilie.{tag}@example.org",
        department=f"Treasury{tag}",
        location=f"Tromso{tag}",
        manager_id=f"MGR{tag}",
        offers=["leadership", f"fjord-sailing-{tag}", f"ski-waxing-{tag}"],
        wants=["python", f"rune-carving-{tag}", f"knot-tying-{tag}"],
    )
    # Shared with the partner, so in the pair's reasons; the others are the leaver's alone.
    shared = [f"fjord-sailing-{tag}", f"rune-carving-{tag}"]
    mentor["wants"] = ["leadership", f"fjord-sailing-{tag}"]
    mentor["offers"] = ["python", f"rune-carving-{tag}"]
    await stack.send(programme(programme_id), enrolled(mentor), enrolled(leaver))
    pair = await confirmed_pair(view, mentor_id, leaver_id)
    first = min(await booked(view, pair["pair_id"]), key=lambda s: s["sequence"])
    comment = f"Wonderful hour {tag}"
    await stack.send(
        attendance(first, mentor_id, attended=True, rating=4),
        SessionAttendanceRecorded(
            session_id=first["session_id"],
            pair_id=pair["pair_id"],
            participant_id=leaver_id,
            attended=True,
            rating=5,
            comment=comment,
        ),
    )
    await view.until(
        lambda: bool(view.sessions("session.completed", session_id=first["session_id"])),
        "the first session completed with both ratings",
    )
    values = [
        leaver["display_name"],
        leaver["email"],
        leaver["department"],
        leaver["location"],
        leaver["manager_id"],
        f"ski-waxing-{tag}",
        f"knot-tying-{tag}",
        comment,
    ]
    before = await every_column_hits(stack, [*values, *shared, leaver_id])
    # The search finds what the services keep while the person takes part.
    assert before[leaver["display_name"]], before
    assert before[f"knot-tying-{tag}"], before
    assert 'matching.pairs."reasons"' in before[shared[0]], before

    await stack.send(
        ParticipantWithdrawn(
            participant_id=leaver_id,
            programme_id=programme_id,
            reason=f"leaving {tag}",
            erase=True,
        )
    )
    await view.until(
        lambda: bool(view.pairs("pair.ended", pair_id=pair["pair_id"])), "the pair ended"
    )
    await stack.barrier()
    after = await every_column_hits(stack, [*values, *shared, f"leaving {tag}", leaver_id])
    kept = {n: where for n, where in after.items() if where and n not in (leaver_id, *shared)}
    assert kept == {}, kept
    # Shared tags stay only where they are the partner's own: the mentor's profile.
    for needle in shared:
        assert after[needle] == ['matching.participants."profile"'], after[needle]
    assert set(after[leaver_id]) <= ID_MAY_STAY, set(after[leaver_id]) - ID_MAY_STAY
    # The partner's own data stays.
    assert (await every_column_hits(stack, [mentor["email"]]))[mentor["email"]]


# ---------------------------------------------------------------- 5. dead letters


def raw_event(event_type: str, data: dict[str, Any]) -> bytes:
    document = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests/e2e/bad",
        "type": f"twoway.{event_type}.v1",
        "datacontenttype": "application/json",
        "data": data,
    }
    return json.dumps(document).encode()


def bad_records(stack: Stack, topic: Topic) -> list[ToSend]:
    """Not JSON, not a CloudEvent, a type not for `topic`, invalid data: each unique."""
    marker = uuid.uuid4().hex
    name = stack.topic(topic)
    first_type = sorted(EVENT_MODELS_BY_TOPIC[topic])[0]
    wrong = "programme.configured" if topic != Topic.PROGRAMMES else "pair.response_submitted"
    wrong_data = (
        {"programme_id": f"WRONG-{marker[:8]}"}
        if wrong == "programme.configured"
        else {"pair_id": "p1", "participant_id": "x", "response": "accept", "reason": None}
    )
    return [
        ToSend(name, f"{{not json {marker}".encode(), b"bad"),
        ToSend(name, json.dumps({"hello": marker}).encode(), b"bad"),
        ToSend(name, raw_event(wrong, wrong_data), b"bad"),
        ToSend(name, raw_event(first_type, {"nonsense": marker}), b"bad"),
    ]


EVENT_MODELS_BY_TOPIC: dict[Topic, set[str]] = defaultdict(set)
for _type in EVENT_MODELS:
    from twoway_shared.contract import EVENT_TOPIC

    EVENT_MODELS_BY_TOPIC[EVENT_TOPIC[_type]].add(_type)


async def all_dead_lettered(
    view: View, records: list[ToSend], what: str, timeout: float = 60
) -> None:
    """Wait until each record is dead-lettered by every consumer of its topic; name any missing."""
    prefix = view.stack.prefix

    def missing() -> list[str]:
        return [
            f"{r.topic}: {(r.value or b'')[:90]!r} by {sorted(expected - got)}"
            for r in records
            for expected in [consumers_of(Topic(r.topic[len(prefix) :]))]
            for got in [set(dead_letters_of(view, r))]
            if got != expected
        ]

    try:
        await view.until(lambda: not missing(), what, timeout)
    except AssertionError:
        raise AssertionError(f"not dead-lettered as expected: {missing()}") from None


def consumers_of(topic: Topic) -> set[str]:
    return {service for service in SERVICES if topic in consumes(service)}


def dead_letters_of(view: View, record: ToSend) -> dict[str, dict[str, bytes]]:
    """consumer -> headers of the dead letters that are unchanged copies of `record`."""
    return {
        r.headers["x-twoway-consumer"].decode(): r.headers
        for r in view.reader.on(view.stack.topic(Topic.DEADLETTER))
        if r.value == record.value
        and r.key == record.key
        and r.headers.get("x-original-topic", b"").decode() == record.topic
    }


async def test_invalid_records_are_dead_lettered_and_good_ones_flow(
    stack: Stack, view: View
) -> None:
    programme_id = "E2E-DLQ"
    m1, e1 = person("D-M1", programme_id, "mentor"), person("D-E1", programme_id, "mentee")
    m2, e2 = person("D-M2", programme_id, "mentor"), person("D-E2", programme_id, "mentee")
    await stack.send(programme(programme_id, acceptance_required=True), enrolled(m1), enrolled(e1))
    await view.until(
        lambda: bool(view.pairs("pair.proposed", mentor_id="D-M1", mentee_id="D-E1")),
        "the first proposal",
    )
    (first,) = view.pairs("pair.proposed", mentor_id="D-M1", mentee_id="D-E1")
    pair_id = first["data"]["pair_id"]

    def good(data: Any) -> ToSend:
        return ToSend.event(stack.prefix, data, source="/tests/e2e")

    changed_role = dict(m1, role="mentee", revision=1)
    role_change = good(contract.ParticipantUpdated.model_validate(changed_role))
    # Contract 1.1: responses the pair cannot take get pair.response_rejected, no dead letter.
    refused = [
        PairResponseSubmitted(pair_id="no-such-pair", participant_id="D-E1", response="accept"),
        PairResponseSubmitted(pair_id=pair_id, participant_id="D-M2", response="decline"),
    ]
    inputs = [
        Topic.PROGRAMMES,
        Topic.ENROLMENTS,
        Topic.PAIR_RESPONSES,
        Topic.SESSION_REQUESTS,
        Topic.PAIRS,
        Topic.SESSIONS,
    ]
    bad = {t: bad_records(stack, t) for t in inputs}
    records = [
        good(PairResponseSubmitted(pair_id=pair_id, participant_id="D-M1", response="accept")),
        *(r for t in inputs for r in bad[t]),
        *(good(r) for r in refused),
        role_change,
        good(programme("E2E-DLQ-AFTER")),
        good(PairResponseSubmitted(pair_id=pair_id, participant_id="D-E1", response="accept")),
        good(enrolled(m2)),
        good(enrolled(e2)),
    ]
    await publish(stack.kafka, records)

    await all_dead_lettered(
        view, [r for t in inputs for r in bad[t]], "every invalid record dead-lettered"
    )
    for t in inputs:
        for r in bad[t]:
            for consumer, headers in dead_letters_of(view, r).items():
                assert headers["x-twoway-error"].strip(), (t, consumer)
                assert headers["x-original-topic"].decode() == stack.topic(t)
                assert headers["x-original-offset"].decode().isdigit()

    for response in refused:
        answer = response.model_dump(exclude={"reason"})

        def answered(answer: dict[str, Any] = answer) -> bool:
            return bool(view.pairs("pair.response_rejected", **answer))

        await view.until(answered, f"pair.response_rejected for {response.participant_id}")

    # The good records around the bad ones were all processed.
    await booked(view, pair_id)
    second = await eventually(
        lambda: stack.get("matching", "/participants/D-E2/pair"),
        lambda body: body is not None and body["pair"] is not None,
        what="D-E2 proposed",
    )
    second_id = second["pair"]["pair_id"]
    assert second["pair"]["mentor_id"] == "D-M2"
    assert await stack.get("matching", "/programmes/E2E-DLQ-AFTER/pairs") is not None
    assert (await stack.get("matching", "/participants/D-M1/pair"))["role"] == "mentor"

    # session-requests and then pairs/sessions again: bad records between good ones.
    session = next(s for s in view.sessions("session.scheduled", pair_id=pair_id))["data"]
    more_bad = bad_records(stack, Topic.SESSION_REQUESTS) + bad_records(stack, Topic.PAIRS)
    more_bad += bad_records(stack, Topic.SESSIONS)
    await publish(
        stack.kafka,
        [
            good(attendance(session, "D-M1", attended=True, rating=5)),
            *more_bad,
            good(attendance(session, "D-E1", attended=True, rating=4)),
            good(
                PairResponseSubmitted(pair_id=second_id, participant_id="D-M2", response="accept")
            ),
            good(
                PairResponseSubmitted(pair_id=second_id, participant_id="D-E2", response="accept")
            ),
        ],
    )
    await view.until(
        lambda: bool(view.sessions("session.completed", session_id=session["session_id"])),
        "the session completed",
    )
    (completed,) = view.sessions("session.completed", session_id=session["session_id"])
    assert completed["data"]["ratings"] == {"mentor": 5, "mentee": 4}
    await booked(view, second_id)
    await all_dead_lettered(view, more_bad, "the second batch dead-lettered")
    assert stack.alive()
    # Last, so that a service accepting it does not hide the checks above.
    await all_dead_lettered(view, [role_change], "a changed role dead-lettered", timeout=10)


def attendance(
    session: dict[str, Any], who: str, *, attended: bool, rating: int | None = None
) -> SessionAttendanceRecorded:
    return SessionAttendanceRecorded(
        session_id=session["session_id"],
        pair_id=session["pair_id"],
        participant_id=who,
        attended=attended,
        rating=rating,
    )


# ---------------------------------------------------------------- 3. reschedule, attendance


async def test_reschedule_and_attendance_through_the_services(stack: Stack, view: View) -> None:
    programme_id = "E2E-SESSIONS"
    mentor, mentee = person("R-M1", programme_id, "mentor"), person("R-E1", programme_id, "mentee")
    await stack.send(programme(programme_id), enrolled(mentor), enrolled(mentee))
    pair = await confirmed_pair(view, "R-M1", "R-E1")
    series = sorted(await booked(view, pair["pair_id"]), key=lambda s: s["sequence"])
    first, second, third = series[0], series[1], series[2]

    await stack.send(
        SessionRescheduleRequested(
            session_id=second["session_id"],
            pair_id=pair["pair_id"],
            requested_by="R-E1",
            reason="travelling",
        ),
        SessionRescheduleRequested(
            session_id=second["session_id"], pair_id=pair["pair_id"], requested_by="R-M2"
        ),
        attendance(first, "R-M1", attended=True, rating=5),
        attendance(first, "R-E1", attended=True, rating=3),
        attendance(third, "R-M1", attended=True),
        attendance(third, "R-E1", attended=False),
    )
    await view.until(
        lambda: (
            bool(view.sessions("session.rescheduled", session_id=second["session_id"]))
            and bool(view.sessions("session.request_rejected", session_id=second["session_id"]))
            and bool(view.sessions("session.completed", session_id=first["session_id"]))
            and bool(view.sessions("session.missed", session_id=third["session_id"]))
            and len(view.sent(template="session_rescheduled", session_id=second["session_id"])) == 2
        ),
        "the reschedule, the rejection, the outcomes and two update emails",
    )
    (moved,) = view.sessions("session.rescheduled", session_id=second["session_id"])
    assert moved["data"]["reason"] == "requested"
    assert moved["data"]["revision"] == 1
    assert moved["data"]["previous_starts_at"] == second["starts_at"]
    assert moved["data"]["starts_at"] != second["starts_at"]
    starts, ends = parse_time(moved["data"]["starts_at"]), parse_time(moved["data"]["ends_at"])
    assert within_availability(mentor, starts, ends)
    assert within_availability(mentee, starts, ends)
    (rejected,) = view.sessions("session.request_rejected", session_id=second["session_id"])
    assert rejected["data"]["requested_by"] == "R-M2"
    assert rejected["data"]["request"] == "reschedule"
    (completed,) = view.sessions("session.completed", session_id=first["session_id"])
    assert completed["data"]["minutes"] == 30
    assert completed["data"]["ratings"] == {"mentor": 5, "mentee": 3}
    (missed,) = view.sessions("session.missed", session_id=third["session_id"])
    assert missed["data"]["absent"] == ["R-E1"]

    for who in (mentor, mentee):
        updates = [
            m for m in mails(stack.mail, [who["email"]]) if m.template == "session_rescheduled"
        ]
        assert len(updates) == 1, who["participant_id"]
        cal = updates[0].calendar()
        assert cal is not None
        assert str(cal["METHOD"]) == "REQUEST"
        (vevent,) = updates[0].vevents()
        assert str(vevent["UID"]) == f"{second['pair_id']}@twoway"
        assert int(vevent["SEQUENCE"]) == 1
        assert vevent.decoded("RECURRENCE-ID") == parse_time(second["starts_at"])
        assert str(vevent["X-TWOWAY-SESSION-ID"]) == second["session_id"]
        assert vevent_times(vevent) == (starts, ends)
        assert "travelling" not in updates[0].text()

    body = await stack.get("scheduling", "/participants/R-E1/sessions")
    listed = {s["session_id"]: s for s in body["sessions"]}
    assert listed[second["session_id"]]["starts_at"] == moved["data"]["starts_at"]
    assert listed[second["session_id"]]["revision"] == 1
    assert listed[first["session_id"]]["status"] == "completed"
    assert listed[third["session_id"]]["status"] == "missed"
    feed = await stack.get("scheduling", "/participants/R-E1/calendar.ics")
    assert f"UID:{second['pair_id']}@twoway" in feed
    # The mentee's calendar after the booking and the update shows what the feed shows: the
    # same series (UID) with the same occurrences.
    window = (datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))
    inbox = CalendarClient()
    received = mails(stack.mail, [mentee["email"]])
    for template in ("booking", "session_rescheduled"):
        for mail in (m for m in received if m.template == template):
            ics = mail.ics()
            assert ics is not None
            inbox.receive(ics)
    from_feed = expand(feed.encode(), *window)
    assert [(m.uid, m.starts_at, m.ends_at) for m in inbox.meetings(*window)] == [
        (m.uid, m.starts_at, m.ends_at) for m in from_feed
    ]
    assert len(from_feed) == len(listed)


# ---------------------------------------------------------------- 2. acceptance


async def test_acceptance_accept_and_decline(stack: Stack, view: View) -> None:
    programme_id = "E2E-ACCEPT"
    m1, e1 = person("A-M1", programme_id, "mentor"), person("A-E1", programme_id, "mentee")
    m2, e2 = person("A-M2", programme_id, "mentor"), person("A-E2", programme_id, "mentee")
    settings = programme(programme_id, acceptance_required=True, proposal_ttl_hours=1)
    await stack.send(settings, enrolled(m1), enrolled(e1))
    await view.until(lambda: bool(view.pairs("pair.proposed", mentee_id="A-E1")), "proposal 1")
    (p1,) = view.pairs("pair.proposed", mentee_id="A-E1")
    await stack.send(enrolled(m2), enrolled(e2))
    await view.until(lambda: bool(view.pairs("pair.proposed", mentee_id="A-E2")), "proposal 2")
    (p2,) = view.pairs("pair.proposed", mentee_id="A-E2")
    assert p1["data"]["mentor_id"] == "A-M1"
    assert p2["data"]["mentor_id"] == "A-M2"
    for p in (p1, p2):
        expires = parse_time(p["data"]["expires_at"])
        proposed_at = parse_time(p["time"])
        assert 3500 <= (expires - proposed_at).total_seconds() <= 3700

    one, two = p1["data"]["pair_id"], p2["data"]["pair_id"]
    await stack.send(
        PairResponseSubmitted(pair_id=one, participant_id="A-E1", response="accept"),
        PairResponseSubmitted(pair_id=two, participant_id="A-M2", response="accept"),
        PairResponseSubmitted(pair_id=two, participant_id="A-E2", response="decline"),
        PairResponseSubmitted(pair_id=one, participant_id="A-M1", response="accept"),
        # After the outcome: no effect.
        PairResponseSubmitted(pair_id=two, participant_id="A-E2", response="accept"),
    )
    await view.until(
        lambda: (
            bool(view.pairs("pair.confirmed", pair_id=one))
            and bool(view.pairs("pair.declined", pair_id=two))
        ),
        "one confirmed and one declined",
    )
    await booked(view, one)
    (declined,) = view.pairs("pair.declined", pair_id=two)
    assert declined["data"]["reason"] == "declined"
    assert declined["data"]["declined_by"] == "A-E2"
    await stack.barrier(["matching"])
    assert not view.pairs("pair.confirmed", pair_id=two)
    assert not view.sessions(pair_id=two)
    assert len(view.pairs("pair.proposed", programme_id=programme_id)) == 2, "never repeated"

    def told(template: str) -> set[str]:
        return {e["data"]["participant_id"] for e in view.sent(template=template)}

    await view.until(
        lambda: (
            told("pair_proposed") >= {p["participant_id"] for p in (m1, e1, m2, e2)}
            and told("pair_confirmed") >= {"A-M1", "A-E1"}
        ),
        "the four pair_proposed and the two pair_confirmed emails",
    )
    for who, pair_id in ((m1, one), (e1, one), (m2, two), (e2, two)):
        proposed = [m for m in mails(stack.mail, [who["email"]]) if m.template == "pair_proposed"]
        assert len(proposed) == 1, who["participant_id"]
        assert f"http://portal.test/pairs/{pair_id}" in proposed[0].text()
    confirmed_to = {m.to for m in mails(stack.mail) if m.template == "pair_confirmed"}
    assert {m1["email"], e1["email"]} <= confirmed_to
    assert not {m2["email"], e2["email"]} & confirmed_to


# ---------------------------------------------------------------- 6. replay


async def quiescent(stack: Stack) -> None:
    """Every group caught up and every service's outbox empty, twice in a row."""

    async def backlog() -> float:
        total = 0.0
        for service in SERVICES:
            text = await stack.get(service, "/metrics")
            for line in text.splitlines():
                if line.startswith("twoway_outbox_backlog"):
                    total += float(line.split()[-1])
        return total

    for _ in range(2):
        await stack.barrier(timeout=90)
        await eventually(backlog, lambda n: n == 0, timeout=60, what="empty outboxes")


async def settled_emails(stack: Stack, view: View) -> None:
    """Nothing due left unsent or unrecorded, every outbox empty, and every message recorded
    sent read back as its notification.sent (published after the send): a whole snapshot."""
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        await eventually(
            lambda: conn.fetchval(
                "SELECT count(*) FROM notifications.messages"
                " WHERE status IN ('pending', 'sending') AND due_at <= now()"
            ),
            lambda n: n == 0,
            timeout=60,
            what="no due email left unsent or unrecorded",
        )
        await quiescent(stack)
        recorded = {
            r["notification_id"]
            for r in await conn.fetch(
                "SELECT notification_id FROM notifications.messages WHERE status = 'sent'"
            )
        }
    finally:
        await conn.close()
    await view.until(
        lambda: recorded <= {e["data"]["notification_id"] for e in view.sent()},
        "every email recorded sent read back",
    )


async def rewind(stack: Stack, service: str) -> None:
    """Commit offset 0 for every input partition of a stopped service's consumer group."""
    group = f"{stack.prefix}{service}"
    topics = [stack.topic(t) for t in consumes(service)]
    admin = AIOKafkaAdminClient(**client_options(stack.kafka))
    await admin.start()
    consumer = AIOKafkaConsumer(
        **client_options(stack.kafka), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        described = await admin.describe_topics(topics)
        partitions = [
            TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
        ]
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
        committed = await admin.list_consumer_group_offsets(group)
        assert {tp: committed[tp].offset for tp in partitions} == dict.fromkeys(partitions, 0)
    finally:
        await consumer.stop()
        await admin.close()


async def test_replay_from_offset_zero_changes_nothing(stack: Stack, view: View) -> None:
    programme_id = "E2E-REPLAY"
    mentor, mentee = person("P-M1", programme_id, "mentor"), person("P-E1", programme_id, "mentee")
    await stack.send(programme(programme_id), enrolled(mentor), enrolled(mentee))
    pair = await confirmed_pair(view, "P-M1", "P-E1")
    await booked(view, pair["pair_id"])
    await settled_emails(stack, view)
    outputs = [stack.topic(t) for t in (Topic.PAIRS, Topic.SESSIONS, Topic.NOTIFICATIONS)]
    outputs.append(stack.topic(Topic.DEADLETTER))
    before = Counter(r.topic for r in view.reader.records if r.topic in outputs)
    emails_before = stack.mail.messages()
    assert before[stack.topic(Topic.NOTIFICATIONS)] >= 2

    codes = await stack.stop()
    assert codes == dict.fromkeys(SERVICES, 0)
    for service in SERVICES:
        await rewind(stack, service)
    await stack.start()
    await quiescent(stack)

    after = Counter(r.topic for r in view.reader.records if r.topic in outputs)
    assert after == before, "replaying every input produced new events"
    assert stack.mail.messages() == emails_before, "replaying every input sent new emails"
    listed = await stack.get("scheduling", "/participants/P-E1/sessions")
    assert listed["participant_id"] == "P-E1"
    assert len(listed["sessions"]) == 4


# ---------------------------------------------------------------- 5b. oversized records


async def test_records_over_one_mib_are_dead_lettered(stack: Stack, view: View) -> None:
    """A >1 MiB value reaches the services only compressed (the broker refuses it otherwise)."""
    marker = uuid.uuid4().hex
    padding = "x" * (1024 * 1024 + 1)
    big = [
        ToSend(
            stack.topic(topic),
            raw_event(kind, {**data, "padding": padding, "marker": marker}),
            key,
        )
        for topic, kind, data, key in (
            (Topic.PROGRAMMES, "programme.configured", {"programme_id": "BIG"}, b"BIG"),
            (
                Topic.SESSION_REQUESTS,
                "session.reschedule_requested",
                {"session_id": "s", "pair_id": "BIG", "requested_by": "x"},
                b"BIG",
            ),
        )
    ]
    assert all(len(r.value or b"") > 1024 * 1024 for r in big)
    producer = AIOKafkaProducer(
        **client_options(stack.kafka), compression_type="gzip", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        for record in big:
            try:
                await (await producer.send(record.topic, value=record.value, key=record.key))
            except KafkaError as exc:
                pytest.skip(f"the broker refuses a >1 MiB record even compressed: {exc!r}")
    finally:
        await producer.stop()
    await stack.send(programme("E2E-BIG-AFTER"))
    await eventually(
        lambda: stack.get("matching", "/programmes/E2E-BIG-AFTER/pairs"),
        lambda body: body is not None,
        what="the good programme after the big records",
    )
    await all_dead_lettered(view, big, "the oversized records dead-lettered", timeout=30)
    for r in big:
        for headers in dead_letters_of(view, r).values():
            assert b"1 MiB" in headers["x-twoway-error"]
