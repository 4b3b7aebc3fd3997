"""Notifications' handlers against the real PostgreSQL, one unit of work each, no Kafka."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from twoway_dev.testing.handlers import HandlerBench
from twoway_dev.testing.service import example
from twoway_notifications.app import create_spec
from twoway_notifications.storage import Storage
from twoway_shared.contract import (
    PairConfirmed,
    PairEnded,
    PairProposed,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    SessionScheduled,
)

pytestmark = pytest.mark.infra

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
PAIR = {"pair_id": "P1", "programme_id": "RM", "mentor_id": "M1", "mentee_id": "E1"}


def person(participant_id: str, role: str, **changes: Any) -> ParticipantEnrolled:
    email = f"{participant_id.lower()}@example.com"
    fields = dict(participant_id=participant_id, programme_id="RM", role=role, email=email)
    return example(ParticipantEnrolled, **(fields | {"manager_id": None} | changes))


@pytest.fixture
async def bench(service_dsns: dict[str, str]) -> AsyncIterator[HandlerBench]:
    async with HandlerBench.open(create_spec(), service_dsns["notifications"], NOW) as opened:
        yield opened


async def messages(bench: HandlerBench) -> list[tuple[str, str, str]]:
    rows = await bench.fetch(
        "SELECT participant_id, template, status FROM notifications.messages"
        " ORDER BY participant_id, template"
    )
    return [(r["participant_id"], r["template"], r["status"]) for r in rows]


async def test_confirmation_is_queued_for_both_once(bench: HandlerBench) -> None:
    await bench.handle(person("M1", "mentor"))
    await bench.handle(PairConfirmed(**PAIR))
    # Queued for both even before the mentee is known: the sender decides when one may go.
    assert await messages(bench) == [
        ("E1", "pair_confirmed", "pending"),
        ("M1", "pair_confirmed", "pending"),
    ]
    await bench.handle(PairConfirmed(**PAIR))  # the same facts again: nothing new
    assert len(await messages(bench)) == 2


async def test_the_sweep_releases_what_the_one_rule_would_send(bench: HandlerBench) -> None:
    await bench.handle(person("M1", "mentor"))
    await bench.handle(person("E1", "mentee"))
    await bench.handle(PairConfirmed(**PAIR))
    await bench.handle(PairConfirmed(**{**PAIR, "pair_id": "P2", "mentee_id": "E9"}))
    # A wait recorded just as the details arrived (the race the sweep exists for).
    await bench.pool.execute("UPDATE notifications.messages SET status = 'waiting'")
    async with bench.pool.acquire() as conn, conn.transaction():
        await Storage(conn).release_resolved_waiting(NOW)
    rows = await bench.fetch(
        "SELECT pair_id, participant_id, status FROM notifications.messages"
        " ORDER BY pair_id, participant_id"
    )
    assert [(r["pair_id"], r["participant_id"], r["status"]) for r in rows] == [
        ("P1", "E1", "pending"),
        ("P1", "M1", "pending"),
        ("P2", "E9", "waiting"),  # the recipient is unknown
        ("P2", "M1", "waiting"),  # the partner it names is unknown
    ]


async def test_partner_withdrew_tells_only_the_remaining_partner(bench: HandlerBench) -> None:
    await bench.handle(person("M1", "mentor"))
    await bench.handle(person("E1", "mentee"))
    await bench.handle(PairEnded(**PAIR, reason="withdrawn", withdrawn_by="M1"))
    await bench.handle(ParticipantWithdrawn(participant_id="M1", programme_id="RM", erase=True))
    assert await messages(bench) == [("E1", "partner_withdrew", "pending")]
    rows = await bench.fetch(
        "SELECT email, display_name FROM notifications.participants WHERE participant_id = 'M1'"
    )
    assert (rows[0]["email"], rows[0]["display_name"]) == (None, None)


async def test_a_sessions_messages_are_added_in_one_statement_once_with_one_wake_up(
    bench: HandlerBench,
) -> None:
    """`add_messages`: how many were new, duplicates ignored, the sender woken only for new."""
    from twoway_notifications.storage import DUE_CHANNEL, NewMessage

    def message(number: int) -> NewMessage:
        return NewMessage(
            notification_id=f"N{number}",
            template="reminder",
            participant_id="M1",
            partner_id="E1",
            needs_partner=True,
            pair_id="P1",
            session_id="S1",
            cause_id="C1",
            due_at=NOW,
            details={"n": number} if number == 2 else None,
        )

    woken: list[str] = []

    def wake(_conn: object, _pid: int, channel: str, _payload: object) -> None:
        woken.append(channel)

    async with bench.pool.acquire() as listener:
        await listener.add_listener(DUE_CHANNEL, wake)
        async with bench.pool.acquire() as conn:
            store = Storage(conn)
            assert await store.add_messages([message(1), message(2), message(3)], NOW) == 3
            assert await store.add_messages([message(2), message(3)], NOW) == 0
            assert await store.add_messages([], NOW) == 0
            rows = await conn.fetch(
                "SELECT notification_id, details FROM notifications.messages ORDER BY 1"
            )
        deadline = asyncio.get_running_loop().time() + 10
        while not woken and asyncio.get_running_loop().time() < deadline:
            await listener.execute("SELECT 1")  # a round trip lets a notification arrive
        await listener.remove_listener(DUE_CHANNEL, wake)
    assert [(r["notification_id"], r["details"]) for r in rows] == [
        ("N1", "{}"),
        ("N2", '{"n": 2}'),
        ("N3", "{}"),
    ]
    assert woken == [DUE_CHANNEL]


def series(pair_id: str, mentee_id: str) -> list[SessionScheduled]:
    first = datetime(2027, 1, 11, 9, 0, tzinfo=UTC)
    return [
        example(
            SessionScheduled,
            session_id=f"{pair_id}-S{n}",
            **{**PAIR, "pair_id": pair_id, "mentee_id": mentee_id},
            sequence=n,
            total=6,
            starts_at=first + timedelta(weeks=n - 1),
            ends_at=first + timedelta(weeks=n - 1, minutes=45),
            revision=0,
        )
        for n in range(1, 7)
    ]


async def recorded(bench: HandlerBench, pair_id: str) -> list[tuple[Any, ...]]:
    """A pair's messages, told apart from another pair's only by the pair's own ids."""
    rows = await bench.fetch(
        "SELECT m.participant_id, m.template, m.due_at, s.sequence AS about,"
        " c.sequence AS caused_by FROM notifications.messages m"
        " LEFT JOIN notifications.sessions s ON s.session_id = m.session_id"
        " LEFT JOIN notifications.sessions c ON c.cause_id = m.cause_id"
        " WHERE m.pair_id = $1 ORDER BY 1, 2, 3",
        pair_id,
    )
    return [tuple(r) for r in rows]


