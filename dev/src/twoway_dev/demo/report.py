"""The programme manager's report: a list of sections, shown on a terminal or written as CSV.

Each section is a function of the report's data; a new one (progress, health) is one more
function in SECTIONS. A section has summary lines (label, value) and any number of detail
tables; the terminal shows the lines and the first rows of each detail table, `--csv DIR`
writes every line and every row.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from twoway_shared.contract import ProgrammeConfigured

from twoway_dev.localstack.processes import HTTP_PORTS

MIN_OVERLAP_SESSIONS = 2
"""A pair whose weekly overlap holds fewer sessions than this is weak: one move breaks it."""


@dataclass
class Tally:
    """What the services have published about a programme, read back from their topics."""

    proposed: dict[str, dict[str, Any]] = field(default_factory=dict)  # pair -> proposal data
    confirmed: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    scheduled: dict[str, set[str]] = field(default_factory=dict)  # pair -> session ids
    totals: dict[str, int] = field(default_factory=dict)
    booking_failed: dict[str, str] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    last_change: float = field(default_factory=time.monotonic)

    def add(self, event: dict[str, Any]) -> None:
        kind, data = event["type"].removeprefix("twoway.").removesuffix(".v1"), event["data"]
        if kind == "pair.proposed":
            self.proposed[data["pair_id"]] = data
        elif kind == "pair.confirmed":
            self.confirmed.add(data["pair_id"])
        elif kind in ("pair.ended", "pair.declined"):
            self.ended.add(data["pair_id"])
        elif kind == "session.scheduled":
            self.scheduled.setdefault(data["pair_id"], set()).add(data["session_id"])
            self.totals[data["pair_id"]] = data["total"]
        elif kind == "session.booking_failed":
            self.booking_failed[data["pair_id"]] = data["reason"]
        elif kind == "notification.sent":
            self.sent[data["template"]] += 1
        elif kind == "notification.failed":
            self.failed[data["template"]] += 1
        self.last_change = time.monotonic()

    def pairs(self) -> set[str]:
        """Pairs confirmed and not ended since."""
        return self.confirmed - self.ended

    def sessions(self) -> int:
        return sum(len(s) for s in self.scheduled.values())

    def fully_booked(self) -> int:
        return sum(1 for p, s in self.scheduled.items() if len(s) >= self.totals.get(p, 0))

    def settled(self) -> bool:
        pairs = self.pairs()
        booked = all(
            p in self.booking_failed or len(self.scheduled.get(p, ())) >= self.totals.get(p, 1)
            for p in pairs
        )
        return bool(pairs) and booked and self.sent["booking"] >= 2 * self.fully_booked()


@dataclass(frozen=True)
class ReportData:
    """Everything the sections read: the programme, the cohort, the events, the round."""

    programme: ProgrammeConfigured
    cohort: list[dict[str, Any]]
    tally: Tally
    last_round: dict[str, Any]
    root: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(HTTP_PORTS))


@dataclass(frozen=True)
class DetailTable:
    """Rows behind a section's summary (every row goes to CSV; `shown` of them to a terminal)."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    shown: int = 0


@dataclass(frozen=True)
class Section:
    """One part of the report: a title, summary lines and detail tables."""

    name: str
    title: str
    lines: list[tuple[str, str]]
    details: list[DetailTable] = field(default_factory=list)


# ---------------------------------------------------------------- pure helpers


def last_session_week(programme: ProgrammeConfigured) -> date | None:
    """The Monday-based week of the last session (first week + period x (sessions - 1))."""
    if programme.starts_on is None:
        return None
    period = 14 if programme.cadence == "fortnightly" else 7
    return date.fromisoformat(str(programme.starts_on)) + timedelta(
        days=period * (programme.sessions - 1)
    )


def _minutes(value: int) -> str:
    if value and value % 1440 == 0:
        return f"{value // 1440} d"
    if value and value % 60 == 0:
        return f"{value // 60} h"
    return f"{value} min"


