"""The matching rounds' Prometheus series: how long a round takes and how big it is."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from twoway_shared.platform.metrics import once_per_registry


class RoundMetrics:
    """Registered on the service's registry, so /metrics shows them beside the platform's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "twoway_matching_round_seconds",
            "Time to run one matching round, solver and database included.",
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.pairs = Histogram(
            "twoway_matching_round_pairs",
            "Pairs one matching round proposed.",
            registry=registry,
            buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 20000),
        )
        self.unmatched = Histogram(
            "twoway_matching_round_unmatched",
            "People one matching round left without a partner.",
            registry=registry,
            buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 20000),
        )

    def observe(self, seconds: float, pairs: int, unmatched: int) -> None:
        self.seconds.observe(seconds)
        self.pairs.observe(pairs)
        self.unmatched.observe(unmatched)


round_metrics = once_per_registry(RoundMetrics)
"""The registry's round series, registered once however many workers share it."""
