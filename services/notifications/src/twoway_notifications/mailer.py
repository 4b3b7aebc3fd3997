"""SMTP delivery with aiosmtplib: one connection reused for a burst, replies classified.

TLS: STARTTLS whenever the server offers it (or required, or implicit TLS), certificates
always verified; the login is only ever sent over TLS.

A send goes through MAIL, RCPT, DATA (the server's 354) and the message text before the
sender is asked to hand the message over. The hand-over commits that the message is being
sent and then, in the same step of the event loop, calls `end_of_data`, which writes the
end-of-data mark (the lone "." that makes the server take the message). If the process dies
before that commit, the server never got a complete message and another instance sends it;
after it, the message counts as delivered and is never sent again. The time between the two
is the one window a crash loses a message in (docs/reliability.md measures it).

When the server offers PIPELINING (RFC 2920), MAIL, every RCPT and DATA go in one write and
their replies are read together: one round trip and one wake-up of the server instead of
two plus one per recipient. The message text and the hand-over are the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum
from typing import Any, Literal

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message, quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    PERIOD_REGEX,
    normalize_message_line_endings,
)
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus

from twoway_notifications.domain.rules import smtp_error

log = logging.getLogger(__name__)

Push = Callable[[], None]

EndOfData = Callable[[], Push]
"""Writes the end-of-data mark into the kernel with the socket corked (held there, but sent
even if the process dies now) and returns what lets it go at once; never raises (a failure
is kept for the send to report)."""

HandOver = Callable[[EndOfData], Awaitable[None]]
"""Commits the hand-over, calling `end_of_data` right behind the COMMIT; raises
HandOverRefused (or does not call it) when the message must not go."""


def cork(sock: Any, on: bool) -> None:
    """TCP_CORK on a TCP socket (Linux): what is written stays in the kernel, no packet and
    no wake-up of the peer, until uncorked or closed (a process that dies closes it, which
    sends what is held). Elsewhere, or on another kind of socket, nothing."""
    option = getattr(socket, "TCP_CORK", None)
    if sock is None or option is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, 1 if on else 0)


@dataclass(frozen=True)
class Email:
    """A message as it goes to the server: the envelope, and the text written after DATA
    (before dot-stuffing), 7-bit clean unless an address is not ASCII (SMTPUTF8)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @staticmethod
    def of(message: Message) -> Email:
        """An email package message as SMTP sends it: the envelope from its headers, the text
        flattened 7-bit clean."""
        sender, recipients = extract_sender(message), extract_recipients(message)
        if sender is None or not recipients:
            raise ValueError("a message needs From and To")
        utf8 = not (sender + "".join(recipients)).isascii()
        return Email(
            sender, tuple(recipients), flatten_message(message, utf8=utf8, cte_type="7bit")
        )


