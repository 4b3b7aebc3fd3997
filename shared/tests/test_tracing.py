"""Trace context without an exporter: carried from a consumed event to the events it causes."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from twoway_shared.contract import (
    Event,
    PairConfirmed,
    ProgrammeMatchingRequested,
    Topic,
    encode,
    new_event,
    parse_record,
)
from twoway_shared.platform.logs import JsonFormatter
from twoway_shared.platform.outbox import traceparent_in
from twoway_shared.platform.tracing import (
    context_of,
    current_ids,
    current_traceparent,
    handle_span,
    span,
)
from twoway_shared.platform.uow import UnitOfWork

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def cause(traceparent: str | None) -> Event[Any]:
    data = ProgrammeMatchingRequested(programme_id="P1")
    event = new_event(data, source="/portal/admin").model_copy(update={"traceparent": traceparent})
    return parse_record(Topic.PROGRAMMES, encode(event), b"P1")


def test_outside_any_trace_there_is_no_context() -> None:
    assert current_traceparent() is None
    assert current_ids() is None
    assert context_of(None) is None
    assert context_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01") is None


def test_a_span_continues_the_trace_it_is_given() -> None:
    with span("consume", parent=TRACEPARENT):
        carried = current_traceparent()
        ids = current_ids()
    assert carried is not None
    assert carried.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ids is not None
    assert ids[0] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert current_traceparent() is None  # the context ends with the block


def test_emitted_events_carry_the_trace_of_the_span_emitting_them() -> None:
    incoming = cause(TRACEPARENT)
    uow = UnitOfWork(
        None, source="/twoway/matching", topic_prefix="t.", cause=incoming, now=datetime.now(UTC)
    )
    data = PairConfirmed(pair_id="X1", programme_id="P1", mentor_id="A", mentee_id="B")
    with span("consume", parent=TRACEPARENT), handle_span("programme.matching_requested", "e1"):
        uow.emit(Topic.PAIRS, data)
    outside = UnitOfWork(
        None, source="/twoway/matching", topic_prefix="t.", cause=incoming, now=datetime.now(UTC)
    )
    outside.emit(Topic.PAIRS, data)
    (record,) = uow.pending
    inside = traceparent_in(record.value)
    assert inside is not None
    assert inside.split("-")[1] == TRACEPARENT.split("-")[1]
    assert traceparent_in(outside.pending[0].value) == TRACEPARENT  # no span: as it came
    assert traceparent_in(encode(new_event(data, source="/x"))) is None


def test_json_log_lines_inside_a_trace_carry_its_ids() -> None:
    formatter = JsonFormatter("matching")
    record = logging.makeLogRecord({"msg": "handled", "levelname": "INFO", "name": "t"})
    assert "trace_id" not in json.loads(formatter.format(record))
    with span("handle", parent=TRACEPARENT):
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(line["span_id"]) == 16
