"""Why people stay unmatched after a round: no eligible partner (and which rule), or capacity."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from twoway_matching.domain.model import Participant, Proposal, RoundInput
from twoway_matching.domain.rules import evaluate

# Above this many pair checks the per-rule breakdown is skipped (it is reference code, slow).
MAX_DETAILED_CHECKS = 20_000


@dataclass(frozen=True)
class Unmatched:
    """One person left without a new pair, and why."""

    participant_id: str
    role: str
    reason: str  # "no eligible partner" | "eligible partners all taken"
    blocking_rules: dict[str, int]  # rule -> number of candidates it excluded


def explain_unmatched(
    round_input: RoundInput,
    candidates: dict[str, int],
    proposals: list[Proposal],
) -> list[Unmatched]:
    """Everyone in the round without a new pair; `candidates` counts eligible partners per id."""
    matched_mentees = {p.mentee_id for p in proposals}
    used: Counter[str] = Counter(p.mentor_id for p in proposals)
    left: list[Participant] = [
        *(m for m in round_input.mentors if used[m.participant_id] == 0),
        *(e for e in round_input.mentees if e.participant_id not in matched_mentees),
    ]
    without = [p for p in left if candidates.get(p.participant_id, 0) == 0]
    checks = sum(
        len(round_input.mentees if p.role == "mentor" else round_input.mentors) for p in without
    )
    detailed = checks <= MAX_DETAILED_CHECKS
    out = []
    for person in sorted(left, key=lambda p: p.participant_id):
        if candidates.get(person.participant_id, 0) > 0:
            out.append(
                Unmatched(person.participant_id, person.role, "eligible partners all taken", {})
            )
            continue
        rules: Counter[str] = Counter()
        if detailed:
            others = round_input.mentees if person.role == "mentor" else round_input.mentors
            for other in others:
                mentor, mentee = (person, other) if person.role == "mentor" else (other, person)
                paired = (mentor.participant_id, mentee.participant_id) in round_input.never_again
                why_not, _, _ = evaluate(mentor, mentee, round_input.rules, paired)
                if why_not is not None:
                    rules[why_not] += 1
            if not others:
                rules["nobody of the other role"] += 1
        out.append(
            Unmatched(person.participant_id, person.role, "no eligible partner", dict(rules))
        )
    return out