async def test_a_run_of_sessions_records_what_one_at_a_time_does(bench: HandlerBench) -> None:
    """A pair's series handled as one run (with a replay in another run) gives the same
    messages as handled one session at a time: reminders and feedback requests of every
    session, and the booking emails caused by the session that completed the series."""
    for who, role in (("M1", "mentor"), ("E1", "mentee"), ("E2", "mentee")):
        await bench.handle(person(who, role))
    one_at_a_time, as_a_run = series("P1", "E1"), series("P2", "E2")
    for session in one_at_a_time:
        await bench.handle(session)
    await bench.handle_run(*as_a_run[:2])
    await bench.handle_run(as_a_run[1], *as_a_run[2:])  # the second session replayed
    alone, run = await recorded(bench, "P1"), await recorded(bench, "P2")
    assert [r[1:] for r in alone if r[0] == "E1"] == [r[1:] for r in run if r[0] == "E2"]
    assert [r for r in alone if r[0] == "M1"] == [r for r in run if r[0] == "M1"]
    bookings = [r for r in run if r[1] == "booking"]
    assert [(r[0], r[4]) for r in bookings] == [("E2", 6), ("M1", 6)]
    templates = Counter(r[1] for r in run)
    assert templates["feedback_request"] == 12
    assert templates["booking"] == 2


# ---------------------------------------------------------------- a run of profiles


def updated(participant_id: str, role: str, **changes: Any) -> ParticipantUpdated:
    return ParticipantUpdated.model_validate(person(participant_id, role, **changes).model_dump())


async def notifications_state(bench: HandlerBench) -> dict[str, list[dict[str, Any]]]:
    """The people and the messages, as stored."""
    people = await bench.fetch("SELECT * FROM notifications.participants ORDER BY 1")
    messages = await bench.fetch("SELECT * FROM notifications.messages ORDER BY 1")
    return {
        "participants": [dict(r) for r in people],
        "messages": [dict(r) for r in messages],
    }


