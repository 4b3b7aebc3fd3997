"""The coordinators' dashboard as plain data: funnel, weekly series, unmatched people, tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from twoway_progress.domain import rules as r
from twoway_progress.domain.model import PairState, Rules, SessionState

FUNNEL_STAGES = ("enrolled", "matched", "confirmed", "booked", "meeting", "completed")
HEALTHS = ("on_track", "at_risk", "inactive")
MAX_WEEKS = 26
"""The weekly charts show at most this many weeks, the latest ones."""


@dataclass(frozen=True)
class Person:
    participant_id: str
    role: str | None
    display_name: str | None
    withdrawn: bool


@dataclass(frozen=True)
class Proposal:
    pair_id: str
    mentor_id: str
    mentee_id: str
    score: float | None
    declined_reason: str | None


@dataclass(frozen=True)
class PairFacts:
    """A confirmed pair with everything progress knows about it."""

    state: PairState
    status: str
    ended_reason: str | None
    completed_at: datetime | None
    rematch_requested: str | None
    health: str
    reasons: tuple[str, ...]

    @property
    def pair_id(self) -> str:
        return self.state.pair_id

    @property
    def people(self) -> tuple[str, str]:
        return (self.state.mentor_id, self.state.mentee_id)

    @property
    def running(self) -> bool:
        return self.status == "active" and self.completed_at is None


@dataclass(frozen=True)
class Week:
    """One week, Monday to Sunday in the viewer's time zone."""

    starts: date
    completed: int = 0
    missed: int = 0
    health: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.starts.isoformat()


# ---------------------------------------------------------------- funnel


def funnel(
    people: Sequence[Person], proposals: Sequence[Proposal], pairs: Sequence[PairFacts]
) -> list[tuple[str, int]]:
    """People at each stage; someone counts at a stage when any of their pairs reached it."""
    enrolled = {p.participant_id for p in people if p.role is not None}
    matched = {x for p in proposals for x in (p.mentor_id, p.mentee_id)}
    matched |= {x for p in pairs for x in p.people}
    confirmed = {x for p in pairs for x in p.people}
    booked = {x for p in pairs if any(s.starts_at for s in p.state.sessions) for x in p.people}
    meeting = {
        x for p in pairs if any(s.status == "completed" for s in p.state.sessions) for x in p.people
    }
    completed = {x for p in pairs if p.completed_at is not None for x in p.people}
    stages = (enrolled, matched, confirmed, booked, meeting, completed)
    return [(name, len(who & enrolled)) for name, who in zip(FUNNEL_STAGES, stages, strict=True)]


# ---------------------------------------------------------------- unmatched people

UNMATCHED_REASONS = {
    "no_proposal": "not proposed to anyone yet (no suitable partner in a matching round)",
    "declined": "their proposed pair was declined; waiting for the next round",
    "expired": "their proposed pair expired unanswered; waiting for the next round",
    "withdrawn": "their proposed partner withdrew; waiting for the next round",
    "not_a_fit": "their pair was not a fit; waiting for a new partner",
    "inactive": "their pair was closed as inactive; waiting for a new partner",
    "cancelled": "their pair was cancelled; waiting for a new partner",
}


def unmatched(
    people: Sequence[Person], proposals: Sequence[Proposal], pairs: Sequence[PairFacts]
) -> list[tuple[Person, str]]:
    """Enrolled people in no running pair and no open proposal, with what progress knows why.

    People who completed a pair are not waiting for anyone and are left out.
    """
    busy = {x for p in pairs if p.running for x in p.people}
    done = {x for p in pairs if p.completed_at is not None for x in p.people}
    confirmed_ids = {p.state.pair_id for p in pairs}
    busy |= {
        x
        for p in proposals
        if p.declined_reason is None and p.pair_id not in confirmed_ids
        for x in (p.mentor_id, p.mentee_id)
    }
    last_reason: dict[str, str] = {}
    for proposal in proposals:
        if proposal.declined_reason is not None:
            for x in (proposal.mentor_id, proposal.mentee_id):
                last_reason[x] = proposal.declined_reason
    for pair in pairs:  # an ended pair says more than a declined proposal
        if pair.status == "ended":
            reason = pair.rematch_requested or pair.ended_reason or "cancelled"
            for x in pair.people:
                last_reason[x] = reason
    found = []
    for person in sorted(people, key=lambda p: p.participant_id):
        if person.role is None or person.withdrawn:
            continue
        if person.participant_id in busy or person.participant_id in done:
            continue
        code = last_reason.get(person.participant_id, "no_proposal")
        found.append((person, UNMATCHED_REASONS.get(code, UNMATCHED_REASONS["no_proposal"])))
    return found


# ---------------------------------------------------------------- weeks


def week_start(moment: datetime, zone: ZoneInfo) -> date:
    """The Monday of the week `moment` falls in, in `zone`."""
    day = moment.astimezone(zone).date()
    return day - timedelta(days=day.weekday())


def _week_end(starts: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(starts + timedelta(days=7), time(0), tzinfo=zone)


def as_of(pair: PairState, moment: datetime) -> PairState:
    """What the pair's facts were at `moment`: later outcomes are still scheduled, later
    feedback not yet given."""
    sessions: list[SessionState] = []
    finished: set[str] = set()
    for s in pair.sessions:
        if s.has_outcome and s.ends_at is not None and s.ends_at > moment:
            sessions.append(replace(s, status="scheduled", minutes=0))
        else:
            sessions.append(s)
            if s.has_outcome:
                finished.add(s.session_id)
    feedback = tuple(f for f in pair.feedback if f.session_id in finished)
    return replace(pair, sessions=tuple(sessions), feedback=feedback)


def _finished_at(pair: PairFacts) -> datetime | None:
    if pair.completed_at is not None:
        return pair.completed_at
    if pair.status != "ended":
        return None
    ends = [s.ends_at for s in pair.state.sessions if s.has_outcome and s.ends_at]
    return max(ends) if ends else None


def weeks(pairs: Sequence[PairFacts], rules: Rules, now: datetime, zone: ZoneInfo) -> list[Week]:
    """Sessions completed and missed per week (by start), and pairs by health at each week's end
    (progress's own rules replayed on the facts known then; the current week: now)."""
    starts = [s.starts_at for p in pairs for s in p.state.sessions if s.starts_at is not None]
    if not starts:
        return []
    first = week_start(min(starts), zone)
    last = week_start(min(max(starts), now), zone)
    if last < first:
        last = first
    count = min((last - first).days // 7 + 1, MAX_WEEKS)
    mondays = [last - timedelta(days=7 * i) for i in range(count - 1, -1, -1)]
    result = []
    for monday in mondays:
        end = min(_week_end(monday, zone), now)
        begin = datetime.combine(monday, time(0), tzinfo=zone)
        completed = missed = 0
        for pair in pairs:
            for s in pair.state.sessions:
                if s.starts_at is not None and week_start(s.starts_at, zone) == monday:
                    completed += s.status == "completed"
                    missed += s.status == "missed"
        health = dict.fromkeys(HEALTHS, 0)
        for pair in pairs:
            pair_starts = [s.starts_at for s in pair.state.sessions if s.starts_at is not None]
            finished = _finished_at(pair)
            if not pair_starts or min(pair_starts) > end:
                continue
            if finished is not None and finished < begin:
                continue
            health[r.assess(as_of(pair.state, end), rules, end).health] += 1
        result.append(Week(monday, completed, missed, health))
    return result
