"""The synthetic cohort: valid under the contract, deterministic, varied, mostly matchable."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from twoway_dev.toolkit.generate import DIGITAL_SKILLS, LEADERSHIP_SKILLS, generate_cohort
from twoway_shared.contract import WEEKDAYS, ParticipantEnrolled, primary_subtag

COHORT = generate_cohort()


def test_every_profile_is_valid_enrolment_data_as_written() -> None:
    for profile in COHORT:
        assert ParticipantEnrolled.model_validate(profile).model_dump(mode="json") == profile


def test_the_same_seed_gives_the_same_cohort_and_another_seed_another() -> None:
    assert generate_cohort(seed=2027) == COHORT
    assert generate_cohort(seed=2028) != COHORT
    assert generate_cohort(5, programme_id="RM-X")[0]["programme_id"] == "RM-X"
    assert generate_cohort(0) == []


def test_ids_and_emails_are_unique() -> None:
    assert len({p["participant_id"] for p in COHORT}) == len(COHORT) == 300
    assert len({p["email"] for p in COHORT}) == 300
    assert all(p["email"].endswith("@example.com") for p in COHORT)


def test_junior_mentors_and_senior_mentees_roughly_one_to_one() -> None:
    mentors = [p for p in COHORT if p["role"] == "mentor"]
    mentees = [p for p in COHORT if p["role"] == "mentee"]

    assert abs(len(mentors) - len(mentees)) <= 1
    assert all(3 <= p["grade"] <= 12 for p in mentors)
    assert all(18 <= p["grade"] <= 28 for p in mentees)
    assert any(p["capacity"] in (2, 3) for p in mentors)
    assert all(p["capacity"] == 1 for p in mentees)


def test_mentors_teach_digital_skills_and_learn_leadership() -> None:
    for person in COHORT:
        digital, leadership = set(DIGITAL_SKILLS), set(LEADERSHIP_SKILLS)
        teaches, learns = (
            (digital, leadership) if person["role"] == "mentor" else (leadership, digital)
        )
        assert set(person["offers"]) <= teaches
        assert set(person["wants"]) <= learns
    assert len(DIGITAL_SKILLS) >= 35
    assert {"generative-ai", "tiktok", "linkedin-branding", "python"} <= set(DIGITAL_SKILLS)


def test_the_cohort_spans_time_zones_continents_departments_and_languages() -> None:
    zones = {p["timezone"] for p in COHORT}
    continents = {zone.split("/")[0] for zone in zones}
    languages = {primary_subtag(lang) for p in COHORT for lang in p["languages"]}

    assert len(zones) >= 5
    assert len(continents) >= 3
    assert len({p["department"] for p in COHORT}) >= 8
    assert {"en", "fr", "de"} <= languages
    assert sum(p["languages"] == ["en"] for p in COHORT) > len(COHORT) / 2
    assert sum(p["locale"] == "en" for p in COHORT) > len(COHORT) / 2


def test_managers_are_more_senior_members_of_the_cohort() -> None:
    by_id = {p["participant_id"]: p for p in COHORT}
    managed = [p for p in COHORT if p["manager_id"] is not None]

    assert len(COHORT) / 10 < len(managed) < len(COHORT) / 2
    for person in managed:
        assert by_id[person["manager_id"]]["grade"] > person["grade"]


def test_availability_is_two_to_four_business_hour_windows() -> None:
    usual = [p for p in COHORT if len(p["availability"]) > 1]

    assert len(usual) >= len(COHORT) - 5
    for person in usual:
        assert 2 <= len(person["availability"]) <= 4
        for window in person["availability"]:
            assert window["day"] in WEEKDAYS[:5]
            assert "08:00" <= window["start"] < window["end"] <= "18:00"


def _utc_windows(person: dict[str, Any], week: date) -> list[tuple[datetime, datetime]]:
    zone = ZoneInfo(person["timezone"])
    windows = []
    for offset in range(7):
        day = week + timedelta(days=offset)
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        for w in person["availability"]:
            if WEEKDAYS.index(w["day"]) == day.weekday():
                start = [int(part) for part in w["start"].split(":")]
                end = [int(part) for part in w["end"].split(":")]
                windows.append(
                    (
                        midnight + timedelta(hours=start[0], minutes=start[1]),
                        midnight + timedelta(hours=end[0], minutes=end[1]),
                    )
                )
    return windows


def _eligible(mentor: dict[str, Any], mentee: dict[str, Any]) -> bool:
    """BEHAVIOUR.md's eligibility with the default settings, enough to judge the cohort."""
    week = date(2027, 1, 11)
    languages = {primary_subtag(lang) for lang in mentor["languages"]}
    return (
        mentor["grade"] + 1 <= mentee["grade"]
        and mentor["department"] != mentee["department"]
        and any(primary_subtag(lang) in languages for lang in mentee["languages"])
        and any(
            min(e1, e2) - max(s1, s2) >= timedelta(minutes=30)
            for s1, e1 in _utc_windows(mentor, week)
            for s2, e2 in _utc_windows(mentee, week)
        )
    )


def test_most_mentees_can_be_matched_but_a_few_cannot() -> None:
    mentors = [p for p in COHORT if p["role"] == "mentor"]
    mentees = [p for p in COHORT if p["role"] == "mentee"]

    unmatchable = [e for e in mentees if not any(_eligible(m, e) for m in mentors)]

    assert 1 <= len(unmatchable) <= len(mentees) // 20
