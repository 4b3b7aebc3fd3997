"""The matching service on the real broker and database: events in, pairs out."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import BaseModel
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import (
    Received,
    TopicReader,
    ToSend,
    eventually,
    publish,
    wait_until_consumed,
)
from twoway_dev.testing.oidc import TestProvider
from twoway_dev.testing.service import MovableClock, running_service
from twoway_dev.toolkit import cli
from twoway_matching.app import create_spec
from twoway_matching.config import MatchingServiceSettings
from twoway_shared.contract import (
    PairResponseSubmitted,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    ProgrammeMatchingRequested,
    Topic,
    encode,
    new_event,
    partition_key,
)
from twoway_shared.contract.events import PairCompleted, PairRematchRequested
from twoway_shared.platform.runtime import Runtime

pytestmark = pytest.mark.infra

PROGRAMME = "RM-TEST"


def profile(pid: str, role: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "participant_id": pid,
        "programme_id": PROGRAMME,
        "role": role,
        "display_name": f"Person {pid}",
        "email": f"{pid.lower()}@example.com",
        "grade": 4 if role == "mentor" else 20,
        "department": "Digital" if role == "mentor" else "Finance",
        "timezone": "Europe/London",
        "languages": ["en"],
        "offers": ["generative ai", "social media"] if role == "mentor" else ["strategy"],
        "wants": ["strategy"] if role == "mentor" else ["Generative AI"],
        "availability": [{"day": d, "start": "09:00", "end": "12:00"} for d in ("mon", "tue")],
    }
    base.update(changes)
    return base


class Harness:
    """A running matching service, with a reader on pairs.v1 and helpers to publish."""

    def __init__(
        self,
        runtime: Runtime,
        infra: Infra,
        reader: TopicReader,
        clock: MovableClock,
        token: str = "",
    ):
        self.runtime = runtime
        self.infra = infra
        self.reader = reader
        self.clock = clock
        self.token = token
        self.sent: list[ToSend] = []

    def http(self) -> httpx.AsyncClient:
        """A client of the service's read API with a `twoway.reader` token."""
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.runtime.http_port}",
            headers={"Authorization": f"Bearer {self.token}"},
        )

    async def send(self, topic: Topic, data: BaseModel) -> None:
        record = ToSend(
            self.runtime.topic(topic),
            encode(new_event(data, source="/portal/test")),
            partition_key(topic, data),
        )
        self.sent.append(record)
        await publish(self.infra.kafka_bootstrap, [record])
        if topic is Topic.PROGRAMMES:
            # Topics have no mutual order: let the settings land before the enrolments.
            await self.barrier()

    async def barrier(self) -> None:
        """Wait until the service has committed every record sent so far."""
        runtime = self.runtime
        await wait_until_consumed(
            self.infra.kafka_bootstrap,
            runtime.settings.consumer_group("matching"),
            [runtime.topic(t) for t in runtime.spec.consumes],
        )

    async def enrol(self, pid: str, role: str, **changes: Any) -> None:
        await self.send(
            Topic.ENROLMENTS, ParticipantEnrolled.model_validate(profile(pid, role, **changes))
        )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(r.value or b"") for r in self.reader.records]
        return [e for e in out if kind is None or e["type"] == f"twoway.pair.{kind}.v1"]

    async def wait(self, kind: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        def enough(_: list[Received]) -> bool:
            return len(self.events(kind)) >= count

        await self.reader.wait_for(enough, timeout=timeout, what=f"{count} pair.{kind}")
        return self.events(kind)


@pytest.fixture
async def harness(
    infra: Infra, service_dsns: dict[str, str], topic_prefix: str, oidc: TestProvider
) -> AsyncIterator[Harness]:
    settings = MatchingServiceSettings(
        **infra.kafka_settings("matching"),
        database_url=service_dsns["matching"],
        topic_prefix=topic_prefix,
        topic_partitions=2,
        http_port=0,
        http_host="127.0.0.1",
        **oidc.settings(),
    )
    clock = MovableClock()
    pairs_topic = settings.topic(Topic.PAIRS)
    async with (
        running_service(create_spec(), settings, clock) as runtime,
        TopicReader(infra.kafka_bootstrap, [pairs_topic]) as reader,
    ):
        yield Harness(runtime, infra, reader, clock, oidc.mint())


def configure(**matching: Any) -> ProgrammeConfigured:
    return ProgrammeConfigured.model_validate(
        {"programme_id": PROGRAMME, "starts_on": "2027-01-04", "matching": matching}
    )


async def test_a_cohort_flows_in_and_explained_pairs_come_out(
    harness: Harness, oidc: TestProvider
) -> None:
    await harness.send(Topic.PROGRAMMES, configure())
    for k in range(3):
        await harness.enrol(f"M{k}", "mentor")
        await harness.enrol(f"E{k}", "mentee")
    await harness.enrol(
        "E-LATE", "mentee", availability=[{"day": "sun", "start": "20:00", "end": "21:00"}]
    )
    confirmed = await harness.wait("confirmed", 3)
    proposed = harness.events("proposed")
    assert len(proposed) == 3
    assert len(confirmed) == 3
    assert {e["data"]["mentee_id"] for e in proposed} == {"E0", "E1", "E2"}
    first = proposed[0]["data"]
    assert first["reasons"]["mentee_learns"] == ["generative-ai"]
    assert first["reasons"]["mentor_learns"] == ["strategy"]
    assert first["reasons"]["languages"] == ["en"]
    assert first["reasons"]["weekly_overlap_minutes"] == 360
    assert first["score"] == pytest.approx(0.60 + 0.25 + 0.15)
    assert first["expires_at"] is None
    # Each confirmation follows its proposal, keyed by pair id.
    for event in confirmed:
        assert event["subject"] == event["data"]["pair_id"]

    base_url = f"http://127.0.0.1:{harness.runtime.http_port}"
    reader = {"Authorization": f"Bearer {oidc.token()}"}
    async with httpx.AsyncClient(base_url=base_url, headers=reader) as http:
        listing = (await http.get(f"/programmes/{PROGRAMME}/pairs")).json()
        assert len(listing["pairs"]) == 3
        late = [u for u in listing["last_round"]["unmatched"] if u["participant_id"] == "E-LATE"]
        assert late
        assert late[0]["reason"] == "no eligible partner"
        # Every mentor the last round weighed was ruled out by time alone; how many it weighed
        # depends on how the debounced rounds fell (mentors already at capacity are not).
        assert list(late[0]["blocking_rules"]) == ["no time overlap"]
        assert 1 <= late[0]["blocking_rules"]["no time overlap"] <= 3
        mine = (await http.get("/participants/E1/pair")).json()
        assert mine["pair"]["status"] == "confirmed"
        assert (await http.get("/participants/NOBODY/pair")).status_code == 404
        assert (await http.get("/programmes/NOPE/pairs")).status_code == 404
    async with httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get(f"/programmes/{PROGRAMME}/pairs")).status_code == 401
        manager = {"Authorization": f"Bearer {oidc.mint(roles=[f'twoway.manager:{PROGRAMME}'])}"}
        mine = await http.get(f"/programmes/{PROGRAMME}/pairs", headers=manager)
        assert len(mine.json()["pairs"]) == 3
        assert (await http.get("/programmes/NOPE/pairs", headers=manager)).status_code == 403
        assert (await http.get("/participants/E1/pair", headers=manager)).status_code == 403
        other = {"Authorization": f"Bearer {oidc.mint(roles=['twoway.manager:OTHER'])}"}
        theirs = await http.get(f"/programmes/{PROGRAMME}/pairs", headers=other)
        assert theirs.status_code == 403
        assert theirs.json() == {"error": "forbidden"}


