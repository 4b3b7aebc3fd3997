"""One trace across the services as processes: enrolment -> pair -> sessions -> booking email.

The services export spans over OTLP/HTTP to a collector this test runs; the enrolments carry a
`traceparent`, and the booking email's SMTP send span must be in the same trace.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import ToSend, eventually, publish
from twoway_shared.contract import (
    ParticipantEnrolled,
    ProgrammeConfigured,
    Topic,
    encode,
    new_event,
    partition_key,
)

from tests.e2e_support import SOURCE, next_monday, person, running_stack

pytestmark = pytest.mark.infra

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class Collector:
    """An OTLP/HTTP trace receiver on a free local port, keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self._lock = threading.Lock()
        collector = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes = {
                        a.key: a.value.string_value or a.value.int_value for a in span.attributes
                    }
                    found.append(
                        ExportedSpan(
                            resource.get("service.name", "?"),
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attributes,
                        )
                    )
        with self._lock:
            self.spans.extend(found)

    def of_trace(self, trace_id: str) -> list[ExportedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


def traced(topic: Topic, data: Any, span_id: str) -> ToSend:
    """A portal's record: a contract event carrying `traceparent` in trace TRACE_ID."""
    event = new_event(data, source=SOURCE).model_copy(
        update={"traceparent": f"00-{TRACE_ID}-{span_id}-01"}
    )
    return ToSend("", encode(event), partition_key(topic, data))


async def test_an_enrolments_trace_reaches_the_booking_emails_smtp_send(
    infra: Infra, collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    async with running_stack(infra, tmp_path) as stack:
        programme = ProgrammeConfigured.model_validate(
            {
                "programme_id": "RM-TRACE",
                "starts_on": next_monday(date.today()).isoformat(),
                "sessions": 2,
                "reminder_minutes": [],
            }
        )
        first = traced(Topic.PROGRAMMES, programme, "00f067aa0ba902b7")
        await publish(stack.kafka, [ToSend(stack.topic(Topic.PROGRAMMES), first.value, first.key)])
        await stack.barrier()
        people = [
            traced(
                Topic.ENROLMENTS,
                ParticipantEnrolled.model_validate(person(pid, "RM-TRACE", role)),
                span,
            )
            for pid, role, span in (
                ("TR-MENTOR", "mentor", "00f067aa0ba902b8"),
                ("TR-MENTEE", "mentee", "00f067aa0ba902b9"),
            )
        ]
        await publish(
            stack.kafka,
            [ToSend(stack.topic(Topic.ENROLMENTS), p.value, p.key) for p in people],
        )

        def booking_sends(spans: list[ExportedSpan]) -> list[ExportedSpan]:
            return [
                s
                for s in spans
                if s.name == "smtp send" and s.attributes.get("template") == "booking"
            ]

        spans = await eventually(
            lambda: _async(collector.of_trace(TRACE_ID)),
            lambda found: len(booking_sends(found)) == 2,
            timeout=120,
            interval=0.5,
            what="both booking emails' SMTP send spans in the enrolment's trace",
        )
    # Each service exports on its own timer, so the snapshot above may lack another's last
    # spans; every service has now exited and flushed its exporter: read the whole trace.
    spans = collector.of_trace(TRACE_ID)
    services = {s.service for s in spans}
    assert services >= {"twoway-matching", "twoway-scheduling", "twoway-notifications"}
    names = {(s.service, s.name) for s in spans}
    assert ("twoway-matching", f"consume {stack.topic(Topic.ENROLMENTS)}") in names
    assert ("twoway-matching", "matching round") in names
    assert ("twoway-scheduling", f"consume {stack.topic(Topic.PAIRS)}") in names
    assert ("twoway-scheduling", f"publish {stack.topic(Topic.SESSIONS)}") in names
    assert ("twoway-notifications", f"consume {stack.topic(Topic.SESSIONS)}") in names
    by_id = {s.span_id: s for s in spans}
    # Each SMTP send descends, through parents in this same trace, from a consume span of
    # notifications, whose parent is the scheduling span that emitted the session event.
    for send in booking_sends(spans):
        chain = [send]
        while chain[-1].parent_id in by_id:
            chain.append(by_id[chain[-1].parent_id])
        assert {s.service for s in chain} >= {"twoway-notifications", "twoway-scheduling"}, [
            (s.service, s.name) for s in chain
        ]


async def _async(value: list[ExportedSpan]) -> list[ExportedSpan]:
    return value
