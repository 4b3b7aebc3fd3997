"""The sender worker: claims due messages, renders and emails them, records the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import socket
import time
import types
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import asyncpg
from twoway_shared.contract import NotificationFailed, NotificationSent, Topic
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.poller import Listener, Poller
from twoway_shared.platform.runtime import Runtime, Worker
from twoway_shared.platform.tracing import delivery_span, failed

from twoway_notifications.compose import Draft, MailSettings, NotComposed, compose_in_turn
from twoway_notifications.config import NotificationsSettings
from twoway_notifications.domain.ids import outcome_event_id
from twoway_notifications.domain.model import Message
from twoway_notifications.domain.rules import Verdict, backoff, decide, gives_up
from twoway_notifications.mailer import (
    Delivery,
    Email,
    EndOfData,
    HandOverRefused,
    Mailer,
    Result,
    SmtpConfig,
    cork,
)
from twoway_notifications.metrics import sender_metrics
from twoway_notifications.storage import DUE_CHANNEL, Storage

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class SenderOptions:
    """Tunables of the sender; the defaults are the contract's (first retry within 30 s)."""

    retry_base: timedelta = timedelta(seconds=15)
    # A claim lasts seconds and is renewed every third of it while the batch is worked on,
    # so a live instance takes over a dead one's unsent messages within about `lease`.
    # A message is never sent twice whatever the lease: it is handed to the SMTP server
    # only after 'sending' is committed, and a claim lost before that stops the hand-over.
    lease: timedelta = timedelta(seconds=6)
    # A claim is sent as it is built, so a large one costs no delay to its first emails,
    # and fewer claims mean fewer pauses between them (the last lanes finishing, the
    # results recorded, the next claim and its first chunk built).
    batch_size: int = 1024
    poll_seconds: float = 1.0
    # How long outcomes wait for others to share their transaction: each transaction is
    # four round trips to PostgreSQL, which at hundreds of emails a second would otherwise
    # each carry one or two outcomes.
    record_linger: timedelta = timedelta(milliseconds=25)
    idle_close_seconds: float = 10.0
    sweep_seconds: float = 10.0


@dataclass(frozen=True)
class Outcome:
    message: Message
    verdict: str  # sent, temporary, permanent, wait, skip
    error: str = ""


def _reported(m: Message) -> dict[str, Any]:
    """The fields notification.sent and notification.failed share (no personal data)."""
    return {
        "notification_id": m.notification_id,
        "participant_id": m.participant_id,
        "channel": "email",
        "template": m.template.value,
        "cause_id": m.cause_id,
        "session_id": m.session_id,
    }


def _ids(m: Message) -> dict[str, Any]:
    return {"id": m.notification_id}


def smtp_config(settings: NotificationsSettings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        tls=settings.smtp_tls_mode,
        ca_file=settings.smtp_ca_file,
    )


