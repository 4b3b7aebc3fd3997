"""SMTP delivery with aiosmtplib: one connection reused for a burst, replies classified.

TLS: STARTTLS whenever the server offers it (or required, or implicit TLS), certificates
always verified; the login is only ever sent over TLS.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from typing import Literal

import aiosmtplib

from twoway_notifications.domain.rules import smtp_error

log = logging.getLogger(__name__)


class Delivery(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"  # 4xx or no connection: try again later
    PERMANENT = "permanent"  # 5xx: report notification.failed at once


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


class Mailer:
    """Holds one SMTP connection open between messages and reopens it after any failure."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        c = self._config
        # start_tls None is aiosmtplib's opportunistic mode: STARTTLS if the EHLO offers it.
        start_tls = {"opportunistic": None, "starttls": True}.get(c.tls, False)
        client = aiosmtplib.SMTP(
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

    async def send(self, mail: EmailMessage) -> Result:
        """Hand one message to the server; never raises for a delivery problem."""
        self._last_used = time.monotonic()
        try:
            client = await self._connected()
            try:
                await client.send_message(mail)
            except aiosmtplib.SMTPServerDisconnected:
                # A reused connection the server closed while idle: one fresh attempt.
                await self.close()
                client = await self._connected()
                await client.send_message(mail)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await self.close()
            refused = exc.recipients[0] if exc.recipients else None
            return _classify(refused.code if refused else None, refused.message if refused else "")
        except aiosmtplib.SMTPResponseException as exc:
            await self.close()
            return _classify(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            return Result(Delivery.TEMPORARY, f"SMTP connection failed ({type(exc).__name__})")
        return Result(Delivery.SENT)

    def idle_for(self) -> float:
        return time.monotonic() - self._last_used

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            if client.is_connected:
                await client.quit()
        with contextlib.suppress(Exception):
            client.close()
