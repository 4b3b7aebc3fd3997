"""Value types shared by every event of the contract (CONTRACT.md section 3)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Protocol, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

# Wrong JSON types are invalid (CONTRACT.md section 1): numbers are never read from strings,
# booleans are never numbers, and a string is never read from a number.
StrictInt = Annotated[int, Field(strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]
StrictStr = Annotated[str, Field(strict=True)]


class ContractModel(BaseModel):
    """Base of every contract model: immutable, and tolerant of unknown fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class PairMembers(TypedDict):
    """The four fields that name a pair in every pair and session event."""

    pair_id: str
    programme_id: str
    mentor_id: str
    mentee_id: str


class _OfAPair(Protocol):
    @property
    def pair_id(self) -> str: ...
    @property
    def programme_id(self) -> str: ...
    @property
    def mentor_id(self) -> str: ...
    @property
    def mentee_id(self) -> str: ...


def pair_members(of: _OfAPair) -> PairMembers:
    """Which pair a pair, a session or an event is about (its four naming fields)."""
    return PairMembers(
        pair_id=of.pair_id,
        programme_id=of.programme_id,
        mentor_id=of.mentor_id,
        mentee_id=of.mentee_id,
    )


def whole(pattern: str) -> str:
    """An anchored pattern that also means "the whole string" where `$` does not.

    ECMA-262 (what JSON Schema's `pattern` means) ends `$` at the end of the input, but
    Python's `re` (the `jsonschema` package) also before a final line feed: `(?!\\n)` makes both
    refuse `"E12345\\n"`.
    """
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ValueError(f"{pattern!r} is not anchored with ^ and $")
    return pattern + r"(?!\n)"


def _matching(pattern: str, meaning: str) -> AfterValidator:
    """Check a whole string against `pattern`, failing with a sentence rather than the regex.

    A full match, as JSON Schema's anchored `pattern` means it: `re.match` with `$` would
    also accept a trailing newline.
    """
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {meaning}")
        return value

    return AfterValidator(check)


# Control characters (C0, DEL, C1) and lone surrogates, which PostgreSQL, email headers and
# terminals each treat differently. One-line text has none; free text a person wrote may keep
# tabs and line breaks. The same classes serve as JSON Schema patterns (ECMA-262 syntax).
ONE_LINE_PATTERN = whole("^[^\\u0000-\\u001f\\u007f-\\u009f\\ud800-\\udfff]*$")
MULTI_LINE_PATTERN = whole(
    "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f\\ud800-\\udfff]*$"
)
_ONE_LINE_BAD = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")
_MULTI_LINE_BAD = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")


def _clean(bad: re.Pattern[str], allowed: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            found = bad.search(value)
            if found is not None:
                raise ValueError(
                    f"contains the control character U+{ord(found.group()):04X} at position "
                    f"{found.start()}; {allowed}"
                )
        return value

    return check


no_control = _clean(_ONE_LINE_BAD, "no control characters are allowed here")
no_control_but_line_breaks = _clean(
    _MULTI_LINE_BAD, "only tab, line feed and carriage return are allowed here"
)

OneLine = Annotated[
    str,
    BeforeValidator(no_control),
    StringConstraints(strict=True),
    Field(json_schema_extra={"pattern": ONE_LINE_PATTERN}),
]
"""Text on one line: a name, a department; no control characters."""

FreeText = Annotated[
    str,
    BeforeValidator(no_control_but_line_breaks),
    StringConstraints(strict=True),
    Field(json_schema_extra={"pattern": MULTI_LINE_PATTERN}),
]
"""Text a person wrote (a reason, a comment): tabs and line breaks, no other control chars."""


ID_PATTERN = whole(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")

Id = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64),
    _matching(ID_PATTERN, "an id (a letter or digit, then letters, digits, '.', '_', ':', '-')"),
    Field(json_schema_extra={"pattern": ID_PATTERN}),
]
"""A participant, programme, pair, session or notification id."""

EventId = Annotated[OneLine, StringConstraints(strict=True, min_length=1, max_length=128)]
"""A CloudEvents `id`: any 1..128 characters but control characters, unique per producer."""


