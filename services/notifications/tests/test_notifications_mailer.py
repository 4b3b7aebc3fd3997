"""The mailer's SMTP conversation against real aiosmtpd servers, one offering PIPELINING and
one not: the same messages, the same results for every refusal, and the connection in step
with the server afterwards."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from twoway_dev.localstack.mailsink import OffersPipelining
from twoway_notifications.mailer import Delivery, Email, Mailer, Result, SmtpConfig, _data_text


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    options: list[str]
    content: bytes


@dataclass
class Scripted:
    """Takes messages, or refuses a step with a scripted reply, each reply given once: MAIL,
    RCPT for an address, or the DATA command itself (the 354 not given)."""

    mail: list[str] = field(default_factory=list)
    rcpt: dict[str, list[str]] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    pause: float = 0.0  # before each RCPT reply: the replies come apart, not in one read

    async def handle_MAIL(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.mail:
            return self.mail.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.pause)
        if self.rcpt.get(address):
            return self.rcpt[address].pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                list(envelope.mail_options),
                envelope.original_content,
            )
        )
        return "250 OK"


@dataclass
class ScriptedPipelining(OffersPipelining, Scripted):
    """The same, with PIPELINING in its EHLO reply."""


class _Recording(SMTP):
    """aiosmtpd's server, keeping each piece of bytes it reads from the socket, and able to
    refuse the DATA command (aiosmtpd has no hook for it)."""

    def __init__(self, handler: Scripted, reads: list[bytes], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.reads = reads

    def data_received(self, data: bytes) -> None:
        self.reads.append(bytes(data))
        super().data_received(data)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        if self.event_handler.data:
            await self.push(self.event_handler.data.pop(0))
            return
        await super().smtp_DATA(arg)


class Server(Controller):
    def __init__(self, handler: Scripted, port: int) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=port)
        self.script = handler
        self.port = port
        self.reads: list[bytes] = []

    def factory(self) -> _Recording:
        return _Recording(self.handler, self.reads, **self.SMTP_kwargs)

    def command_reads(self) -> list[list[bytes]]:
        """The verbs of each read that held commands (a message text is left out)."""
        verbs = (b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA", b"QUIT", b"RSET")
        found = []
        for read in self.reads:
            lines = [line[:4] for line in read.split(b"\r\n") if line]
            if lines and all(verb in verbs for verb in lines):
                found.append(lines)
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["pipelining", "pipelining, replies apart", "one at a time"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    handler = {
        "pipelining": ScriptedPipelining(),
        "pipelining, replies apart": ScriptedPipelining(pause=0.002),
        "one at a time": Scripted(),
    }[request.param]
    found = Server(handler, free_port())
    found.start()
    try:
        yield found
    finally:
        found.stop()


def pipelined(server: Server) -> bool:
    return isinstance(server.script, OffersPipelining)


def email(to: str, subject: str, sender: str = "no-reply@twoway.test") -> Email:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content(f".a line that starts with a dot\n{subject}\n" + "x" * 2000)
    return Email.of(message)


A, B = "a@example.org", "b@example.org"
SENT = Result(Delivery.SENT)


async def test_both_ways_deliver_the_same_bytes_and_envelopes(server: Server) -> None:
    mails = [
        email(A, "one"),
        email(f"{A}, {B}", "two"),
        email(f"{A}, jürgen@example.org", "três", sender="ñoreply@twoway.test"),
    ]
    mailer = Mailer(SmtpConfig("127.0.0.1", server.port))
    try:
        results = [await mailer.send(mail) for mail in mails]
    finally:
        await mailer.close()
    assert results == [SENT] * 3
    assert server.script.received == [
        Received(
            mail.sender,
            list(mail.recipients),
            [
                f"SIZE={len(_data_text(mail.data))}",
                *(["SMTPUTF8", "BODY=8BITMIME"] if i == 2 else []),
            ],
            mail.data,
        )
        for i, mail in enumerate(mails)
    ]
    envelopes = [verbs for verbs in server.command_reads() if b"MAIL" in verbs]
    if pipelined(server):
        # One read per message held MAIL, every RCPT and DATA: they came in one write.
        assert envelopes == [
            [b"MAIL", b"RCPT", b"DATA"],
            [b"MAIL", b"RCPT", b"RCPT", b"DATA"],
            [b"MAIL", b"RCPT", b"RCPT", b"DATA"],
        ]
    else:
        assert envelopes == [[b"MAIL"]] * 3
        assert [b"RCPT"] in server.command_reads()
        assert [b"DATA"] in server.command_reads()


@dataclass(frozen=True)
class Refusal:
    name: str
    mail: list[str] = field(default_factory=list)
    rcpt: dict[str, list[str]] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)
    result: Result = SENT
    taken_for: list[str] = field(default_factory=list)  # recipients the server took it for


REFUSALS = [
    Refusal(
        "MAIL refused",
        mail=["550 5.7.1 sender not allowed"],
        result=Result(Delivery.PERMANENT, "SMTP 550 5.7.1 sender not allowed"),
    ),
    Refusal(
        "MAIL refused, the server closing",
        mail=["421 4.3.2 shutting down"],
        result=Result(Delivery.TEMPORARY, "SMTP 421 4.3.2 shutting down"),
    ),
    Refusal(
        "one of two RCPT refused",
        rcpt={B: ["550 5.1.1 no such user"]},
        taken_for=[A],
    ),
    Refusal(
        "every RCPT refused",
        rcpt={A: ["550 5.1.1 no such user"], B: ["450 4.2.1 mailbox busy"]},
        result=Result(Delivery.PERMANENT, "SMTP 550 5.1.1 no such user"),
    ),
    Refusal(
        "DATA refused",
        data=["451 4.3.0 try again later"],
        result=Result(Delivery.TEMPORARY, "SMTP 451 4.3.0 try again later"),
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.name)
async def test_refusals_give_the_same_results_and_the_next_message_goes(
    server: Server, refusal: Refusal
) -> None:
    server.script.mail.extend(refusal.mail)
    server.script.rcpt.update({k: list(v) for k, v in refusal.rcpt.items()})
    server.script.data.extend(refusal.data)
    refused, following = email(f"{A}, {B}", "refused"), email(B, "following")
    mailer = Mailer(SmtpConfig("127.0.0.1", server.port, timeout=10))
    try:
        first = await mailer.send(refused)
        second = await mailer.send(following)
    finally:
        await mailer.close()
    assert first == refusal.result
    assert second == SENT
    taken = [(refusal.taken_for, refused.data)] if refusal.taken_for else []
    assert [(r.recipients, r.content) for r in server.script.received] == [
        *taken,
        ([B], following.data),
    ]
    if pipelined(server):
        assert [b"MAIL", b"RCPT", b"RCPT", b"DATA"] in server.command_reads()


async def test_a_server_that_refuses_the_sender_and_closes_mid_pipeline_is_a_refusal() -> None:
    """A server that offers PIPELINING, answers MAIL with 550 and closes without a 421 (or an
    answer to RCPT and DATA): the refusal it gave is what counts, not the closed connection."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 blunt.test ESMTP\r\n")
        await writer.drain()
        await reader.readline()  # EHLO
        writer.write(b"250-blunt.test\r\n250 PIPELINING\r\n")
        await writer.drain()
        seen.append(await reader.readline())  # MAIL (RCPT and DATA follow in the same write)
        writer.write(b"550 5.7.1 sender not allowed\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mailer = Mailer(SmtpConfig("127.0.0.1", port, tls="off", timeout=10))
    try:
        async with server:
            result = await mailer.send(email(A, "refused"))
    finally:
        await mailer.close()
    assert seen == [b"MAIL FROM:<no-reply@twoway.test>\r\n"]
    assert result == Result(Delivery.PERMANENT, "SMTP 550 5.7.1 sender not allowed")