class Sender:
    """One per instance; instances share the work through leases and SKIP LOCKED."""

    def __init__(self, runtime: Runtime, options: SenderOptions) -> None:
        settings = runtime.settings
        assert isinstance(settings, NotificationsSettings)
        self._runtime = runtime
        self._options = options
        self._mail = MailSettings.of(settings)
        self._mailers = [Mailer(smtp_config(settings)) for _ in range(settings.smtp_connections)]
        self._metrics = sender_metrics(runtime.metrics.registry)
        # Who holds a claim: this process, distinguishable from a restarted one.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._handover = _HandOver(self)
        self._wake: Callable[[], None] = lambda: None

    async def run(self, stopping: asyncio.Event) -> None:
        listener = Listener(self._runtime.settings.database_url, DUE_CHANNEL, lambda: self._wake())
        last_sweep = -self._options.sweep_seconds

        async def prepare() -> None:
            nonlocal last_sweep
            await listener.ensure()
            now = asyncio.get_running_loop().time()
            if now - last_sweep > self._options.sweep_seconds:
                await self._release_resolved()
                last_sweep = now

        async def step() -> int:
            sent = await self.send_due(stopping)
            if sent == 0:
                for mailer in self._mailers:
                    if mailer.idle_for() > self._options.idle_close_seconds:
                        await mailer.close()
            return sent

        # Any error (a database restart surfaces as many types) is retried after a second.
        poller = Poller(
            "sender",
            step,
            poll_seconds=self._options.poll_seconds,
            until_due=self._until_due,
            prepare=prepare,
            recover=listener.drop,
        )
        self._wake = poller.wake
        try:
            await poller.run(stopping)
        finally:
            for mailer in self._mailers:
                await mailer.close()
            await listener.drop()
            await self._handover.close()

    async def _until_due(self) -> float | None:
        """Seconds to the next due message (the sleep also ends at a NOTIFY or a poll)."""
        async with self._runtime.pool.acquire() as conn:
            next_due = await Storage(conn).next_due()
        return None if next_due is None else (next_due - self._runtime.clock()).total_seconds()

    async def _release_resolved(self) -> None:
        async with self._runtime.db.unit_of_work() as uow:
            await Storage(uow.conn).release_resolved_waiting(uow.now)

    async def send_due(self, stopping: asyncio.Event | None = None) -> int:
        """Settle abandoned hand-overs, claim one batch of due messages and deliver it;
        returns how many messages were settled or claimed."""
        lease = self._options.lease
        async with self._runtime.db.unit_of_work() as uow:
            store = Storage(uow.conn)
            settled = await store.settle_abandoned_sends(uow.now)
            for m in settled:
                # Which side of the end-of-data mark its sender died on cannot be known
                # (SMTP has no way to ask); after the 'sending' commit the mark follows within
                # microseconds while the reply and its record take a round trip each, so
                # "sent" is by far the likelier, and sending again would risk a duplicate.
                log.warning("a stopped sender's hand-over recorded as sent", extra=_ids(m))
                self._metrics.unconfirmed.inc()
                uow.emit(
                    Topic.NOTIFICATIONS,
                    NotificationSent(**_reported(m)),
                    event_id=outcome_event_id(m.notification_id, "sent"),
                )
            batch = await store.claim_due(uow.now, lease, self._options.batch_size, self.holder)
        if not batch:
            return len(settled)
        renewer = asyncio.create_task(self._renew([m.notification_id for m in batch]))
        recorder = _Recorder(self, stopping)
        try:
            await self._deliver(batch, recorder)
            await recorder.drain()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        return len(settled) + len(batch)

    async def _renew(self, ids: list[str]) -> None:
        """Keep this batch's claims alive while it is worked on."""
        lease = self._options.lease
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            try:
                async with self._runtime.pool.acquire() as conn:
                    await Storage(conn).renew_leases(
                        ids, self.holder, self._runtime.clock() + lease
                    )
            except Exception as exc:
                log.warning("could not renew the claims", extra={"error": type(exc).__name__})

    async def hand_over(self, notification_id: str, end_of_data: EndOfData) -> None:
        """Commit 'sending' for a message whose text is with the SMTP server, then write its
        end-of-data mark at once; refuse when this instance no longer holds the claim."""
        if not await self._handover.mark(notification_id, end_of_data):
            raise HandOverRefused("the claim on this message was lost")

    async def _deliver(self, batch: list[Message], recorder: _Recorder) -> None:
        async with self._runtime.pool.acquire() as conn:
            store = Storage(conn)
            contacts = await store.contacts(p for m in batch for p in m.people)
            sessions = await store.sessions_of_pairs(m.pair_id for m in batch if m.pair_id)
        drafts: list[Draft] = []
        for message in batch:
            partner = contacts.get(message.partner_id) if message.partner_id else None
            decision = decide(message, contacts.get(message.participant_id), partner)
            if decision.verdict is not Verdict.SEND:
                recorder.add(Outcome(message, decision.verdict.value, decision.why))
                continue
            named = {p: contacts[p] for p in message.people if p in contacts}
            pair_sessions = tuple(sessions.get(message.pair_id or "", []))
            recipient = contacts[message.participant_id]
            drafts.append(Draft(message, recipient, partner, pair_sessions, named))
        # Built in worker processes (CPU-bound), so the loop keeps serving SMTP and records,
        # a chunk at a time: the lanes send the first emails while the rest are built. The
        # lanes do nothing but I/O, so no lane computes while another waits for its
        # end-of-data mark to be written. Each lane keeps its own connection open across the
        # burst, and each result is recorded as soon as the server's reply arrives.
        ready: asyncio.Queue[tuple[Message, Email] | None] = asyncio.Queue()

        async def build() -> None:
            try:
                built = compose_in_turn(drafts, self._mail, self._runtime.clock())
                of = iter(drafts)
                async for part in built:
                    for message, mail in ((next(of).message, b) for b in part):
                        if isinstance(mail, NotComposed):
                            # One message that cannot be built must not stop the others; the
                            # error names the kind of problem only (its text may quote
                            # personal data).
                            log.error(
                                "could not compose a message", extra={"id": message.notification_id}
                            )
                            error = f"message could not be composed ({mail.error})"
                            recorder.add(Outcome(message, Delivery.PERMANENT.value, error))
                        elif mail is None:
                            recorder.add(
                                Outcome(message, Verdict.SKIP.value, "nothing left to tell")
                            )
                        else:
                            ready.put_nowait((message, mail))
            finally:
                for _ in self._mailers:
                    ready.put_nowait(None)  # no more: each lane stops when it takes one

        # Every lane runs to its end before an error is raised: a lane left running would
        # share its connection with the next batch's. What was not sent stays claimed, and
        # is sent again once its lease ends.
        ended = await asyncio.gather(
            build(),
            *(
                _send_lane(
                    mailer,
                    ready.get,
                    self.hand_over,
                    self._runtime.metrics,
                    self._runtime.clock,
                    recorder.add,
                )
                for mailer in self._mailers
            ),
            return_exceptions=True,
        )
        for error in ended:
            if isinstance(error, BaseException):
                raise error

    async def _record_until_done(
        self, outcomes: Sequence[Outcome], stopping: asyncio.Event | None
    ) -> None:
        """Record the outcomes, retrying through a database outage.

        A delivered message is already 'sending' in the database, so if this instance stops
        before the outcome is recorded, whoever takes over records it as sent; the retries
        only make the record prompt and exact.
        """
        delay = 0.2
        while True:
            try:
                await self._record(outcomes)
                return
            except Exception as exc:
                log.warning(
                    "could not record send outcomes; retrying",
                    extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
                )
                if stopping is not None and stopping.is_set() and delay > 2:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _record(self, outcomes: Sequence[Outcome]) -> None:
        holder = self.holder
        async with self._runtime.db.unit_of_work() as uow:
            store = Storage(uow.conn)
            delivered = [o.message for o in outcomes if o.verdict == Delivery.SENT]
            if delivered:
                recorded = await store.mark_sent(
                    [m.notification_id for m in delivered], uow.now, holder
                )
                for m in delivered:
                    if m.notification_id in recorded:
                        uow.emit(
                            Topic.NOTIFICATIONS,
                            NotificationSent(**_reported(m)),
                            event_id=outcome_event_id(m.notification_id, "sent"),
                        )
            abandoned = [o.message for o in outcomes if o.verdict == Delivery.ABANDONED]
            if abandoned:
                await store.release([m.notification_id for m in abandoned], holder)
            for o in outcomes:
                m = o.message
                if o.verdict in (Delivery.SENT, Delivery.ABANDONED):
                    continue
                if o.verdict == Delivery.TEMPORARY and not gives_up(
                    m.first_attempt_at or uow.now, uow.now
                ):
                    delay = backoff(m.attempts + 1, self._options.retry_base)
                    await store.mark_retry(
                        m.notification_id, o.error, uow.now, uow.now + delay, holder
                    )
                elif o.verdict in (Delivery.TEMPORARY, Delivery.PERMANENT):
                    if await store.mark_failed(m.notification_id, o.error, uow.now, holder):
                        uow.emit(
                            Topic.NOTIFICATIONS,
                            NotificationFailed(**_reported(m), error=o.error),
                            event_id=outcome_event_id(m.notification_id, "failed"),
                        )
                elif o.verdict == Verdict.WAIT:
                    await store.mark(m.notification_id, "waiting", o.error, holder)
                else:
                    await store.mark(m.notification_id, "skipped", o.error, holder)