async def test_acceptance_flow_confirms_declines_and_never_repeats(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure(acceptance_required=True, proposal_ttl_hours=48))
    await harness.enrol("M1", "mentor")
    await harness.enrol("E1", "mentee")
    (proposal,) = await harness.wait("proposed", 1)
    pair_id = proposal["data"]["pair_id"]
    assert proposal["data"]["expires_at"] is not None
    await harness.send(
        Topic.PAIR_RESPONSES,
        PairResponseSubmitted(pair_id=pair_id, participant_id="E1", response="accept"),
    )
    await harness.send(
        Topic.PAIR_RESPONSES,
        PairResponseSubmitted(pair_id=pair_id, participant_id="M1", response="accept"),
    )
    (confirmed,) = await harness.wait("confirmed", 1)
    assert confirmed["data"]["pair_id"] == pair_id

    await harness.enrol("M2", "mentor")
    await harness.enrol("E2", "mentee")
    proposals = await harness.wait("proposed", 2)
    second = proposals[1]["data"]
    assert (second["mentor_id"], second["mentee_id"]) == ("M2", "E2")
    await harness.send(
        Topic.PAIR_RESPONSES,
        PairResponseSubmitted(
            pair_id=second["pair_id"], participant_id="M2", response="decline", reason="busy"
        ),
    )
    (declined,) = await harness.wait("declined", 1)
    assert declined["data"]["reason"] == "declined"
    assert declined["data"]["declined_by"] == "M2"
    # A late accept of a declined pair has no effect; the two are never proposed again.
    await harness.send(
        Topic.PAIR_RESPONSES,
        PairResponseSubmitted(pair_id=second["pair_id"], participant_id="E2", response="accept"),
    )
    await harness.enrol("M3", "mentor")
    proposals = await harness.wait("proposed", 3)
    assert (proposals[2]["data"]["mentor_id"], proposals[2]["data"]["mentee_id"]) == ("M3", "E2")
    assert len(harness.events("confirmed")) == 1


