"""The demo's weeks after booking: people attend (or miss) sessions, set goals, give feedback.

Scheduling books sessions from now on, so the demo plays the programme's weeks at once: the
synthetic portal records attendance for booked sessions as if they had taken place, then the
feedback people give afterwards. Some pairs miss sessions, some rate low, one pair says "not a
fit"; the rest meet, and many finish their series and earn credits.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from rich.table import Table
from twoway_shared.contract import (
    ProgrammeMatchingRequested,
    SessionAttendanceRecorded,
    Topic,
    topic_name,
)
from twoway_shared.contract.events import PairGoalsSet, SessionFeedbackSubmitted

from twoway_dev.testing.kafka import TopicReader, ToSend, publish, wait_until_consumed

SOURCE = "/twoway/demo/portal"


@dataclass(frozen=True)
class DemoPair:
    pair_id: str
    mentor_id: str
    mentee_id: str
    sessions: tuple[tuple[str, int], ...]
    """(session_id, sequence), in sequence order."""


@dataclass
class DemoPlan:
    """What the synthetic portal sends, in two rounds: first attendance and goals, then feedback."""

    first: list[BaseModel] = field(default_factory=list)
    feedback: list[BaseModel] = field(default_factory=list)
    story: Counter[str] = field(default_factory=Counter)


def _learned(rng: random.Random, wants: list[str], offers: list[str]) -> list[str]:
    common = [t for t in wants if t in offers] or wants
    return rng.sample(common, min(len(common), rng.randint(1, 2)))


def plan_progress(
    pairs: list[DemoPair], profiles: dict[str, dict[str, Any]], seed: int
) -> DemoPlan:
    """A deterministic story for every pair (pure: plain data in, contract models out)."""
    rng = random.Random(seed)
    plan = DemoPlan()
    for index, pair in enumerate(sorted(pairs, key=lambda p: p.pair_id)):
        mentor, mentee = profiles[pair.mentor_id], profiles[pair.mentee_id]
        for person in (mentee, mentor):
            goals = [{"tag": tag, "note": None} for tag in person["wants"][:3]]
            if goals:
                plan.first.append(
                    PairGoalsSet(
                        pair_id=pair.pair_id, participant_id=person["participant_id"], goals=goals
                    )
                )
        count = len(pair.sessions)
        if index == 0:
            story, held, missed = "not_a_fit", 1, set[int]()
        elif index % 7 == 3:
            story, held, missed = "missing sessions", min(3, count), {2, 3}
        elif index % 9 == 5:
            story, held, missed = "low ratings", min(3, count), set()
        elif index % 2 == 0:
            story, held, missed = "completed", count, {4} if count > 4 and index % 4 == 0 else set()
        else:
            story, held, missed = "meeting", min(count - 1, rng.randint(2, 4)), set()
        plan.story[story] += 1
        for session_id, sequence in pair.sessions[:held]:
            absent = sequence in missed
            for who in (pair.mentor_id, pair.mentee_id):
                plan.first.append(
                    SessionAttendanceRecorded(
                        session_id=session_id,
                        pair_id=pair.pair_id,
                        participant_id=who,
                        attended=not (absent and who == pair.mentor_id),
                        rating=None if absent else rng.randint(3, 5),
                    )
                )
            if absent:
                continue
            for person, partner in ((mentee, mentor), (mentor, mentee)):
                if rng.random() > 0.8 and story not in ("not_a_fit", "low ratings"):
                    continue  # not everyone gives feedback every time
                fit = "good" if sequence <= 2 else None
                rating = rng.randint(3, 5)
                if story == "not_a_fit" and person is mentor:
                    fit, rating = "not_a_fit", 2
                if story == "low ratings" and person is mentee:
                    rating = rng.randint(1, 2)
                plan.feedback.append(
                    SessionFeedbackSubmitted(
                        session_id=session_id,
                        pair_id=pair.pair_id,
                        participant_id=person["participant_id"],
                        learned=_learned(rng, person["wants"], partner["offers"]),
                        rating=rating,
                        fit=fit,
                        comment="(a private comment, kept by progress only)",
                    )
                )
    return plan


def _records(prefix: str, items: Sequence[BaseModel]) -> list[ToSend]:
    return [ToSend.event(prefix, data, source=SOURCE) for data in items]


def _kind(record: Any) -> tuple[str, dict[str, Any]]:
    event = json.loads(record.value or b"{}")
    return event["type"].removeprefix("twoway.").removesuffix(".v1"), event["data"]


@dataclass
class ProgressTally:
    """What progress published while the demo played its weeks."""

    story: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    rematch: Counter[str] = field(default_factory=Counter)
    credits: list[float] = field(default_factory=list)
    repaired: int = 0


async def play_progress(
    kafka: str,
    prefix: str,
    programme_id: str,
    cohort: list[dict[str, Any]],
    *,
    seed: int,
    timeout: float = 120,
) -> ProgressTally:
    """Send the synthetic portal's records and wait until progress has acted on them."""
    profiles = {p["participant_id"]: p for p in cohort}
    topics = [topic_name(prefix, t) for t in (Topic.PAIRS, Topic.SESSIONS, Topic.PROGRESS)]
    tally = ProgressTally()
    async with TopicReader(kafka, topics) as reader:
        await asyncio.sleep(2)  # the reader catches up with what is already there
        confirmed: dict[str, dict[str, Any]] = {}
        ended: set[str] = set()
        sessions: dict[str, list[tuple[str, int]]] = {}
        for record in list(reader.records):
            kind, data = _kind(record)
            if kind == "pair.confirmed" and data["programme_id"] == programme_id:
                confirmed[data["pair_id"]] = data
            elif kind in ("pair.ended", "pair.declined"):
                ended.add(data["pair_id"])
            elif kind == "session.scheduled":
                sessions.setdefault(data["pair_id"], []).append(
                    (data["session_id"], data["sequence"])
                )
        pairs = [
            DemoPair(
                p, d["mentor_id"], d["mentee_id"], tuple(sorted(sessions[p], key=lambda s: s[1]))
            )
            for p, d in confirmed.items()
            if p not in ended and p in sessions
        ]
        before = set(confirmed)
        plan = plan_progress(pairs, profiles, seed)
        tally.story = plan.story
        await publish(kafka, _records(prefix, plan.first))
        expected = sum(1 for item in plan.first if isinstance(item, SessionAttendanceRecorded)) // 2
        deadline = time.monotonic() + timeout

        def outcomes() -> int:
            return sum(
                _kind(r)[0] in ("session.completed", "session.missed")
                for r in reader.on(topic_name(prefix, Topic.SESSIONS))
            )

        await reader.wait_for(lambda _: outcomes() >= expected, timeout=timeout, what="outcomes")
        group = f"{prefix}progress"
        await wait_until_consumed(
            kafka, group, [topic_name(prefix, Topic.SESSIONS)], timeout=timeout
        )
        await publish(kafka, _records(prefix, plan.feedback))
        feedback_topics = [topic_name(prefix, t) for t in (Topic.FEEDBACK, Topic.SESSIONS)]
        await wait_until_consumed(kafka, group, feedback_topics, timeout=timeout)
        # Let the reactions settle: rematch requests, the pairs matching ends.
        await _settle(reader, deadline)
        if _ended_for_rematch(reader, prefix, programme_id):
            # A batch programme gets no round on its own: its coordinator asks for one, so the
            # people of the ended pairs are offered someone new (never each other again).
            request = [ProgrammeMatchingRequested(programme_id=programme_id)]
            await publish(kafka, _records(prefix, request))
            programmes = [topic_name(prefix, Topic.PROGRAMMES)]
            await wait_until_consumed(kafka, f"{prefix}matching", programmes, timeout=timeout)
            await _settle(reader, deadline)
        for record in reader.on(topic_name(prefix, Topic.PROGRESS)):
            kind, data = _kind(record)
            if data["programme_id"] != programme_id:
                continue
            tally.events[kind] += 1
            if kind == "pair.rematch_requested":
                tally.rematch[data["reason"]] += 1
            elif kind == "credit.awarded":
                tally.credits.append(data["credits"])
        tally.repaired = sum(
            1
            for r in reader.on(topic_name(prefix, Topic.PAIRS))
            if _kind(r)[0] == "pair.confirmed"
            and _kind(r)[1]["programme_id"] == programme_id
            and _kind(r)[1]["pair_id"] not in before
        )
    return tally


