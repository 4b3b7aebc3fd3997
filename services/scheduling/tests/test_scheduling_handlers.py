"""Scheduling's handlers against the real PostgreSQL, one unit of work each, no Kafka."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from twoway_dev.testing.handlers import HandlerBench
from twoway_dev.testing.service import example
from twoway_scheduling.app import create_spec
from twoway_scheduling.handlers import session_id_for
from twoway_shared.contract import (
    PairConfirmed,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    SessionAttendanceRecorded,
    SessionRescheduleRequested,
    SessionScheduled,
)

pytestmark = pytest.mark.infra

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
HOURS = [{"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu")]


def person(participant_id: str, role: str, **changes: Any) -> ParticipantEnrolled:
    fields: dict[str, Any] = {"timezone": "Europe/London", "availability": HOURS} | changes
    return example(
        ParticipantEnrolled, participant_id=participant_id, programme_id="RM", role=role,
        manager_id=None, **fields,
    )  # fmt: skip


def confirmed(pair_id: str, mentor_id: str, mentee_id: str) -> PairConfirmed:
    return PairConfirmed(
        pair_id=pair_id, programme_id="RM", mentor_id=mentor_id, mentee_id=mentee_id
    )


@pytest.fixture
async def bench(service_dsns: dict[str, str]) -> AsyncIterator[HandlerBench]:
    async with HandlerBench.open(create_spec(), service_dsns["scheduling"], NOW) as opened:
        yield opened


async def book(bench: HandlerBench) -> list[dict[str, Any]]:
    await bench.handle(
        ProgrammeConfigured(
            programme_id="RM", sessions=3, starts_on=date(2027, 1, 5), min_notice_hours=0
        )
    )
    assert await bench.handle(person("M1", "mentor")) == []
    assert await bench.handle(person("E1", "mentee")) == []
    emitted = await bench.handle(
        PairConfirmed(pair_id="P1", programme_id="RM", mentor_id="M1", mentee_id="E1")
    )
    assert [t for t, _ in emitted] == ["session.scheduled"] * 3
    return [d for _, d in emitted]


async def test_confirmed_pair_is_booked_once(bench: HandlerBench) -> None:
    sessions = await book(bench)
    assert [s["sequence"] for s in sessions] == [1, 2, 3]
    again = await bench.handle(
        PairConfirmed(pair_id="P1", programme_id="RM", mentor_id="M1", mentee_id="E1")
    )
    assert again == []
    rows = await bench.fetch("SELECT count(*) AS n FROM scheduling.sessions")
    assert rows[0]["n"] == 3


async def test_attendance_from_both_completes_the_session(bench: HandlerBench) -> None:
    first = (await book(bench))[0]

    def attended(who: str, rating: int) -> SessionAttendanceRecorded:
        return SessionAttendanceRecorded(
            session_id=first["session_id"], pair_id="P1", participant_id=who, attended=True,
            rating=rating,
        )  # fmt: skip

    assert await bench.handle(attended("M1", 4)) == []
    [(kind, data)] = await bench.handle(attended("E1", 5))
    assert kind == "session.completed"
    assert data["ratings"] == {"mentor": 4, "mentee": 5}
    assert data["minutes"] == 30
    assert await bench.handle(attended("E1", 1)) == []  # after the outcome: no effect
    rows = await bench.fetch(
        "SELECT status FROM scheduling.sessions WHERE session_id = $1", first["session_id"]
    )
    assert rows[0]["status"] == "completed"


async def test_reschedule_by_an_outsider_is_rejected_with_a_reason(bench: HandlerBench) -> None:
    first = (await book(bench))[0]
    [(kind, data)] = await bench.handle(
        SessionRescheduleRequested(session_id=first["session_id"], pair_id="P1", requested_by="X9")
    )
    assert kind == "session.request_rejected"
    assert data["reason"] == "Only the mentor or the mentee of this session can move it."
    [(kind, moved)] = await bench.handle(
        SessionRescheduleRequested(session_id=first["session_id"], pair_id="P1", requested_by="E1")
    )
    assert kind == "session.rescheduled", moved
    assert first["starts_at"] == "2027-01-05T09:00:00Z"
    assert moved["previous_starts_at"] == first["starts_at"]
    assert moved["revision"] == 1


# An hour and a half on Mondays: three 30-minute sessions a week at most.
NARROW = [{"day": "mon", "start": "09:00", "end": "10:30"}]


def times(emitted: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, str, str]]:
    return [(d["sequence"], d["starts_at"], d["ends_at"]) for t, d in emitted]


async def test_a_run_of_one_mentors_pairs_is_booked_as_one_at_a_time(bench: HandlerBench) -> None:
    """Three new pairs of one mentor in one run get the series they get one after another."""
    await bench.handle(
        ProgrammeConfigured(
            programme_id="RM", sessions=3, starts_on=date(2027, 1, 5), min_notice_hours=0
        )
    )
    for mentor in ("M1", "M2"):  # the same availability: M1 booked alone, M2 in a run
        await bench.handle(person(mentor, "mentor", availability=NARROW))
    for k in range(1, 7):
        await bench.handle(person(f"E{k}", "mentee"))
    alone = [await bench.handle(confirmed(f"P{k}", "M1", f"E{k}")) for k in (1, 2, 3)]
    run = await bench.handle_run(*(confirmed(f"Q{k}", "M2", f"E{k + 3}") for k in (1, 2, 3)))
    assert [times(e) for e in run] == [times(e) for e in alone]
    assert [[t for t, _ in e] for e in run] == [["session.scheduled"] * 3] * 3
    starts = sorted((d["starts_at"], d["ends_at"]) for e in run for _, d in e)
    assert starts[:3] == [
        ("2027-01-11T09:00:00Z", "2027-01-11T09:30:00Z"),
        ("2027-01-11T09:30:00Z", "2027-01-11T10:00:00Z"),
        ("2027-01-11T10:00:00Z", "2027-01-11T10:30:00Z"),
    ]
    for (_, end), (start, _) in itertools.pairwise(starts):
        assert end <= start, "the mentor has two sessions at once"
    for k, emitted in zip((1, 2, 3), run, strict=True):
        assert [d["session_id"] for _, d in emitted] == [
            session_id_for(f"Q{k}", n) for n in (1, 2, 3)
        ]
    for _, data in [x for e in run for x in e]:  # valid as they are (built unvalidated)
        assert SessionScheduled.model_validate(data).model_dump(mode="json") == data
    # The same for everything but the names: the runs' events are the one-at-a-time ones.
    names = {"pair_id", "mentor_id", "mentee_id", "session_id"}
    assert [[{k: v for k, v in d.items() if k not in names} for _, d in e] for e in run] == [
        [{k: v for k, v in d.items() if k not in names} for _, d in e] for e in alone
    ]
    rows = await bench.fetch("SELECT count(*) AS n FROM scheduling.sessions WHERE mentor_id = 'M2'")
    assert rows[0]["n"] == 9


async def test_a_run_mixing_waiting_ended_and_bookable_pairs(bench: HandlerBench) -> None:
    """In one run: bookable pairs, one waiting for a profile, one with a withdrawn mentee and
    a second confirmation of a pair; each ends as it would alone."""
    await bench.handle(
        ProgrammeConfigured(
            programme_id="RM", sessions=2, starts_on=date(2027, 1, 5), min_notice_hours=0
        )
    )
    await bench.handle(person("M1", "mentor", availability=NARROW))
    for mentee in ("E1", "E3", "E4"):
        await bench.handle(person(mentee, "mentee"))
    await bench.handle(ParticipantWithdrawn(participant_id="E3", programme_id="RM"))
    run = await bench.handle_run(
        confirmed("P1", "M1", "E1"),
        confirmed("P2", "M1", "E2"),  # E2 not enrolled yet: waits
        confirmed("P3", "M1", "E3"),  # E3 withdrew: ended, never booked
        confirmed("P1", "M1", "E1"),  # confirmed again in the same run: nothing new
        confirmed("P4", "M1", "E4"),
    )
    assert [len(e) for e in run] == [2, 0, 0, 0, 2]
    statuses = await bench.fetch("SELECT pair_id, status FROM scheduling.pairs ORDER BY pair_id")
    assert [(r["pair_id"], r["status"]) for r in statuses] == [
        ("P1", "booked"), ("P2", "waiting"), ("P3", "ended"), ("P4", "booked"),
    ]  # fmt: skip
    assert [s for _, s, _ in times(run[0])] == ["2027-01-11T09:00:00Z", "2027-01-18T09:00:00Z"]
    assert [s for _, s, _ in times(run[4])] == ["2027-01-11T09:30:00Z", "2027-01-18T09:30:00Z"]
    # E2's enrolment books the waiting pair around the mentor's two booked series.
    late = await bench.handle(person("E2", "mentee"))
    assert [s for _, s, _ in times(late)] == ["2027-01-11T10:00:00Z", "2027-01-18T10:00:00Z"]
    rows = await bench.fetch("SELECT status FROM scheduling.pairs WHERE pair_id = 'P2'")
    assert rows[0]["status"] == "booked"


# ---------------------------------------------------------------- a run of profiles


def updated(participant_id: str, role: str, **changes: Any) -> ParticipantUpdated:
    return ParticipantUpdated.model_validate(person(participant_id, role, **changes).model_dump())


TUESDAYS = [{"day": "tue", "start": "09:00", "end": "10:30"}]


async def scheduling_state(bench: HandlerBench) -> dict[str, list[dict[str, Any]]]:
    """The people, pairs and sessions, as stored."""
    return {
        table: [dict(r) for r in await bench.fetch(f"SELECT * FROM scheduling.{table} ORDER BY 1")]
        for table in ("participants", "pairs", "sessions")
    }


async def test_a_run_of_profiles_books_and_refits_as_one_at_a_time(
    service_dsns: dict[str, str], twin_service_dsns: dict[str, str]
) -> None:
    """New people completing waiting pairs, one person twice, a newer and a stale update, a
    withdrawn person enrolling again, and a booked mentor's new times (refitted sessions)
    before a pair of theirs is booked: as one run and one record at a time, the same rows and
    the same events (ids, causes and all) from the same records."""
    async with (
        HandlerBench.open(create_spec(), service_dsns["scheduling"], NOW) as alone,
        HandlerBench.open(create_spec(), twin_service_dsns["scheduling"], NOW) as run,
    ):
        for bench in (alone, run):
            await bench.handle(
                ProgrammeConfigured(
                    programme_id="RM", sessions=2, starts_on=date(2027, 1, 5), min_notice_hours=0
                )
            )
            await bench.handle(person("M1", "mentor", availability=NARROW))
            for who in ("X", "W", "E0"):
                await bench.handle(person(who, "mentee"))
            await bench.handle(person("B", "mentor", availability=NARROW))
            await bench.handle(ParticipantWithdrawn(participant_id="W", programme_id="RM"))
            await bench.handle(confirmed("PB", "B", "E0"))  # booked on Mondays
            await bench.handle(confirmed("P1", "M1", "N1"))  # waits for N1
            await bench.handle(confirmed("P2", "N2", "N3"))  # waits for both
            await bench.handle(confirmed("P5", "B", "N4"))  # waits for N4
            await bench.handle(confirmed("P3", "N5", "N6"))  # waits for both
        records = [
            person("N5", "mentor", availability=NARROW),
            person("N1", "mentee"),  # books P1
            person("N6", "mentee"),  # books P3, whose mentor came first in the run
            person("N2", "mentor", availability=NARROW),
            updated("N2", "mentor", revision=1, availability=TUESDAYS),  # the same person again
            person("N3", "mentee"),  # books P2 on N2's Tuesdays
            updated("X", "mentee", revision=2, timezone="Europe/Paris"),
            updated("X", "mentee", revision=1, timezone="Asia/Tokyo"),  # stale
            person("W", "mentee", revision=1),  # withdrawn, enrolling again
            updated("B", "mentor", revision=1, availability=TUESDAYS),  # PB's sessions move
            person("N4", "mentee"),  # books P5 on B's new Tuesdays
        ]
        tick = timedelta(seconds=1)
        one_by_one = await alone.handle_each(*records, tick=tick)
        assert await run.handle_run(*records, tick=tick) == one_by_one
        assert await run.outbox() == await alone.outbox()
        stored = await scheduling_state(alone)
        assert await scheduling_state(run) == stored
    assert [[t for t, _ in e] for e in one_by_one] == [
        [], ["session.scheduled"] * 2, ["session.scheduled"] * 2, [], [],
        ["session.scheduled"] * 2, [], [], [],
        ["session.rescheduled"] * 2, ["session.scheduled"] * 2,
    ]  # fmt: skip
    assert {p["pair_id"]: p["status"] for p in stored["pairs"]} == {
        "PB": "booked", "P1": "booked", "P2": "booked", "P3": "booked", "P5": "booked",
    }  # fmt: skip
    people = {p["participant_id"]: p for p in stored["participants"]}
    assert (people["X"]["revision"], people["X"]["timezone"]) == (2, "Europe/Paris")
    assert (people["W"]["revision"], people["W"]["withdrawn"]) == (1, False)
    tuesdays = [d["starts_at"] for _, d in one_by_one[5] + one_by_one[9] + one_by_one[10]]
    assert all(datetime.fromisoformat(t).weekday() == 1 for t in tuesdays)


async def test_someone_new_who_completes_a_pair_then_moves_in_the_same_run_is_refitted(
    service_dsns: dict[str, str], twin_service_dsns: dict[str, str]
) -> None:
    """A booked mentor moves first (the run then asks who may have sessions to refit); later
    in the run a new mentee completes a waiting pair and then changes their times: the pair
    is booked and then refitted, as one record at a time does."""
    thursdays = [{"day": "thu", "start": "14:00", "end": "15:30"}]
    async with (
        HandlerBench.open(create_spec(), service_dsns["scheduling"], NOW) as alone,
        HandlerBench.open(create_spec(), twin_service_dsns["scheduling"], NOW) as run,
    ):
        for bench in (alone, run):
            await bench.handle(
                ProgrammeConfigured(
                    programme_id="RM", sessions=2, starts_on=date(2027, 1, 5), min_notice_hours=0
                )
            )
            await bench.handle(person("M1", "mentor"))
            await bench.handle(person("B", "mentor", availability=NARROW))
            await bench.handle(person("E0", "mentee"))
            await bench.handle(confirmed("PB", "B", "E0"))  # booked on Mondays
            await bench.handle(confirmed("P1", "M1", "N1"))  # waits for N1
        records = [
            updated("B", "mentor", revision=1, availability=TUESDAYS),  # PB's sessions move
            person("N1", "mentee"),  # books P1
            updated("N1", "mentee", revision=1, availability=thursdays),  # P1's sessions move
        ]
        tick = timedelta(seconds=1)
        one_by_one = await alone.handle_each(*records, tick=tick)
        assert await run.handle_run(*records, tick=tick) == one_by_one
        assert await run.outbox() == await alone.outbox()
        assert await scheduling_state(run) == await scheduling_state(alone)
    assert [[t for t, _ in e] for e in one_by_one] == [
        ["session.rescheduled"] * 2, ["session.scheduled"] * 2, ["session.rescheduled"] * 2,
    ]  # fmt: skip
    refitted = [datetime.fromisoformat(d["starts_at"]) for _, d in one_by_one[2]]
    assert [t.weekday() for t in refitted] == [3, 3]
