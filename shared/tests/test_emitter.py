"""The emitter builds the very events `new_event` and `encode` build, byte for byte."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError
from twoway_dev.testing.service import example
from twoway_shared.contract import (
    EVENT_MODELS,
    Emitter,
    Event,
    ProgrammeMatchingRequested,
    Topic,
    encode,
    new_event,
    parse_record,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OURS = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"


def cause(traceparent: str | None, correlationid: str | None) -> Event[Any]:
    data = ProgrammeMatchingRequested(programme_id="P1")
    event = new_event(data, source="/portal/admin").model_copy(
        update={"traceparent": traceparent, "correlationid": correlationid}
    )
    return parse_record(Topic.PROGRAMMES, encode(event), b"P1")


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
@pytest.mark.parametrize(
    "now",
    [
        datetime(2027, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2027, 3, 28, 1, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_the_same_bytes_as_new_event_and_encode(event_type: str, now: datetime) -> None:
    data = example(EVENT_MODELS[event_type])
    emitter = Emitter("/twoway/scheduling", now)
    causes = [None, cause(None, None), cause(TRACEPARENT, "corr-1")]
    for by, event_id, subject, traceparent in [
        (c, i, s, t)
        for c in causes
        for i in ("e-1", None)
        for s in ("P9", None)
        for t in (None, OURS)
    ]:
        given: dict[str, Any] = {
            "subject": subject,
            "cause": by,
            "event_id": event_id,
            "traceparent": traceparent,
        }
        value = emitter.encoded(data, **given)
        made_id = json.loads(value)["id"]  # a new uuid4 when none is given
        expected = new_event(
            data, source="/twoway/scheduling", subject=subject, cause=by,
            event_id=made_id, time=now,
        )  # fmt: skip
        if traceparent is not None:
            expected = expected.model_copy(update={"traceparent": traceparent})
        assert value == encode(expected)
        if event_id is not None:
            assert made_id == event_id
        else:
            assert uuid.UUID(made_id).version == 4


def test_what_it_is_given_is_still_checked() -> None:
    with pytest.raises(ValidationError):
        Emitter("not a source", datetime.now(UTC))
    with pytest.raises(ValidationError):
        Emitter("/x", datetime(2027, 1, 1))  # naive
    emitter = Emitter("/x", datetime.now(UTC))
    data = ProgrammeMatchingRequested(programme_id="P1")
    with pytest.raises(ValidationError):
        emitter.encoded(data, subject="two\nlines", cause=None)
    with pytest.raises(ValidationError):
        emitter.encoded(data, subject=None, cause=None, event_id="")
