"""The progress service on the real broker and database: every rule seen from the outside."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from progress_support import MENTEE, MENTOR, PAIR, Facts, progress
from twoway_dev.testing.kafka import eventually
from twoway_dev.testing.service import Sandbox, ServiceHarness
from twoway_progress.handlers import credit_id_for

pytestmark = pytest.mark.infra


@pytest.fixture
async def h(sandbox: Sandbox) -> AsyncIterator[ServiceHarness]:
    async with progress(sandbox) as found:
        yield found


def days_ago(n: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=n)


async def start_pair(h: ServiceHarness, sessions: int = 3, **programme: object) -> Facts:
    """Settings, both profiles, the pair and its sessions, processed; the pair's facts."""
    facts = Facts(h)
    await h.send(
        facts.programme(sessions=sessions, **programme),
        facts.profile(MENTOR, "mentor"),
        facts.profile(MENTEE, "mentee"),
    )
    await h.barrier()  # settings and profiles before the pair: topics have no mutual order
    await h.send(
        facts.confirmed(),
        *(facts.scheduled(i, days_ago(sessions + 1 - i), sessions) for i in range(1, sessions + 1)),
    )
    await h.barrier()
    return facts


async def test_a_pair_that_completes_earns_credits_and_a_certificate(h: ServiceHarness) -> None:
    async with h.running():
        facts = await start_pair(h, sessions=3, progress={"credit_minutes": 50})
        await h.send(
            facts.goals(
                MENTEE,
                [{"tag": "prompting", "note": "board papers"}, {"tag": "tiktok", "note": None}],
            ),
            facts.goals(MENTOR, [{"tag": "strategy", "note": None}]),
        )
        await h.send(
            facts.completed(1, minutes=30), facts.missed(2), facts.completed(3, minutes=45)
        )
        await h.send(
            facts.feedback(1, MENTEE, learned=["Prompting", "tiktok"]),
            facts.feedback(3, MENTEE, learned=["prompting"]),
            facts.feedback(1, MENTOR, learned=["strategy"]),
        )
        (completed,) = await h.wait("pair.completed", 1)
        credits = await h.wait("credit.awarded", 2)
        await h.barrier()

        # Feedback may land after the completion (another topic): what was learned by then.
        assert completed["sessions_completed"] == 2
        assert completed["sessions_missed"] == 1
        assert completed["minutes"] == 75
        by_person = {c["participant_id"]: c for c in credits}
        assert set(by_person) == {MENTOR, MENTEE}
        for person, credit in by_person.items():
            assert credit["credit_id"] == credit_id_for(PAIR, person)
            assert credit["credits"] == 1.4  # floor(5 * 75 / 50) / 5
            assert credit["minutes"] == 75
        assert by_person[MENTEE]["role"] == "mentee"

        progress = (await h.get(f"/pairs/{PAIR}/progress")).json()
        assert progress["completed"] is True
        assert [s["status"] for s in progress["sessions"]] == ["completed", "missed", "completed"]
        assert progress["mentee"]["learned"] == ["prompting", "tiktok"]
        assert progress["mentee"]["goals"] == [
            {"tag": "prompting", "note": "board papers", "matched": True},
            {"tag": "tiktok", "note": None, "matched": True},
        ]
        assert progress["mentor"]["goals"] == [{"tag": "strategy", "note": None, "matched": True}]
        assert "private words" not in str(progress)

        listed = (await h.get(f"/participants/{MENTEE}/credits")).json()
        assert [c["credit_id"] for c in listed] == [credit_id_for(PAIR, MENTEE)]
        pdf = await h.get(listed[0]["certificate"])
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        assert b"/Count 1" in pdf.content  # one page
        assert (await h.get("/participants/nobody/credits")).status_code == 404
        assert (await h.get("/credits/nope/certificate.pdf")).status_code == 404

        # A replayed completion under a new event id changes nothing.
        await h.send(facts.completed(3, minutes=45))
        await h.barrier()
        assert len(h.events("pair.completed")) == 1
        assert len(h.events("credit.awarded")) == 2


async def test_not_a_fit_about_an_early_session_asks_for_a_rematch_without_saying_who(
    h: ServiceHarness,
) -> None:
    async with h.running():
        facts = await start_pair(h, sessions=3)
        await h.send(facts.completed(1))
        await h.send(facts.feedback(1, MENTOR, fit="not_a_fit", rating=2))
        (rematch,) = await h.wait("pair.rematch_requested", 1)
        assert rematch == {
            "pair_id": PAIR,
            "programme_id": "RM",
            "mentor_id": MENTOR,
            "mentee_id": MENTEE,
            "reason": "not_a_fit",
        }
        # The other person says the same: still one request.
        await h.send(facts.feedback(1, MENTEE, fit="not_a_fit"))
        await h.barrier()
        assert len(h.events("pair.rematch_requested")) == 1
        await h.send(h.record("pair.ended", **facts.pair_fields(), reason="not_a_fit"))
        await h.barrier()
        progress = (await h.get(f"/pairs/{PAIR}/progress")).json()
        assert (progress["status"], progress["rematch_requested"]) == ("ended", "not_a_fit")