class Delivery(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"  # 4xx or no connection: try again later
    PERMANENT = "permanent"  # 5xx: report notification.failed at once
    ABANDONED = "abandoned"  # the hand-over was refused (the claim was lost): not sent


class HandOverRefused(Exception):
    """Raised by a hand-over to abandon a message before the server takes it."""


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


class _NotEnded(Exception):
    """The end-of-data mark could not be written: the server has no complete message."""


def _classify(code: int | None, text: str) -> Result:
    if code is not None and 500 <= code < 600:
        return Result(Delivery.PERMANENT, smtp_error(code, text))
    return Result(Delivery.TEMPORARY, smtp_error(code, text))


async def _start_transaction(client: aiosmtplib.SMTP, mail: Email) -> None:
    """MAIL, RCPT, DATA and the message text, leaving the end-of-data mark unwritten: the
    envelope steps of aiosmtplib's `send_message`, pipelined when the server offers it."""
    sender, recipients = mail.sender, list(mail.recipients)
    if not sender or not recipients:
        raise ValueError("a message needs a sender and a recipient")
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    options = []
    utf8 = not (sender + "".join(recipients)).isascii()
    if utf8:
        options.append("SMTPUTF8")
    if client.supports_extension("8BITMIME") and not mail.data.isascii():
        options.append("BODY=8BITMIME")
    text = _data_text(mail.data)
    if client.supports_extension("size"):
        options.insert(0, f"size={len(text)}")
    encoding = "utf-8" if utf8 else "ascii"
    if client.supports_extension("pipelining"):
        await _pipelined_envelope(client, sender, recipients, options, encoding)
    else:
        await _envelope(client, sender, recipients, options, encoding)
    assert client.protocol is not None
    client.protocol.write(text)


async def _envelope(
    client: aiosmtplib.SMTP, sender: str, recipients: list[str], options: list[str], encoding: str
) -> None:
    """MAIL, each RCPT and DATA one at a time, each waiting for its reply (aiosmtplib's
    public commands), up to the server's 354."""
    await client.mail(sender, options=options, encoding=encoding)
    refused = []
    for recipient in recipients:
        try:
            await client.rcpt(recipient, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as exc:
            refused.append(exc)
    if len(refused) == len(recipients):
        raise aiosmtplib.SMTPRecipientsRefused(refused)
    start = await client.execute_command(b"DATA")
    if start.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)


async def _pipelined_envelope(
    client: aiosmtplib.SMTP, sender: str, recipients: list[str], options: list[str], encoding: str
) -> None:
    """MAIL, every RCPT and DATA in one write (RFC 2920 PIPELINING), then their replies in
    order, classified as `_envelope` classifies them (the same exceptions). Every reply is
    read before an error is raised, so the connection stays in step with the server; one
    that took DATA (354) although the envelope failed waits for a text: it is closed."""
    commands = [
        _command_line(
            b"MAIL",
            b"FROM:" + quote_address(sender).encode(encoding),
            *(option.encode("ascii") for option in options),
        ),
        *(_command_line(b"RCPT", b"TO:" + quote_address(r).encode(encoding)) for r in recipients),
        _command_line(b"DATA"),
    ]
    replies = await _pipeline(client, commands)

    def reply(index: int) -> SMTPResponse:
        # Missing after a 421, on which aiosmtplib closes the connection: a command sent
        # one at a time would have found it closed.
        if index >= len(replies):
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        return replies[index]

    try:
        mail_from = reply(0)
        if mail_from.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPSenderRefused(mail_from.code, mail_from.message, sender)
        refused = []
        for index, recipient in enumerate(recipients, start=1):
            rcpt = reply(index)
            if rcpt.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
                refused.append(aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, recipient))
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)
        start = reply(len(recipients) + 1)
        if start.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
    except aiosmtplib.SMTPException:
        if len(replies) == len(commands) and replies[-1].code == SMTPStatus.start_input:
            client.close()
        raise


def _command_line(*args: bytes) -> bytes:
    """A command as aiosmtplib's protocol writes it (`execute_command`)."""
    if any(COMMAND_INJECTION_REGEX.search(arg) for arg in args):
        raise ValueError("Command arg contains a prohibited control character")
    return b" ".join(args) + b"\r\n"


async def _pipeline(client: aiosmtplib.SMTP, commands: list[bytes]) -> list[SMTPResponse]:
    """Write the command lines in one write and read their replies in order, up to a 421 or
    the connection's end (aiosmtplib closes the client on a 421 too). The other step below
    aiosmtplib's public API, since its protocol expects one reply per command written:
    - it keeps the bytes that arrive only while a reply is due, so that is set before the
      write (as in `_end_of_data`);
    - it parses one reply per arrival and leaves the rest in its buffer, where replies that
      came in one piece are taken from;
    - a reply that arrives while the one before waits to be taken is dropped, so each is
      awaited directly, under one deadline for all, without `read_response`'s own timeout:
      its `wait_for` (Python 3.11) puts a step of the event loop between the reply and the
      task, in which the socket may be read again; awaited directly, the task takes the
      reply in the next step, before the loop reads the socket again.
    Any failure leaves replies unread: the connection is closed."""
    protocol = client.protocol
    if protocol is None or not protocol.is_connected:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    replies: list[SMTPResponse] = []
    try:
        protocol._response_pending = True
        protocol.write(b"".join(commands))
        async with asyncio.timeout(client.timeout):
            while len(replies) < len(commands):
                reply = protocol._read_response_from_buffer()
                if reply is None:
                    reply = await protocol.read_response(timeout=None)
                replies.append(reply)
                if reply.code == SMTPStatus.domain_unavailable:
                    client.close()
                    break
    except TimeoutError as exc:
        client.close()
        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
    except aiosmtplib.SMTPServerDisconnected:
        client.close()
        if not replies:
            raise
        # Closed after answering some: those answers are classified (a refused MAIL stays a
        # refusal), the missing ones count as the connection lost.
    except BaseException:
        client.close()
        raise
    return replies


