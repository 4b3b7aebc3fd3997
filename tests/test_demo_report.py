"""The demo's flow against the real services: the same seed gives the same programme."""

from __future__ import annotations

import asyncio
import csv
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from twoway_dev.demo.programme import Target, demo_programme, drive
from twoway_dev.demo.report import ReportData, Tally, build, print_report, write_csv
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.oidc import TestProvider
from twoway_dev.toolkit.generate import generate_cohort
from twoway_shared.contract.access import SERVICES

from tests.e2e_support import next_monday, running_stack

pytestmark = pytest.mark.infra

PEOPLE = 40
SEED = 11
STARTS_ON = next_monday(date.today()) + timedelta(days=7)
BAR = re.compile(r"^(enrolments consumed|pairs confirmed|sessions booked|booking emails sent) ")
COMPLETE = re.compile(r" (\d+)/\1 +\d+:\d\d:\d\d$")


def sample(metrics: str, name: str) -> float:
    """One sample's value from a /metrics text (0 when it is absent)."""
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(found.labels.items()))
            if (f"{found.name}{{{labels}}}" if labels else found.name) == name:
                return float(found.value)
    return 0.0


async def _one_run(
    infra: Infra, root: Path, oidc: TestProvider
) -> tuple[Tally, dict[str, Any], str]:
    programme = demo_programme("RM-SEED", starts_on=STARTS_ON)
    cohort = generate_cohort(PEOPLE, seed=SEED, programme_id=programme.programme_id)
    async with running_stack(infra, root, oidc=oidc) as stack:
        token = await asyncio.to_thread(oidc.token)
        target = Target(
            stack.kafka, prefix=stack.prefix, matching_url=stack.url("matching"), token=token
        )
        out = Console(record=True, width=120, force_terminal=False)
        tally, last_round = await drive(target, programme, cohort, timeout=240, out=out)
        metrics = {svc: await stack.get(svc, "/metrics") for svc in SERVICES}
    # The domain series on /metrics agree with the events the services published.
    assert sample(metrics["matching"], "twoway_matching_round_seconds_count") == 1
    assert sample(metrics["matching"], "twoway_matching_round_pairs_sum") == len(tally.pairs())
    unmatched = len(last_round["unmatched"])
    assert sample(metrics["matching"], "twoway_matching_round_unmatched_sum") == unmatched
    assert sample(metrics["scheduling"], "twoway_sessions_booked_total") == tally.sessions()
    for template, count in tally.sent.items():
        series = f'twoway_emails_sent_total{{template="{template}"}}'
        assert sample(metrics["notifications"], series) == count
    assert sample(metrics["notifications"], 'twoway_smtp_errors_total{kind="temporary"}') == 0
    data = ReportData(programme, cohort, tally, last_round, root)
    print_report(data, out)
    write_csv(data, root / "csv")
    return tally, last_round, out.export_text()


def _pairs(tally: Tally) -> set[tuple[str, str, float]]:
    proposals = [tally.proposed[pair] for pair in tally.pairs()]
    return {(p["mentor_id"], p["mentee_id"], p["score"]) for p in proposals}


async def test_same_seed_same_pairs_and_a_complete_report(
    infra: Infra, tmp_path: Path, oidc: TestProvider
) -> None:
    first, first_round, text = await _one_run(infra, tmp_path / "first", oidc)
    second, second_round, _ = await _one_run(infra, tmp_path / "second", oidc)

    assert first.settled()
    assert second.settled()
    assert _pairs(first) == _pairs(second)
    assert len(_pairs(first)) == first_round["pairs_proposed"] > 0
    unmatched = sorted((u["participant_id"], u["reason"]) for u in first_round["unmatched"])
    assert unmatched == sorted(
        (u["participant_id"], u["reason"]) for u in second_round["unmatched"]
    )
    # Everyone is either in a pair (a mentor may have several) or unmatched with a reason.
    paired = {person for mentor, mentee, _ in _pairs(first) for person in (mentor, mentee)}
    assert len(paired) + len(unmatched) == PEOPLE

    # Every bar ended complete (n/n), with its elapsed time.
    bars = [line for line in text.splitlines() if BAR.search(line)]
    assert [b.split()[0] for b in bars] == ["enrolments", "pairs", "sessions", "booking"]
    assert all(COMPLETE.search(bar) for bar in bars), bars
    assert f"{PEOPLE}/{PEOPLE}" in bars[0]
    # Every table of the report went to CSV.
    data = ReportData(
        demo_programme("RM-SEED", starts_on=STARTS_ON), [], first, first_round, tmp_path
    )
    for section in build(data):
        assert (tmp_path / "first" / "csv" / f"{section.name}.csv").is_file()
        for detail in section.details:
            assert (tmp_path / "first" / "csv" / f"{detail.name}.csv").is_file()
    with (tmp_path / "first" / "csv" / "all_pairs.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(_pairs(first))
