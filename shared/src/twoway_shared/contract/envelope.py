"""The CloudEvents envelope: parsing and validating records, and building and encoding events."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import uuid4

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import ErrorDetails

from twoway_shared.contract.events import EVENT_MODELS, event_type_of
from twoway_shared.contract.topics import TOPIC_EVENT_TYPES, TOPIC_KEY_FIELD, Topic
from twoway_shared.contract.values import ContractModel, EventId, OneLine, StrictStr, UtcDateTime

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
"""The `content-type` header of every record Twoway produces."""

MAX_RECORD_BYTES = 1024 * 1024
"""A record value larger than this (1 MiB) is invalid."""

MAX_REASON_CHARS = 1000
"""Upper bound of an `InvalidRecord` sentence (it travels in a dead-letter header)."""

_FULL_TYPE = re.compile(r"^twoway\.([a-z_]+\.[a-z_]+)\.v1$")
_URI_REFERENCE = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$")
_JSON_MEDIA_TYPE = re.compile(
    r"^(?:application/json|text/json|application/[a-z0-9!#$&^_.+-]+\+json)\s*(?:;.*)?$",
    re.IGNORECASE,
)
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def full_type(short: str) -> str:
    """The CloudEvents `type` of a short type: `pair.confirmed` -> `twoway.pair.confirmed.v1`."""
    return f"twoway.{short}.v1"


def short_type(full: str) -> str | None:
    """The short event type of a contract CloudEvents `type`, or None if it is not one."""
    match = _FULL_TYPE.fullmatch(full)
    if match is None or match.group(1) not in EVENT_MODELS:
        return None
    return match.group(1)


def _check_source(value: str) -> str:
    if not _URI_REFERENCE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a URI-reference (e.g. /portal/hr or urn:twoway:matching)"
        )
    return value


def _check_content_type(value: str) -> str:
    if not _JSON_MEDIA_TYPE.fullmatch(value):
        raise ValueError(f"{value!r} is not a JSON media type; use application/json")
    return value


def _check_traceparent(value: str) -> str:
    match = _TRACEPARENT.fullmatch(value)
    valid = (
        match is not None
        and match.group(1) != "ff"
        and (match.group(1) != "00" or match.group(5) is None)
        and match.group(2) != "0" * 32
        and match.group(3) != "0" * 16
    )
    if not valid:
        raise ValueError(
            f"{value!r} is not a W3C traceparent "
            "(00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>)"
        )
    return value


NonEmpty = Annotated[str, StringConstraints(strict=True, min_length=1)]


class CloudEvent(ContractModel):
    """A CloudEvents 1.0 event in structured JSON mode; unknown extension attributes are ignored."""

    specversion: Literal["1.0"]
    id: EventId
    source: Annotated[
        StrictStr,
        AfterValidator(_check_source),
        Field(json_schema_extra={"format": "uri-reference", "minLength": 1}),
    ]
    type: NonEmpty
    time: UtcDateTime | None = None
    subject: Annotated[OneLine, StringConstraints(min_length=1)] | None = None
    datacontenttype: (
        Annotated[
            StrictStr,
            AfterValidator(_check_content_type),
            Field(description="application/json, text/json or application/*+json, any parameters"),
        ]
        | None
    ) = None
    data: dict[str, Any]
    correlationid: EventId | None = None
    causationid: EventId | None = None
    traceparent: (
        Annotated[
            StrictStr,
            AfterValidator(_check_traceparent),
            Field(json_schema_extra={"pattern": _TRACEPARENT.pattern}),
        ]
        | None
    ) = None


T_co = TypeVar("T_co", bound=BaseModel, covariant=True)


@dataclass(frozen=True)
class Event(Generic[T_co]):
    """A valid record: its envelope, its short event type and its typed `data`."""

    envelope: CloudEvent
    type: str
    data: T_co

    @property
    def id(self) -> str:
        """The CloudEvents `id`."""
        return self.envelope.id

    @property
    def source(self) -> str:
        """The CloudEvents `source`; (`source`, `id`) identifies the event for deduplication."""
        return self.envelope.source


class InvalidRecord(Exception):
    """A record that breaks the contract; `str()` says why, in a sentence a person can act on."""

    def __init__(self, reason: str) -> None:
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        super().__init__(reason)
        self.reason = reason


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path or "record"


def _shown(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _sentence(error: ErrorDetails, prefix: str) -> str:
    where = f"field {_path(prefix, error['loc'])}"
    if error["type"] == "missing":
        return f"{where}: required but missing"
    message = error["msg"].replace(" after validation", "")
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    if error["type"] in ("value_error", "assertion_error"):
        return f"{where}: {message}"
    message = message[:1].lower() + message[1:]
    if error["type"] in ("too_long", "too_short") and isinstance(error["input"], str):
        # Length limits after a validator are reported generically; a string has characters.
        message = re.sub(r"(\d+) items?, not \d+", r"\1 characters", message)
        message = message.replace("value should", "string should")
    if isinstance(error["input"], dict | list):  # too big to repeat usefully
        return f"{where}: {message}"
    return f"{where}: {message} (got {_shown(error['input'])})"


def describe(error: ValidationError, prefix: str = "") -> str:
    """All errors of a pydantic validation as one readable sentence, fields named by path."""
    return describe_errors(error.errors(include_url=False), prefix)


def describe_errors(errors: Iterable[ErrorDetails], prefix: str = "") -> str:
    """Some errors of a validation (say, all but those of fields known bad) as one sentence."""
    return "; ".join(_sentence(e, prefix) for e in errors)


def _load(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise InvalidRecord("record has no value; expected a CloudEvent in structured JSON mode")
    if len(value) > MAX_RECORD_BYTES:
        raise InvalidRecord(
            f"record value is {len(value)} bytes; the limit is 1 MiB ({MAX_RECORD_BYTES} bytes)"
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(
            f"record value is not UTF-8 text (byte {exc.start} is invalid)"
        ) from None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"record value is not JSON: {exc}") from None
    if not isinstance(document, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(document), "a number"
        )
        raise InvalidRecord(f"record value is {kind}, not a CloudEvent JSON object")
    return document


def parse_record(topic: Topic, value: bytes | None, key: bytes | None = None) -> Event[BaseModel]:
    """Validate a consumed record against the whole contract, or raise `InvalidRecord`."""
    accepted = TOPIC_EVENT_TYPES[topic]
    if not accepted:
        raise InvalidRecord(
            f"topic {topic.value} holds copies of rejected records; they are not parsed"
        )
    try:
        envelope = CloudEvent.model_validate(_load(value))
    except ValidationError as exc:
        raise InvalidRecord(describe(exc)) from None
    event_type = short_type(envelope.type)
    if event_type is None or event_type not in accepted:
        listing = ", ".join(sorted(full_type(t) for t in accepted))
        problem = "is not accepted on" if event_type else "is not a Twoway event type for"
        raise InvalidRecord(
            f"event type {envelope.type} {problem} topic {topic.value} (accepted: {listing})"
        )
    try:
        data = EVENT_MODELS[event_type].model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidRecord(f"{envelope.type}: {describe(exc, 'data')}") from None
    if key is not None:
        field = TOPIC_KEY_FIELD[topic]
        expected: str = getattr(data, field)
        if key != expected.encode():
            shown = key.decode("utf-8", errors="replace")[:70]
            raise InvalidRecord(
                f"record key {shown!r} does not match data.{field} {expected!r}; "
                f"the key must be the UTF-8 bytes of data.{field}"
            )
    return Event(envelope=envelope, type=event_type, data=data)


def new_event(
    data: BaseModel,
    *,
    source: str,
    subject: str | None = None,
    cause: Event[Any] | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """A new event carrying `data`, correlated with (and caused by) `cause` if given."""
    new_id = event_id if event_id is not None else str(uuid4())
    return CloudEvent(
        specversion="1.0",
        id=new_id,
        source=source,
        type=full_type(event_type_of(type(data))),
        time=time if time is not None else datetime.now(UTC),
        subject=subject,
        datacontenttype="application/json",
        data=data.model_dump(mode="json"),
        correlationid=(cause.envelope.correlationid or cause.envelope.id) if cause else new_id,
        causationid=cause.envelope.id if cause else None,
        traceparent=cause.envelope.traceparent if cause else None,
    )


def encode(event: CloudEvent) -> bytes:
    """The record value of an event: compact JSON, times in UTC with `Z`, no null attributes."""
    attributes = event.model_dump(mode="json", exclude_none=True, exclude={"data"})
    attributes["data"] = event.data
    return orjson.dumps(attributes)


_EVENT_ID: TypeAdapter[str] = TypeAdapter(EventId)
_SUBJECT: TypeAdapter[str] = TypeAdapter(Annotated[OneLine, StringConstraints(min_length=1)])
_INSTANT: TypeAdapter[datetime] = TypeAdapter(UtcDateTime)


class Emitter:
    """Builds and encodes the events one source emits at one instant, as `new_event` and
    `encode` do, byte for byte, without validating each envelope again.

    The source and the instant are checked once here, an event id or subject a caller gives
    is checked for each event, the id it makes is a uuid4; the data is a contract model
    already validated when it was built. What stays per event is dumping its data and the JSON.
    """

    def __init__(self, source: str, time: datetime) -> None:
        CloudEvent.model_validate(
            {"specversion": "1.0", "id": "x", "source": source, "type": "x", "data": {}}
        )
        self.source = source
        self.time = _INSTANT.validate_python(time)
        self._time_text: str = _INSTANT.dump_python(self.time, mode="json")

    def encoded(
        self,
        data: BaseModel,
        *,
        subject: str | None,
        cause: Event[Any] | None,
        event_id: str | None = None,
        traceparent: str | None = None,
    ) -> bytes:
        """`encode(new_event(...))` of this source and instant, without building the event;
        `traceparent` replaces the cause's (the emitting span's)."""
        new_id = str(uuid4()) if event_id is None else _EVENT_ID.validate_python(event_id)
        # `encode`'s shape: the attributes in field order without nulls, then the data.
        wire: dict[str, Any] = {
            "specversion": "1.0",
            "id": new_id,
            "source": self.source,
            "type": full_type(event_type_of(type(data))),
            "time": self._time_text,
        }
        if subject is not None:
            wire["subject"] = _SUBJECT.validate_python(subject)
        wire["datacontenttype"] = "application/json"
        if cause is None:
            wire["correlationid"] = new_id
        else:
            wire["correlationid"] = cause.envelope.correlationid or cause.envelope.id
            wire["causationid"] = cause.envelope.id
            traceparent = traceparent or cause.envelope.traceparent
        if traceparent is not None:
            wire["traceparent"] = traceparent
        wire["data"] = data.model_dump(mode="json")
        return orjson.dumps(wire)


def partition_key(topic: Topic, data: BaseModel) -> bytes:
    """The record key of `data` on `topic`: the UTF-8 bytes of the topic's key field."""
    event_type = event_type_of(type(data))
    if event_type not in TOPIC_EVENT_TYPES[topic]:
        raise ValueError(f"{event_type} is not published on {topic.value}")
    value: str = getattr(data, TOPIC_KEY_FIELD[topic])
    return value.encode()
