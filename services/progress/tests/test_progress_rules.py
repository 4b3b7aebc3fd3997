"""The progress rules with plain data: health, fit check, timers, completion, credits, goals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from twoway_progress.domain import rules as r
from twoway_progress.domain.model import Feedback, Health, PairState, Role, Rules, SessionState
from twoway_progress.domain.report import FeedbackRow, PairHealthRow, programme_health
from twoway_progress.domain.xapi import (
    Attended,
    CompletedCredit,
    attended_statement_id,
    iso_duration,
    statement,
)

T0 = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
RULES = Rules(fit_check=True, inactive_warning_days=21, inactive_close_days=42, credit_minutes=50)


def session(seq: int, status: str = "scheduled", minutes: int = 0) -> SessionState:
    starts = T0 + (seq - 1) * WEEK
    return SessionState(
        session_id=f"S{seq}",
        sequence=seq,
        status=status,  # type: ignore[arg-type]
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
        minutes=minutes if status == "completed" else 0,
    )


def feedback(seq: int, who: str = "E", rating: int = 4, **more: Any) -> Feedback:
    role: Role = "mentee" if who == "E" else "mentor"
    return Feedback(f"S{seq}", who, role, seq, rating, **more)


def pair(*sessions: SessionState, fb: tuple[Feedback, ...] = (), **more: Any) -> PairState:
    return PairState("P", "M", "E", sessions=sessions, feedback=fb, **more)


# ---------------------------------------------------------------- health


def test_a_new_pair_is_on_track_with_no_reasons() -> None:
    assert r.assess(pair(session(1)), RULES, T0) == Health("on_track", ())


def test_two_missed_in_a_row_put_the_pair_at_risk_and_a_completion_clears_it() -> None:
    missed = pair(session(1, "completed", 30), session(2, "missed"), session(3, "missed"))
    assert r.assess(missed, RULES, T0 + 2 * WEEK) == Health("at_risk", ("missed_in_a_row",))
    recovered = pair(session(1, "missed"), session(2, "missed"), session(3, "completed", 30))
    assert r.assess(recovered, RULES, T0 + 2 * WEEK).health == "on_track"


def test_one_miss_is_not_a_risk() -> None:
    assert r.assess(pair(session(1, "completed", 30), session(2, "missed")), RULES, T0).health == (
        "on_track"
    )


def test_low_rating_averages_the_last_three_feedbacks_of_either_person() -> None:
    sessions = tuple(session(i, "completed", 30) for i in range(1, 5))
    # The mentor's last three: 2, 2, 1 -> 1.67 (the early 5 no longer counts).
    fb = (feedback(1, "M", 5), feedback(2, "M", 2), feedback(3, "M", 2), feedback(4, "M", 1))
    assert r.assess(pair(*sessions, fb=fb), RULES, T0).reasons == ("low_rating",)
    fair = (feedback(1, "M", 2), feedback(2, "M", 3), feedback(3, "M", 2))  # 2.33
    assert r.assess(pair(*sessions, fb=fair), RULES, T0).health == "on_track"


def test_fit_unsure_is_a_risk_until_that_person_answers_good() -> None:
    unsure = (feedback(1, "E", fit="unsure"),)
    assert r.assess(pair(session(1, "completed", 30), fb=unsure), RULES, T0).reasons == (
        "fit_unsure",
    )
    later_good = (feedback(1, "E", fit="unsure"), feedback(2, "E", fit="good"))
    two = pair(session(1, "completed", 30), session(2, "completed", 30), fb=later_good)
    assert r.assess(two, RULES, T0).health == "on_track"


def test_inactive_after_warning_days_without_a_completed_session() -> None:
    p = pair(session(1, "completed", 30), session(2, "missed"))
    last_end = T0 + timedelta(minutes=30)
    assert r.assess(p, RULES, last_end + timedelta(days=20)).health == "on_track"
    inactive = r.assess(p, RULES, last_end + timedelta(days=21))
    assert inactive == Health("inactive", ("no_recent_session",))


def test_inactivity_counts_from_the_first_session_when_none_completed() -> None:
    p = pair(session(1, "missed"), session(2))
    assert r.warning_at(p, RULES) == T0 + timedelta(days=21)
    assert r.close_at(p, RULES) == T0 + timedelta(days=42)


def test_inactive_outranks_at_risk_and_keeps_every_reason() -> None:
    p = pair(session(1, "missed"), session(2, "missed"), fb=(feedback(1, "E", 1, fit="unsure"),))
    found = r.assess(p, RULES, T0 + timedelta(days=30))
    assert found.health == "inactive"
    assert found.reasons == ("missed_in_a_row", "low_rating", "fit_unsure", "no_recent_session")


def test_zero_warning_days_means_never_inactive() -> None:
    never = Rules(inactive_warning_days=0, inactive_close_days=0)
    p = pair(session(1, "missed"))
    assert r.assess(p, never, T0 + timedelta(days=400)).health == "on_track"
    assert r.next_check(p, never, T0) is None


def test_timers_point_at_the_warning_then_the_close_then_nothing() -> None:
    p = pair(session(1, "completed", 30))
    end = T0 + timedelta(minutes=30)
    assert r.next_check(p, RULES, T0) == end + timedelta(days=21)
    assert r.next_check(p, RULES, end + timedelta(days=21)) == end + timedelta(days=42)
    assert r.next_check(p, RULES, end + timedelta(days=42)) is None
    assert not r.due_for_close(p, RULES, end + timedelta(days=41))
    assert r.due_for_close(p, RULES, end + timedelta(days=42))
    assert r.next_check(pair(), RULES, T0) is None  # no session yet: nothing to wait for


# ---------------------------------------------------------------- fit check


@pytest.mark.parametrize(("sequence", "expected"), [(1, True), (2, True), (3, False)])
def test_not_a_fit_about_the_first_or_second_session_asks_for_a_rematch(
    sequence: int, expected: bool
) -> None:
    p = pair(
        *(session(i, "completed", 30) for i in range(1, 4)),
        fb=(feedback(sequence, "M", fit="not_a_fit"),),
    )
    assert r.not_a_fit(p, RULES) is expected


def test_no_fit_check_when_the_programme_turned_it_off() -> None:
    p = pair(session(1, "completed", 30), fb=(feedback(1, "M", fit="not_a_fit"),))
    assert not r.not_a_fit(p, Rules(fit_check=False))


# ---------------------------------------------------------------- completion and credits


def test_complete_when_every_session_has_an_outcome_and_cancelled_do_not_count() -> None:
    done = pair(session(1, "completed", 30), session(2, "cancelled"), session(3, "missed"), total=3)
    assert r.is_complete(done)
    assert not r.is_complete(pair(session(1, "completed", 30), session(2), total=2))
    # Not every session of the series was seen yet.
    assert not r.is_complete(pair(session(1, "completed", 30), total=2))
    assert not r.is_complete(pair(session(1, "cancelled"), total=1))


def test_a_series_cut_short_by_booking_failed_counts_its_booked_sessions() -> None:
    assert r.is_complete(
        pair(session(1, "completed", 30), session(2, "completed", 30), total=12, booked=2)
    )


@pytest.mark.parametrize(
    ("minutes", "credit_minutes", "credits"),
    [
        (0, 50, 0.0),
        (30, 50, 0.6),
        (49, 50, 0.8),
        (50, 50, 1.0),
        (360, 50, 7.2),
        (45, 60, 0.6),
        (100, 15, 6.6),
    ],
)
def test_credits_are_whole_fifths(minutes: int, credit_minutes: int, credits: float) -> None:
    assert r.credits_for(minutes, credit_minutes) == pytest.approx(credits)
    assert (r.credits_for(minutes, credit_minutes) * 5) % 1 == pytest.approx(0)


def test_completion_counts_minutes_and_what_each_side_learned_most_frequent_first() -> None:
    sessions = (session(1, "completed", 30), session(2, "missed"), session(3, "completed", 45))
    fb = (
        feedback(1, "E", learned=("prompting", "tiktok")),
        feedback(3, "E", learned=("tiktok",)),
        feedback(1, "M", learned=("strategy",)),
        feedback(3, "M", learned=("budgeting", "strategy")),
    )
    found = r.completion(pair(*sessions, fb=fb, total=3), RULES)
    assert (found.sessions_completed, found.sessions_missed, found.minutes) == (2, 1, 75)
    assert found.mentee_learned == ["tiktok", "prompting"]
    assert found.mentor_learned == ["strategy", "budgeting"]
    assert found.credits == {"mentor": 1.4, "mentee": 1.4}


def test_no_credits_without_a_completed_session() -> None:
    assert r.completion(pair(session(1, "missed"), total=1), RULES).credits == {}


def test_goals_are_matched_by_that_persons_learned_tags() -> None:
    found = r.goal_progress([("prompting", "for my team"), ("tiktok", None)], ["prompting"])
    assert [(g.tag, g.matched) for g in found] == [("prompting", True), ("tiktok", False)]


# ---------------------------------------------------------------- programme health


def test_feedback_aggregates_need_three_people() -> None:
    pairs = [PairHealthRow("P1", "active", "at_risk", ("low_rating",), False, None)]
    two = [FeedbackRow("E1", "mentee", 5, ("ai",)), FeedbackRow("E2", "mentee", 1, ("ai",))]
    shown = programme_health("RM", pairs, {"completed": 3}, two)
    assert shown["feedback"]["mentee"] == {
        "people": None,
        "average_rating": None,
        "top_learned": [],
        "withheld": True,
    }
    assert shown["attention"] == [{"pair_id": "P1", "health": "at_risk", "reasons": ["low_rating"]}]
    three = [
        *two,
        FeedbackRow("E3", "mentee", 3, ("ai", "tiktok")),
        FeedbackRow("E3", "mentee", 3, ()),
    ]
    mentee = programme_health("RM", pairs, {}, three)["feedback"]["mentee"]
    assert mentee["people"] == 3
    assert mentee["average_rating"] == 3.0
    # "tiktok" was reported by one person only: not shown.
    assert mentee["top_learned"] == [{"tag": "ai", "people": 3}]


# ---------------------------------------------------------------- xAPI


def test_statements_name_the_actor_by_account_only_and_have_stable_ids() -> None:
    fact = Attended("E1", "S1", "P1", "RM", 1, 90, T0)
    body = statement(fact, "https://portal.example/")
    assert body["id"] == attended_statement_id("S1", "E1") == fact.statement_id
    assert body["actor"] == {
        "objectType": "Agent",
        "account": {"homePage": "https://portal.example", "name": "E1"},
    }
    assert body["verb"]["id"] == "http://adlnet.gov/expapi/verbs/attended"
    assert body["result"] == {"duration": "PT1H30M"}
    assert body["timestamp"] == "2027-03-01T10:00:00Z"
    credit = statement(CompletedCredit("C1", "E1", "P1", "RM", 75, 1.4, T0), "https://p")
    assert credit["verb"]["id"] == "http://adlnet.gov/expapi/verbs/completed"
    assert 1.4 in credit["result"]["extensions"].values()
    assert statement(fact, "https://portal.example/") == body  # same fact, same statement


@pytest.mark.parametrize(
    ("minutes", "text"), [(0, "PT0M"), (30, "PT30M"), (60, "PT1H"), (135, "PT2H15M")]
)
def test_iso_durations(minutes: int, text: str) -> None:
    assert iso_duration(minutes) == text