def _data_text(data: bytes) -> bytes:
    """The message as written after DATA: CRLF line ends (the last line too), a leading "."
    doubled (RFC 5321 4.5.2). aiosmtplib's regular expressions rewrite every line end, a
    third of a millisecond of the event loop for a booking; a composed email already ends
    its lines in CRLF and rarely starts one with ".", which a few scans find at once."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf or not data.endswith(b"\r\n"):
        data = normalize_message_line_endings(data)
    if data.startswith(b".") or b"\n." in data:
        data = PERIOD_REGEX.sub(b"..", data)
    return data


def _end_of_data(client: aiosmtplib.SMTP) -> Push:
    """Write the end-of-data mark, corked. One of the two steps below aiosmtplib's public API
    (with `_pipeline`): its protocol is told a reply is due before the write (what its own
    `execute_data_command` does), since the reply may arrive before the send awaits it and
    would otherwise be dropped."""
    protocol = client.protocol
    if protocol is None or protocol.transport is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    sock = client.get_transport_info("socket")
    cork(sock, True)
    protocol._response_pending = True
    protocol.write(b".\r\n")
    return lambda: cork(sock, False)


async def _flushed(client: aiosmtplib.SMTP) -> None:
    """Until the message text has left the process (is in the kernel): what is still in the
    event loop's buffer when the process dies is never sent."""
    transport = client.protocol.transport if client.protocol is not None else None
    while isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
        if transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        await asyncio.sleep(0.001)


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

    async def send(self, mail: Email, hand_over: HandOver | None = None) -> Result:
        """Hand one message to the server; never raises for a delivery problem (a hand-over
        that fails for another reason, the database away, is re-raised: not sent)."""
        self._last_used = time.monotonic()
        ended = False
        not_ended: Exception | None = None
        try:
            client = await self._connected()
            try:
                await _start_transaction(client, mail)
            except aiosmtplib.SMTPServerDisconnected:
                # A reused connection the server closed while idle: one fresh attempt.
                await self.close()
                client = await self._connected()
                await _start_transaction(client, mail)

            await _flushed(client)

            def end_of_data() -> Push:
                nonlocal ended, not_ended
                try:
                    push = _end_of_data(client)
                    ended = True
                    return push
                except Exception as exc:
                    not_ended = exc
                    return lambda: None

            if hand_over is None:
                end_of_data()()
            else:
                await hand_over(end_of_data)
            if not_ended is not None:
                raise _NotEnded(type(not_ended).__name__)
            if not ended:
                raise HandOverRefused("the hand-over did not end the message")
            assert client.protocol is not None
            reply = await client.protocol.read_response(timeout=self._config.timeout)
            if reply.code != SMTPStatus.completed:
                raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        except HandOverRefused as exc:
            self.abort()  # the server drops the unfinished message
            return Result(Delivery.ABANDONED, str(exc))
        except _NotEnded as exc:
            self.abort()
            return Result(
                Delivery.TEMPORARY, f"SMTP connection lost before the end of data ({exc})"
            )
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
            # The hand-over failed (the database is away): the message was not handed over.
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
