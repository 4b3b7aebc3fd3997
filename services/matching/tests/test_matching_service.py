"""The matching service on the real broker and database: events in, pairs out."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from matching_support import PROGRAMME, configure, enrolled, profile
from twoway_dev.testing.kafka import ToSend, eventually, publish
from twoway_dev.testing.oidc import TestProvider
from twoway_dev.testing.service import Sandbox, ServiceHarness
from twoway_dev.toolkit import cli
from twoway_matching.app import create_spec
from twoway_matching.config import MatchingServiceSettings
from twoway_shared.contract import (
    PairResponseSubmitted,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgrammeMatchingRequested,
    Topic,
    encode,
    new_event,
)
from twoway_shared.contract.events import PairCompleted, PairRematchRequested

pytestmark = pytest.mark.infra

Harness = ServiceHarness


@pytest.fixture
async def harness(sandbox: Sandbox) -> AsyncIterator[Harness]:
    """Matching on two partitions per topic, on a clock the test can move."""
    async with sandbox.service(create_spec(), MatchingServiceSettings, topic_partitions=2) as h:
        yield h


async def configure_programme(h: Harness, **matching: Any) -> None:
    """The programme's settings, consumed before what follows: topics have no mutual order."""
    await h.send(configure(**matching))
    await h.barrier()


async def enrol(h: Harness, pid: str, role: str, **changes: Any) -> None:
    await h.send(enrolled(pid, role, **changes))


async def test_a_cohort_flows_in_and_explained_pairs_come_out(
    harness: Harness, oidc: TestProvider
) -> None:
    await configure_programme(harness)
    # One publish, so the round (due a second after the first enrolment) weighs them all.
    await harness.send(
        *(enrolled(f"{p}{k}", r) for k in range(3) for p, r in (("M", "mentor"), ("E", "mentee"))),
        enrolled(
            "E-LATE", "mentee", availability=[{"day": "sun", "start": "20:00", "end": "21:00"}]
        ),
    )
    confirmed = await harness.wait("pair.confirmed", 3)
    proposed = harness.data("pair.proposed")
    assert len(proposed) == 3
    assert len(confirmed) == 3
    assert {e["mentee_id"] for e in proposed} == {"E0", "E1", "E2"}
    first = proposed[0]
    assert first["reasons"]["mentee_learns"] == ["generative-ai"]
    assert first["reasons"]["mentor_learns"] == ["strategy"]
    assert first["reasons"]["languages"] == ["en"]
    assert first["reasons"]["weekly_overlap_minutes"] == 360
    assert first["score"] == pytest.approx(0.60 + 0.25 + 0.15)
    assert first["expires_at"] is None
    # Each confirmation follows its proposal, keyed by pair id.
    for event in harness.events("pair.confirmed"):
        assert event["subject"] == event["data"]["pair_id"]

    base_url = f"http://127.0.0.1:{harness.runtime.http_port}"
    reader = {"Authorization": f"Bearer {oidc.token()}"}
    async with httpx.AsyncClient(base_url=base_url, headers=reader) as http:

        def unmatched_late(body: dict[str, Any]) -> list[dict[str, Any]]:
            unmatched = (body["last_round"] or {}).get("unmatched", [])
            return [u for u in unmatched if u["participant_id"] == "E-LATE"]

        async def get_listing() -> dict[str, Any]:
            return dict((await http.get(f"/programmes/{PROGRAMME}/pairs")).json())

        listing = await eventually(
            get_listing, lambda b: bool(unmatched_late(b)), what="a round that weighed E-LATE"
        )
        assert len(listing["pairs"]) == 3
        late = unmatched_late(listing)
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
    await configure_programme(harness, acceptance_required=True, proposal_ttl_hours=48)
    await enrol(harness, "M1", "mentor")
    await enrol(harness, "E1", "mentee")
    (proposal,) = await harness.wait("pair.proposed", 1)
    pair_id = proposal["pair_id"]
    assert proposal["expires_at"] is not None
    await harness.send(
        PairResponseSubmitted(pair_id=pair_id, participant_id="E1", response="accept"),
    )
    await harness.send(
        PairResponseSubmitted(pair_id=pair_id, participant_id="M1", response="accept"),
    )
    (confirmed,) = await harness.wait("pair.confirmed", 1)
    assert confirmed["pair_id"] == pair_id

    await enrol(harness, "M2", "mentor")
    await enrol(harness, "E2", "mentee")
    proposals = await harness.wait("pair.proposed", 2)
    second = proposals[1]
    assert (second["mentor_id"], second["mentee_id"]) == ("M2", "E2")
    await harness.send(
        PairResponseSubmitted(
            pair_id=second["pair_id"], participant_id="M2", response="decline", reason="busy"
        ),
    )
    (declined,) = await harness.wait("pair.declined", 1)
    assert declined["reason"] == "declined"
    assert declined["declined_by"] == "M2"
    # A late accept of a declined pair has no effect; the two are never proposed again.
    await harness.send(
        PairResponseSubmitted(pair_id=second["pair_id"], participant_id="E2", response="accept"),
    )
    await enrol(harness, "M3", "mentor")
    proposals = await harness.wait("pair.proposed", 3)
    assert (proposals[2]["mentor_id"], proposals[2]["mentee_id"]) == ("M3", "E2")
    assert len(harness.events("pair.confirmed")) == 1


