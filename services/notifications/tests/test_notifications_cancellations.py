"""The cancellation rules on plain data: which cancellations are news, and how they group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from twoway_notifications.domain.cancellations import (
    CANCELLATION_GROUPING,
    CancellationNews,
    cancellation_group,
    cancellation_news,
)
from twoway_notifications.domain.model import Session

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def known(revision: int, status: str) -> Session:
    return Session(
        session_id="s1",
        pair_id="p1",
        mentor_id="m1",
        mentee_id="e1",
        sequence=1,
        total=6,
        starts_at=NOW + timedelta(days=3),
        ends_at=NOW + timedelta(days=3, hours=1),
        revision=revision,
        status=status,
    )


@pytest.mark.parametrize(
    ("stored", "revision", "news"),
    [
        (None, 0, CancellationNews.RECORD),  # never announced: nothing to take back
        (known(0, "scheduled"), 0, CancellationNews.ANNOUNCE),  # same revision, still on
        (known(0, "scheduled"), 1, CancellationNews.ANNOUNCE),  # after a reschedule
        (known(1, "scheduled"), 0, CancellationNews.STALE),  # rescheduled since
        (known(1, "cancelled"), 1, CancellationNews.STALE),  # the same cancellation again
        (known(1, "completed"), 1, CancellationNews.STALE),  # it already has an outcome
        (known(1, "cancelled"), 2, CancellationNews.ANNOUNCE),  # a later revision is news
    ],
)
def test_which_cancellations_are_news(
    stored: Session | None, revision: int, news: CancellationNews
) -> None:
    assert cancellation_news(stored, revision) is news


def test_a_pairs_end_groups_its_cancellations_by_pair_and_reason() -> None:
    first = cancellation_group("p1", "pair_ended", "cause-a", NOW)
    second = cancellation_group("p1", "pair_ended", "cause-b", NOW)
    assert first.key == second.key == "p1|pair_ended"
    assert cancellation_group("p2", "pair_ended", "cause-a", NOW).key != first.key
    assert cancellation_group("p1", "participant_withdrawn", "cause-a", NOW).key != first.key


def test_each_lost_slot_is_its_own_group() -> None:
    one = cancellation_group("p1", "no_slot", "cause-a", NOW)
    other = cancellation_group("p1", "no_slot", "cause-b", NOW)
    assert one.key == "p1|no_slot|cause-a"
    assert one.key != other.key


def test_a_group_waits_for_the_rest_of_its_cancellations() -> None:
    group = cancellation_group("p1", "pair_ended", "cause-a", NOW)
    assert group.send_at == NOW + timedelta(seconds=2) == NOW + CANCELLATION_GROUPING
