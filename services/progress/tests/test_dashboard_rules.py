"""The dashboard's pure parts with plain data: funnel, unmatched reasons, weeks, charts, CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from twoway_progress.charts import funnel_chart, weekly_chart
from twoway_progress.dashboard import Table, _csv
from twoway_progress.domain.dashboard import (
    PairFacts,
    Person,
    Proposal,
    funnel,
    unmatched,
    week_start,
    weeks,
)
from twoway_progress.domain.model import PairState, Rules, SessionState

NOW = datetime(2027, 3, 31, 12, tzinfo=UTC)


def session(n: int, days_ago: float, status: str = "completed") -> SessionState:
    start = NOW - timedelta(days=days_ago)
    return SessionState(f"S{n}", n, status, start, start + timedelta(minutes=30), 30)  # type: ignore[arg-type]


def pair(
    pair_id: str,
    mentor: str,
    mentee: str,
    sessions: tuple[SessionState, ...] = (),
    *,
    status: str = "active",
    ended_reason: str | None = None,
    completed: bool = False,
    rematch: str | None = None,
) -> PairFacts:
    return PairFacts(
        PairState(pair_id, mentor, mentee, sessions, total=len(sessions) or None),
        status,
        ended_reason,
        NOW if completed else None,
        rematch,
        "on_track",
        (),
    )


PEOPLE = [Person(f"J{i}", "mentor", f"J {i}", False) for i in range(1, 5)] + [
    Person(f"S{i}", "mentee", f"S {i}", False) for i in range(1, 5)
]


def test_the_funnel_counts_people_at_each_stage_they_reached() -> None:
    pairs = [
        pair("P1", "J1", "S1", (session(1, 20), session(2, 13)), completed=True),
        pair("P2", "J2", "S2", (session(1, 6, "missed"), session(2, -1, "scheduled"))),
    ]
    proposals = [Proposal("P3", "J3", "S3", 0.4, "declined")]
    assert funnel(PEOPLE, proposals, pairs) == [
        ("enrolled", 8),
        ("matched", 6),
        ("confirmed", 4),
        ("booked", 4),
        ("meeting", 2),
        ("completed", 2),
    ]


def test_unmatched_people_carry_what_progress_knows_of_why() -> None:
    people = [*PEOPLE, Person("S9", "mentee", None, True), Person("X", None, None, True)]
    pairs = [
        pair("P1", "J1", "S1", completed=True),
        pair("P2", "J2", "S2", status="ended", ended_reason="not_a_fit", rematch="not_a_fit"),
    ]
    proposals = [Proposal("P3", "J3", "S3", None, "expired"), Proposal("P4", "J4", "S4", 0.9, None)]
    found = {p.participant_id: why for p, why in unmatched(people, proposals, pairs)}
    assert set(found) == {"J2", "S2", "J3", "S3"}  # not the finished, proposed or withdrawn
    assert "not a fit" in found["J2"]
    assert "expired" in found["S3"]


def test_someone_never_proposed_is_told_so() -> None:
    ((person, why),) = unmatched([Person("S1", "mentee", None, False)], [], [])
    assert person.participant_id == "S1"
    assert why.startswith("not proposed")


def test_weeks_start_on_the_viewers_monday() -> None:
    sunday_night_utc = datetime(2027, 3, 28, 23, 30, tzinfo=UTC)  # Monday 00:30 in Berlin
    assert week_start(sunday_night_utc, ZoneInfo("UTC")).isoformat() == "2027-03-22"
    assert week_start(sunday_night_utc, ZoneInfo("Europe/Berlin")).isoformat() == "2027-03-29"


def test_health_per_week_replays_the_rules_on_what_was_known_then() -> None:
    # Completed four weeks ago, then nothing: on track at first, inactive once 21 days passed.
    quiet = pair("P1", "J1", "S1", (session(1, 28), session(2, 21, "scheduled")))
    missing = pair("P2", "J2", "S2", (session(1, 9, "missed"), session(2, 2, "missed")))
    found = weeks([quiet, missing], Rules(), NOW, ZoneInfo("UTC"))
    assert [w.label for w in found] == ["2027-03-01", "2027-03-08", "2027-03-15", "2027-03-22",
                                        "2027-03-29"]  # fmt: skip
    assert [w.health["inactive"] for w in found] == [0, 0, 0, 1, 1]
    assert [w.health["at_risk"] for w in found] == [0, 0, 0, 0, 1]  # the second miss: this week
    assert [(w.completed, w.missed) for w in found] == [(1, 0), (0, 0), (0, 0), (0, 1), (0, 1)]


def test_charts_are_svg_with_a_title_and_a_bar_per_value() -> None:
    svg = funnel_chart([("enrolled", 4), ("matched", 2)], "Funnel <people>")
    assert svg.startswith("<svg")
    assert 'role="img"' in svg
    assert "Funnel &lt;people&gt;" in svg
    assert svg.count("<rect") == 2
    bars = weekly_chart(
        "c", "t", ["2027-03-01"], [("completed", [3]), ("missed", [1])], stacked=True
    )
    assert bars.count("<rect") == 2 + 2  # two bars and two legend keys


def test_csv_has_the_tables_headers_and_cells() -> None:
    text = _csv(Table("t", "T", ("stage", "people"), [("enrolled", 3), ("a, b", 1)]))
    assert text == 'stage,people\r\nenrolled,3\r\n"a, b",1\r\n'
