"""The solver against brute force on small random pools: same pair count and total score."""

from __future__ import annotations

import random
from datetime import date

import pytest
from twoway_matching.domain import solver
from twoway_matching.domain.model import MatchingRules, Participant, RoundInput
from twoway_matching.domain.rules import evaluate
from twoway_matching.domain.solver import eligible_edges, run_round
from twoway_shared.wallclock import Window

ZONES = ["Europe/London", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Sydney"]
TAGS = ["ai", "social-media", "cloud", "strategy", "finance", "leadership", "data"]


def random_person(rng: random.Random, pid: str, role: str) -> Participant:
    windows = tuple(
        Window(rng.randrange(7), start, min(1440, start + rng.choice([60, 90, 120, 240])))
        for start in (rng.randrange(0, 1440, 15) for _ in range(rng.randint(1, 3)))
    )
    return Participant(
        participant_id=pid,
        role=role,  # type: ignore[arg-type]
        grade=rng.randint(1, 12) if role == "mentor" else rng.randint(5, 20),
        department=rng.choice(["IT", "it ", "Sales", "HR"]),
        timezone=rng.choice(ZONES),
        languages=frozenset(rng.sample(["en", "fr", "de"], rng.randint(1, 2))),
        availability=windows,
        offers=frozenset(rng.sample(TAGS, rng.randint(0, 3))),
        wants=frozenset(rng.sample(TAGS, rng.randint(0, 3))),
        capacity=rng.randint(1, 3) if role == "mentor" else 1,
        # Now and then one of the other side (of the first few) is their manager.
        manager_id=f"{'e' if role == 'mentor' else 'm'}{rng.randrange(4)}"
        if rng.random() < 0.2
        else None,
    )


def brute_force(round_input: RoundInput) -> tuple[int, int]:
    """(pairs, total score units) of the best assignment, by trying every one."""
    mentors, mentees = round_input.mentors, round_input.mentees
    options: list[list[tuple[int, int]]] = []
    for e in mentees:
        row = []
        for j, m in enumerate(mentors):
            paired_before = (m.participant_id, e.participant_id) in round_input.never_again
            why_not, score, _ = evaluate(m, e, round_input.rules, paired_before)
            if why_not is None:
                row.append((j, score))
        options.append(row)
    best = (0, 0)

    def walk(i: int, left: list[int], count: int, total: int) -> None:
        nonlocal best
        if i == len(mentees):
            best = max(best, (count, total))
            return
        walk(i + 1, left, count, total)
        for j, score in options[i]:
            if left[j] > 0:
                left[j] -= 1
                walk(i + 1, left, count + 1, total + score)
                left[j] += 1

    walk(0, [m.capacity for m in mentors], 0, 0)
    return best


@pytest.mark.parametrize("seed", range(200))
def test_solver_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    mentors = tuple(random_person(rng, f"m{k}", "mentor") for k in range(rng.randint(1, 7)))
    mentees = tuple(random_person(rng, f"e{k}", "mentee") for k in range(rng.randint(1, 7)))
    never = frozenset(
        (m.participant_id, e.participant_id) for m in mentors for e in mentees if rng.random() < 0.1
    )
    rules = MatchingRules(
        starts_on=date(2027, 3, 22),
        session_minutes=rng.choice([30, 45, 60]),
        min_score=rng.choice([0.0, 0.0, 0.2, 0.35]),
    )
    round_input = RoundInput(rules, mentors, mentees, never)
    proposals = run_round(round_input).proposals
    expected = brute_force(round_input)
    assert (len(proposals), sum(p.score_units for p in proposals)) == expected
    # Capacities and the one-pair-per-mentee rule hold.
    per_mentor: dict[str, int] = {}
    for p in proposals:
        per_mentor[p.mentor_id] = per_mentor.get(p.mentor_id, 0) + 1
    assert all(
        per_mentor[m.participant_id] <= m.capacity
        for m in mentors
        if m.participant_id in per_mentor
    )
    assert len({p.mentee_id for p in proposals}) == len(proposals)


@pytest.mark.parametrize("method", ["auto", "windows", "blocks of 3 mentees"])
@pytest.mark.parametrize("seed", range(30))
def test_vectorised_edges_agree_with_reference_rules(
    seed: int, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if method == "blocks of 3 mentees":  # rules struck out block by block, as in large pools
        monkeypatch.setattr(solver._SegmentOverlap, "rows_per_block", lambda *_: 3)
        method = "auto"
    rng = random.Random(1000 + seed)
    mentors = tuple(random_person(rng, f"m{k}", "mentor") for k in range(8))
    mentees = tuple(random_person(rng, f"e{k}", "mentee") for k in range(8))
    rules = MatchingRules(
        starts_on=date(2027, 10, 25), session_minutes=30, min_score=rng.choice([0.0, 0.3])
    )
    edges = eligible_edges(RoundInput(rules, mentors, mentees), method)
    found = {
        (int(edges.mentee[k]), int(edges.mentor[k])): (int(edges.score[k]), int(edges.overlap[k]))
        for k in range(len(edges))
    }
    for i, e in enumerate(mentees):
        for j, m in enumerate(mentors):
            why_not, score, overlap = evaluate(m, e, rules)
            if why_not is None:
                assert found[(i, j)] == (score, overlap)
            else:
                assert (i, j) not in found, why_not


def test_equal_input_gives_equal_output() -> None:
    rng = random.Random(7)
    mentors = tuple(random_person(rng, f"m{k}", "mentor") for k in range(20))
    mentees = tuple(random_person(rng, f"e{k}", "mentee") for k in range(20))
    rules = MatchingRules(starts_on=date(2027, 1, 4))
    first = run_round(RoundInput(rules, mentors, mentees)).proposals
    shuffled = run_round(RoundInput(rules, mentors[::-1], mentees[::-1])).proposals
    assert first == shuffled


@pytest.mark.parametrize("rows", [1, 2, 3, 100])
def test_managers_and_past_pairs_are_struck_out_in_every_block(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everyone suits everyone but for managers and past pairs: the edges are every pair
    but those, however the mentees are cut into blocks."""
    monkeypatch.setattr(solver._SegmentOverlap, "rows_per_block", lambda *_: rows)
    week = tuple(Window(day, 9 * 60, 17 * 60) for day in range(5))

    def one(pid: str, role: str, department: str, manager_id: str | None) -> Participant:
        return Participant(
            participant_id=pid,
            role=role,  # type: ignore[arg-type]
            grade=3 if role == "mentor" else 20,
            department=department,
            timezone="Europe/London",
            languages=frozenset({"en"}),
            availability=week,
            offers=frozenset({"ai"}),
            wants=frozenset({"ai"}),
            manager_id=manager_id,
            capacity=3,
        )

    mentors = tuple(one(f"m{j}", "mentor", "IT", f"e{j + 2}" if j < 2 else None) for j in range(4))
    mentees = tuple(one(f"e{i}", "mentee", "HR", f"m{i % 4}" if i in (0, 3, 5) else None)
                    for i in range(7))  # fmt: skip
    never = frozenset({("m3", "e6"), ("m2", "e1")})
    edges = eligible_edges(
        RoundInput(MatchingRules(starts_on=date(2027, 3, 1)), mentors, mentees, never)
    )
    struck = {(0, 0), (3, 3), (5, 1), (2, 0), (3, 1), (6, 3), (1, 2)}  # (mentee, mentor)
    everyone = {(i, j) for i in range(7) for j in range(4)}
    assert set(zip(edges.mentee.tolist(), edges.mentor.tolist(), strict=True)) == everyone - struck