async def test_unanswered_proposal_expires_and_both_return_to_the_pool(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure(acceptance_required=True, proposal_ttl_hours=1))
    await harness.enrol("M1", "mentor")
    await harness.enrol("E1", "mentee")
    (proposal,) = await harness.wait("proposed", 1)
    harness.clock.advance(timedelta(hours=2))
    (declined,) = await harness.wait("declined", 1)
    assert declined["data"]["pair_id"] == proposal["data"]["pair_id"]
    assert declined["data"]["reason"] == "expired"
    assert declined["data"]["declined_by"] is None
    await harness.enrol("M2", "mentor")
    proposals = await harness.wait("proposed", 2)
    assert proposals[1]["data"]["mentor_id"] == "M2"


async def test_withdrawal_ends_the_pair_frees_the_partner_and_erases(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure())
    await harness.enrol("M1", "mentor")
    await harness.enrol("E1", "mentee")
    (confirmed,) = await harness.wait("confirmed", 1)
    await harness.send(
        Topic.ENROLMENTS,
        ParticipantWithdrawn(participant_id="E1", programme_id=PROGRAMME, erase=True),
    )
    (ended,) = await harness.wait("ended", 1)
    assert ended["data"]["pair_id"] == confirmed["data"]["pair_id"]
    assert ended["data"]["reason"] == "withdrawn"
    assert ended["data"]["withdrawn_by"] == "E1"
    await harness.enrol("E2", "mentee")
    confirmations = await harness.wait("confirmed", 2)
    assert (confirmations[1]["data"]["mentor_id"], confirmations[1]["data"]["mentee_id"]) == (
        "M1",
        "E2",
    )
    conn = await asyncpg.connect(harness.runtime.settings.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT active, profile FROM matching.participants WHERE participant_id = 'E1'"
        )
    finally:
        await conn.close()
    assert row is not None
    assert row["active"] is False
    assert row["profile"] is None


