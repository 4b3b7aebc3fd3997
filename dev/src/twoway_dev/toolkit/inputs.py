"""HR export files (CSV and JSONL) to validated participant profiles, and back; no I/O."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import ValidationError
from twoway_shared.contract import ParticipantEnrolled, ParticipantProfile, ParticipantUpdated
from twoway_shared.contract.envelope import describe, describe_errors

Format = Literal["csv", "jsonl"]

CSV_COLUMNS: tuple[str, ...] = (
    "participant_id",
    "programme_id",
    "role",
    "display_name",
    "email",
    "grade",
    "department",
    "manager_id",
    "location",
    "timezone",
    "languages",
    "offers",
    "wants",
    "availability",
    "capacity",
    "locale",
    "notify_email",
    "notify_reminders",
    "revision",
)
"""The columns of an HR export CSV, in the order `to_csv` writes them."""

REQUIRED_COLUMNS = frozenset(
    {"participant_id", "programme_id", "role", "display_name", "email", "grade", "department"}
    | {"timezone", "languages", "availability"}
)
LIST_COLUMNS = frozenset({"languages", "offers", "wants"})
INT_COLUMNS = frozenset({"grade", "capacity", "revision"})
NULLABLE_COLUMNS = frozenset({"manager_id", "location"})
BOOL_COLUMNS = {"notify_email": "email", "notify_reminders": "reminders"}

_LIST_SEPARATOR = re.compile(r"[;|]")
_WINDOW = re.compile(
    r"^(?P<day>[A-Za-z]{3})[a-z]*\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


@dataclass(frozen=True)
class RowError:
    """One invalid row (or header) of an input file: where it is and why it is invalid."""

    line: int
    reason: str
    participant_id: str | None = None

    def __str__(self) -> str:
        who = f" ({self.participant_id})" if self.participant_id else ""
        return f"line {self.line}{who}: {self.reason}"


@dataclass(frozen=True)
class ValidRow:
    """One valid row: its line number and the profile it holds."""

    line: int
    profile: ParticipantProfile


@dataclass(frozen=True)
class Parsed:
    """The result of reading a file: the valid profiles and the invalid rows, in file order."""

    valid: list[ValidRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def profiles(self) -> list[ParticipantProfile]:
        return [row.profile for row in self.valid]


class RowProblem(ValueError):
    """A row that cannot be turned into a profile; the message names the field."""

    def __init__(self, reason: str, participant_id: str | None = None) -> None:
        super().__init__(reason)
        self.participant_id = participant_id


def format_of(filename: str) -> Format | None:
    """The input format a file name suggests (`.csv`, `.jsonl`/`.ndjson`), or None."""
    lower = filename.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return None


def split_list(cell: str) -> list[str]:
    """A list cell: items separated by `;` or `|`, trimmed, empty items dropped."""
    return [item.strip() for item in _LIST_SEPARATOR.split(cell) if item.strip()]


def _clock(text: str) -> str:
    hours, minutes = text.split(":")
    return f"{int(hours):02d}:{minutes}"


def parse_availability(cell: str) -> list[dict[str, str]]:
    """`mon 09:00-12:00; thu 14:00-24:00` -> availability windows (checked later by the model)."""
    windows = []
    for item in split_list(cell):
        match = _WINDOW.match(item)
        if match is None:
            raise RowProblem(
                f"field availability: {item!r} is not a window 'day HH:MM-HH:MM' "
                "(e.g. mon 09:00-12:00; thu 14:00-24:00)"
            )
        windows.append(
            {
                "day": match["day"].lower(),
                "start": _clock(match["start"]),
                "end": _clock(match["end"]),
            }
        )
    return windows


def _boolean(column: str, cell: str) -> bool:
    lowered = cell.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise RowProblem(f"field {column}: {cell!r} is not true or false")


def _integer(column: str, cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise RowProblem(f"field {column}: {cell!r} is not a whole number") from None


def csv_row_to_profile(row: Mapping[str, str]) -> dict[str, Any]:
    """One CSV row (column -> cell) as a JSON-shaped profile; empty cells take the defaults."""
    profile, problems = read_csv_row(row)
    if problems:
        raise RowProblem("; ".join(problems.values()))
    return profile


def read_csv_row(row: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A CSV row as a profile without its unreadable cells, and why each is (field -> reason)."""
    profile: dict[str, Any] = {}
    notify: dict[str, bool] = {}
    problems: dict[str, str] = {}
    for column, raw in row.items():
        cell = raw.strip()
        try:
            if column in BOOL_COLUMNS:
                if cell:
                    notify[BOOL_COLUMNS[column]] = _boolean(column, cell)
            elif column == "availability":
                profile[column] = parse_availability(cell)
            elif column in LIST_COLUMNS:
                profile[column] = split_list(cell)
            elif not cell:
                if column in NULLABLE_COLUMNS:
                    profile[column] = None
            elif column in INT_COLUMNS:
                profile[column] = _integer(column, cell)
            elif column in CSV_COLUMNS:
                profile[column] = cell
        except RowProblem as problem:
            problems["notify" if column in BOOL_COLUMNS else column] = str(problem)
    if notify:
        profile["notify"] = notify
    return profile, problems