_WHITESPACE_RUN = re.compile(r"\s+")


def normalise_tag(value: Any) -> Any:
    """Trim, lower-case and join inner whitespace runs with `-`; non-strings pass through."""
    if isinstance(value, str):
        return _WHITESPACE_RUN.sub("-", value.strip().lower())
    return value


def _check_tag(tag: str) -> str:
    if not 1 <= len(tag) <= 64:
        raise ValueError(
            f"tag {tag!r} has {len(tag)} characters once normalised; 1..64 are allowed"
        )
    return tag


Tag = Annotated[
    str,
    BeforeValidator(normalise_tag),
    # Checked on the raw value: normalising would quietly turn a tab or a line break into "-".
    BeforeValidator(no_control),
    StringConstraints(strict=True),
    AfterValidator(_check_tag),
    Field(
        json_schema_extra={
            "minLength": 1,
            "maxLength": 64,
            "pattern": ONE_LINE_PATTERN,
            "description": "Case-insensitive tag: trimmed, lower-cased, inner whitespace runs "
            "become '-' before the length check.",
        }
    ),
]
"""A skill or topic; case-insensitive, so `"Generative AI"` is stored as `"generative-ai"`."""


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


Tags = Annotated[list[Tag], Field(max_length=30), AfterValidator(_unique)]
"""0..30 tags, duplicates (after normalisation) removed, first occurrence kept."""


# RFC 5646 "langtag" (language-extlang-script-region-variant-extension-privateuse),
# plus a bare private-use tag; grandfathered tags are not accepted.
_LANGTAG = whole(
    r"^(?:(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})"
    r"(?:-[A-Za-z]{4})?"
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?"
    r"|[Xx](?:-[A-Za-z0-9]{1,8})+)$"
)

Language = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=35),
    _matching(_LANGTAG, "a BCP 47 language tag (e.g. en, en-GB, pt-BR)"),
    Field(json_schema_extra={"pattern": _LANGTAG}),
]
"""A BCP 47 language tag such as `en`, `en-GB` or `pt-BR`, kept as written."""


def primary_subtag(language: str) -> str:
    """The lower-cased primary subtag (`"pt-BR"` -> `"pt"`); languages match when these match."""
    return language.split("-", 1)[0].lower()


def _check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone name") from exc
    return name


TimeZoneName = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64),
    AfterValidator(_check_time_zone),
    Field(json_schema_extra={"format": "iana-time-zone"}),
]
"""An IANA time zone name (`Europe/London`); anything `zoneinfo` cannot load is invalid."""

Grade = Annotated[int, Field(strict=True, ge=1, le=30)]
"""Seniority, 1..30; higher is more senior."""

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekdays in order, Monday first (index = `date.weekday()`)."""

_CLOCK = whole(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$")
_CLOCK_OR_MIDNIGHT = whole(r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")


def minutes_of_day(clock: str) -> int:
    """Minutes since midnight of an `"HH:MM"` time (`"24:00"` -> 1440)."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class AvailabilityWindow(ContractModel):
    """A weekly recurring window in the participant's own time zone; `end` may be `24:00`."""

    day: Weekday
    start: Annotated[
        str,
        StringConstraints(strict=True),
        _matching(_CLOCK, "a time HH:MM from 00:00 to 23:59"),
        Field(json_schema_extra={"pattern": _CLOCK}),
    ]
    end: Annotated[
        str,
        StringConstraints(strict=True),
        _matching(_CLOCK_OR_MIDNIGHT, "a time HH:MM from 00:01 to 24:00"),
        Field(json_schema_extra={"pattern": _CLOCK_OR_MIDNIGHT}),
    ]

    @model_validator(mode="after")
    def _start_before_end(self) -> AvailabilityWindow:
        if self.start_minute >= self.end_minute:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    @property
    def start_minute(self) -> int:
        """Minutes since local midnight at which the window opens."""
        return minutes_of_day(self.start)

    @property
    def end_minute(self) -> int:
        """Minutes since local midnight at which the window closes (1440 for `24:00`)."""
        return minutes_of_day(self.end)

    @property
    def weekday(self) -> int:
        """The day as `date.weekday()` numbers it (Monday 0 .. Sunday 6)."""
        return WEEKDAYS.index(self.day)


