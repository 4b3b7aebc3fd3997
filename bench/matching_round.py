"""Benchmark: one matching round on random, realistic pools (python bench/matching_round.py).

Each size runs in a fresh process so peak memory (max RSS) is its own. Reports the time to
score every pair, the time to solve, the pairs and total score against a greedy baseline,
and what pruning to the best K candidates per mentee costs in score.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from datetime import date

import numpy as np
from twoway_matching.domain.model import (
    SCORE_UNITS,
    MatchingRules,
    Participant,
    RoundInput,
)
from twoway_matching.domain.solver import Edges, eligible_edges, prune, solve
from twoway_shared.wallclock import Window

ZONES = [
    "Europe/London",
    "America/New_York",
    "Asia/Kolkata",
    "Europe/Berlin",
    "Asia/Singapore",
    "America/Sao_Paulo",
]
VOCABULARY = [f"skill-{i:03d}" for i in range(200)]
DEPARTMENTS = [f"Department {i}" for i in range(10)]
LANGUAGES = ["en", "en", "en", "fr", "de", "es", "pt", "hi"]


def person(rng: random.Random, pid: str, role: str) -> Participant:
    """A working-hours availability of 2-4 weekday windows, skills from a shared vocabulary."""
    days = rng.sample(range(5), rng.randint(2, 4))
    windows = []
    for day in days:
        start = rng.randrange(8 * 60, 16 * 60, 30)
        windows.append(Window(day, start, min(start + rng.choice([60, 90, 120, 180]), 1440)))
    return Participant(
        participant_id=pid,
        role=role,  # type: ignore[arg-type]
        grade=rng.randint(1, 12) if role == "mentor" else rng.randint(10, 28),
        department=rng.choice(DEPARTMENTS),
        timezone=rng.choice(ZONES),
        languages=frozenset(rng.sample(LANGUAGES, rng.randint(1, 2))),
        availability=tuple(windows),
        offers=frozenset(rng.sample(VOCABULARY, rng.randint(3, 10))),
        wants=frozenset(rng.sample(VOCABULARY, rng.randint(2, 6))),
        capacity=rng.randint(1, 3) if role == "mentor" else 1,
    )


def greedy(edges: Edges, n_mentees: int, capacities: list[int]) -> tuple[int, int]:
    """Best score first, skipping anyone already taken: the baseline to beat."""
    left = list(capacities)
    taken = np.zeros(n_mentees, dtype=bool)
    pairs = total = 0
    for k in np.lexsort((edges.mentor, edges.mentee, -edges.score)):
        i, j = int(edges.mentee[k]), int(edges.mentor[k])
        if not taken[i] and left[j] > 0:
            taken[i] = True
            left[j] -= 1
            pairs += 1
            total += int(edges.score[k])
    return pairs, total


def run(n: int, prune_to: list[int], seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    mentors = tuple(person(rng, f"m{i:06d}", "mentor") for i in range(n))
    mentees = tuple(person(rng, f"e{i:06d}", "mentee") for i in range(n))
    pool = RoundInput(MatchingRules(starts_on=date(2027, 3, 8)), mentors, mentees)
    capacities = [m.capacity for m in mentors]

    started = time.perf_counter()
    edges = eligible_edges(pool)
    scored = time.perf_counter()
    chosen = solve(edges, n, capacities)
    solved = time.perf_counter()
    exact_score = int(edges.score[chosen].sum())
    g_pairs, g_score = greedy(edges, n, capacities)
    result: dict[str, object] = {
        "size": f"{n} x {n}",
        "eligible_pairs": len(edges),
        "score_seconds": round(scored - started, 2),
        "solve_seconds": round(solved - scored, 2),
        "round_seconds": round(solved - started, 2),
        "pairs": len(chosen),
        "total_score": round(exact_score / SCORE_UNITS, 3),
        "greedy_pairs": g_pairs,
        "greedy_total_score": round(g_score / SCORE_UNITS, 3),
        "pruned": [],
    }
    for k in prune_to:
        t0 = time.perf_counter()
        small = prune(edges, k)
        picked = solve(small, n, capacities)
        elapsed = time.perf_counter() - t0
        score = int(small.score[picked].sum())
        result["pruned"].append(  # type: ignore[attr-defined]
            {
                "k": k,
                "solve_seconds": round(elapsed, 2),
                "pairs": len(picked),
                "score_lost_percent": round(100 * (exact_score - score) / max(1, exact_score), 4),
            }
        )
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--prune", type=int, nargs="*", default=[10, 25, 50])
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run(args.one, args.prune, args.seed)))
        return
    for n in args.sizes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(n),
                "--seed",
                str(args.seed),
                "--prune",
                *map(str, args.prune),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            print(f"{n} x {n}: failed ({out.stderr.strip().splitlines()[-1:]})")
            continue
        print(json.dumps(json.loads(out.stdout), indent=1))


if __name__ == "__main__":
    main()
