"""A service's own series are registered once per registry, however often they are asked for."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from twoway_shared.platform.metrics import once_per_registry


class Series:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter("twoway_test_sent", "Sent.", registry=registry)


def test_one_object_per_registry() -> None:
    series_of = once_per_registry(Series)
    first, second = CollectorRegistry(), CollectorRegistry()
    # Registering the same name twice on one registry would raise: it is built once.
    assert series_of(first) is series_of(first)
    assert series_of(second) is not series_of(first)
    series_of(first).sent.inc()
    assert first.get_sample_value("twoway_test_sent_total") == 1.0
    assert second.get_sample_value("twoway_test_sent_total") == 0.0
