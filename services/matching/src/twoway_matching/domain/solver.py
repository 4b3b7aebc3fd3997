"""The optimal round: every eligible pair scored at once (numpy), then a min-cost max flow.

The round first maximises the number of pairs, then the total score, exactly: OR-Tools'
max-flow-with-min-cost on source -> mentee (1) -> mentor (1) -> sink (free capacity), with arc
cost SCORE_UNITS - score. Integer costs make it exact; sorted inputs make it deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from ortools.graph.python import min_cost_flow
from twoway_shared.intervals import Interval

from twoway_matching.domain.availability import first_week_intervals
from twoway_matching.domain.explain import Unmatched, explain_unmatched
from twoway_matching.domain.model import (
    SCORE_UNITS,
    Proposal,
    RoundInput,
)
from twoway_matching.domain.rules import reasons

IntArray = npt.NDArray[np.int64]
# Elements of one block of the overlap computation (mentees x mentors x windows x windows).
_BLOCK_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class Edges:
    """Every eligible pair of a round: indexes into the sorted mentees and mentors."""

    mentee: IntArray
    mentor: IntArray
    score: IntArray  # SCORE_UNITS
    overlap: IntArray  # weekly overlap minutes

    def __len__(self) -> int:
        return len(self.mentee)


def _codes(values: list[str]) -> IntArray:
    index: dict[str, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)


def _incidence(sets: list[frozenset[str]], vocabulary: dict[str, int]) -> npt.NDArray[np.float32]:
    matrix = np.zeros((len(sets), max(1, len(vocabulary))), dtype=np.float32)
    for row, items in enumerate(sets):
        for item in items:
            matrix[row, vocabulary[item]] = 1.0
    return matrix


FloatArray = npt.NDArray[np.float32]
# Above this many distinct breakpoints in a week the segment matrices get too wide to pay off.
_MAX_SEGMENTS = 4096


class _WindowOverlap:
    """Overlap by clipping every window of a mentee against every window of a mentor."""

    def __init__(self, mentees: list[list[Interval]], mentors: list[list[Interval]]) -> None:
        self.starts_e, self.ends_e = self._padded(mentees)
        self.starts_m, self.ends_m = self._padded(mentors)

    @staticmethod
    def _padded(lists: list[list[Interval]]) -> tuple[IntArray, IntArray]:
        width = max(1, *(len(x) for x in lists)) if lists else 1
        starts = np.zeros((len(lists), width), dtype=np.int64)
        ends = np.zeros((len(lists), width), dtype=np.int64)
        for row, intervals in enumerate(lists):
            for col, (start, end) in enumerate(intervals):
                starts[row, col], ends[row, col] = start, end
        return starts, ends

    def rows_per_block(self, n_mentors: int) -> int:
        per_row = int(n_mentors * self.starts_e.shape[1] * self.starts_m.shape[1])
        return max(1, _BLOCK_ELEMENTS // max(1, per_row))

    def block(self, lo: int, hi: int, session: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        common = np.minimum(self.ends_e[lo:hi, None, :, None], self.ends_m[None, :, None, :])
        common -= np.maximum(self.starts_e[lo:hi, None, :, None], self.starts_m[None, :, None, :])
        np.clip(common, 0, None, out=common)
        return common.sum(axis=(2, 3)), common.max(axis=(2, 3)) >= session


class _SegmentOverlap:
    """Overlap as a matrix product over the week cut at every window edge.

    Each person is a 0/1 row over the elementary segments; the weekly overlap is the
    length-weighted dot product of two rows. "Some common stretch holds a session" is the same
    product over each person's eroded windows [start, end - session + 1): the start minutes
    from which a whole session fits.
    """

    def __init__(
        self, mentees: list[list[Interval]], mentors: list[list[Interval]], session: int
    ) -> None:
        eroded_e = [_erode(x, session) for x in mentees]
        eroded_m = [_erode(x, session) for x in mentors]
        points = sorted(
            {
                t
                for group in (mentees, mentors, eroded_e, eroded_m)
                for x in group
                for i in x
                for t in i
            }
        )
        self.size = len(points)
        self._points = np.array(points, dtype=np.int64)
        lengths = np.diff(self._points).astype(np.float32)
        self.cover_e = self._rows(mentees) * lengths
        self.cover_m = self._rows(mentors)
        self.fit_e = self._rows(eroded_e) * lengths
        self.fit_m = self._rows(eroded_m)

    def _rows(self, lists: list[list[Interval]]) -> FloatArray:
        edges = np.zeros((len(lists), max(1, self.size)), dtype=np.float32)
        rows = np.array([row for row, x in enumerate(lists) for _ in x], dtype=np.int64)
        starts = np.array([i[0] for x in lists for i in x], dtype=np.int64)
        ends = np.array([i[1] for x in lists for i in x], dtype=np.int64)
        np.add.at(edges, (rows, np.searchsorted(self._points, starts)), 1)
        np.add.at(edges, (rows, np.searchsorted(self._points, ends)), -1)
        return np.cumsum(edges, axis=1)[:, :-1]

    def rows_per_block(self, n_mentors: int) -> int:
        return max(1, 4_000_000 // max(1, n_mentors))

    def block(self, lo: int, hi: int, session: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        overlap = np.rint(self.cover_e[lo:hi] @ self.cover_m.T)
        return overlap, (self.fit_e[lo:hi] @ self.fit_m.T) > 0.5


def _breakpoints(*groups: list[list[Interval]]) -> list[int]:
    return sorted({t for group in groups for x in group for i in x for t in i})


def _erode(intervals: list[Interval], session: int) -> list[Interval]:
    return [(s, e - session + 1) for s, e in intervals if e - s >= session]


def eligible_edges(round_input: RoundInput, method: str = "auto") -> Edges:
    """Rules 2-6, 8 and 9 for every (mentor, mentee) of the round, with scores and overlaps.

    `method` "windows" forces the window-by-window overlap (the segment product is the default).
    """
    mentors, mentees, rules = round_input.mentors, round_input.mentees, round_input.rules
    n_e, n_m = len(mentees), len(mentors)
    empty = np.zeros(0, dtype=np.int64)
    if n_e == 0 or n_m == 0:
        return Edges(empty, empty, empty, empty)

    grade_e = np.array([p.grade for p in mentees], dtype=np.int64)
    grade_m = np.array([p.grade for p in mentors], dtype=np.int64)
    departments = _codes([p.department_key for p in (*mentees, *mentors)])
    dept_e, dept_m = departments[:n_e], departments[n_e:]

    languages = {
        x: i for i, x in enumerate(sorted({x for p in (*mentees, *mentors) for x in p.languages}))
    }
    tags = {
        x: i
        for i, x in enumerate(
            sorted({t for p in (*mentees, *mentors) for t in (*p.offers, *p.wants)})
        )
    }
    lang_e = _incidence([p.languages for p in mentees], languages)
    lang_m = _incidence([p.languages for p in mentors], languages)
    wants_e = _incidence([p.wants for p in mentees], tags)
    offers_e = _incidence([p.offers for p in mentees], tags)
    wants_m = _incidence([p.wants for p in mentors], tags)
    offers_m = _incidence([p.offers for p in mentors], tags)
    n_wants_e = np.array([len(p.wants) for p in mentees], dtype=np.float64)
    n_wants_m = np.array([len(p.wants) for p in mentors], dtype=np.float64)

    session = rules.session_minutes
    weeks_e = [first_week_intervals(p.availability, p.timezone, rules.starts_on) for p in mentees]
    weeks_m = [first_week_intervals(p.availability, p.timezone, rules.starts_on) for p in mentors]
    eroded = [[_erode(x, session) for x in weeks] for weeks in (weeks_e, weeks_m)]
    segments = len(_breakpoints(weeks_e, weeks_m, *eroded))
    time_overlap: _WindowOverlap | _SegmentOverlap
    if method == "windows" or segments > _MAX_SEGMENTS:
        time_overlap = _WindowOverlap(weeks_e, weeks_m)
    else:
        time_overlap = _SegmentOverlap(weeks_e, weeks_m, session)

    mentor_index = {p.participant_id: j for j, p in enumerate(mentors)}
    mentee_index = {p.participant_id: i for i, p in enumerate(mentees)}
    forbidden: list[tuple[int, int]] = []
    for i, e in enumerate(mentees):
        if e.manager_id in mentor_index:
            forbidden.append((i, mentor_index[e.manager_id]))
    for j, m in enumerate(mentors):
        if m.manager_id in mentee_index:
            forbidden.append((mentee_index[m.manager_id], j))
    for mentor_id, mentee_id in round_input.never_again:
        if mentor_id in mentor_index and mentee_id in mentee_index:
            forbidden.append((mentee_index[mentee_id], mentor_index[mentor_id]))

    # Struck out block by block (sorted by mentee), before the pairs are listed.
    banned = np.array(sorted(set(forbidden)), dtype=np.int64).reshape(-1, 2)
    block = time_overlap.rows_per_block(n_m)
    parts: list[tuple[IntArray, IntArray, IntArray, IntArray]] = []
    for lo in range(0, n_e, block):
        hi = min(n_e, lo + block)
        ok = grade_m[None, :] + rules.min_grade_gap <= grade_e[lo:hi, None]
        if rules.cross_department:
            ok &= dept_m[None, :] != dept_e[lo:hi, None]
        ok &= (lang_e[lo:hi] @ lang_m.T) > 0
        first, last = np.searchsorted(banned[:, 0], (lo, hi))
        ok[banned[first:last, 0] - lo, banned[first:last, 1]] = False
        if not ok.any():
            continue
        overlap, fits = time_overlap.block(lo, hi, session)
        ok &= fits
        rows, cols = np.nonzero(ok)
        if len(rows) == 0:
            continue
        learn_e = np.divide(
            (wants_e[lo:hi] @ offers_m.T)[rows, cols],
            n_wants_e[lo:hi][rows],
            out=np.zeros(len(rows)),
            where=n_wants_e[lo:hi][rows] > 0,
        )
        learn_m = np.divide(
            (offers_e[lo:hi] @ wants_m.T)[rows, cols],
            n_wants_m[cols],
            out=np.zeros(len(rows)),
            where=n_wants_m[cols] > 0,
        )
        pair_overlap = overlap[rows, cols]
        time_fit = np.minimum(1.0, pair_overlap / (4 * session))
        score = np.rint((0.60 * learn_e + 0.25 * learn_m + 0.15 * time_fit) * SCORE_UNITS)
        strong = score >= rules.min_score_units  # rule 9
        parts.append(
            (
                rows[strong] + lo,
                cols[strong],
                score[strong].astype(np.int64),
                pair_overlap[strong].astype(np.int64),
            )
        )

    if not parts:
        return Edges(empty, empty, empty, empty)
    mentee_idx = np.concatenate([p[0] for p in parts])
    mentor_idx = np.concatenate([p[1] for p in parts])
    scores = np.concatenate([p[2] for p in parts])
    overlaps = np.concatenate([p[3] for p in parts])
    return Edges(mentee_idx, mentor_idx, scores, overlaps)


def prune(edges: Edges, per_mentee: int) -> Edges:
    """Keep each mentee's `per_mentee` best-scoring candidates (ties: lower mentor index)."""
    order = np.lexsort((edges.mentor, -edges.score, edges.mentee))
    mentee = edges.mentee[order]
    first = np.searchsorted(mentee, mentee, side="left")
    keep = order[(np.arange(len(mentee)) - first) < per_mentee]
    keep.sort()
    return Edges(edges.mentee[keep], edges.mentor[keep], edges.score[keep], edges.overlap[keep])


