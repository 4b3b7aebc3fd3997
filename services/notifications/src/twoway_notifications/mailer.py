"""SMTP delivery with aiosmtplib: one connection reused for a burst, replies classified.

TLS: STARTTLS whenever the server offers it (or required, or implicit TLS), certificates
always verified; the login is only ever sent over TLS.

A send can be given a hook awaited just before the end-of-data mark (the lone "." that makes
the server take the message). The sender uses it to commit that the message is being
handed over: if the process dies after that commit the message counts as delivered and is
never sent again; if it dies before, the server never got a complete message and another
instance sends it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from typing import Any, Literal

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from aiosmtplib.typing import Default, SMTPStatus

from twoway_notifications.domain.rules import smtp_error

log = logging.getLogger(__name__)

BeforeEndOfData = Callable[[], Awaitable[None]]


class Delivery(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"  # 4xx or no connection: try again later
    PERMANENT = "permanent"  # 5xx: report notification.failed at once
    ABANDONED = "abandoned"  # the hook refused (the claim was lost): not handed over


class HandOverRefused(Exception):
    """Raised by a hook to abandon a message before the server takes it."""


@dataclass(frozen=True)
class Result:
    delivery: Delivery
    error: str = ""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: Literal["opportunistic", "starttls", "implicit", "off"] = "opportunistic"
    ca_file: str | None = None
    timeout: float = 30.0


class CleartextLogin(aiosmtplib.SMTPException):
    """A login was configured but the connection is not encrypted: it is not sent."""


def _classify(code: int | None, text: str) -> Result:
    if code is not None and 500 <= code < 600:
        return Result(Delivery.PERMANENT, smtp_error(code, text))
    return Result(Delivery.TEMPORARY, smtp_error(code, text))


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client with a hook between the message text and the end-of-data mark."""

    before_end_of_data: BeforeEndOfData | None = None
    handed_over = False

    async def data(self, message: str | bytes, /, *, timeout: Any = Default.token) -> Any:
        hook, protocol = self.before_end_of_data, self.protocol
        if hook is None or protocol is None:
            return await super().data(message, timeout=timeout)
        if timeout is Default.token:
            timeout = self.timeout
        if isinstance(message, str):
            message = message.encode("ascii")
        text = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))
        # The same steps as aiosmtplib's execute_data_command (version pinned in uv.lock),
        # with the end-of-data mark written only after the hook returned.
        lock = protocol._command_lock
        if lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        try:
            async with lock:
                protocol._response_pending = True
                protocol.write(b"DATA\r\n")
                start = await protocol.read_response(timeout=timeout)
                if start.code != SMTPStatus.start_input:
                    raise aiosmtplib.SMTPDataError(start.code, start.message)
                protocol.write(text)
                await hook()
                protocol._response_pending = True
                protocol.write(b".\r\n")
                self.handed_over = True
                response = await protocol.read_response(timeout=timeout)
                if response.code != SMTPStatus.completed:
                    raise aiosmtplib.SMTPDataError(response.code, response.message)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        return response


class Mailer:
    """Holds one SMTP connection open between messages and reopens it after any failure."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._client: _Client | None = None
        self._last_used = 0.0

    async def _connected(self) -> _Client:
        if self._client is not None and self._client.is_connected:
            return self._client
        c = self._config
        # start_tls None is aiosmtplib's opportunistic mode: STARTTLS if the EHLO offers it.
        start_tls = {"opportunistic": None, "starttls": True}.get(c.tls, False)
        client = _Client(
            hostname=c.host,
            port=c.port,
            use_tls=c.tls == "implicit",
            start_tls=start_tls,
            validate_certs=True,
            cert_bundle=c.ca_file,
            timeout=c.timeout,
        )
        await client.connect()
        if c.username:
            if client.get_transport_info("sslcontext") is None:
                client.close()
                log.error(
                    "SMTP login not sent: the connection is not encrypted",
                    extra={"smtp_host": c.host, "smtp_tls": c.tls},
                )
                raise CleartextLogin("SMTP AUTH over a cleartext connection refused")
            await client.login(c.username, c.password or "")
        self._client = client
        return client

    async def send(
        self, mail: EmailMessage, before_end_of_data: BeforeEndOfData | None = None
    ) -> Result:
        """Hand one message to the server; never raises for a delivery problem."""
        self._last_used = time.monotonic()
        client: _Client | None = None
        try:
            client = await self._connected()
            client.before_end_of_data, client.handed_over = before_end_of_data, False
            try:
                await client.send_message(mail)
            except aiosmtplib.SMTPServerDisconnected:
                if client.handed_over:
                    raise
                # A reused connection the server closed while idle: one fresh attempt.
                await self.close()
                client = await self._connected()
                client.before_end_of_data, client.handed_over = before_end_of_data, False
                await client.send_message(mail)
        except HandOverRefused as exc:
            self.abort()  # the server drops the unfinished message
            return Result(Delivery.ABANDONED, str(exc))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await self.close()
            refused = exc.recipients[0] if exc.recipients else None
            return _classify(refused.code if refused else None, refused.message if refused else "")
        except aiosmtplib.SMTPResponseException as exc:
            await self.close()
            return _classify(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Lost before the server's reply, even after the end of data: the server has not
            # taken the message (RFC 5321 4.1.1.4), so it is sent again later (RFC 1047).
            self.abort()
            return Result(Delivery.TEMPORARY, f"SMTP connection failed ({type(exc).__name__})")
        except Exception:
            # The hook failed (the database is away): the message was not handed over.
            self.abort()
            raise
        return Result(Delivery.SENT)

    def idle_for(self) -> float:
        return time.monotonic() - self._last_used

    def abort(self) -> None:
        """Drop the connection without QUIT (it may be mid-message or broken)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            if client.is_connected:
                await client.quit()
        with contextlib.suppress(Exception):
            client.close()
