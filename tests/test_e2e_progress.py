"""Progress end to end: the four real services as processes, real Kafka, PostgreSQL, and a real
LRS (Ralph): a pair that completes and earns credits (through an LRS outage), a pair that is not
a fit, and erasure. The inactive pair warned and closed needs days to pass: it is tested
in-process with a movable clock (services/progress/tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from rich.console import Console
from twoway_dev.demo.progress import health_section, play_progress, programme_health
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import eventually
from twoway_dev.testing.lrs import PASSWORD, USER, RalphLrs, ralph_installed
from twoway_dev.testing.oidc import TestProvider
from twoway_dev.toolkit.generate import generate_cohort
from twoway_progress.domain.xapi import attended_statement_id, completed_statement_id
from twoway_progress.handlers import credit_id_for
from twoway_shared.contract import (
    ParticipantEnrolled,
    ParticipantWithdrawn,
    ProgrammeConfigured,
    SessionAttendanceRecorded,
    Topic,
)
from twoway_shared.contract.events import PairGoalsSet, SessionFeedbackSubmitted

from tests.e2e_support import Stack, View, person, running_stack

pytestmark = [
    pytest.mark.infra,
    pytest.mark.skipif(not ralph_installed(), reason="Ralph is not installed: run `make lrs`"),
]

ALL_DAY = [
    {"day": d, "start": "00:00", "end": "24:00"}
    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
]
PORTAL = "http://portal.test"


def programme(programme_id: str, sessions: int) -> ProgrammeConfigured:
    """Sessions booked from now on (no notice), no reminders, credits per 50 minutes."""
    return ProgrammeConfigured.model_validate(
        {
            "programme_id": programme_id,
            "name": f"Progress {programme_id}",
            "starts_on": datetime.now(UTC).date().isoformat(),
            "min_notice_hours": 0,
            "sessions": sessions,
            "reminder_minutes": [],
            "progress": {"credit_minutes": 50},
        }
    )


def enrolled(participant_id: str, programme_id: str, role: str, **more: Any) -> ParticipantEnrolled:
    profile = person(participant_id, programme_id, role, availability=ALL_DAY, **more)
    return ParticipantEnrolled.model_validate(profile)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lrs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RalphLrs]:
    """Ralph on a port of its own; it starts down (an outage) until a test starts it."""
    found = RalphLrs(tmp_path_factory.mktemp("ralph"))
    try:
        yield found
    finally:
        await found.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, lrs: RalphLrs, oidc: TestProvider
) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("e2e-progress")
    xapi = {
        "TWOWAY_XAPI_ENDPOINT": lrs.endpoint,
        "TWOWAY_XAPI_USERNAME": USER,
        "TWOWAY_XAPI_PASSWORD": PASSWORD,
    }
    async with running_stack(infra, root, extra_env={"progress": xapi}, oidc=oidc) as stack:
        yield stack


def attended(session: dict[str, Any], who: str) -> SessionAttendanceRecorded:
    return SessionAttendanceRecorded(
        session_id=session["session_id"],
        pair_id=session["pair_id"],
        participant_id=who,
        attended=True,
        rating=5,
    )


def feedback(session: dict[str, Any], who: str, **more: Any) -> SessionFeedbackSubmitted:
    """`who`'s feedback on one of their sessions."""
    return SessionFeedbackSubmitted(
        session_id=session["session_id"], pair_id=session["pair_id"], participant_id=who, **more
    )


async def hold_sessions(stack: Stack, view: View, sessions: list[dict[str, Any]]) -> None:
    """Both people attend each session; scheduling completes them; progress has seen it."""
    await stack.send(
        *(attended(s, who) for s in sessions for who in (s["mentor_id"], s["mentee_id"]))
    )
    ids = {s["session_id"] for s in sessions}
    await view.until(
        lambda: ids <= {c["session_id"] for c in view.data(Topic.SESSIONS, "session.completed")},
        "the sessions completed",
    )
    await stack.barrier(["progress"])