async def test_batch_mode_waits_for_matching_requested(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure(mode="batch"))
    await harness.enrol("M1", "mentor")
    await harness.enrol("E1", "mentee")
    # A later update is processed after the enrolments (same key, same partition) ...
    await harness.send(
        Topic.ENROLMENTS, ParticipantUpdated.model_validate(profile("E1", "mentee", revision=1))
    )

    async def handled() -> float:
        metric = harness.runtime.metrics.handler_seconds.labels("participant.updated")
        return float(metric._sum.get())

    await eventually(handled, lambda s: s > 0, what="the update handled")
    # ... and no round ran for it in batch mode.
    assert harness.events() == []
    await harness.send(Topic.PROGRAMMES, ProgrammeMatchingRequested(programme_id=PROGRAMME))
    await harness.wait("confirmed", 1)


async def test_replayed_records_create_no_new_pairs(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure())
    for k in range(2):
        await harness.enrol(f"M{k}", "mentor")
        await harness.enrol(f"E{k}", "mentee")
    await harness.wait("confirmed", 2)
    before = len(harness.reader.records)
    await publish(harness.infra.kafka_bootstrap, harness.sent)
    topic = harness.runtime.topic(Topic.ENROLMENTS)

    async def duplicates() -> float:
        return float(harness.runtime.metrics.duplicates.labels(topic)._value.get())

    await eventually(
        duplicates, lambda n: n == 4, what="every replayed enrolment seen as a duplicate"
    )
    # A new enrolment forces one more round; once it ran, any pair a replay caused would show.
    await harness.enrol("E-NEW", "mentee", languages=["de"])

    async def last_round_saw_new() -> bool:
        raw = await harness.runtime.pool.fetchval(
            "SELECT summary FROM matching.rounds WHERE programme_id = $1", PROGRAMME
        )
        unmatched = json.loads(raw or "{}").get("unmatched", [])
        return any(u["participant_id"] == "E-NEW" for u in unmatched)

    await eventually(last_round_saw_new, lambda seen: seen, what="a round that saw E-NEW")
    assert len(harness.reader.records) == before


async def test_invalid_enrolments_are_dead_lettered_with_a_reason(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure())
    await harness.enrol("M1", "mentor")
    bad_grade = profile("E1", "mentee", grade=0)
    data = ParticipantEnrolled.model_validate(profile("E1", "mentee"))
    raw = json.loads(encode(new_event(data, source="/portal/test")))
    raw["data"] = bad_grade
    topic = harness.runtime.topic(Topic.ENROLMENTS)
    await publish(harness.infra.kafka_bootstrap, [ToSend(topic, json.dumps(raw).encode(), b"E1")])
    await harness.enrol("M1", "mentee", revision=1)  # a mentor may not become a mentee
    await harness.enrol("E2", "mentee")
    async with TopicReader(
        harness.infra.kafka_bootstrap, [harness.runtime.topic(Topic.DEADLETTER)]
    ) as dlq:
        letters = await dlq.wait_for(lambda r: len(r) >= 2, what="two dead letters")
    reasons = {r.key: r.headers["x-twoway-error"].decode() for r in letters}
    assert "grade" in reasons[b"E1"]
    assert "role and programme never change" in reasons[b"M1"]
    (confirmed,) = await harness.wait("confirmed", 1)
    assert confirmed["data"]["mentee_id"] == "E2"


def test_starts_on_default_is_processing_day() -> None:
    assert configure().starts_on == date(2027, 1, 4)