async def test_unanswered_proposal_expires_and_both_return_to_the_pool(harness: Harness) -> None:
    await configure_programme(harness, acceptance_required=True, proposal_ttl_hours=1)
    await enrol(harness, "M1", "mentor")
    await enrol(harness, "E1", "mentee")
    (proposal,) = await harness.wait("pair.proposed", 1)
    harness.advance(timedelta(hours=2))
    (declined,) = await harness.wait("pair.declined", 1)
    assert declined["pair_id"] == proposal["pair_id"]
    assert declined["reason"] == "expired"
    assert declined["declined_by"] is None
    await enrol(harness, "M2", "mentor")
    proposals = await harness.wait("pair.proposed", 2)
    assert proposals[1]["mentor_id"] == "M2"


async def test_withdrawal_ends_the_pair_frees_the_partner_and_erases(harness: Harness) -> None:
    await configure_programme(harness)
    await enrol(harness, "M1", "mentor")
    await enrol(harness, "E1", "mentee")
    (confirmed,) = await harness.wait("pair.confirmed", 1)
    await harness.send(
        ParticipantWithdrawn(participant_id="E1", programme_id=PROGRAMME, erase=True),
    )
    (ended,) = await harness.wait("pair.ended", 1)
    assert ended["pair_id"] == confirmed["pair_id"]
    assert ended["reason"] == "withdrawn"
    assert ended["withdrawn_by"] == "E1"
    await enrol(harness, "E2", "mentee")
    confirmations = await harness.wait("pair.confirmed", 2)
    assert (confirmations[1]["mentor_id"], confirmations[1]["mentee_id"]) == (
        "M1",
        "E2",
    )
    (row,) = await harness.rows(
        "SELECT active, profile FROM matching.participants WHERE participant_id = 'E1'"
    )
    assert row["active"] is False
    assert row["profile"] is None


async def test_batch_mode_waits_for_matching_requested(harness: Harness) -> None:
    await configure_programme(harness, mode="batch")
    await enrol(harness, "M1", "mentor")
    await enrol(harness, "E1", "mentee")
    # A later update is processed after the enrolments (same key, same partition) ...
    await harness.send(ParticipantUpdated.model_validate(profile("E1", "mentee", revision=1)))

    async def handled() -> float:
        metric = harness.runtime.metrics.handler_seconds.labels("participant.updated")
        return float(metric._sum.get())

    await eventually(handled, lambda s: s > 0, what="the update handled")
    # ... and no round ran for it in batch mode.
    assert harness.events() == []
    await harness.send(ProgrammeMatchingRequested(programme_id=PROGRAMME))
    await harness.wait("pair.confirmed", 1)