def _remaining_problems(document: dict[str, Any], known: Mapping[str, str], updated: bool) -> str:
    """The model's complaints about a row, besides those about cells already known bad."""
    model = ParticipantUpdated if updated else ParticipantEnrolled
    try:
        model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        others = [e for e in errors if not (e["loc"] and str(e["loc"][0]) in known)]
        return describe_errors(others)
    return ""


def validate_profile(document: Any, *, updated: bool = False) -> ParticipantProfile:
    """A JSON-shaped profile as `participant.enrolled` (or `.updated`) data, or `RowProblem`."""
    model = ParticipantUpdated if updated else ParticipantEnrolled
    if not isinstance(document, dict):
        raise RowProblem(f"expected a JSON object with the profile fields, got {_kind(document)}")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise RowProblem(describe(exc)) from None


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _id_of(document: Any) -> str | None:
    if isinstance(document, Mapping):
        value = document.get("participant_id")
        if isinstance(value, str) and value.strip():
            return value.strip()[:64]
    return None


def _collect(rows: Iterable[tuple[int, Any]], errors: list[RowError], updated: bool) -> Parsed:
    """Validate (line, document-or-problem) pairs; a repeated participant id is an error."""
    parsed = Parsed(errors=errors)
    first_line: dict[str, int] = {}
    for line, document in rows:
        if isinstance(document, RowProblem):
            parsed.errors.append(RowError(line, str(document), document.participant_id))
            continue
        try:
            profile = validate_profile(document, updated=updated)
        except RowProblem as exc:
            parsed.errors.append(RowError(line, str(exc), _id_of(document)))
            continue
        earlier = first_line.setdefault(profile.participant_id, line)
        if earlier != line:
            reason = f"participant_id {profile.participant_id} is already on line {earlier}"
            parsed.errors.append(RowError(line, reason, profile.participant_id))
            continue
        parsed.valid.append(ValidRow(line, profile))
    parsed.errors.sort(key=lambda error: error.line)
    return parsed


def _csv_documents(
    text: str, errors: list[RowError], updated: bool = False
) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    previous_end = 0
    for cells in reader:
        line, previous_end = previous_end + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            missing = sorted(REQUIRED_COLUMNS - set(header))
            if missing:
                errors.append(RowError(line, f"header has no column {', '.join(missing)}"))
                return
            continue
        if len(cells) != len(header):
            reason = f"row has {len(cells)} cells; the header has {len(header)}"
            yield line, RowProblem(reason, _id_of(dict(zip(header, cells, strict=False))))
            continue
        row = dict(zip(header, cells, strict=True))
        # Every problem of the row at once: the unreadable cells, then what the model says
        # about the rest, so one round of fixes is enough.
        profile, problems = read_csv_row(row)
        if problems:
            reasons = [*problems.values(), _remaining_problems(profile, problems, updated)]
            yield line, RowProblem("; ".join(r for r in reasons if r), _id_of(row))
        else:
            yield line, profile
    if header is None:
        errors.append(RowError(1, "file is empty; expected a header row of profile fields"))


def _jsonl_documents(text: str) -> Iterator[tuple[int, Any]]:
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            yield line, orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            yield line, RowProblem(f"not JSON: {exc}")


def parse_csv(text: str, *, updated: bool = False) -> Parsed:
    """Read an HR export CSV (header row of profile fields) into valid profiles and errors."""
    errors: list[RowError] = []
    documents = _csv_documents(text.removeprefix("\ufeff"), errors, updated)
    return _collect(documents, errors, updated)


def parse_jsonl(text: str, *, updated: bool = False) -> Parsed:
    """Read JSON Lines (one profile object per line) into valid profiles and errors."""
    return _collect(_jsonl_documents(text.removeprefix("\ufeff")), [], updated)


def parse_text(text: str, fmt: Format, *, updated: bool = False) -> Parsed:
    """Read a file's text in the given format."""
    return parse_csv(text, updated=updated) if fmt == "csv" else parse_jsonl(text, updated=updated)


def _cell(column: str, profile: Mapping[str, Any]) -> str:
    if column in BOOL_COLUMNS:
        value = profile.get("notify", {}).get(BOOL_COLUMNS[column], True)
        return "true" if value else "false"
    value = profile.get(column)
    if value is None:
        return ""
    if column == "availability":
        return "; ".join(f"{w['day']} {w['start']}-{w['end']}" for w in value)
    if column in LIST_COLUMNS:
        return "; ".join(value)
    return str(value)


def to_csv(profiles: Iterable[Mapping[str, Any]]) -> str:
    """JSON-shaped profiles as an HR export CSV that `parse_csv` reads back unchanged."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for profile in profiles:
        writer.writerow([_cell(column, profile) for column in CSV_COLUMNS])
    return out.getvalue()


def to_jsonl(profiles: Iterable[Mapping[str, Any]]) -> str:
    """JSON-shaped profiles as JSON Lines, one object per line."""
    return "".join(orjson.dumps(dict(profile)).decode() + "\n" for profile in profiles)
