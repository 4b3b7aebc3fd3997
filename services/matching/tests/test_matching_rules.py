"""Each eligibility rule, the score, and the weekly overlap on real dates (DST, odd offsets)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from matching_support import participant
from twoway_matching.domain.availability import first_week_intervals
from twoway_matching.domain.model import MatchingRules, Participant, RoundInput
from twoway_matching.domain.rules import BELOW_MIN_SCORE, evaluate, reasons
from twoway_matching.domain.solver import run_round
from twoway_shared.wallclock import Window

MON, TUE, WED = 0, 1, 2


def hm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def window(day: int, start: str, end: str) -> Window:
    return Window(day, hm(start), hm(end))


MENTOR = participant(
    "m1",
    "mentor",
    availability=(window(MON, "13:00", "15:00"),),
    offers=frozenset({"generative-ai", "social-media"}),
    wants=frozenset({"strategy", "finance"}),
)
MENTEE = participant(
    "e1",
    "mentee",
    languages=frozenset({"en", "fr"}),
    availability=(window(MON, "14:00", "16:00"),),
    offers=frozenset({"strategy"}),
    wants=frozenset({"generative-ai", "cloud"}),
)
RULES = MatchingRules(starts_on=date(2027, 1, 4), session_minutes=30)


def why_not(
    mentor: Participant = MENTOR, mentee: Participant = MENTEE, **rules: object
) -> str | None:
    return evaluate(mentor, mentee, replace(RULES, **rules))[0]  # type: ignore[arg-type]


def test_eligible_pair() -> None:
    assert why_not() is None


def test_grade_gap() -> None:
    assert why_not(mentee=replace(MENTEE, grade=4), min_grade_gap=1) is None
    assert why_not(mentee=replace(MENTEE, grade=4), min_grade_gap=2) == "grade gap"
    assert why_not(mentee=replace(MENTEE, grade=3), min_grade_gap=0) is None


def test_neither_is_the_others_manager() -> None:
    assert why_not(mentee=replace(MENTEE, manager_id="m1")) == "manager"
    assert why_not(mentor=replace(MENTOR, manager_id="e1")) == "manager"


def test_cross_department_compares_trimmed_case_insensitive() -> None:
    same = replace(MENTEE, department="  it ")
    assert why_not(mentee=same) == "same department"
    assert why_not(mentee=same, cross_department=False) is None


def test_common_language_by_primary_subtag() -> None:
    assert why_not(mentee=replace(MENTEE, languages=frozenset({"de"}))) == "no common language"


def test_overlap_must_hold_one_whole_session() -> None:
    assert why_not(session_minutes=60) is None  # 14:00-15:00 together
    assert why_not(session_minutes=75) == "no time overlap"


def test_paired_before_is_never_repeated() -> None:
    assert evaluate(MENTOR, MENTEE, RULES, paired_before=True)[0] == "paired before"
    pool = RoundInput(RULES, (MENTOR,), (MENTEE,), frozenset({("m1", "e1")}))
    assert run_round(pool).proposals == []


def test_a_pair_scoring_below_min_score_is_not_eligible() -> None:
    _, units, _ = evaluate(MENTOR, MENTEE, RULES)
    score = units / 1_000_000  # 0.5375
    assert why_not(min_score=score) is None  # at least min_score: eligible
    assert why_not(min_score=score + 0.000001) == BELOW_MIN_SCORE
    assert why_not(min_score=1.0) == BELOW_MIN_SCORE
    # Another rule failing is named first: min_score is only the last word.
    assert why_not(min_score=1.0, session_minutes=75) == "no time overlap"


def test_min_score_leaves_weak_pairs_unmatched_and_says_why() -> None:
    strong = replace(MENTEE, participant_id="e-strong")
    weak = replace(MENTEE, participant_id="e-weak", wants=frozenset({"knitting"}))
    mentor = replace(MENTOR, capacity=2)
    rules = replace(RULES, min_score=0.3)
    result = run_round(RoundInput(rules, (mentor,), (strong, weak)))
    assert [(p.mentor_id, p.mentee_id) for p in result.proposals] == [("m1", "e-strong")]
    (left,) = [u for u in result.unmatched if u.participant_id == "e-weak"]
    assert left.reason == "no eligible partner"
    assert left.blocking_rules == {BELOW_MIN_SCORE: 1}
    # Without the setting the weak pair is formed (the mentor has room for two).
    assert len(run_round(RoundInput(RULES, (mentor,), (strong, weak))).proposals) == 2


def test_score_formula() -> None:
    _, units, overlap = evaluate(MENTOR, MENTEE, RULES)
    assert overlap == 60
    learn_e = 1 / 2  # wants generative-ai, cloud; mentor offers generative-ai
    learn_m = 1 / 2  # wants strategy, finance; mentee offers strategy
    time_fit = 60 / 120
    assert units == round((0.60 * learn_e + 0.25 * learn_m + 0.15 * time_fit) * 1_000_000)


def test_score_with_empty_wants_and_full_time() -> None:
    mentee = replace(MENTEE, wants=frozenset(), availability=(window(MON, "00:00", "24:00"),))
    mentor = replace(MENTOR, availability=(window(MON, "08:00", "18:00"),))
    _, units, overlap = evaluate(mentor, mentee, RULES)
    assert overlap == 600
    assert units == round((0.25 * 0.5 + 0.15 * 1.0) * 1_000_000)


def test_reasons_explain_the_pair() -> None:
    explained = reasons(MENTOR, MENTEE, 60)
    assert explained.mentee_learns == ("generative-ai",)
    assert explained.mentor_learns == ("strategy",)
    assert explained.languages == ("en",)
    assert explained.weekly_overlap_minutes == 60


def test_overlap_follows_dst_when_only_one_side_changed() -> None:
    """In the three weeks between the US and UK changes, New York is 4 h behind London."""
    london = replace(MENTOR, availability=(window(MON, "13:00", "14:00"),))
    new_york = replace(
        MENTEE, timezone="America/New_York", availability=(window(MON, "09:00", "10:00"),)
    )
    winter = MatchingRules(starts_on=date(2027, 1, 4))  # EST: 09:00 NY is 14:00 UTC
    between = MatchingRules(starts_on=date(2027, 3, 15))  # EDT but GMT: 09:00 NY is 13:00 UTC
    summer = MatchingRules(starts_on=date(2027, 4, 5))  # EDT and BST: 5 h apart again
    assert evaluate(london, new_york, winter)[2] == 0
    assert evaluate(london, new_york, between)[2] == 60
    assert evaluate(london, new_york, summer)[2] == 0
    autumn_gap = MatchingRules(starts_on=date(2027, 11, 1))  # GMT but still EDT until 7 Nov
    assert evaluate(london, new_york, autumn_gap)[2] == 60


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [("Asia/Kolkata", "18:30", "19:30"), ("Asia/Kathmandu", "18:45", "19:45")],
)
def test_half_and_quarter_hour_offsets(zone: str, start: str, end: str) -> None:
    berlin = replace(
        MENTOR, timezone="Europe/Berlin", availability=(window(MON, "14:00", "15:00"),)
    )
    asia = replace(MENTEE, timezone=zone, availability=(window(MON, start, end),))
    assert evaluate(berlin, asia, RULES)[2] == 60  # both are 13:00-14:00 UTC in January


def test_week_starts_on_the_programme_date_and_24_00_ends_the_day() -> None:
    # Starting on a Wednesday, the first week holds Wed..Tue; Monday's window is on 2027-01-11.
    intervals = first_week_intervals((window(MON, "22:00", "24:00"),), "UTC", date(2027, 1, 6))
    assert len(intervals) == 1
    start, end = intervals[0]
    assert end - start == 120
    assert start == (date(2027, 1, 11) - date(1970, 1, 1)).days * 1440 + 22 * 60


def test_spring_forward_window_has_its_real_length() -> None:
    # 00:00-03:00 on the night the UK skips 01:00-02:00 lasts two real hours.
    intervals = first_week_intervals(
        (window(6, "00:00", "03:00"),), "Europe/London", date(2027, 3, 22)
    )
    assert [end - start for start, end in intervals] == [120]


def test_capacity_lets_a_mentor_take_several_mentees() -> None:
    mentor = replace(MENTOR, capacity=2)
    mentees = tuple(replace(MENTEE, participant_id=f"e{k}") for k in range(3))
    pairs = run_round(RoundInput(RULES, (mentor,), mentees)).proposals
    assert len(pairs) == 2
    assert {p.mentor_id for p in pairs} == {"m1"}


def test_round_prefers_more_pairs_over_a_higher_score() -> None:
    # m1 fits both mentees (and is e1's best); m2 fits only e1. Two pairs beat one better pair.
    strong = replace(MENTOR, participant_id="m1", offers=frozenset({"generative-ai", "cloud"}))
    weak = replace(MENTOR, participant_id="m2", offers=frozenset())
    e1 = replace(MENTEE, participant_id="e1")
    e2 = replace(MENTEE, participant_id="e2", languages=frozenset({"en"}))
    weak = replace(weak, languages=frozenset({"fr"}))
    pairs = run_round(RoundInput(RULES, (strong, weak), (e1, e2))).proposals
    assert {(p.mentor_id, p.mentee_id) for p in pairs} == {("m2", "e1"), ("m1", "e2")}


def test_pair_ids_are_pinned() -> None:
    # Published ids never change across versions: consumers deduplicate on them.
    from twoway_matching.handlers import pair_id_for

    assert pair_id_for("RM", "M1", "E1") == "314becc9-00fd-55e1-8e7d-316e3d6a44f0"