async def test_a_run_of_profiles_records_what_one_at_a_time_does(
    service_dsns: dict[str, str], twin_service_dsns: dict[str, str]
) -> None:
    """New people whose messages were waiting for them, one person twice, a newer and a stale
    update, a withdrawn person and a tombstone enrolling again, an erased person updated: as
    one run and one record at a time, the same people and the same messages, released when
    one at a time would release them."""
    async with (
        HandlerBench.open(create_spec(), service_dsns["notifications"], NOW) as alone,
        HandlerBench.open(create_spec(), twin_service_dsns["notifications"], NOW) as run,
    ):
        for bench in (alone, run):
            for who, role in (("M1", "mentor"), ("X", "mentee"), ("W", "mentee")):
                await bench.handle(person(who, role))
            await bench.handle(person("Z", "mentee"))
            await bench.handle(ParticipantWithdrawn(participant_id="W", programme_id="RM"))
            await bench.handle(
                ParticipantWithdrawn(participant_id="Z", programme_id="RM", erase=True)
            )
            await bench.handle(ParticipantWithdrawn(participant_id="T", programme_id="RM"))
            await bench.handle(PairConfirmed(**{**PAIR, "mentee_id": "N1"}))
            await bench.handle(PairConfirmed(**{**PAIR, "pair_id": "P2", "mentor_id": "N2",
                                                "mentee_id": "N3"}))  # fmt: skip
            # What the sender would do: wait for the people not known yet.
            await bench.pool.execute("UPDATE notifications.messages SET status = 'waiting'")
            bench.now = NOW + timedelta(minutes=5)
        records = [
            person("N1", "mentee"),  # releases P1's two messages
            person("N2", "mentor"),  # releases P2's two messages, though N3 is still unknown
            updated("N2", "mentor", revision=1, display_name="Nina"),  # the same person again
            person("N3", "mentee"),
            updated("X", "mentee", revision=2, locale="fr"),
            updated("X", "mentee", revision=1, locale="de"),  # stale
            updated("W", "mentee", revision=3),  # withdrawn: only an enrolment counts
            person("W", "mentee", revision=1, display_name="Wanda"),  # withdrawn, enrolling
            updated("Z", "mentee", revision=5),  # erased with the withdrawal: ignored
            person("T", "mentee"),  # a tombstone enrolling: a new enrolment
        ]
        tick = timedelta(seconds=1)  # between records
        assert await alone.handle_each(*records, tick=tick) == [[] for _ in records]
        assert await run.handle_run(*records, tick=tick) == [[] for _ in records]
        assert await run.outbox() == await alone.outbox()
        stored = await notifications_state(alone)
        assert await notifications_state(run) == stored
    people = {p["participant_id"]: p for p in stored["participants"]}
    assert (people["N2"]["revision"], people["N2"]["display_name"]) == (1, "Nina")
    assert (people["X"]["revision"], people["X"]["locale"]) == (2, "fr")
    assert (people["W"]["display_name"], people["W"]["withdrawn"]) == ("Wanda", False)
    assert (people["Z"]["erased"], people["Z"]["email"]) == (True, None)
    assert (people["T"]["revision"], people["T"]["role"]) == (0, "mentee")
    assert {(m["participant_id"], m["status"]) for m in stored["messages"]} == {
        ("M1", "pending"), ("N1", "pending"), ("N2", "pending"), ("N3", "pending"),
    }  # fmt: skip
    # Released by the first of the two people to arrive: P1's by N1, P2's by N2, a second on.
    assert {(m["pair_id"], m["due_at"] - NOW) for m in stored["messages"]} == {
        ("P1", timedelta(minutes=5)), ("P2", timedelta(minutes=5, seconds=1)),
    }  # fmt: skip


# ---------------------------------------------------------------- a run of pairs


def proposed(pair: dict[str, str], learns: list[str], *, expires: bool) -> PairProposed:
    reasons = {"mentee_learns": learns, "mentor_learns": ["leadership", "finance"]}
    return example(
        PairProposed,
        **pair,
        reasons=example(PairProposed).reasons.model_copy(update=reasons),
        expires_at=NOW + timedelta(days=3) if expires else None,
    )


async def test_a_run_of_pairs_records_what_one_at_a_time_does(
    service_dsns: dict[str, str], twin_service_dsns: dict[str, str]
) -> None:
    """Proposals with and without an expiry, one pair proposed twice with other reasons,
    confirmations with one replayed: as runs and one record at a time, the same pairs (the
    last proposal's tags, in their order) and the same messages."""
    p2 = {**PAIR, "pair_id": "P2", "mentee_id": "E2"}
    proposals = [
        proposed(PAIR, ["cloud", "ai"], expires=True),
        proposed(p2, ["video"], expires=False),
        proposed(PAIR, ["security", "ai", "blogging"], expires=True),  # the same pair again
    ]
    confirmations = [PairConfirmed(**PAIR), PairConfirmed(**p2), PairConfirmed(**PAIR)]
    async with (
        HandlerBench.open(create_spec(), service_dsns["notifications"], NOW) as alone,
        HandlerBench.open(create_spec(), twin_service_dsns["notifications"], NOW) as run,
    ):
        await alone.handle_each(*proposals, *confirmations)
        await run.handle_run(*proposals)
        await run.handle_run(*confirmations)
        assert await run.outbox() == await alone.outbox()
        query = "SELECT pair_id, mentee_learns, mentor_learns FROM notifications.pairs ORDER BY 1"
        pairs = [tuple(r) for r in await alone.fetch(query)]
        assert [tuple(r) for r in await run.fetch(query)] == pairs
        stored = await notifications_state(alone)
        assert await notifications_state(run) == stored
    assert pairs == [
        ("P1", ["security", "ai", "blogging"], ["leadership", "finance"]),
        ("P2", ["video"], ["leadership", "finance"]),
    ]
    templates = Counter((m["participant_id"], m["template"]) for m in stored["messages"])
    assert templates == {
        ("M1", "pair_proposed"): 1,  # P1's proposal: it needs an answer
        ("E1", "pair_proposed"): 1,
        ("M1", "pair_confirmed"): 2,  # P1 and P2
        ("E1", "pair_confirmed"): 1,
        ("E2", "pair_confirmed"): 1,
    }