async def _settle(reader: TopicReader, deadline: float, quiet: float = 5.0) -> None:
    """Wait until no new record arrived for `quiet` seconds (or the deadline)."""
    seen, quiet_since = len(reader.records), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet:
        await asyncio.sleep(0.5)
        if len(reader.records) != seen:
            seen, quiet_since = len(reader.records), time.monotonic()


def _ended_for_rematch(reader: TopicReader, prefix: str, programme_id: str) -> int:
    """How many of the programme's pairs matching ended because progress asked to re-pair."""
    return sum(
        1
        for record in reader.on(topic_name(prefix, Topic.PAIRS))
        for kind, data in [_kind(record)]
        if kind == "pair.ended"
        and data["programme_id"] == programme_id
        and data["reason"] in ("not_a_fit", "inactive")
    )


def programme_health(port: int, programme_id: str, token: str) -> dict[str, Any]:
    """Progress's `GET /programmes/{id}/health`, with a bearer token."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/programmes/{programme_id}/health",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def health_section(health: dict[str, Any], tally: ProgressTally) -> Table:
    """The programme manager's report: how the pairs are doing after booking."""
    pairs, sessions = health["pairs"], health["sessions"]
    table = Table(title=f"Pair health, {health['programme_id']}", show_header=False)
    table.add_row(
        "pairs",
        f"{pairs['on_track']} on track, {pairs['at_risk']} at risk, {pairs['inactive']} "
        f"inactive, {pairs['completed']} completed",
    )
    table.add_row("sessions", f"{sessions['completed']} completed, {sessions['missed']} missed")
    for item in health["attention"][:5]:
        table.add_row("", f"{item['health']}: {item['pair_id']} ({', '.join(item['reasons'])})")
    if len(health["attention"]) > 5:
        table.add_row("", f"... and {len(health['attention']) - 5} more needing attention")
    asked = ", ".join(f"{n} {why}" for why, n in tally.rematch.items()) or "none"
    table.add_row("re-pairing asked", f"{asked}; new pairs confirmed since: {tally.repaired}")
    total = sum(tally.credits)
    table.add_row("credits awarded", f"{len(tally.credits)} certificates, {total:.1f} credits")
    for role in ("mentee", "mentor"):
        side = health["feedback"][role]
        if side["withheld"]:
            table.add_row(f"{role}s' feedback", "withheld (fewer than 3 people)")
            continue
        topics = ", ".join(t["tag"] for t in side["top_learned"][:5]) or "-"
        table.add_row(
            f"{role}s' feedback",
            f"{side['people']} people, average rating {side['average_rating']}; learned: {topics}",
        )
    return table
