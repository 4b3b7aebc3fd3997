"""The sender worker: claims due messages, renders and emails them, records the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import asyncpg
from twoway_shared.contract import NotificationFailed, NotificationSent, Topic
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.runtime import Runtime, Worker
from twoway_shared.platform.tracing import delivery_span, failed

from twoway_notifications.compose import MailSettings, compose
from twoway_notifications.config import NotificationsSettings
from twoway_notifications.domain.ids import outcome_event_id
from twoway_notifications.domain.model import Message
from twoway_notifications.domain.rules import Verdict, backoff, decide, gives_up
from twoway_notifications.mailer import Delivery, Mailer, Result, SmtpConfig
from twoway_notifications.metrics import sender_metrics
from twoway_notifications.storage import DUE_CHANNEL, Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SenderOptions:
    """Tunables of the sender; the defaults are the contract's (first retry within 30 s)."""

    retry_base: timedelta = timedelta(seconds=15)
    # The lease must outlast the slowest batch, or another instance sends it again: 40
    # messages over 4 connections is at most 10 sends of at most 30 s (the SMTP timeout) each.
    lease: timedelta = timedelta(minutes=10)
    batch_size: int = 40
    connections: int = 4
    poll_seconds: float = 1.0
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
        self._mailers = [Mailer(smtp_config(settings)) for _ in range(options.connections)]
        self._metrics = sender_metrics(runtime.metrics.registry)
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        last_sweep = 0.0
        try:
            while not stopping.is_set():
                try:
                    await self._listen()
                    if loop.time() - last_sweep > self._options.sweep_seconds:
                        await self._release_resolved()
                        last_sweep = loop.time()
                    self._wake.clear()
                    if await self.send_due(stopping) > 0:
                        continue
                    for mailer in self._mailers:
                        if mailer.idle_for() > self._options.idle_close_seconds:
                            await mailer.close()
                    await self._sleep(stopping)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("sender lost the database; retrying", extra={"error": str(exc)})
                    await self._drop_listener()
                    await _wait(stopping, 1.0)
        finally:
            for mailer in self._mailers:
                await mailer.close()
            await self._drop_listener()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = await asyncpg.connect(self._runtime.settings.database_url)
        await self._listener.add_listener(DUE_CHANNEL, lambda *_: self._wake.set())

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=5)

    async def _sleep(self, stopping: asyncio.Event) -> None:
        """Until a NOTIFY, the next due time, or the poll interval, whichever is first."""
        async with self._runtime.pool.acquire() as conn:
            next_due = await Storage(conn).next_due()
        timeout = self._options.poll_seconds
        if next_due is not None:
            ahead = (next_due - self._runtime.clock()).total_seconds()
            timeout = max(0.0, min(timeout, ahead))
        waiters = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(stopping.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _release_resolved(self) -> None:
        async with self._runtime.db.unit_of_work() as uow:
            await Storage(uow.conn).release_resolved_waiting(uow.now)

    async def send_due(self, stopping: asyncio.Event | None = None) -> int:
        """Claim one batch of due messages and deliver it; returns how many were claimed."""
        async with self._runtime.db.unit_of_work() as uow:
            batch = await Storage(uow.conn).claim_due(
                uow.now, self._options.lease, self._options.batch_size
            )
        if not batch:
            return 0
        async with self._runtime.pool.acquire() as conn:
            store = Storage(conn)
            contacts = await store.contacts(p for m in batch for p in m.people)
            sessions = await store.sessions_of_pairs(m.pair_id for m in batch if m.pair_id)
        done: list[Outcome] = []
        ready: list[tuple[Message, EmailMessage]] = []
        for message in batch:
            partner = contacts.get(message.partner_id) if message.partner_id else None
            decision = decide(message, contacts.get(message.participant_id), partner)
            if decision.verdict is not Verdict.SEND:
                done.append(Outcome(message, decision.verdict.value, decision.why))
                continue
            try:
                mail = compose(
                    message,
                    contacts[message.participant_id],
                    partner,
                    sessions.get(message.pair_id or "", []),
                    self._mail,
                    self._runtime.clock(),
                    contacts,
                )
            except Exception as exc:
                # One message that cannot be built must not stop the others; the error names
                # the kind of problem only (its text may quote personal data).
                log.exception("could not compose a message", extra={"id": message.notification_id})
                error = f"message could not be composed ({type(exc).__name__})"
                done.append(Outcome(message, Delivery.PERMANENT.value, error))
                continue
            if mail is None:
                done.append(Outcome(message, Verdict.SKIP.value, "nothing left to tell"))
            else:
                ready.append((message, mail))
        # Each lane keeps its own connection open across the burst.
        lanes = [ready[i :: len(self._mailers)] for i in range(len(self._mailers))]
        for sent in await asyncio.gather(
            *(
                _send_lane(mailer, lane, self._runtime.metrics, self._runtime.clock)
                for mailer, lane in zip(self._mailers, lanes, strict=True)
            )
        ):
            self._metrics.observe(sent, self._runtime.clock())
            done.extend(sent)
        await self._record(done)
        return len(batch)

    async def _record(self, outcomes: Sequence[Outcome]) -> None:
        async with self._runtime.db.unit_of_work() as uow:
            store = Storage(uow.conn)
            for o in outcomes:
                m = o.message
                if o.verdict == Delivery.SENT:
                    if await store.mark_sent(m.notification_id, uow.now):
                        uow.emit(
                            Topic.NOTIFICATIONS,
                            NotificationSent(**_reported(m)),
                            event_id=outcome_event_id(m.notification_id, "sent"),
                        )
                elif o.verdict == Delivery.TEMPORARY and not gives_up(
                    m.first_attempt_at or uow.now, uow.now
                ):
                    delay = backoff(m.attempts + 1, self._options.retry_base)
                    await store.mark_retry(m.notification_id, o.error, uow.now, uow.now + delay)
                elif o.verdict in (Delivery.TEMPORARY, Delivery.PERMANENT):
                    if await store.mark_failed(m.notification_id, o.error, uow.now):
                        uow.emit(
                            Topic.NOTIFICATIONS,
                            NotificationFailed(**_reported(m), error=o.error),
                            event_id=outcome_event_id(m.notification_id, "failed"),
                        )
                elif o.verdict == Verdict.WAIT:
                    await store.mark(m.notification_id, "waiting", o.error)
                else:
                    await store.mark(m.notification_id, "skipped", o.error)


async def _send_lane(
    mailer: Mailer,
    lane: Sequence[tuple[Message, EmailMessage]],
    metrics: Metrics,
    clock: Callable[[], datetime],
) -> list[Outcome]:
    outcomes = []
    for message, mail in lane:
        kind = message.template.value
        if message.due_at is not None:
            late = (clock() - message.due_at).total_seconds()
            metrics.delivery_lateness.labels("smtp", kind).observe(max(0.0, late))
        with delivery_span(
            "smtp", "send", parent=message.traceparent, template=kind, id=message.notification_id
        ) as span:
            result: Result = await mailer.send(mail)
            if result.delivery is not Delivery.SENT:
                failed(span, result.error)
        metrics.deliveries.labels("smtp", result.delivery.value).inc()
        outcomes.append(Outcome(message, result.delivery.value, result.error))
    return outcomes


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def sender_worker(options: SenderOptions | None = None) -> Worker:
    """The worker the runtime starts: one sender per instance."""

    async def sender(runtime: Runtime, stopping: asyncio.Event) -> None:
        await Sender(runtime, options or SenderOptions()).run(stopping)

    return sender