RECORD_GROUP = 256
"""Outcomes that make a transaction worth starting without lingering."""


class _Recorder:
    """Records outcomes as they arrive, in groups: a transaction takes what arrived while the
    last one was committed and for up to `record_linger` more (a group commit), so a
    delivered message is recorded within about one commit and a linger of the server's
    reply, not when its whole batch is done, and a burst costs a few transactions a second
    rather than one per email.

    Only deliveries linger. Any other result (a refusal after the end of data, say) is
    recorded at once: a message left `sending` by a process that dies is recorded as sent,
    which for a refusal would be wrong, so its window stays one commit."""

    def __init__(self, sender: Sender, stopping: asyncio.Event | None) -> None:
        self._sender = sender
        self._stopping = stopping
        self._waiting: list[Outcome] = []
        self._flushing: asyncio.Task[None] | None = None
        self._now = asyncio.Event()  # stop lingering: a result that may not wait, or the end
        self._ended = False

    def add(self, outcome: Outcome) -> None:
        self._sender._metrics.observe([outcome], self._sender._runtime.clock())
        self._waiting.append(outcome)
        if outcome.verdict != Delivery.SENT or len(self._waiting) >= RECORD_GROUP:
            self._now.set()
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        linger = self._sender._options.record_linger.total_seconds()
        while self._waiting:
            if linger > 0 and not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), linger)
            batch, self._waiting = self._waiting, []
            if not self._ended:
                self._now.clear()
            await self._sender._record_until_done(batch, self._stopping)

    async def drain(self) -> None:
        """Until everything added so far is recorded (no more lingering: nothing else comes)."""
        self._ended = True
        self._now.set()
        while self._flushing is not None and not self._flushing.done():
            await self._flushing


