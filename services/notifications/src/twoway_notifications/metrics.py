"""The sender's own Prometheus series: SMTP errors and how late reminders go out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from twoway_shared.platform.metrics import once_per_registry

from twoway_notifications.domain.model import Template
from twoway_notifications.mailer import Delivery


class SenderMetrics:
    """Registered on the service's registry, so /metrics shows them beside the platform's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.smtp_errors = Counter(
            "twoway_smtp_errors",
            "SMTP deliveries that failed: temporary (4xx, no connection) or permanent (5xx).",
            ["kind"],
            registry=registry,
        )
        self.reminder_lateness = Histogram(
            "twoway_reminder_lateness_seconds",
            "How long after its due time a reminder reached the SMTP server.",
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )

        self.handover = Histogram(
            "twoway_smtp_handover_seconds",
            "Each 'sending' commit of the SMTP hand-over, in two parts: the COMMIT's round"
            " trip (commit), and from its result to the last end-of-data mark written"
            " (after_commit). A crash in either part loses the messages of that commit.",
            ["part"],
            registry=registry,
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1),
        )
        self.unconfirmed = Counter(
            "twoway_smtp_handovers_unconfirmed",
            "Messages found 'sending' after their sender stopped, recorded as sent without the"
            " server's reply (docs/reliability.md: the hand-over window).",
            registry=registry,
        )

    def observe(self, outcomes: Sequence[Any], now: datetime) -> None:
        """Count one batch's outcomes (sender.Outcome: message, verdict, error)."""
        for outcome in outcomes:
            if outcome.verdict in (Delivery.TEMPORARY, Delivery.PERMANENT):
                self.smtp_errors.labels(str(outcome.verdict)).inc()
            message = outcome.message
            if (
                outcome.verdict == Delivery.SENT
                and message.template == Template.REMINDER
                and message.due_at is not None
            ):
                self.reminder_lateness.observe(max(0.0, (now - message.due_at).total_seconds()))


sender_metrics = once_per_registry(SenderMetrics)
"""The registry's sender series, registered once however many senders share it."""
