"""Matching's handlers and round step against the real PostgreSQL (no Kafka): what they write
and emit for settings arriving late, min_score, rejected responses and progress.v1 events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from matching_support import PROGRAMME, configure, enrolled, profile
from pydantic import BaseModel
from twoway_dev.testing.handlers import HandlerBench
from twoway_matching import storage
from twoway_matching.app import create_spec
from twoway_matching.workers import run_due_round
from twoway_shared.contract import (
    TOPIC_EVENT_TYPES,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgrammeMatchingRequested,
)
from twoway_shared.contract.events import (
    PairCompleted,
    PairHealthChanged,
    PairRematchRequested,
    PairResponseSubmitted,
)
from twoway_shared.platform.consumer import Rejected
from twoway_shared.platform.uow import Database

pytestmark = pytest.mark.infra


class Matching:
    """The matching handlers on the real PostgreSQL (HandlerBench) and the worker's round step.

    Events emitted by handlers and by rounds are read back from the outbox in order.
    """

    def __init__(self, bench: HandlerBench) -> None:
        self.bench = bench
        self.db = Database(
            bench.pool,
            schema="matching",
            source="/twoway/matching",
            topic_prefix="t.",
            clock=lambda: self.bench.now,
        )
        self._seen = 0

    async def handle(self, data: BaseModel) -> None:
        await self.bench.handle(data)

    async def enrol(self, pid: str, role: str, **changes: Any) -> None:
        await self.handle(enrolled(pid, role, **changes))

    async def configure(self, **matching: Any) -> None:
        await self.handle(configure(**matching))

    def advance(self, by: timedelta) -> None:
        self.bench.now += by

    async def due(self) -> bool:
        """Whether a round is due now or within the debounce (the worker would run it)."""
        later = self.bench.now + timedelta(seconds=10)
        return bool(
            await self.db.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM matching.rounds WHERE due_at <= $1)", later
            )
        )

    async def rounds(self) -> list[str]:
        """Run every round the worker would run in the next minute; the programmes that ran."""
        self.advance(timedelta(minutes=1))
        ran = []
        while (step := await run_due_round(self.db)) is not None:
            if step[1] is not None:
                ran.append(step[0])
        return ran

    async def emitted(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Events written to the outbox since the last call, oldest first."""
        rows = await self.db.pool.fetch(
            "SELECT id, value FROM matching.outbox WHERE id > $1 ORDER BY id", self._seen
        )
        if rows:
            self._seen = rows[-1]["id"]
        events = [json.loads(r["value"]) for r in rows]
        return [e for e in events if kind is None or e["type"] == f"twoway.pair.{kind}.v1"]

    async def summary(self) -> dict[str, Any]:
        async with self.db.pool.acquire() as conn:
            found = await storage.round_summary(conn, PROGRAMME)
        assert found is not None
        return found


@pytest.fixture
async def matching(service_dsns: dict[str, str]) -> AsyncIterator[Matching]:
    async with HandlerBench.open(create_spec(), service_dsns["matching"]) as bench:
        yield Matching(bench)


# ------------------------------------------------------------------ settings order (1.1)


async def test_enrolments_before_any_settings_start_no_round(matching: Matching) -> None:
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    assert not await matching.due()
    assert await matching.rounds() == []
    assert await matching.emitted() == []


async def test_matching_requested_without_settings_runs_one_round_with_the_defaults(
    matching: Matching,
) -> None:
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    await matching.handle(ProgrammeMatchingRequested(programme_id=PROGRAMME))
    assert await matching.rounds() == [PROGRAMME]
    (proposed,) = await matching.emitted("proposed")
    assert proposed["data"]["expires_at"] is None  # default: no acceptance needed
    # One round only: later enrolments still wait for settings or another request.
    await matching.enrol("M2", "mentor")
    await matching.enrol("E2", "mentee")
    assert not await matching.due()
    assert await matching.rounds() == []


