"""Domain series counted from the events a unit of work committed."""

from __future__ import annotations

from pydantic import BaseModel
from twoway_shared.contract import encode, new_event
from twoway_shared.contract.events import NotificationSent, SessionBookingFailed
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.outbox import OutgoingRecord


def outgoing(data: BaseModel, event_type: str) -> OutgoingRecord:
    value = encode(new_event(data, source="/t"))
    return OutgoingRecord(topic="t", key=b"k", value=value, headers=(), event_type=event_type)


def test_committed_events_feed_the_domain_series() -> None:
    metrics = Metrics()
    failed = SessionBookingFailed.model_validate(
        {
            "pair_id": "P1",
            "programme_id": "RM",
            "mentor_id": "M1",
            "mentee_id": "E1",
            "reason": "no_common_availability",
            "booked": 0,
            "total": 6,
        }
    )
    sent = NotificationSent.model_validate(
        {
            "notification_id": "n1",
            "participant_id": "E1",
            "channel": "email",
            "template": "booking",
            "cause_id": "c1",
        }
    )

    metrics.observe_committed(
        [outgoing(failed, "session.booking_failed"), outgoing(sent, "notification.sent")] * 2
    )

    value = metrics.registry.get_sample_value
    assert value("twoway_booking_failures_total", {"booked": "none"}) == 2
    assert value("twoway_emails_sent_total", {"template": "booking"}) == 2
    assert value("twoway_sessions_booked_total") == 0
