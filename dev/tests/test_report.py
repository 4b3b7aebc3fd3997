"""The programme manager's report from plain data: roles, weak pairs, dates, CSV."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from twoway_dev.demo import report
from twoway_dev.demo.report import (
    ReportData,
    Section,
    Tally,
    build,
    last_session_week,
    print_report,
    weak_flags,
    write_csv,
)
from twoway_shared.contract import ProgrammeConfigured


def proposal(
    pair: str, score: float, mentee_learns: list[str], mentor_learns: list[str], overlap: int
) -> dict[str, Any]:
    return {
        "pair_id": pair,
        "mentor_id": f"M-{pair}",
        "mentee_id": f"E-{pair}",
        "score": score,
        "reasons": {
            "mentee_learns": mentee_learns,
            "mentor_learns": mentor_learns,
            "languages": ["en"],
            "weekly_overlap_minutes": overlap,
        },
    }


def sample(tmp_path: Path, **programme: Any) -> ReportData:
    tally = Tally()
    for p in (
        proposal("p1", 0.8, ["tiktok"], ["strategy"], 240),
        proposal("p2", 0.3, [], ["strategy"], 240),
        proposal("p3", 0.25, ["ai"], ["finance"], 30),
    ):
        tally.add({"type": "twoway.pair.proposed.v1", "data": p})
        tally.add({"type": "twoway.pair.confirmed.v1", "data": {"pair_id": p["pair_id"]}})
    unmatched = [
        {
            "participant_id": "E1",
            "role": "mentee",
            "reason": "no eligible partner",
            "blocking_rules": {"no time overlap": 40, "no common language": 3},
        },
        {
            "participant_id": "M1",
            "role": "mentor",
            "reason": "eligible partners all taken",
            "blocking_rules": {},
        },
        {
            "participant_id": "M2",
            "role": "mentor",
            "reason": "eligible partners all taken",
            "blocking_rules": {},
        },
    ]
    cohort = [{"participant_id": f"E{i}", "role": "mentee"} for i in range(4)] + [
        {"participant_id": f"M{i}", "role": "mentor"} for i in range(5)
    ]
    config = ProgrammeConfigured.model_validate(
        {"programme_id": "RM-1", "starts_on": "2027-01-04", "sessions": 6, **programme}
    )
    return ReportData(config, cohort, tally, {"unmatched": unmatched}, tmp_path)


def lines_of(sections: list[Section], name: str) -> list[tuple[str, str]]:
    return next(s.lines for s in sections if s.name == name)


def test_weak_flags_name_each_weakness() -> None:
    assert weak_flags(proposal("a", 0.9, ["x"], ["y"], 60), 30) == []
    assert weak_flags(proposal("a", 0.1, [], [], 59), 30) == [
        "mentee learns nothing asked for",
        "mentor learns nothing asked for",
        "weekly overlap below 2 sessions",
    ]


def test_programme_dates_and_cadence() -> None:
    weekly = ProgrammeConfigured.model_validate(
        {"programme_id": "P", "starts_on": "2027-01-04", "sessions": 6}
    )
    fortnightly = weekly.model_copy(update={"cadence": "fortnightly"})
    assert last_session_week(weekly) == date(2027, 2, 8)
    assert last_session_week(fortnightly) == date(2027, 3, 15)


def test_unmatched_are_split_by_role_and_reason(tmp_path: Path) -> None:
    lines = lines_of(build(sample(tmp_path)), "unmatched")

    assert lines == [
        ("mentees without a partner", "1"),
        ("", "1 x no eligible partner (mostly: no time overlap)"),
        ("mentors unused", "2"),
        ("", "2 x eligible partners all taken (spare mentor)"),
    ]


def test_weak_pairs_and_minimum_score_are_shown(tmp_path: Path) -> None:
    sections = build(sample(tmp_path, matching={"min_score": 0.2}))
    pairs = dict(lines_of(sections, "pairs"))
    programme = dict(lines_of(sections, "programme"))

    assert pairs["weak pairs"] == "2 of 3"
    assert pairs["pair score"] == "average 0.450, lowest 0.250, highest 0.800"
    assert programme["minimum pair score"] == "0.20 (weaker pairs are not formed)"
    assert programme["dates"] == "2027-01-04 to the week of 2027-02-08"
    assert programme["cadence"] == "weekly, 6 sessions of 30 min"


def test_csv_has_every_table_and_every_row(tmp_path: Path) -> None:
    data = sample(tmp_path)
    written = write_csv(data, tmp_path / "csv")

    names = {path.stem for path in written}
    assert names == {
        "programme",
        "people",
        "unmatched",
        "unmatched_mentees",
        "unmatched_people",
        "pairs",
        "all_pairs",
        "weak_pairs",
        "sessions",
        "booking_failures",
        "emails",
        "links",
    }
    with (tmp_path / "csv" / "weak_pairs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["mentee"] for r in rows] == ["E-p3", "E-p2"]  # weakest first
    with (tmp_path / "csv" / "unmatched.csv").open() as handle:
        reasons = [(r["item"], r["value"]) for r in csv.DictReader(handle)]
    # A continuation line keeps the label it belongs to.
    assert ("mentors unused", "2 x eligible partners all taken (spare mentor)") in reasons


def test_a_new_section_is_one_more_function(tmp_path: Path, monkeypatch: Any) -> None:
    def health(data: ReportData) -> Section:
        return Section("health", "Health", [("pairs at risk", "0")])

    monkeypatch.setattr(report, "SECTIONS", [*report.SECTIONS, health])
    out = Console(record=True, width=120)
    print_report(sample(tmp_path), out)

    assert "pairs at risk" in out.export_text()
    assert (tmp_path / "csv" / "health.csv") in write_csv(sample(tmp_path), tmp_path / "csv")