async def test_two_instances_never_break_capacity(
    infra: Infra, service_dsns: dict[str, str], topic_prefix: str
) -> None:
    """Both instances run rounds; the per-programme lock keeps every person within capacity."""
    settings = MatchingServiceSettings(
        **infra.kafka_settings("matching"),
        database_url=service_dsns["matching"],
        topic_prefix=topic_prefix,
        topic_partitions=4,
        http_port=0,
    )
    async with (
        running_service(create_spec(), settings) as first,
        running_service(create_spec(), settings),
        TopicReader(infra.kafka_bootstrap, [settings.topic(Topic.PAIRS)]) as reader,
    ):
        h = Harness(first, infra, reader, MovableClock())
        await h.send(Topic.PROGRAMMES, configure())
        for k in range(8):
            await h.enrol(f"M{k}", "mentor", capacity=1 + k % 2)
        for k in range(12):
            await h.enrol(f"E{k}", "mentee")
        confirmed = await h.wait("confirmed", 12, timeout=60)
        # A few more changes, to make both instances run rounds again.
        for k in range(4):
            await h.send(
                Topic.ENROLMENTS,
                ParticipantUpdated.model_validate(profile(f"E{k}", "mentee", revision=1)),
            )
        await wait_until_consumed(
            infra.kafka_bootstrap,
            settings.consumer_group("matching"),
            [settings.topic(t) for t in create_spec().consumes],
        )
        rows = await first.pool.fetch(
            "SELECT mentor_id, mentee_id FROM matching.pairs WHERE status = 'confirmed'"
        )
    assert len(rows) == 12
    assert len({r["mentee_id"] for r in rows}) == 12
    per_mentor = Counter(r["mentor_id"] for r in rows)
    assert all(per_mentor[f"M{k}"] <= 1 + k % 2 for k in range(8))
    assert len({e["data"]["pair_id"] for e in confirmed}) == len(confirmed)


async def test_only_a_newer_enrolment_brings_a_withdrawn_person_back(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure())
    await harness.enrol("M1", "mentor")
    await harness.send(
        Topic.ENROLMENTS, ParticipantWithdrawn(participant_id="M1", programme_id=PROGRAMME)
    )
    # The same revision again (a portal re-sending), and an update: still withdrawn.
    await harness.enrol("M1", "mentor")
    await harness.send(
        Topic.ENROLMENTS, ParticipantUpdated.model_validate(profile("M1", "mentor", revision=1))
    )
    await harness.enrol("E1", "mentee")
    await wait_until_consumed(
        harness.infra.kafka_bootstrap,
        harness.runtime.settings.consumer_group("matching"),
        [harness.runtime.topic(t) for t in harness.runtime.spec.consumes],
    )
    stored = await harness.runtime.pool.fetchval(
        "SELECT active FROM matching.participants WHERE participant_id = 'M1'"
    )
    assert stored is False
    await harness.enrol("M1", "mentor", revision=2)
    (confirmed,) = await harness.wait("confirmed", 1)
    assert confirmed["data"]["mentor_id"] == "M1"


# ------------------------------------------------------------------ contract 1.1


async def round_state(harness: Harness) -> tuple[bool, str | None]:
    """(a round is due or leased, when the last round ran) for the test programme."""
    row = await harness.runtime.pool.fetchrow(
        "SELECT due_at, summary FROM matching.rounds WHERE programme_id = $1", PROGRAMME
    )
    if row is None:
        return False, None
    summary = json.loads(row["summary"]) if row["summary"] else {}
    return row["due_at"] is not None, summary.get("ran_at")


async def test_batch_settings_consumed_after_enrolments_give_no_unrequested_round(
    harness: Harness,
) -> None:
    """Issue 15: enrolments before, between and after the settings; one requested round."""
    for k in range(3):  # before the settings
        await harness.enrol(f"M{k}", "mentor")
        await harness.enrol(f"E{k}", "mentee")
    await harness.barrier()
    assert await round_state(harness) == (False, None)
    await harness.send(Topic.PROGRAMMES, configure(mode="batch"))
    await harness.enrol("M3", "mentor")  # between the settings and the request
    await harness.enrol("E3", "mentee")
    await harness.barrier()
    assert await round_state(harness) == (False, None)
    await harness.send(Topic.PROGRAMMES, ProgrammeMatchingRequested(programme_id=PROGRAMME))
    confirmed = await harness.wait("confirmed", 4)
    assert {e["data"]["mentee_id"] for e in confirmed} == {"E0", "E1", "E2", "E3"}

    async def settled() -> tuple[bool, str | None]:
        return await round_state(harness)

    _, ran_at = await eventually(settled, lambda s: not s[0], what="the round's lease cleared")
    await harness.enrol("M4", "mentor")  # after the round
    await harness.enrol("E4", "mentee")
    await harness.barrier()
    assert await round_state(harness) == (False, ran_at)
    assert len(harness.events("proposed")) == 4


