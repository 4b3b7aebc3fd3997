"""OpenTelemetry traces: W3C trace context carried from cause to effect in CloudEvents.

Every event a service consumes may carry the CloudEvents extension `traceparent`. The consumer
continues that trace (span "consume <topic>", and "handle <event type>" around the unit of
work); every event emitted inside carries the handle span's context as its own `traceparent`,
so a downstream service continues the same trace. Outbox publishing, SMTP sends and LRS sends
get spans of their own.

Spans are exported over OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise the
OpenTelemetry API stays a no-op and an incoming `traceparent` is still passed on unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER_NAME = "twoway"
_configured: list[Any] = []  # the provider this process installed, if any


def configure_tracing(service: str, endpoint: str | None) -> bool:
    """Export spans of `service` to an OTLP/HTTP collector at `endpoint`; True if enabled.

    `endpoint` is the collector's base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT`), e.g.
    `http://otel-collector.observability:4318`; spans go to `<endpoint>/v1/traces`. Without it
    nothing is exported and nothing is recorded.
    """
    if not endpoint or _configured:
        return bool(_configured)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": f"twoway-{service}", "service.namespace": "twoway"})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    _configured.append(provider)
    log.info("tracing enabled", extra={"otlp_endpoint": endpoint})
    return True


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at service exit), so the last spans are not lost."""
    for provider in _configured:
        provider.shutdown()


@cache
def _tracer() -> trace.Tracer:
    # Kept: `get_tracer` reads the environment on each call (a span per published record).
    # Before `configure_tracing` it is a proxy that follows the provider set later.
    return trace.get_tracer(_TRACER_NAME)


def context_of(traceparent: str | None) -> context.Context | None:
    """The OpenTelemetry context a W3C `traceparent` names, or None for none or a bad one."""
    if not traceparent:
        return None
    ctx = _PROPAGATOR.extract({"traceparent": traceparent})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to carry in an event; None outside any trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


@contextmanager
def span(
    name: str,
    *,
    parent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Span]:
    """A span that is current inside the block; `parent` is a traceparent to continue.

    Without `parent` the span is a child of the current one (or starts a trace). An exception
    leaving the block marks the span as failed and is re-raised.
    """
    ctx = context_of(parent)
    with _tracer().start_as_current_span(
        name,
        context=ctx,
        kind=kind,
        attributes=dict(attributes or {}),
        record_exception=True,
        set_status_on_exception=True,
    ) as current:
        yield current


def _consume_attributes(record: Any) -> dict[str, str | int]:
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": str(record.topic),
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": int(record.offset),
    }


def _handle_attributes(event_type: str, event_id: str) -> dict[str, str]:
    return {"cloudevents.event_type": event_type, "cloudevents.event_id": event_id}


def consume_span(record: Any, traceparent: str | None) -> Any:
    """The span of one consumed Kafka record, continuing the trace its event carries."""
    return span(
        f"consume {record.topic}",
        parent=traceparent,
        kind=SpanKind.CONSUMER,
        attributes=_consume_attributes(record),
    )


@contextmanager
def record_spans(
    record: Any, traceparent: str | None, event_type: str, event_id: str
) -> Iterator[str | None]:
    """The consume and handle spans of one record of a group handled together, not current.

    A batch handler handles several records at once, so no record's span can be the current
    one; the spans last as long as the group and the block gets the `traceparent` its events
    carry (the handle span's, or the record's own when tracing is off).
    """
    if not _configured:  # nothing would record them; the events carry the record's trace
        yield traceparent
        return
    tracer = _tracer()
    consume = tracer.start_span(
        f"consume {record.topic}",
        context=context_of(traceparent),
        kind=SpanKind.CONSUMER,
        attributes=_consume_attributes(record),
    )
    handle = tracer.start_span(
        f"handle {event_type}",
        context=trace.set_span_in_context(consume),
        attributes=_handle_attributes(event_type, event_id),
    )
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(handle))
    try:
        yield carrier.get("traceparent", traceparent)
    except BaseException as exc:
        for failed_span in (handle, consume):
            failed_span.record_exception(exc)
            failed_span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        handle.end()
        consume.end()


def handle_span(event_type: str, event_id: str) -> Any:
    """The span of a handler's unit of work for one event."""
    return span(
        f"handle {event_type}",
        attributes=_handle_attributes(event_type, event_id),
    )


def publish_span(topic: str, traceparent: str | None) -> Any:
    """The span of publishing one outbox record, in the trace of the event it carries."""
    if not _configured:  # nothing would record it: spare the relay a span per record
        return contextlib.nullcontext()
    return span(
        f"publish {topic}",
        parent=traceparent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
        },
    )


def delivery_span(target: str, name: str, *, parent: str | None, **attributes: str) -> Any:
    """The span of one outbound delivery (`target` "smtp" or "lrs") in the trace of its cause.

    Notifications calls it around each SMTP send; progress calls it around each xAPI statement
    sent to the LRS: `with delivery_span("lrs", "send", parent=tp) as span: ...`, then
    `failed(span, reason)` when the LRS refused it, and counts the outcome in
    `runtime.metrics.deliveries.labels("lrs", "sent" | "temporary" | "permanent")` (the alert
    TwowayLrsFailures and the dashboard read that counter). `tp` is the `traceparent` of the
    event that made the statement due (`current_traceparent()` when it was stored).
    """
    return span(
        f"{target} {name}",
        parent=parent,
        kind=SpanKind.CLIENT,
        attributes={"twoway.delivery.target": target, **attributes},
    )


def failed(current: Span, reason: str) -> None:
    """Mark a span as failed without an exception (a refused delivery, say)."""
    current.set_status(Status(StatusCode.ERROR, reason))