async def test_batch_settings_after_enrolments_give_no_round_until_requested(
    matching: Matching,
) -> None:
    await matching.enrol("M1", "mentor")  # before the settings
    await matching.configure(mode="batch")
    await matching.enrol("E1", "mentee")  # between the settings and the request
    assert await matching.rounds() == []
    await matching.handle(ProgrammeMatchingRequested(programme_id=PROGRAMME))
    assert await matching.rounds() == [PROGRAMME]
    assert len(await matching.emitted("confirmed")) == 1
    await matching.enrol("M2", "mentor")  # after the round
    await matching.enrol("E2", "mentee")
    assert await matching.rounds() == []
    assert await matching.emitted() == []


async def test_continuous_settings_arriving_late_round_the_waiting_pool(
    matching: Matching,
) -> None:
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    assert not await matching.due()
    await matching.configure(mode="continuous")
    assert await matching.due()
    assert await matching.rounds() == [PROGRAMME]
    assert len(await matching.emitted("confirmed")) == 1
    await matching.enrol("M2", "mentor")
    await matching.enrol("E2", "mentee")
    assert await matching.rounds() == [PROGRAMME]
    assert len(await matching.emitted("confirmed")) == 1


async def test_a_round_due_in_continuous_mode_does_not_run_after_a_switch_to_batch(
    matching: Matching,
) -> None:
    await matching.configure(mode="continuous")
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    assert await matching.due()
    await matching.configure(mode="batch")
    assert await matching.rounds() == []  # claimed, checked, not run, cleared
    assert not await matching.due()
    assert await matching.emitted() == []


async def test_a_requested_round_survives_a_crash_of_its_first_run(matching: Matching) -> None:
    await matching.configure(mode="batch")
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    await matching.handle(ProgrammeMatchingRequested(programme_id=PROGRAMME))
    async with matching.db.unit_of_work() as uow:  # claimed, then the instance died
        assert await storage.claim_due_round(uow.conn, uow.now) is not None
    matching.advance(storage.ROUND_LEASE)
    assert await matching.rounds() == [PROGRAMME]
    assert len(await matching.emitted("confirmed")) == 1


# ------------------------------------------------------------------ min_score (rule 9)


async def test_min_score_keeps_weak_pairs_out_and_the_summary_says_why(
    matching: Matching,
) -> None:
    await matching.configure(min_score=0.5)
    await matching.enrol("M1", "mentor", capacity=2)
    await matching.enrol("E-STRONG", "mentee")
    await matching.enrol("E-WEAK", "mentee", wants=["knitting"])
    assert await matching.rounds() == [PROGRAMME]
    (proposed,) = await matching.emitted("proposed")
    assert proposed["data"]["mentee_id"] == "E-STRONG"
    assert proposed["data"]["score"] >= 0.5
    summary = await matching.summary()
    assert summary["min_score"] == 0.5
    (weak,) = [u for u in summary["unmatched"] if u["participant_id"] == "E-WEAK"]
    assert weak["reason"] == "no eligible partner"
    assert weak["blocking_rules"] == {"score below min_score": 1}
    assert summary["ran_at"].endswith("Z")


# ------------------------------------------------------------------ responses (1.1)


async def test_responses_from_outside_the_pair_or_for_no_pair_are_rejected_with_a_reason(
    matching: Matching,
) -> None:
    await matching.configure(acceptance_required=True)
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    await matching.rounds()
    (proposed,) = await matching.emitted("proposed")
    pair_id = proposed["data"]["pair_id"]

    stranger = PairResponseSubmitted(pair_id=pair_id, participant_id="X9", response="accept")
    await matching.handle(stranger)
    await matching.handle(
        PairResponseSubmitted(pair_id="no-such-pair", participant_id="E1", response="decline")
    )
    outsider, unknown = await matching.emitted("response_rejected")
    assert outsider["data"] == {
        "pair_id": pair_id,
        "participant_id": "X9",
        "response": "accept",
        "reason": "You are not one of the two people of this pairing, so you cannot answer for it.",
    }
    assert outsider["subject"] == pair_id
    assert unknown["data"]["pair_id"] == "no-such-pair"
    assert unknown["data"]["response"] == "decline"
    assert "no such pairing" in unknown["data"]["reason"]
    # Neither changed the pair: the two people can still accept it.
    for who in ("M1", "E1"):
        await matching.handle(
            PairResponseSubmitted(pair_id=pair_id, participant_id=who, response="accept")
        )
    assert [e["data"]["pair_id"] for e in await matching.emitted("confirmed")] == [pair_id]