async def test_continuous_settings_consumed_after_enrolments_round_the_waiting_pool(
    harness: Harness,
) -> None:
    for k in range(2):
        await harness.enrol(f"M{k}", "mentor")
        await harness.enrol(f"E{k}", "mentee")
    await harness.barrier()
    assert await round_state(harness) == (False, None)
    await harness.send(Topic.PROGRAMMES, configure(mode="continuous"))
    assert len(await harness.wait("confirmed", 2)) == 2
    await harness.enrol("M2", "mentor")  # after the settings: rounds as usual
    await harness.enrol("E2", "mentee")
    assert len(await harness.wait("confirmed", 3)) == 3


async def test_matching_requested_before_any_settings_runs_one_round_with_the_defaults(
    harness: Harness,
) -> None:
    await harness.enrol("M1", "mentor")
    await harness.enrol("E1", "mentee")
    await harness.barrier()
    await harness.send(Topic.PROGRAMMES, ProgrammeMatchingRequested(programme_id=PROGRAMME))
    (confirmed,) = await harness.wait("confirmed", 1)
    assert confirmed["data"]["mentee_id"] == "E1"


async def test_min_score_refuses_weak_pairs_and_the_read_api_says_why(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure(min_score=0.5))
    await harness.enrol("M1", "mentor", capacity=2)
    await harness.enrol("E-WEAK", "mentee", wants=["knitting"])
    await harness.enrol("E-STRONG", "mentee")
    (confirmed,) = await harness.wait("confirmed", 1)
    assert confirmed["data"]["mentee_id"] == "E-STRONG"
    await harness.barrier()
    async with harness.http() as http:

        async def listing() -> dict[str, Any]:
            return dict((await http.get(f"/programmes/{PROGRAMME}/pairs")).json())

        found = await eventually(
            listing,
            lambda body: bool(body["pairs"]) and body["last_round"] is not None,
            what="a round summary",
        )
    (weak,) = [u for u in found["last_round"]["unmatched"] if u["participant_id"] == "E-WEAK"]
    assert weak["blocking_rules"] == {"score below min_score": 1}
    assert found["last_round"]["min_score"] == 0.5
    assert found["pairs"][0]["proposed_at"].endswith("Z")
    assert found["last_round"]["ran_at"].endswith("Z")


async def test_rematch_and_completion_from_progress_end_pairs(harness: Harness) -> None:
    await harness.send(Topic.PROGRAMMES, configure())
    await harness.enrol("M1", "mentor")
    await harness.enrol("M2", "mentor", languages=["de", "en"])
    await harness.enrol("E1", "mentee")
    (first,) = await harness.wait("confirmed", 1)
    pair = {k: first["data"][k] for k in ("pair_id", "programme_id", "mentor_id", "mentee_id")}
    other = "M2" if pair["mentor_id"] == "M1" else "M1"
    await harness.send(Topic.PROGRESS, PairRematchRequested(**pair, reason="not_a_fit"))
    (ended,) = await harness.wait("ended", 1)
    assert ended["data"]["reason"] == "not_a_fit"
    assert ended["data"]["withdrawn_by"] is None
    second = (await harness.wait("confirmed", 2))[1]["data"]
    assert (second["mentor_id"], second["mentee_id"]) == (other, "E1")

    await harness.send(
        Topic.PROGRESS,
        PairCompleted(
            pair_id=second["pair_id"],
            programme_id=PROGRAMME,
            mentor_id=other,
            mentee_id="E1",
            sessions_completed=12,
            sessions_missed=0,
            minutes=360,
            mentee_learned=[],
            mentor_learned=[],
        ),
    )
    endings = await harness.wait("ended", 2)
    assert endings[1]["data"]["reason"] == "completed"
    # E1 is not offered the new mentor M3 until enrolling again (E2 speaks only French).
    await harness.enrol("M3", "mentor")
    await harness.enrol("E2", "mentee", languages=["fr"])

    async def unmatched_in_last_round() -> set[str]:
        raw = await harness.runtime.pool.fetchval(
            "SELECT summary FROM matching.rounds WHERE programme_id = $1", PROGRAMME
        )
        return {u["participant_id"] for u in json.loads(raw or "{}").get("unmatched", [])}

    await eventually(
        unmatched_in_last_round, lambda seen: {"M3", "E2"} <= seen, what="a round with M3, E2"
    )
    assert len(harness.events("confirmed")) == 2
    async with harness.http() as http:
        mine = (await http.get("/participants/E1/pair")).json()
    assert mine["paused_after_completion"] is True
    assert mine["pair"] is None
    assert [p["closed_reason"] for p in mine["pairs"]] == ["not_a_fit", "completed"]
    await harness.enrol("E1", "mentee", revision=1)
    third = (await harness.wait("confirmed", 3))[2]["data"]
    assert (third["mentor_id"], third["mentee_id"]) == ("M3", "E1")