def _sessions(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def weak_flags(proposal: dict[str, Any], session_minutes: int) -> list[str]:
    """Why a pair is weak: someone learns nothing they asked for, or too little common time."""
    reasons = proposal.get("reasons", {})
    flags = []
    if not reasons.get("mentee_learns"):
        flags.append("mentee learns nothing asked for")
    if not reasons.get("mentor_learns"):
        flags.append("mentor learns nothing asked for")
    if reasons.get("weekly_overlap_minutes", 0) < MIN_OVERLAP_SESSIONS * session_minutes:
        flags.append(f"weekly overlap below {MIN_OVERLAP_SESSIONS} sessions")
    return flags


def unmatched_reason(person: dict[str, Any]) -> str:
    """`no eligible partner (mostly: no time overlap)` or the round's reason as given."""
    rules: dict[str, int] = person.get("blocking_rules") or {}
    if person["reason"] == "no eligible partner" and rules:
        rule = max(rules.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return f"no eligible partner (mostly: {rule})"
    if person["reason"] == "eligible partners all taken" and person.get("role") == "mentor":
        return "eligible partners all taken (spare mentor)"
    return str(person["reason"])


# ---------------------------------------------------------------- sections


def programme_section(data: ReportData) -> Section:
    p = data.programme
    last = last_session_week(p)
    dates = f"{p.starts_on} to the week of {last}" if last else "from the day it is processed"
    reminders = ", ".join(_minutes(m) for m in p.reminder_minutes) or "none"
    m = p.matching
    acceptance = "acceptance required" if m.acceptance_required else "no acceptance step"
    departments = "across departments" if m.cross_department else "within departments"
    min_score = (
        f"{m.min_score:.2f} (weaker pairs are not formed)"
        if m.min_score > 0
        else "0 (no pair is refused for a low score)"
    )
    return Section(
        "programme",
        f"Programme {p.programme_id}",
        [
            ("name", p.name or p.programme_id),
            ("dates", dates),
            ("cadence", f"{p.cadence}, {p.sessions} sessions of {p.session_minutes} min"),
            ("reminders", f"{reminders} before each session"),
            ("matching", f"{m.mode}, {acceptance}, grade gap >= {m.min_grade_gap}, {departments}"),
            ("minimum pair score", min_score),
        ],
    )


def people_section(data: ReportData) -> Section:
    roles = Counter(p["role"] for p in data.cohort)
    return Section(
        "people",
        "People",
        [
            (
                "enrolled",
                f"{len(data.cohort)} ({roles['mentee']} mentees, {roles['mentor']} mentors)",
            )
        ],
    )


def unmatched_section(data: ReportData) -> Section:
    unmatched: list[dict[str, Any]] = data.last_round.get("unmatched", [])
    lines: list[tuple[str, str]] = []
    for role, label in (("mentee", "mentees without a partner"), ("mentor", "mentors unused")):
        people = [u for u in unmatched if u.get("role") == role]
        lines.append((label, str(len(people))))
        for reason, count in Counter(unmatched_reason(u) for u in people).most_common():
            lines.append(("", f"{count} x {reason}"))
    rows = [
        (u["participant_id"], str(u.get("role", "?")), unmatched_reason(u))
        for u in sorted(unmatched, key=lambda u: (u.get("role") != "mentee", u["participant_id"]))
    ]
    mentees = DetailTable(
        "unmatched_mentees",
        "Mentees without a partner",
        ("participant", "role", "why"),
        [row for row in rows if row[1] == "mentee"],
        shown=8,
    )
    everyone = DetailTable(
        "unmatched_people", "Unmatched people", ("participant", "role", "why"), rows
    )
    return Section("unmatched", "Unmatched after the round", lines, [mentees, everyone])


def pairs_section(data: ReportData) -> Section:
    tally, minutes = data.tally, data.programme.session_minutes
    pairs = sorted(tally.pairs())
    proposals = [tally.proposed[p] for p in pairs if p in tally.proposed]
    scores = [float(p["score"]) for p in proposals]
    lines: list[tuple[str, str]] = [("pairs formed", str(len(pairs)))]
    if scores:
        lines.append(
            (
                "pair score",
                f"average {sum(scores) / len(scores):.3f}, lowest {min(scores):.3f}, "
                f"highest {max(scores):.3f}",
            )
        )
    flagged = [(p, weak_flags(p, minutes)) for p in proposals]
    weak = [(p, flags) for p, flags in flagged if flags]
    lines.append(("weak pairs", f"{len(weak)} of {len(proposals)}"))
    for flag, count in Counter(f for _, flags in weak for f in flags).most_common():
        lines.append(("", f"{count} x {flag}"))
    overlaps = [int(p["reasons"]["weekly_overlap_minutes"]) for p in proposals]
    if overlaps:
        lines.append(
            (
                "weekly overlap",
                f"smallest {min(overlaps)} min ({_sessions(min(overlaps) // minutes)}), "
                f"median {sorted(overlaps)[len(overlaps) // 2]} min",
            )
        )

    def row(p: dict[str, Any], flags: list[str]) -> tuple[str, ...]:
        r = p["reasons"]
        return (
            p["pair_id"],
            p["mentor_id"],
            p["mentee_id"],
            f"{float(p['score']):.3f}",
            ", ".join(r["mentee_learns"]) or "-",
            ", ".join(r["mentor_learns"]) or "-",
            str(r["weekly_overlap_minutes"]),
            str(len(tally.scheduled.get(p["pair_id"], ()))),
            "; ".join(flags),
        )

    columns = (
        "pair",
        "mentor",
        "mentee",
        "score",
        "mentee learns",
        "mentor learns",
        "overlap min/week",
        "sessions",
        "weak because",
    )
    by_score = sorted(flagged, key=lambda pf: (float(pf[0]["score"]), pf[0]["pair_id"]))
    return Section(
        "pairs",
        "Pairs",
        lines,
        [
            DetailTable(
                "weak_pairs",
                "Weak pairs, weakest first",
                ("mentor", "mentee", "score", "overlap min/week", "weak because"),
                [_weak_row(p, f) for p, f in by_score if f],
                shown=8,
            ),
            DetailTable("all_pairs", "All pairs", columns, [row(p, f) for p, f in by_score]),
        ],
    )


def _weak_row(proposal: dict[str, Any], flags: list[str]) -> tuple[str, ...]:
    return (
        proposal["mentor_id"],
        proposal["mentee_id"],
        f"{float(proposal['score']):.3f}",
        str(proposal["reasons"]["weekly_overlap_minutes"]),
        "; ".join(flags),
    )


def sessions_section(data: ReportData) -> Section:
    tally = data.tally
    lines = [
        ("sessions booked", f"{tally.sessions()} ({tally.fully_booked()} pairs fully booked)"),
        ("booking failures", str(len(tally.booking_failed))),
    ]
    failures = DetailTable(
        "booking_failures",
        "Pairs whose sessions could not be booked",
        ("pair", "reason"),
        sorted(tally.booking_failed.items()),
        shown=5,
    )
    return Section("sessions", "Sessions", lines, [failures])


def emails_section(data: ReportData) -> Section:
    tally = data.tally
    sent = ", ".join(f"{n} {t}" for t, n in sorted(tally.sent.items())) or "none"
    failed = ", ".join(f"{n} {t}" for t, n in sorted(tally.failed.items())) or "none"
    return Section(
        "emails",
        "Emails",
        [
            ("sent", f"{sum(tally.sent.values())} ({sent})"),
            ("failed", f"{sum(tally.failed.values())} ({failed})"),
            ("kept in", _shown_path(data.root / "mail")),
        ],
    )


def links_section(data: ReportData) -> Section:
    mentee = next((p["participant_id"] for p in data.cohort if p["role"] == "mentee"), "")
    programme_id = data.programme.programme_id
    return Section(
        "links",
        "Where to look",
        [
            (
                "calendar feed",
                f"http://127.0.0.1:{data.ports['scheduling']}/participants/{mentee}/calendar.ics",
            ),
            (
                "pairs API",
                f"http://127.0.0.1:{data.ports['matching']}/programmes/{programme_id}/pairs",
            ),
        ],
    )


SECTIONS: list[Callable[[ReportData], Section]] = [
    programme_section,
    people_section,
    unmatched_section,
    pairs_section,
    sessions_section,
    emails_section,
    links_section,
]
"""The report, in order; add a section by adding its function."""


def build(
    data: ReportData, sections: Sequence[Callable[[ReportData], Section]] = ()
) -> list[Section]:
    """Every section of the report."""
    return [section(data) for section in (sections or SECTIONS)]


# ---------------------------------------------------------------- output


def print_report(data: ReportData, console: Console) -> list[Section]:
    """The summary as one table, then the first rows of each detail table that has any."""
    sections = build(data)
    summary = Table(title="Programme manager's report", show_header=False, title_style="bold")
    summary.add_column(style="cyan", no_wrap=True)
    summary.add_column(overflow="fold")
    for index, section in enumerate(sections):
        if index:
            summary.add_section()
        summary.add_row(f"[bold]{escape(section.title)}[/]", "")
        for label, value in section.lines:
            summary.add_row(escape(label), escape(value))
    console.print(summary)
    for section in sections:
        for detail in section.details:
            if not detail.shown or not detail.rows:
                continue
            table = Table(title=detail.title, title_style="bold")
            for column in detail.columns:
                table.add_column(column, overflow="fold")
            for row in detail.rows[: detail.shown]:
                table.add_row(*(escape(cell) for cell in row))
            console.print(table)
            hidden = len(detail.rows) - detail.shown
            if hidden > 0:
                console.print(
                    f"  ... and {hidden} more: `--csv DIR` writes them all", highlight=False
                )
    return sections


def write_csv(data: ReportData, folder: Path) -> list[Path]:
    """Every section's lines (`<section>.csv`) and every detail table (`<table>.csv`)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for section in build(data):
        tables = [DetailTable(section.name, section.title, ("item", "value"), _filled(section))]
        for detail in [*tables, *section.details]:
            path = folder / f"{detail.name}.csv"
            if path in written:
                raise ValueError(f"two tables of the report are named {detail.name}")
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(detail.columns)
                writer.writerows(detail.rows)
            written.append(path)
    return written


def _filled(section: Section) -> list[tuple[str, ...]]:
    # A continuation line (empty label) belongs to the label above it.
    rows: list[tuple[str, ...]] = []
    label = ""
    for item, value in section.lines:
        label = item or label
        rows.append((label, value))
    return rows
