"""Learning records reach a real LRS (Ralph): an outage loses nothing, blocks nothing, and a
resend duplicates nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from progress_support import MENTEE, MENTOR, PAIR, Facts, progress
from twoway_dev.testing.kafka import eventually
from twoway_dev.testing.lrs import PASSWORD, USER, RalphLrs, ralph_installed
from twoway_dev.testing.service import Sandbox, ServiceHarness
from twoway_progress.domain.xapi import attended_statement_id, completed_statement_id
from twoway_progress.handlers import credit_id_for

pytestmark = [
    pytest.mark.infra,
    pytest.mark.skipif(not ralph_installed(), reason="Ralph is not installed: run `make lrs`"),
]
PORTAL = "https://portal.example.com"


@pytest.fixture
async def lrs(tmp_path: Path) -> AsyncIterator[RalphLrs]:
    found = RalphLrs(tmp_path / "ralph")
    try:
        yield found
    finally:
        await found.stop()


@pytest.fixture
async def h(sandbox: Sandbox, lrs: RalphLrs) -> AsyncIterator[ServiceHarness]:
    async with progress(
        sandbox,
        xapi_endpoint=lrs.endpoint,
        xapi_username=USER,
        xapi_password=PASSWORD,
        portal_url=PORTAL,
    ) as found:
        yield found


@pytest.fixture
def facts(h: ServiceHarness) -> Facts:
    return Facts(h)


async def pending(h: ServiceHarness) -> list[tuple[str, int]]:
    rows = await h.pool.fetch("SELECT statement_id, attempts FROM progress.statements")
    return [(r["statement_id"], r["attempts"]) for r in rows]


def lrs_sends(h: ServiceHarness, outcome: str) -> float:
    """LRS sends with this outcome, as /metrics reports them."""
    assert h.runtime is not None
    value = h.runtime.metrics.registry.get_sample_value(
        "twoway_deliveries_total", {"target": "lrs", "outcome": outcome}
    )
    return value or 0.0


async def test_an_lrs_outage_loses_nothing_blocks_nothing_and_duplicates_nothing(
    h: ServiceHarness, lrs: RalphLrs, facts: Facts
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    expected = {
        attended_statement_id(f"{PAIR}-S{i}", person) for i in (1, 2) for person in (MENTOR, MENTEE)
    } | {completed_statement_id(credit_id_for(PAIR, p)) for p in (MENTOR, MENTEE)}

    # The LRS is down from the start.
    async with h.running():
        await h.send(
            facts.programme(sessions=2),
            facts.profile(MENTOR, "mentor"),
            facts.profile(MENTEE, "mentee"),
        )
        await h.barrier()
        await h.send(
            facts.confirmed(),
            facts.scheduled(1, start, 2),
            facts.scheduled(2, start + timedelta(days=1), 2),
        )
        await h.send(facts.completed(1), facts.completed(2))
        # Consumption goes on: the pair completes while no statement can be sent.
        await h.wait("pair.completed", 1)
        await h.wait("credit.awarded", 2)
        tried = await eventually(
            lambda: pending(h),
            lambda rows: len(rows) == 6 and all(attempts >= 2 for _, attempts in rows),
            what="every statement tried and failed at least twice",
        )
        assert {statement_id for statement_id, _ in tried} == expected
        assert lrs_sends(h, "temporary") >= 12  # counted for the TwowayLrsFailures alert
        assert lrs_sends(h, "sent") == 0

    # Still down across a restart: the queue is in the database.
    async with h.running():
        assert len(await pending(h)) == 6
        await lrs.start()
        await eventually(
            lambda: pending(h), lambda rows: rows == [], timeout=60, what="queue empty"
        )
        held = await lrs.statements()
        assert sorted(s["id"] for s in held) == sorted(expected)
        assert lrs_sends(h, "sent") == 6
        for s in held:
            assert set(s["actor"]) <= {"objectType", "account"}
            assert s["actor"]["account"]["homePage"] == PORTAL
            assert s["actor"]["account"]["name"] in (MENTOR, MENTEE)
        attended = [s for s in held if s["verb"]["id"].endswith("/attended")]
        assert len(attended) == 4
        assert {s["result"]["duration"] for s in attended} == {"PT30M"}
        completed = [s for s in held if s["verb"]["id"].endswith("/completed")]
        assert [list(s["result"]["extensions"].values()) for s in completed] == [[1.2], [1.2]]

        # A completion seen again (say, after a rewind) sends the same statements again:
        # the LRS keeps one of each.
        await h.send(facts.completed(2))
        await h.barrier()
        await eventually(lambda: pending(h), lambda rows: rows == [], what="resent")
        again = await lrs.statements()
        assert sorted(s["id"] for s in again) == sorted(expected)

    # The LRS does validate (so every statement above was valid): one without a verb is refused.
    async with httpx.AsyncClient(
        auth=(USER, PASSWORD), headers={"X-Experience-API-Version": "1.0.3"}
    ) as client:
        bad = dict(held[0], id="00000000-0000-4000-8000-000000000000")
        del bad["verb"]
        refused = await client.put(
            f"{lrs.endpoint}statements", params={"statementId": bad["id"]}, json=bad
        )
    assert refused.status_code in (400, 422)