class _HandOver:
    """Marks messages 'sending' for the SMTP lanes and writes their end-of-data marks right
    behind the COMMIT; lanes that reach the hand-over while a mark is being made share the
    next transaction (a group commit).

    The order of events is: the `UPDATE ... SET status = 'sending'` in a transaction, its
    result (which claims this instance still holds), the COMMIT written to PostgreSQL's
    socket, the end-of-data marks written to the SMTP sockets in the same step of the event
    loop, and only then the COMMIT's reply awaited. A process killed before the COMMIT is
    written leaves the messages 'pending' and the server with unfinished ones (sent again
    later); killed after the end-of-data marks, the server has them and the kernel still
    delivers the COMMIT (recorded as sent, never sent again). The one window in which a kill
    loses a message is between those writes: a few system calls, no await (measured:
    twoway_smtp_handover_seconds). A statement still waiting (for a row lock, say) when the
    process dies is rolled back, since its COMMIT was never sent.

    If the COMMIT itself fails (the database went away at that moment) the messages were
    handed over anyway: the server's reply is recorded as usual once the database is back.
    """

    def __init__(self, sender: Sender) -> None:
        self._sender = sender
        self._waiting: list[tuple[str, EndOfData, asyncio.Future[bool]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    async def mark(self, notification_id: str, end_of_data: EndOfData) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((notification_id, end_of_data, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._sender._runtime.settings.database_url)
        return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _flush(self) -> None:
        sender = self._sender
        runtime = sender._runtime
        window = sender._metrics.handover
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                conn = await self._connection()
                await conn.execute("BEGIN")
                marked = await Storage(conn).mark_sending(
                    [n for n, _, _ in batch],
                    sender.holder,
                    runtime.clock() + sender._options.lease,
                )
            except Exception as exc:
                await self.close()
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            timings: list[float] = []
            # The COMMIT and the end-of-data marks are written corked: none leaves the kernel,
            # so no peer wakes up and takes this process's core, until all are written.
            database = _socket_of(conn)
            cork(database, True)
            # Nor may a garbage collection run between the COMMIT and the last mark.
            gc_enabled = gc.isenabled()
            gc.disable()
            committing = time.perf_counter()
            try:
                try:
                    await after_first_step(
                        conn.execute("COMMIT"),
                        functools.partial(
                            _end_marked, batch, marked, database, gc_enabled, timings
                        ),
                    )
                finally:
                    if gc_enabled:
                        gc.enable()
            except Exception as exc:
                await self.close()
                if not timings:  # failed before the COMMIT was written: nothing went
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                log.warning(
                    "the hand-over marks were not committed; the messages went all the same",
                    extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
                )
            if timings:
                window.labels("exposed").observe(timings[0] - committing)
                window.labels("commit").observe(time.perf_counter() - committing)


async def _send_lane(
    mailer: Mailer,
    take: Callable[[], Awaitable[tuple[Message, Email] | None]],
    hand_over: Callable[[str, EndOfData], Awaitable[None]],
    metrics: Metrics,
    clock: Callable[[], datetime],
    record: Callable[[Outcome], None],
) -> None:
    """Send what `take` gives, one message at a time on this lane's connection, until it
    gives None."""
    while (taken := await take()) is not None:
        message, mail = taken

        async def handed_over(end_of_data: EndOfData, nid: str = message.notification_id) -> None:
            await hand_over(nid, end_of_data)

        kind = message.template.value
        if message.due_at is not None:
            late = (clock() - message.due_at).total_seconds()
            metrics.delivery_lateness.labels("smtp", kind).observe(max(0.0, late))
        with delivery_span(
            "smtp", "send", parent=message.traceparent, template=kind, id=message.notification_id
        ) as span:
            try:
                result: Result = await mailer.send(mail, handed_over)
            except Exception as exc:
                # The hand-over could not be recorded (database away): not sent, claim released.
                result = Result(Delivery.ABANDONED, f"not handed over ({type(exc).__name__})")
            if result.delivery is not Delivery.SENT:
                failed(span, result.error)
        metrics.deliveries.labels("smtp", result.delivery.value).inc()
        record(Outcome(message, result.delivery.value, result.error))


def _end_marked(
    batch: list[tuple[str, EndOfData, asyncio.Future[bool]]],
    marked: set[str],
    database: Any,
    gc_enabled: bool,
    at: list[float],
) -> None:
    """Write the end-of-data marks of the marked messages, then let them and the COMMIT go;
    tell the lanes (the others are refused). Called in the step that wrote the COMMIT."""
    pushes = [end_of_data() for n, end_of_data, _ in batch if n in marked]
    at.append(time.perf_counter())
    cork(database, False)
    for push in pushes:
        push()
    if gc_enabled:
        gc.enable()
    for notification_id, _, future in batch:
        if not future.done():
            future.set_result(notification_id in marked)


def _socket_of(conn: asyncpg.Connection) -> Any:
    """The connection's socket, for TCP_CORK: asyncpg offers no public way to it, so its
    transport is read (asyncpg pinned in uv.lock); None if that ever changes."""
    transport = getattr(conn, "_transport", None)
    return transport.get_extra_info("socket") if transport is not None else None


@types.coroutine
def after_first_step(
    coro: Coroutine[Any, Any, T], then: Callable[[], None]
) -> Generator[Any, Any, T]:
    """Await `coro`, calling `then` as soon as `coro` first suspends, in the same step (no
    other task runs in between). For `conn.execute("COMMIT")` that first suspension comes
    after the COMMIT was written to the socket (asyncpg writes a simple query, then awaits
    its reply)."""
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        then()
        return cast(T, done.value)
    then()
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as done:
                return cast(T, done.value)
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as done:
                return cast(T, done.value)


def sender_worker(options: SenderOptions | None = None) -> Worker:
    """The worker the runtime starts: one sender per instance."""

    async def sender(runtime: Runtime, stopping: asyncio.Event) -> None:
        await Sender(runtime, options or SenderOptions()).run(stopping)

    return sender