async def test_replayed_records_create_no_new_pairs(harness: Harness) -> None:
    await configure_programme(harness)
    for k in range(2):
        await enrol(harness, f"M{k}", "mentor")
        await enrol(harness, f"E{k}", "mentee")
    await harness.wait("pair.confirmed", 2)
    before = len(harness.events())
    await harness.replay()
    topic = harness.runtime.topic(Topic.ENROLMENTS)

    async def duplicates() -> float:
        return float(harness.runtime.metrics.duplicates.labels(topic)._value.get())

    await eventually(
        duplicates, lambda n: n == 4, what="every replayed enrolment seen as a duplicate"
    )
    # A new enrolment forces one more round; once it ran, any pair a replay caused would show.
    await enrol(harness, "E-NEW", "mentee", languages=["de"])

    async def last_round_saw_new() -> bool:
        raw = await harness.pool.fetchval(
            "SELECT summary FROM matching.rounds WHERE programme_id = $1", PROGRAMME
        )
        unmatched = json.loads(raw or "{}").get("unmatched", [])
        return any(u["participant_id"] == "E-NEW" for u in unmatched)

    await eventually(last_round_saw_new, lambda seen: seen, what="a round that saw E-NEW")
    assert len(harness.events()) == before


async def test_invalid_enrolments_are_dead_lettered_with_a_reason(harness: Harness) -> None:
    await configure_programme(harness)
    await enrol(harness, "M1", "mentor")
    bad_grade = profile("E1", "mentee", grade=0)
    data = ParticipantEnrolled.model_validate(profile("E1", "mentee"))
    raw = json.loads(encode(new_event(data, source="/portal/test")))
    raw["data"] = bad_grade
    topic = harness.runtime.topic(Topic.ENROLMENTS)
    await publish(harness.infra.kafka_bootstrap, [ToSend(topic, json.dumps(raw).encode(), b"E1")])
    await enrol(harness, "M1", "mentee", revision=1)  # a mentor may not become a mentee
    await enrol(harness, "E2", "mentee")
    letters = await harness.wait_dead_letters(2)
    reasons = {r.key: r.headers["x-twoway-error"].decode() for r in letters}
    assert "grade" in reasons[b"E1"]
    assert "role and programme never change" in reasons[b"M1"]
    (confirmed,) = await harness.wait("pair.confirmed", 1)
    assert confirmed["mentee_id"] == "E2"


def test_starts_on_default_is_processing_day() -> None:
    assert configure().starts_on == date(2027, 1, 4)


async def test_two_instances_never_break_capacity(sandbox: Sandbox) -> None:
    """Both instances run rounds; the per-programme lock keeps every person within capacity."""
    async with (
        sandbox.service(create_spec(), MatchingServiceSettings, topic_partitions=4) as h,
        h.another_instance(),
    ):
        await configure_programme(h)
        for k in range(8):
            await enrol(h, f"M{k}", "mentor", capacity=1 + k % 2)
        for k in range(12):
            await enrol(h, f"E{k}", "mentee")
        confirmed = await h.wait("pair.confirmed", 12, timeout=60)
        # A few more changes, to make both instances run rounds again.
        for k in range(4):
            await h.send(
                ParticipantUpdated.model_validate(profile(f"E{k}", "mentee", revision=1)),
            )
        await h.barrier()
        rows = await h.rows(
            "SELECT mentor_id, mentee_id FROM matching.pairs WHERE status = 'confirmed'"
        )
    assert len(rows) == 12
    assert len({r["mentee_id"] for r in rows}) == 12
    per_mentor = Counter(r["mentor_id"] for r in rows)
    assert all(per_mentor[f"M{k}"] <= 1 + k % 2 for k in range(8))
    assert len({e["pair_id"] for e in confirmed}) == len(confirmed)


