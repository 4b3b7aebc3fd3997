"""Value types shared by every event of the contract (CONTRACT.md section 3)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
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


def _matching(pattern: str, meaning: str) -> AfterValidator:
    """Check a string against `pattern`, failing with a sentence rather than the regex."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not {meaning}")
        return value

    return AfterValidator(check)


ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"

Id = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64),
    _matching(ID_PATTERN, "an id (a letter or digit, then letters, digits, '.', '_', ':', '-')"),
    Field(json_schema_extra={"pattern": ID_PATTERN}),
]
"""A participant, programme, pair, session or notification id."""

EventId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]
"""A CloudEvents `id`: any 1..128 characters, unique per producer."""


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
    StringConstraints(strict=True),
    AfterValidator(_check_tag),
    Field(
        json_schema_extra={
            "minLength": 1,
            "maxLength": 64,
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
_LANGTAG = (
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

_CLOCK = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
_CLOCK_OR_MIDNIGHT = r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


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

Reason = Annotated[str, StringConstraints(strict=True, max_length=500)] | None
"""Free text a person wrote, at most 500 characters, or null."""

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339_only(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError(
                f"{value!r} is not an RFC 3339 date-time with an offset (e.g. 2027-01-04T09:00:00Z)"
            )
        return value
    raise ValueError(f"{value!r} is not an RFC 3339 date-time string (e.g. 2027-01-04T09:00:00Z)")


def rfc3339(value: datetime) -> str:
    """An aware datetime as Twoway writes it: RFC 3339 in UTC with `Z`."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a date-time must have an offset (e.g. Z or +01:00)")
    return value.astimezone(UTC)


UtcDateTime = Annotated[datetime, BeforeValidator(_rfc3339_only), AfterValidator(_to_utc)]
"""An instant: RFC 3339 with an offset on the wire, held as a UTC `datetime`; naive is invalid."""

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date_only(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        return value
    raise ValueError(f"{value!r} is not a date YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]
"""A calendar date, `YYYY-MM-DD` on the wire."""


def _check_email(value: str) -> str:
    try:
        # Syntax only: no DNS; dotless intranet hosts and `.test` domains are fine, but
        # special-use names that never receive mail (.local, .localhost, .invalid) are not.
        checked = validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc
    # The ASCII form (lower-case, punycode domain) suits SMTP; keep Unicode only if it must.
    return checked.ascii_email or checked.normalized


Email = Annotated[
    str,
    StringConstraints(strict=True, min_length=3, max_length=254),
    AfterValidator(_check_email),
    Field(json_schema_extra={"format": "email"}),
]
"""An email address: syntax checked, domain lower-cased and in ASCII (punycode) form."""