# ------------------------------------------------------------------ progress.v1 (1.1)


def members(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["data"]["mentor_id"], e["data"]["mentee_id"]) for e in events]


async def confirmed_pair(matching: Matching, mentor: str, mentee: str) -> dict[str, Any]:
    await matching.rounds()
    for event in await matching.emitted("confirmed"):
        if (event["data"]["mentor_id"], event["data"]["mentee_id"]) == (mentor, mentee):
            return dict(event["data"])
    raise AssertionError(f"no confirmed pair {mentor}-{mentee}")


@pytest.mark.parametrize("reason", ["not_a_fit", "inactive"])
async def test_rematch_ends_the_pair_and_pairs_both_with_someone_else(
    matching: Matching, reason: str
) -> None:
    await matching.configure()
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    pair = await confirmed_pair(matching, "M1", "E1")
    await matching.enrol("M2", "mentor")
    await matching.enrol("E2", "mentee", languages=["de"])  # nobody speaks German yet
    await matching.rounds()
    assert await matching.emitted() == []

    await matching.handle(PairRematchRequested(**pair, reason=reason))
    (ended,) = await matching.emitted("ended")
    assert ended["data"] == {**pair, "reason": reason, "withdrawn_by": None}
    assert await matching.rounds() == [PROGRAMME]
    # E1 goes to M2 (M1 and E1 are never paired again); M1 stays free.
    confirmed = [
        (e["data"]["mentor_id"], e["data"]["mentee_id"])
        for e in await matching.emitted("confirmed")
    ]
    assert confirmed == [("M2", "E1")]

    # A second request, or one for a pair that has ended, has no effect.
    await matching.handle(PairRematchRequested(**pair, reason=reason))
    assert await matching.emitted() == []
    row = await matching.db.pool.fetchrow(
        "SELECT status, closed_reason FROM matching.pairs WHERE pair_id = $1", pair["pair_id"]
    )
    assert dict(row) == {"status": "ended", "closed_reason": reason}


async def test_rematch_in_batch_mode_waits_for_the_next_requested_round(
    matching: Matching,
) -> None:
    await matching.configure(mode="batch")
    await matching.enrol("M1", "mentor")
    await matching.enrol("M2", "mentor")
    await matching.enrol("E1", "mentee")
    await matching.handle(ProgrammeMatchingRequested(programme_id=PROGRAMME))
    await matching.rounds()
    (confirmed,) = [e["data"] for e in await matching.emitted("confirmed")]
    await matching.handle(PairRematchRequested(**confirmed, reason="not_a_fit"))
    assert len(await matching.emitted("ended")) == 1
    assert await matching.rounds() == []


