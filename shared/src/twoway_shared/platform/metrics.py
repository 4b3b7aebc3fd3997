"""Prometheus metrics every service exposes on /metrics."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Series = TypeVar("Series")


def once_per_registry(
    build: Callable[[CollectorRegistry], Series],
) -> Callable[[CollectorRegistry], Series]:
    """A service's own series, registered on a registry the first time it is asked for and
    shared after (prometheus refuses a name twice), however many workers ask."""
    made: weakref.WeakKeyDictionary[CollectorRegistry, Series] = weakref.WeakKeyDictionary()

    def of(registry: CollectorRegistry) -> Series:
        found = made.get(registry)
        if found is None:
            found = made[registry] = build(registry)
        return found

    return of


@dataclass
class Metrics:
    """The service's own registry, so tests and several services in one process never clash."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter(
            "twoway_records_consumed", "Records consumed, by topic.", ["topic"], registry=r
        )
        self.produced = Counter(
            "twoway_records_produced", "Records produced, by topic.", ["topic"], registry=r
        )
        self.dead_lettered = Counter(
            "twoway_records_dead_lettered",
            "Records sent to the dead-letter topic, by original topic.",
            ["topic"],
            registry=r,
        )
        self.duplicates = Counter(
            "twoway_records_duplicate",
            "Records skipped because their (source, id) was processed before.",
            ["topic"],
            registry=r,
        )
        self.ignored = Counter(
            "twoway_records_ignored",
            "Valid records of an event type this service deliberately does not act on.",
            ["topic", "event_type"],
            registry=r,
        )
        self.handler_failures = Counter(
            "twoway_handler_failures",
            "Handler attempts that failed, by topic.",
            ["topic"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "twoway_handler_seconds",
            "Time to handle one record, database commit included, by event type.",
            ["event_type"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_size = Histogram(
            "twoway_batch_records",
            "Records handled in one database transaction and one offset commit.",
            registry=r,
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
        )
        self.batch_fallbacks = Counter(
            "twoway_batch_fallbacks",
            "Batches rolled back and handled again one record at a time.",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "twoway_outbox_backlog", "Events committed but not yet published.", registry=r
        )
        self.deliveries = Counter(
            "twoway_deliveries",
            "Outbound deliveries (target smtp or lrs) by outcome: sent, temporary, permanent.",
            ["target", "outcome"],
            registry=r,
        )
        self.delivery_lateness = Histogram(
            "twoway_delivery_lateness_seconds",
            "Time from a message's due time to its hand-over to the target, by kind.",
            ["target", "kind"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
        )
        self.consumer_lag = Gauge(
            "twoway_consumer_lag",
            "Records behind the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        # Domain series, counted from the events a unit of work committed (observe_committed).
        self.emails_sent = Counter(
            "twoway_emails_sent",
            "Emails delivered to the SMTP server, by template.",
            ["template"],
            registry=r,
        )
        self.emails_failed = Counter(
            "twoway_emails_failed",
            "Emails given up on (notification.failed), by template.",
            ["template"],
            registry=r,
        )
        self.sessions_booked = Counter(
            "twoway_sessions_booked", "Sessions booked (session.scheduled).", registry=r
        )
        self.booking_failures = Counter(
            "twoway_booking_failures",
            "Pairs whose series could not be fully booked (session.booking_failed): none of "
            "their sessions, or only some.",
            ["booked"],
            registry=r,
        )

    def observe_committed(self, records: Sequence[Any]) -> None:
        """Count the domain events among records a unit of work just committed to its outbox."""
        for record in records:
            kind = record.event_type
            if kind == "session.scheduled":
                self.sessions_booked.inc()
            elif kind == "session.booking_failed":
                # The reason is text with dates in it: far too many values for a label.
                booked = orjson.loads(record.value).get("data", {}).get("booked", 0)
                self.booking_failures.labels("some" if booked else "none").inc()
            elif kind in _DATA_SERIES:
                data = orjson.loads(record.value).get("data", {})
                series, label = _DATA_SERIES[kind]
                getattr(self, series).labels(str(data.get(label, "unknown"))).inc()


# event type -> (series, the data field that labels it)
_DATA_SERIES = {
    "notification.sent": ("emails_sent", "template"),
    "notification.failed": ("emails_failed", "template"),
}