async def test_only_a_newer_enrolment_brings_a_withdrawn_person_back(harness: Harness) -> None:
    await configure_programme(harness)
    await enrol(harness, "M1", "mentor")
    await harness.send(ParticipantWithdrawn(participant_id="M1", programme_id=PROGRAMME))
    # The same revision again (a portal re-sending), and an update: still withdrawn.
    await enrol(harness, "M1", "mentor")
    await harness.send(ParticipantUpdated.model_validate(profile("M1", "mentor", revision=1)))
    await enrol(harness, "E1", "mentee")
    await harness.barrier()
    stored = await harness.pool.fetchval(
        "SELECT active FROM matching.participants WHERE participant_id = 'M1'"
    )
    assert stored is False
    await enrol(harness, "M1", "mentor", revision=2)
    (confirmed,) = await harness.wait("pair.confirmed", 1)
    assert confirmed["mentor_id"] == "M1"


# ------------------------------------------------------------------ contract 1.1


async def round_state(harness: Harness) -> tuple[bool, str | None]:
    """(a round is due or leased, when the last round ran) for the test programme."""
    row = await harness.pool.fetchrow(
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
        await enrol(harness, f"M{k}", "mentor")
        await enrol(harness, f"E{k}", "mentee")
    await harness.barrier()
    assert await round_state(harness) == (False, None)
    await configure_programme(harness, mode="batch")
    await enrol(harness, "M3", "mentor")  # between the settings and the request
    await enrol(harness, "E3", "mentee")
    await harness.barrier()
    assert await round_state(harness) == (False, None)
    await harness.send(ProgrammeMatchingRequested(programme_id=PROGRAMME))
    confirmed = await harness.wait("pair.confirmed", 4)
    assert {e["mentee_id"] for e in confirmed} == {"E0", "E1", "E2", "E3"}

    async def settled() -> tuple[bool, str | None]:
        return await round_state(harness)

    _, ran_at = await eventually(settled, lambda s: not s[0], what="the round's lease cleared")
    await enrol(harness, "M4", "mentor")  # after the round
    await enrol(harness, "E4", "mentee")
    await harness.barrier()
    assert await round_state(harness) == (False, ran_at)
    assert len(harness.events("pair.proposed")) == 4


async def test_continuous_settings_consumed_after_enrolments_round_the_waiting_pool(
    harness: Harness,
) -> None:
    for k in range(2):
        await enrol(harness, f"M{k}", "mentor")
        await enrol(harness, f"E{k}", "mentee")
    await harness.barrier()
    assert await round_state(harness) == (False, None)
    await configure_programme(harness, mode="continuous")
    assert len(await harness.wait("pair.confirmed", 2)) == 2
    await enrol(harness, "M2", "mentor")  # after the settings: rounds as usual
    await enrol(harness, "E2", "mentee")
    assert len(await harness.wait("pair.confirmed", 3)) == 3


async def test_matching_requested_before_any_settings_runs_one_round_with_the_defaults(
    harness: Harness,
) -> None:
    await enrol(harness, "M1", "mentor")
    await enrol(harness, "E1", "mentee")
    await harness.barrier()
    await harness.send(ProgrammeMatchingRequested(programme_id=PROGRAMME))
    (confirmed,) = await harness.wait("pair.confirmed", 1)
    assert confirmed["mentee_id"] == "E1"


async def test_min_score_refuses_weak_pairs_and_the_read_api_says_why(harness: Harness) -> None:
    await configure_programme(harness, min_score=0.5)
    await enrol(harness, "M1", "mentor", capacity=2)
    await enrol(harness, "E-WEAK", "mentee", wants=["knitting"])
    await enrol(harness, "E-STRONG", "mentee")
    (confirmed,) = await harness.wait("pair.confirmed", 1)
    assert confirmed["mentee_id"] == "E-STRONG"
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
    await configure_programme(harness)
    await enrol(harness, "M1", "mentor")
    await enrol(harness, "M2", "mentor", languages=["de", "en"])
    await enrol(harness, "E1", "mentee")
    (first,) = await harness.wait("pair.confirmed", 1)
    pair = {k: first[k] for k in ("pair_id", "programme_id", "mentor_id", "mentee_id")}
    other = "M2" if pair["mentor_id"] == "M1" else "M1"
    await harness.send(PairRematchRequested(**pair, reason="not_a_fit"))
    (ended,) = await harness.wait("pair.ended", 1)
    assert ended["reason"] == "not_a_fit"
    assert ended["withdrawn_by"] is None
    second = (await harness.wait("pair.confirmed", 2))[1]
    assert (second["mentor_id"], second["mentee_id"]) == (other, "E1")

    await harness.send(
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
    endings = await harness.wait("pair.ended", 2)
    assert endings[1]["reason"] == "completed"
    # E1 is not offered the new mentor M3 until enrolling again (E2 speaks only French).
    await enrol(harness, "M3", "mentor")
    await enrol(harness, "E2", "mentee", languages=["fr"])

    async def unmatched_in_last_round() -> set[str]:
        raw = await harness.pool.fetchval(
            "SELECT summary FROM matching.rounds WHERE programme_id = $1", PROGRAMME
        )
        return {u["participant_id"] for u in json.loads(raw or "{}").get("unmatched", [])}

    await eventually(
        unmatched_in_last_round, lambda seen: {"M3", "E2"} <= seen, what="a round with M3, E2"
    )
    assert len(harness.events("pair.confirmed")) == 2
    async with harness.http() as http:
        mine = (await http.get("/participants/E1/pair")).json()
    assert mine["paused_after_completion"] is True
    assert mine["pair"] is None
    assert [p["closed_reason"] for p in mine["pairs"]] == ["not_a_fit", "completed"]
    await enrol(harness, "E1", "mentee", revision=1)
    third = (await harness.wait("pair.confirmed", 3))[2]
    assert (third["mentor_id"], third["mentee_id"]) == ("M3", "E1")


async def test_accept_wait_prints_the_outcome_and_exits_4_on_rejection(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in harness.infra.kafka_env("admin").items():  # the toolkit, as an operator
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TWOWAY_TOPIC_PREFIX", harness.runtime.settings.topic_prefix)
    await configure_programme(harness, acceptance_required=True)
    await enrol(harness, "M1", "mentor")
    await enrol(harness, "E1", "mentee")
    (proposal,) = await harness.wait("pair.proposed", 1)
    pair_id = proposal["pair_id"]

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
    assert len(harness.events("pair.response_rejected")) == 2


async def test_erasure_forgets_the_persons_pair_reasons_and_round_summary_entry(
    harness: Harness,
) -> None:
    await configure_programme(harness)
    await enrol(harness, "M1", "mentor")
    await enrol(harness, "E1", "mentee")
    await enrol(
        harness,
        "E-ALONE",
        "mentee",
        availability=[{"day": "sun", "start": "20:00", "end": "21:00"}],
    )
    (confirmed,) = await harness.wait("pair.confirmed", 1)
    pool = harness.runtime.pool

    async def summary_names() -> set[str]:
        raw = await pool.fetchval(
            "SELECT summary FROM matching.rounds WHERE programme_id = $1", PROGRAMME
        )
        return {u["participant_id"] for u in json.loads(raw or "{}").get("unmatched", [])}

    await eventually(summary_names, lambda names: "E-ALONE" in names, what="E-ALONE unmatched")
    for pid in ("E-ALONE", "E1"):
        await harness.send(
            ParticipantWithdrawn(participant_id=pid, programme_id=PROGRAMME, erase=True),
        )
    await harness.barrier()

    assert "E-ALONE" not in await summary_names()
    reasons = json.loads(
        await pool.fetchval(
            "SELECT reasons FROM matching.pairs WHERE pair_id = $1", confirmed["pair_id"]
        )
    )
    assert reasons["mentee_learns"] == reasons["mentor_learns"] == reasons["languages"] == []
    assert reasons["weekly_overlap_minutes"] > 0  # not personal: the pair's record stays whole