async def test_completion_ends_the_pair_and_pauses_both_until_they_enrol_again(
    matching: Matching,
) -> None:
    await matching.configure()
    await matching.enrol("M1", "mentor", capacity=2)
    await matching.enrol("E1", "mentee")
    await matching.enrol("E2", "mentee", department="Sales")
    await matching.rounds()
    pairs = {e["data"]["mentee_id"]: e["data"] for e in await matching.emitted("confirmed")}
    assert set(pairs) == {"E1", "E2"}
    first = pairs["E1"]

    await matching.handle(
        PairCompleted(
            **first,
            sessions_completed=12,
            sessions_missed=0,
            minutes=360,
            mentee_learned=["generative-ai"],
            mentor_learned=["strategy"],
        )
    )
    (ended,) = await matching.emitted("ended")
    assert ended["data"]["reason"] == "completed"
    # M1's other pair goes on; nobody new is offered to M1 or E1.
    await matching.enrol("E3", "mentee", department="Legal")
    await matching.enrol("M3", "mentor", languages=["de"])
    assert await matching.rounds() == [PROGRAMME]
    assert await matching.emitted() == []
    status = await matching.db.pool.fetchval(
        "SELECT status FROM matching.pairs WHERE pair_id = $1", pairs["E2"]["pair_id"]
    )
    assert status == "confirmed"

    # An update (even with a higher revision) or the same enrolment again keeps the pause ...
    await matching.handle(
        ParticipantUpdated.model_validate(profile("M1", "mentor", capacity=2, revision=1))
    )
    await matching.enrol("M1", "mentor", capacity=2, revision=1)
    assert await matching.rounds() == [PROGRAMME]
    assert await matching.emitted() == []
    # ... enrolling again with a higher revision ends it.
    await matching.enrol("M1", "mentor", capacity=2, revision=2)
    assert await matching.rounds() == [PROGRAMME]
    confirmed = [
        (e["data"]["mentor_id"], e["data"]["mentee_id"])
        for e in await matching.emitted("confirmed")
    ]
    assert confirmed == [("M1", "E3")]


async def test_progress_about_a_pair_matching_does_not_know_is_dead_lettered(
    matching: Matching,
) -> None:
    unknown = {"pair_id": "P-X", "programme_id": PROGRAMME, "mentor_id": "M1", "mentee_id": "E1"}
    with pytest.raises(Rejected, match="unknown to matching"):
        await matching.handle(PairRematchRequested(**unknown, reason="inactive"))


async def test_progress_naming_other_people_than_the_pair_is_dead_lettered(
    matching: Matching,
) -> None:
    await matching.configure()
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    pair = await confirmed_pair(matching, "M1", "E1")
    with pytest.raises(Rejected, match="names other people"):
        await matching.handle(
            PairRematchRequested(**{**pair, "mentee_id": "E9"}, reason="inactive")
        )
    status = await matching.db.pool.fetchval(
        "SELECT status FROM matching.pairs WHERE pair_id = $1", pair["pair_id"]
    )
    assert status == "confirmed"


async def test_progress_events_matching_does_not_act_on_are_ignored(matching: Matching) -> None:
    await matching.configure()
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    pair = await confirmed_pair(matching, "M1", "E1")
    await matching.handle(
        PairHealthChanged(
            **pair,
            health="inactive",
            reasons=["no_recent_session"],
            sessions_completed=0,
            sessions_missed=2,
            last_activity_at=None,
        )
    )
    assert await matching.emitted() == []
    assert not await matching.due()


def test_every_event_type_matching_reads_is_handled_or_ignored_on_purpose() -> None:
    spec = create_spec()
    expected = {t for topic in spec.consumes for t in TOPIC_EVENT_TYPES[topic]}
    assert set(spec.dispatch) == expected
    ignored = {t for t, handler in spec.dispatch.items() if handler is None}
    assert ignored == {"pair.health_changed", "credit.awarded"}


async def test_withdrawal_still_ends_pairs_with_its_reason(matching: Matching) -> None:
    await matching.configure()
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    pair = await confirmed_pair(matching, "M1", "E1")
    await matching.handle(ParticipantWithdrawn(participant_id="M1", programme_id=PROGRAMME))
    (ended,) = await matching.emitted("ended")
    assert ended["data"] == {**pair, "reason": "withdrawn", "withdrawn_by": "M1"}


async def test_read_api_times_are_utc_with_z(matching: Matching) -> None:
    await matching.configure(acceptance_required=True)
    await matching.enrol("M1", "mentor")
    await matching.enrol("E1", "mentee")
    await matching.rounds()
    async with matching.db.pool.acquire() as conn:
        (pair,) = await storage.pairs_of_programme(conn, PROGRAMME)
    shown = pair.to_json()
    assert shown["proposed_at"].endswith("Z")
    assert shown["expires_at"].endswith("Z")
    assert "+00:00" not in json.dumps(shown)