def solve(edges: Edges, n_mentees: int, capacities: list[int]) -> list[int]:
    """Indexes of the chosen edges: most pairs first, then the highest total score."""
    if len(edges) == 0:
        return []
    n_mentors = len(capacities)
    source, sink = 0, 1 + n_mentees + n_mentors
    flow = min_cost_flow.SimpleMinCostFlow()
    mentee_nodes = 1 + np.arange(n_mentees, dtype=np.int64)
    mentor_nodes = 1 + n_mentees + np.arange(n_mentors, dtype=np.int64)
    pair_arcs = flow.add_arcs_with_capacity_and_unit_cost(
        mentee_nodes[edges.mentee],
        mentor_nodes[edges.mentor],
        np.ones(len(edges), dtype=np.int64),
        SCORE_UNITS - edges.score,
    )
    flow.add_arcs_with_capacity_and_unit_cost(
        np.full(n_mentees, source, dtype=np.int64),
        mentee_nodes,
        np.ones(n_mentees, dtype=np.int64),
        np.zeros(n_mentees, dtype=np.int64),
    )
    flow.add_arcs_with_capacity_and_unit_cost(
        mentor_nodes,
        np.full(n_mentors, sink, dtype=np.int64),
        np.asarray(capacities, dtype=np.int64),
        np.zeros(n_mentors, dtype=np.int64),
    )
    flow.set_node_supply(source, n_mentees)
    flow.set_node_supply(sink, -n_mentees)
    status = flow.solve_max_flow_with_min_cost()
    if status != flow.OPTIMAL:
        raise RuntimeError(f"the matching solver failed with status {status}")
    chosen = flow.flows(np.asarray(pair_arcs, dtype=np.int64))
    return [int(k) for k in np.nonzero(chosen)[0]]


