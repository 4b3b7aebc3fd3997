"""The sender's recorder: deliveries share transactions (they linger), anything else does not
wait, and the end of a batch does not wait either."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from twoway_notifications.domain.model import Message, Template
from twoway_notifications.mailer import Delivery
from twoway_notifications.sender import Outcome, Sender, SenderOptions, _Recorder


@dataclass
class Recording:
    """A stand-in for the sender: what `_Recorder` calls, each transaction kept with when."""

    linger: timedelta
    started: float = field(default_factory=time.monotonic)
    transactions: list[tuple[float, list[str]]] = field(default_factory=list)

    def sender(self) -> Sender:
        stub = SimpleNamespace(
            _options=SenderOptions(record_linger=self.linger),
            _metrics=SimpleNamespace(observe=lambda outcomes, now: None),
            _runtime=SimpleNamespace(clock=lambda: datetime.now(UTC)),
            _record_until_done=self._record,
        )
        return cast(Sender, stub)

    async def _record(self, outcomes: Sequence[Outcome], stopping: Any) -> None:
        await asyncio.sleep(0)  # a transaction yields to the loop, as a real one does
        self.transactions.append(
            (time.monotonic() - self.started, [o.message.notification_id for o in outcomes])
        )


def outcome(n: int, verdict: Delivery) -> Outcome:
    message = Message(f"n{n}", Template.PAIR_CONFIRMED, "E1", "M1", "p1", None, "ev-1")
    return Outcome(message, verdict.value)


async def until(condition: Any, deadline: float = 5.0) -> None:
    ends = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < ends, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_deliveries_arriving_within_the_linger_share_one_transaction() -> None:
    # A linger long enough that a stalled machine is unlikely to split the three adds.
    recording = Recording(timedelta(seconds=1))
    recorder = _Recorder(recording.sender(), None)
    for n in range(3):
        recorder.add(outcome(n, Delivery.SENT))
        await asyncio.sleep(0.01)
    await until(lambda: recording.transactions)
    assert [ids for _, ids in recording.transactions] == [["n0", "n1", "n2"]]
    assert recording.transactions[0][0] >= 1.0  # it did linger


async def test_a_refusal_is_recorded_at_once_with_what_waited() -> None:
    """A refusal left unrecorded by a dying process would be recorded as sent: no lingering."""
    recording = Recording(timedelta(seconds=60))
    recorder = _Recorder(recording.sender(), None)
    recorder.add(outcome(1, Delivery.SENT))
    await asyncio.sleep(0.05)
    recorder.add(outcome(2, Delivery.PERMANENT))
    await until(lambda: recording.transactions)
    [(at, ids)] = recording.transactions
    assert ids == ["n1", "n2"]
    assert at < 5.0  # not the 60 s linger


async def test_the_end_of_a_batch_cuts_the_linger_short() -> None:
    recording = Recording(timedelta(seconds=60))
    recorder = _Recorder(recording.sender(), None)
    recorder.add(outcome(1, Delivery.SENT))
    await asyncio.wait_for(recorder.drain(), 5.0)
    assert [ids for _, ids in recording.transactions] == [["n1"]]