async def test_accept_wait_prints_the_outcome_and_exits_4_on_rejection(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in harness.infra.kafka_env("admin").items():  # the toolkit, as an operator
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TWOWAY_TOPIC_PREFIX", harness.runtime.settings.topic_prefix)
    await harness.send(Topic.PROGRAMMES, configure(acceptance_required=True))
    await harness.enrol("M1", "mentor")
    await harness.enrol("E1", "mentee")
    (proposal,) = await harness.wait("proposed", 1)
    pair_id = proposal["data"]["pair_id"]

    async def twoway(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli.main, list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, _, err = await twoway("accept", pair_id, "X9", "--wait")
    assert code == 4
    assert "response rejected: You are not one of the two people of this pairing" in err
    code, _, err = await twoway("decline", "no-such-pair", "E1", "--wait")
    assert code == 4
    assert "no such pairing" in err
    code, out, _ = await twoway("accept", pair_id, "E1", "--wait", "--wait-seconds", "2")
    assert code == 0
    assert "no change to pair" in out  # E1 accepted; the pair waits for M1
    code, out, _ = await twoway("accept", pair_id, "M1", "--wait")
    assert code == 0
    assert f"pair {pair_id} confirmed" in out
    # Operators see no dead letter for any of them.
    topic = harness.runtime.topic(Topic.PAIR_RESPONSES)
    assert harness.runtime.metrics.dead_lettered.labels(topic)._value.get() == 0
    assert len(harness.events("response_rejected")) == 2


async def test_erasure_forgets_the_persons_pair_reasons_and_round_summary_entry(
    harness: Harness,
) -> None:
    await harness.send(Topic.PROGRAMMES, configure())
    await harness.enrol("M1", "mentor")
    await harness.enrol("E1", "mentee")
    await harness.enrol(
        "E-ALONE", "mentee", availability=[{"day": "sun", "start": "20:00", "end": "21:00"}]
    )
    (confirmed,) = await harness.wait("confirmed", 1)
    pool = harness.runtime.pool

    async def summary_names() -> set[str]:
        raw = await pool.fetchval(
            "SELECT summary FROM matching.rounds WHERE programme_id = $1", PROGRAMME
        )
        return {u["participant_id"] for u in json.loads(raw or "{}").get("unmatched", [])}

    await eventually(summary_names, lambda names: "E-ALONE" in names, what="E-ALONE unmatched")
    for pid in ("E-ALONE", "E1"):
        await harness.send(
            Topic.ENROLMENTS,
            ParticipantWithdrawn(participant_id=pid, programme_id=PROGRAMME, erase=True),
        )
    await harness.barrier()

    assert "E-ALONE" not in await summary_names()
    reasons = json.loads(
        await pool.fetchval(
            "SELECT reasons FROM matching.pairs WHERE pair_id = $1", confirmed["data"]["pair_id"]
        )
    )
    assert reasons["mentee_learns"] == reasons["mentor_learns"] == reasons["languages"] == []
    assert reasons["weekly_overlap_minutes"] > 0  # not personal: the pair's record stays whole
