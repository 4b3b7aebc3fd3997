"""An SMTP server for the hand-over tests: it can withhold its reply at one step of a mail
transaction (the client then waits there), says when a step is reached, and keeps every
message whose end-of-data mark arrived, by Message-ID."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections import Counter
from typing import Literal

from tests.e2e_support import free_port

Step = Literal["RCPT", "DATA", "END"]
"""Where a reply can be withheld: the RCPT reply (so before DATA), the 354 reply to DATA,
and the 250 reply to the end-of-data mark (the server has taken the message)."""


class GatedSmtp:
    """A small SMTP server (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hold: Step | None = None
        self.held = 0  # sessions waiting at the held step
        self.texts = 0  # message texts begun (a line after the 354 arrived)
        self.messages: list[bytes] = []  # ended with the end-of-data mark
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def release(self) -> None:
        """Stop holding: the waiting sessions reply, later ones are not held."""
        self.hold = None
        self._release.set()

    def message_ids(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for raw in self.messages:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            found[str(message["Message-ID"])] += 1
        return found

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _gate(self, step: Step) -> None:
        if self.hold != step:
            return
        self.held += 1
        await self._notify()
        await self._release.wait()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            writer.write(b"220 gated ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-gated\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
                elif verb == b"RCPT":
                    await self._gate("RCPT")
                    writer.write(b"250 ok\r\n")
                elif verb == b"DATA":
                    await self._gate("DATA")
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    text = await self._text(reader)
                    if text is None:
                        return  # the client went away before the end-of-data mark
                    self.messages.append(text)
                    await self._notify()
                    await self._gate("END")
                    writer.write(b"250 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:  # HELO, MAIL, RSET, NOOP
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        writer.close()

    async def _text(self, reader: asyncio.StreamReader) -> bytes | None:
        lines: list[bytes] = []
        while line := await reader.readline():
            if not lines:
                self.texts += 1
                await self._notify()
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b"..") else line)
        return None

    async def wait_for(self, what: str, condition: object, timeout: float = 60.0) -> None:
        """Until `condition()` holds (re-checked whenever the server's state changes)."""
        assert callable(condition)

        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(condition)

        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            raise AssertionError(f"SMTP server: {what} not reached in {timeout} s") from None