async def paired(
    stack: Stack, view: View, programme_id: str, sessions: int, mentee: str, *mentors: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The programme, the mentors and the mentee (named after the id) enrolled; the mentee's
    pair and its booked sessions."""
    people = [enrolled(m, programme_id, "mentor") for m in mentors]
    name = NAMES.get(mentee)
    people.append(enrolled(mentee, programme_id, "mentee", name=name))
    await stack.send(programme(programme_id, sessions=sessions), *people)
    pair = await view.pair_of(mentee)
    return pair, await view.series(pair["pair_id"], sessions)


NAMES = {"D-E1": "Ada Lovelace", "X-E1": "Zebulon Erasable"}


async def test_a_pair_completes_earns_credits_and_its_records_reach_the_lrs_after_an_outage(
    stack: Stack, view: View, lrs: RalphLrs, oidc: TestProvider
) -> None:
    programme_id = "PG-DONE"
    pair, sessions = await paired(stack, view, programme_id, 2, "D-E1", "D-M1")
    pair_id = pair["pair_id"]
    await stack.send(
        PairGoalsSet(
            pair_id=pair_id,
            participant_id="D-E1",
            goals=[{"tag": "python", "note": "automate reports"}],
        )
    )
    await hold_sessions(stack, view, sessions[:1])
    await stack.send(
        feedback(
            sessions[0], "D-E1", learned=["Python"], rating=5, fit="good", comment="very kind"
        ),
        feedback(sessions[0], "D-M1", learned=["leadership"], rating=4, fit="good"),
    )
    await stack.barrier(["progress"])
    await hold_sessions(stack, view, sessions[1:])

    await view.until(
        lambda: len(view.data(Topic.PROGRESS, "credit.awarded", pair_id=pair_id)) == 2, "credits"
    )
    (completed,) = view.data(Topic.PROGRESS, "pair.completed", pair_id=pair_id)
    assert (completed["sessions_completed"], completed["minutes"]) == (2, 60)
    assert completed["mentee_learned"] == ["python"]
    assert completed["mentor_learned"] == ["leadership"]
    credits = {
        c["participant_id"]: c for c in view.data(Topic.PROGRESS, "credit.awarded", pair_id=pair_id)
    }
    assert {p: c["credits"] for p, c in credits.items()} == {"D-M1": 1.2, "D-E1": 1.2}
    assert credits["D-E1"]["credit_id"] == credit_id_for(pair_id, "D-E1")

    progress = await stack.get("progress", f"/pairs/{pair_id}/progress")
    assert progress["completed"] is True
    assert progress["mentee"]["goals"] == [
        {"tag": "python", "note": "automate reports", "matched": True}
    ]
    assert "very kind" not in str(progress)
    listed = await stack.get("progress", "/participants/D-E1/credits")
    assert (await stack.fetch("progress", listed[0]["certificate"])).status_code == 401
    pdf = await stack.fetch("progress", listed[0]["certificate"], oidc.token())
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")

    # The LRS was down all along: the statements wait in progress's queue...
    expected = {
        attended_statement_id(s["session_id"], who) for s in sessions for who in ("D-M1", "D-E1")
    }
    expected |= {completed_statement_id(c["credit_id"]) for c in credits.values()}
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        waiting = {
            r["statement_id"]
            for r in await conn.fetch("SELECT statement_id FROM progress.statements")
        }
        assert expected <= waiting
        # ...until it is back: then each arrives, once.
        await lrs.start()
        await eventually(
            lambda: conn.fetchval("SELECT count(*) FROM progress.statements"),
            lambda n: n == 0,
            timeout=120,
            what="every statement sent",
        )
    finally:
        await conn.close()
    held = await lrs.statements()
    ids = [s["id"] for s in held]
    assert len(ids) == len(set(ids))
    assert expected <= set(ids)
    assert all(s["actor"]["account"]["homePage"] == PORTAL for s in held)


async def test_a_pair_that_is_not_a_fit_is_rematched_with_someone_else_without_naming_anyone(
    stack: Stack, view: View
) -> None:
    programme_id = "PG-FIT"
    pair, sessions = await paired(stack, view, programme_id, 3, "F-E1", "F-M1", "F-M2")
    first_mentor = pair["mentor_id"]
    await hold_sessions(stack, view, sessions[:1])
    await stack.send(
        feedback(sessions[0], first_mentor, rating=2, fit="not_a_fit", comment="we do not click")
    )
    await view.until(
        lambda: bool(view.data(Topic.PROGRESS, "pair.rematch_requested", pair_id=pair["pair_id"])),
        "pair.rematch_requested",
    )
    (request,) = view.data(Topic.PROGRESS, "pair.rematch_requested", pair_id=pair["pair_id"])
    assert request == {
        "pair_id": pair["pair_id"],
        "programme_id": programme_id,
        "mentor_id": first_mentor,
        "mentee_id": "F-E1",
        "reason": "not_a_fit",
    }
    # Matching ends the pair and pairs the mentee with the other mentor (never the same two).
    await view.until(
        lambda: len(view.data(Topic.PAIRS, "pair.confirmed", mentee_id="F-E1")) == 2,
        "a new pair for F-E1",
    )
    (ended,) = view.data(Topic.PAIRS, "pair.ended", pair_id=pair["pair_id"])
    assert (ended["reason"], ended["withdrawn_by"]) == ("not_a_fit", None)
    again = view.data(Topic.PAIRS, "pair.confirmed", mentee_id="F-E1")[1]
    assert again["mentor_id"] == ({"F-M1", "F-M2"} - {first_mentor}).pop()
    # Scheduling cancels what was left of the first series.
    await view.until(
        lambda: len(view.data(Topic.SESSIONS, "session.cancelled", pair_id=pair["pair_id"])) == 2,
        "the rest of the first series cancelled",
    )
    await stack.barrier(["progress"])
    progress = await stack.get("progress", f"/pairs/{pair['pair_id']}/progress")
    assert (progress["status"], progress["rematch_requested"]) == ("ended", "not_a_fit")
    assert "we do not click" not in str(progress)


async def test_erasure_removes_the_persons_comments_goal_notes_and_feedback_text(
    stack: Stack, view: View
) -> None:
    programme_id = "PG-ERASE"
    pair, sessions = await paired(stack, view, programme_id, 2, "X-E1", "X-M1")
    await hold_sessions(stack, view, sessions[:1])
    await stack.send(
        PairGoalsSet(
            pair_id=pair["pair_id"],
            participant_id="X-E1",
            goals=[{"tag": "python", "note": "zq-goal-note"}],
        ),
        feedback(sessions[0], "X-E1", learned=["python"], rating=4, comment="zq-private-comment"),
    )
    await stack.barrier(["progress"])

    async def hits() -> list[str]:
        conn = await asyncpg.connect(stack.admin_dsn)
        try:
            columns = await conn.fetch(
                """SELECT table_name, column_name FROM information_schema.columns
                   WHERE table_schema = 'progress' AND data_type <> 'bytea'"""
            )
            found = []
            for c in columns:
                for needle in ("zq-", "Zebulon"):
                    table, column = c["table_name"], c["column_name"]
                    n = await conn.fetchval(
                        f'SELECT count(*) FROM progress."{table}" WHERE "{column}"::text LIKE $1',
                        f"%{needle}%",
                    )
                    if n:
                        found.append(f"{c['table_name']}.{c['column_name']} holds {needle}")
            return found
        finally:
            await conn.close()

    assert len(await hits()) >= 3  # the search finds the goal note, the comment and the name
    await stack.send(
        ParticipantWithdrawn(participant_id="X-E1", programme_id=programme_id, erase=True)
    )
    await stack.barrier(["progress"])
    assert await hits() == []


async def test_the_demo_plays_the_weeks_and_the_report_shows_pair_health(
    stack: Stack, view: View, oidc: TestProvider
) -> None:
    programme_id = "PG-DEMO"
    cohort = generate_cohort(40, seed=41, programme_id=programme_id)
    for p in cohort:
        p["participant_id"] = f"DM-{p['participant_id']}"
        p["manager_id"] = f"DM-{p['manager_id']}" if p["manager_id"] else None
    await stack.send(
        programme(programme_id, sessions=6),
        *(ParticipantEnrolled.model_validate(p) for p in cohort),
    )

    def booked() -> bool:
        pairs = {
            c["pair_id"]
            for c in view.data(Topic.PAIRS, "pair.confirmed", programme_id=programme_id)
        }
        failed = {f["pair_id"] for f in view.data(Topic.SESSIONS, "session.booking_failed")}
        return len(pairs) >= 10 and all(
            p in failed or len(view.data(Topic.SESSIONS, "session.scheduled", pair_id=p)) == 6
            for p in pairs
        )

    await view.until(booked, "the demo programme booked", timeout=180)
    tally = await play_progress(stack.kafka, stack.prefix, programme_id, cohort, seed=41)
    assert tally.rematch["not_a_fit"] == 1
    assert tally.repaired >= 1, "the coordinator's new round offers the two someone else"
    assert tally.events["pair.completed"] >= 3
    assert len(tally.credits) == 2 * tally.events["pair.completed"]
    token = await asyncio.to_thread(oidc.token)
    health = await asyncio.to_thread(programme_health, stack.ports["progress"], programme_id, token)
    assert health["pairs"]["at_risk"] >= 1
    assert health["sessions"]["missed"] >= 2
    assert health["feedback"]["mentee"]["withheld"] is False
    console = Console(record=True, width=120)
    console.print(health_section(health, tally))
    shown = console.export_text()
    assert "Pair health, PG-DEMO" in shown
    assert "1 not_a_fit" in shown