@dataclass(frozen=True)
class RoundResult:
    """The pairs a round proposes and who stays unmatched, with why."""

    proposals: list[Proposal]
    unmatched: list[Unmatched]


def run_round(round_input: RoundInput, *, max_candidates: int | None = None) -> RoundResult:
    """The optimal set of new pairs for a pool; deterministic for equal input."""
    mentors = tuple(sorted(round_input.mentors, key=lambda p: p.participant_id))
    mentees = tuple(sorted(round_input.mentees, key=lambda p: p.participant_id))
    ordered = RoundInput(round_input.rules, mentors, mentees, round_input.never_again)
    edges = eligible_edges(ordered)
    if max_candidates is not None:
        edges = prune(edges, max_candidates)
    chosen = solve(edges, len(mentees), [m.capacity for m in mentors])
    proposals = []
    for k in chosen:
        mentor, mentee = mentors[edges.mentor[k]], mentees[edges.mentee[k]]
        proposals.append(
            Proposal(
                mentor_id=mentor.participant_id,
                mentee_id=mentee.participant_id,
                score_units=int(edges.score[k]),
                reasons=reasons(mentor, mentee, int(edges.overlap[k])),
            )
        )
    proposals.sort(key=lambda p: (p.mentee_id, p.mentor_id))
    candidates: dict[str, int] = {}
    for i, n in zip(*np.unique(edges.mentee, return_counts=True), strict=True):
        candidates[mentees[int(i)].participant_id] = int(n)
    for j, n in zip(*np.unique(edges.mentor, return_counts=True), strict=True):
        candidates[mentors[int(j)].participant_id] = int(n)
    return RoundResult(proposals, explain_unmatched(ordered, candidates, proposals))