# ------------------------------------------------------------------ a run of profiles


def updated(pid: str, role: str, **changes: Any) -> ParticipantUpdated:
    return ParticipantUpdated.model_validate(profile(pid, role, **changes))


async def stored_state(bench: HandlerBench) -> dict[str, list[dict[str, Any]]]:
    """Everything a run of profiles can change, but the time of each write."""
    participants = await bench.fetch(
        "SELECT participant_id, programme_id, role, revision, active, profile,"
        " paused_after_completion FROM matching.participants ORDER BY participant_id"
    )
    rounds = await bench.fetch(
        "SELECT programme_id, due_at, requested, traceparent FROM matching.rounds"
        " ORDER BY programme_id"
    )
    return {"participants": [dict(r) for r in participants], "rounds": [dict(r) for r in rounds]}


async def test_a_run_of_profiles_stores_what_one_at_a_time_does(
    service_dsns: dict[str, str], twin_service_dsns: dict[str, str]
) -> None:
    """New people, a newer and a stale update, one person twice, a withdrawn person and a
    tombstone enrolling again, a paused person resuming, two programmes: as one run (one
    batch handler call) and one record at a time (runs of one), the same rows and rounds."""
    async with (
        HandlerBench.open(create_spec(), service_dsns["matching"]) as alone,
        HandlerBench.open(create_spec(), twin_service_dsns["matching"], alone.now) as run,
    ):
        for bench in (alone, run):
            await bench.handle(configure(mode="continuous"))
            for pid, role in (("X", "mentor"), ("W", "mentee"), ("P", "mentee")):
                await bench.handle(enrolled(pid, role))
            await bench.handle(ParticipantWithdrawn(participant_id="W", programme_id=PROGRAMME))
            await bench.handle(ParticipantWithdrawn(participant_id="T", programme_id=PROGRAMME))
            await bench.pool.execute(
                "UPDATE matching.participants SET paused_after_completion = true"
                " WHERE participant_id = 'P'"
            )
            await bench.pool.execute("UPDATE matching.rounds SET due_at = NULL")
        started = alone.now
        records = [
            enrolled("N1", "mentor"),
            enrolled("N2", "mentee", programme_id="OTHER"),  # no settings: no round
            updated("X", "mentor", revision=2, grade=5),
            updated("X", "mentor", revision=1, grade=9),  # stale
            updated("N1", "mentor", revision=3, capacity=2),  # the same person again
            updated("W", "mentee", revision=4),  # withdrawn: only an enrolment counts
            enrolled("W", "mentee", revision=1, grade=18),  # withdrawn, enrolling again
            updated("T", "mentee", revision=2),  # a tombstone: ignored
            enrolled("T", "mentee"),  # a tombstone enrolling: a new enrolment
            enrolled("P", "mentee", revision=1),  # enrolling again ends the pause
            enrolled("P", "mentee", revision=1, grade=19),  # the same revision again
        ]
        tick = timedelta(seconds=1)
        assert await alone.handle_each(*records, tick=tick) == [[] for _ in records]
        assert await run.handle_run(*records, tick=tick) == [[] for _ in records]
        expected = await stored_state(alone)
        assert await stored_state(run) == expected
        assert await run.outbox() == await alone.outbox()
    rows = {r["participant_id"]: r for r in expected["participants"]}
    assert {pid: (r["revision"], r["active"]) for pid, r in rows.items()} == {
        "N1": (3, True), "N2": (0, True), "P": (1, True), "T": (0, True), "W": (1, True),
        "X": (2, True),
    }  # fmt: skip
    assert json.loads(rows["X"]["profile"])["grade"] == 5
    assert json.loads(rows["P"]["profile"])["grade"] == 19
    assert not rows["P"]["paused_after_completion"]
    # Due after the debounce from the first enrolment of the programme that asked for it.
    assert [(r["programme_id"], r["due_at"]) for r in expected["rounds"] if r["due_at"]] == [
        (PROGRAMME, started + storage.ROUND_DEBOUNCE)
    ]