Availability = Annotated[list[AvailabilityWindow], Field(min_length=1, max_length=50)]
"""1..50 weekly windows; overlapping windows are allowed and mean their union."""

Reason = Annotated[FreeText, StringConstraints(strict=True, max_length=500)] | None
"""Free text a person wrote, at most 500 characters, or null."""

# Every date and instant lies in the years 2000..2099: far enough for any programme, near
# enough that the services' date arithmetic (series, reminders, rounds) never overflows.
MIN_YEAR, MAX_YEAR = 2000, 2099
_YEAR = "20[0-9]{2}"
RFC3339_PATTERN = whole(
    f"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}[Tt][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\\.[0-9]{{1,9}})?"
    "(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
ISO_DATE_PATTERN = whole(f"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}$")
_RFC3339 = re.compile(RFC3339_PATTERN)


def _rfc3339_only(value: Any) -> Any:
    if isinstance(value, datetime):
        _check_year(value.year)
        return value
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an RFC 3339 date-time with an offset in the years "
                f"{MIN_YEAR}..{MAX_YEAR} (e.g. 2027-01-04T09:00:00Z)"
            )
        return value
    raise ValueError(f"{value!r} is not an RFC 3339 date-time string (e.g. 2027-01-04T09:00:00Z)")


def _check_year(year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"the year {year} is outside {MIN_YEAR}..{MAX_YEAR}")


def rfc3339(value: datetime) -> str:
    """An aware datetime as Twoway writes it: RFC 3339 in UTC with `Z`."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a date-time must have an offset (e.g. Z or +01:00)")
    return value.astimezone(UTC)


UtcDateTime = Annotated[
    datetime,
    BeforeValidator(_rfc3339_only),
    AfterValidator(_to_utc),
    Field(json_schema_extra={"pattern": RFC3339_PATTERN}),
]
"""An instant: RFC 3339 with an offset on the wire, held as a UTC `datetime`; naive is invalid."""

_ISO_DATE = re.compile(ISO_DATE_PATTERN)


def _iso_date_only(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        _check_year(value.year)
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return value
    raise ValueError(f"{value!r} is not a date YYYY-MM-DD in the years {MIN_YEAR}..{MAX_YEAR}")


IsoDate = Annotated[
    date, BeforeValidator(_iso_date_only), Field(json_schema_extra={"pattern": ISO_DATE_PATTERN})
]
"""A calendar date, `YYYY-MM-DD` on the wire, in the years 2000..2099."""


def _check_email(value: str) -> str:
    try:
        # Syntax only: no DNS; dotless intranet hosts and `.test` domains are fine, but
        # special-use names that never receive mail (.local, .localhost, .invalid) are not.
        # An internationalised local part (josé@...) needs SMTPUTF8 at every relay on the
        # way, which enterprise relays rarely offer: refused here rather than never sent.
        checked = validate_email(
            value,
            check_deliverability=False,
            globally_deliverable=False,
            test_environment=True,
            allow_smtputf8=False,
        )
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    # The ASCII form (lower-case, punycode domain) is what SMTP sends.
    if checked.ascii_email is None:  # not reached with allow_smtputf8=False
        raise ValueError("not a valid email address: the address must be sendable in ASCII")
    return checked.ascii_email


# Printable ASCII but "@" before the one "@"; the domain may be internationalised (it is
# sent as punycode).
EMAIL_PATTERN = whole("^[!-?A-~]+@[^@\\s]+$")

Email = Annotated[
    str,
    StringConstraints(strict=True, min_length=3, max_length=254),
    AfterValidator(_check_email),
    Field(json_schema_extra={"format": "email", "pattern": EMAIL_PATTERN}),
]
"""An email address: syntax checked, ASCII local part, domain lower-cased in ASCII (punycode)."""