async def test_health_changes_only_when_it_or_its_reasons_change(h: ServiceHarness) -> None:
    async with h.running():
        facts = await start_pair(h, sessions=3)
        await h.send(facts.missed(1), facts.missed(2))
        (at_risk,) = await h.wait("pair.health_changed", 1)
        assert (at_risk["health"], at_risk["reasons"]) == ("at_risk", ["missed_in_a_row"])
        assert at_risk["sessions_missed"] == 2
        await h.send(facts.feedback(2, MENTEE, rating=1, fit="unsure"))
        changes = await h.wait("pair.health_changed", 2)
        assert changes[1]["reasons"] == ["missed_in_a_row", "low_rating", "fit_unsure"]
        # The same facts again: no new event.
        await h.send(facts.feedback(2, MENTEE, rating=1, fit="unsure"))
        await h.barrier()
        assert len(h.events("pair.health_changed")) == 2
        health = (await h.get("/programmes/RM/health")).json()
        assert health["pairs"]["at_risk"] == 1
        assert health["attention"][0]["reasons"] == ["missed_in_a_row", "low_rating", "fit_unsure"]
        assert health["feedback"]["mentee"]["withheld"] is True  # one person is not three


async def test_an_inactive_pair_is_warned_then_closed_by_timers_that_survive_a_restart(
    h: ServiceHarness,
) -> None:
    warning, close = 21, 42
    async with h.running():
        facts = await start_pair(
            h, sessions=3, progress={"inactive_warning_days": warning, "inactive_close_days": close}
        )
        await h.send(facts.completed(1))
        await h.barrier()
        rows = await h.pool.fetch("SELECT next_check_at FROM progress.pairs")
        assert rows[0]["next_check_at"] is not None
    # Stopped; the clock moves past the warning while nothing runs.
    h.advance(timedelta(days=warning + 1))
    async with h.running():
        (inactive,) = await h.wait("pair.health_changed", 1)
        assert (inactive["health"], inactive["reasons"]) == ("inactive", ["no_recent_session"])
        assert inactive["last_activity_at"] is not None
        assert h.events("pair.rematch_requested") == []
        h.advance(timedelta(days=close - warning))
        (closed,) = await h.wait("pair.rematch_requested", 1)
        assert closed["reason"] == "inactive"
        await h.send(h.record("pair.ended", **facts.pair_fields(), reason="inactive"))
        await h.barrier()
        rows = await h.pool.fetch("SELECT status, next_check_at FROM progress.pairs")
        assert (rows[0]["status"], rows[0]["next_check_at"]) == ("ended", None)


async def test_feedback_from_outside_the_pair_or_for_an_unknown_pair_is_dead_lettered(
    h: ServiceHarness,
) -> None:
    async with h.running():
        facts = await start_pair(h, sessions=3)
        await h.send(
            facts.feedback(1, "STRANGER"),
            facts.feedback(1, MENTEE, pair_id="NO-SUCH-PAIR"),
            facts.goals("STRANGER", [{"tag": "x", "note": None}]),
        )
        letters = await h.wait_dead_letters(3)
        reasons = sorted(d.headers["x-twoway-error"].decode() for d in letters)
        assert any("not one of the two people" in r for r in reasons)
        assert any("not known to progress" in r for r in reasons)
        assert all(d.headers["x-twoway-consumer"] == b"progress" for d in letters)


async def test_erasure_removes_comments_goal_notes_and_feedback_text(h: ServiceHarness) -> None:
    async with h.running():
        facts = await start_pair(h, sessions=3)
        await h.send(facts.completed(1), facts.completed(2))
        await h.send(
            facts.goals(MENTEE, [{"tag": "prompting", "note": "secret goal note"}]),
            facts.feedback(1, MENTEE, learned=["prompting"], comment="secret comment"),
            facts.feedback(1, MENTOR, comment="the mentor's words"),
        )
        await h.barrier()
        await h.send(
            h.record("participant.withdrawn", participant_id=MENTEE, programme_id="RM", erase=True)
        )
        await h.barrier()

        async def text_left() -> list[str]:
            tables = await h.pool.fetch(
                """SELECT table_name, column_name FROM information_schema.columns
                   WHERE table_schema = 'progress' AND data_type IN ('text', 'jsonb', 'ARRAY')"""
            )
            found = []
            for t in tables:
                rows = await h.pool.fetch(
                    f'SELECT "{t["column_name"]}"::text AS v FROM progress."{t["table_name"]}"'
                )
                found += [
                    r["v"] for r in rows if r["v"] and ("secret" in r["v"] or "Person E1" in r["v"])
                ]
            return found

        assert await eventually(text_left, lambda left: left == [], what="no text of E1 left") == []
        # The partner's own words stay; the erased person's feedback stays only without the id.
        kept = await h.pool.fetch(
            "SELECT participant_id, comment, rating FROM progress.feedback ORDER BY role"
        )
        assert [r["comment"] for r in kept] == [None, "the mentor's words"]
        assert kept[0]["participant_id"] != MENTEE
        progress = (await h.get(f"/pairs/{PAIR}/progress")).json()
        assert progress["mentee"]["goals"] == []
