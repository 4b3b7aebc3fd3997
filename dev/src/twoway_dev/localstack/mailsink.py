"""Local SMTP servers: one that keeps every message it receives as an .eml file in a folder,
and one that discards them (for benchmarks); both offer PIPELINING."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class OffersPipelining:
    """An aiosmtpd handler whose EHLO reply offers PIPELINING (RFC 2920), as real servers'
    do (Postfix, Exim, Gmail, SES): aiosmtpd takes pipelined commands (it reads a line at a
    time) but does not say so, and the notifications mailer pipelines only when told."""

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        *lines, last = responses  # the last line ("250 HELP") has no dash: it ends the reply
        return [*lines, "250-PIPELINING", last]


class Discard(OffersPipelining):
    """Takes every message and keeps none (`python -m aiosmtpd -c` with this class)."""


class _Keep(OffersPipelining):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.written: list[Path] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            number = next(self._numbers)
        recipients = "_".join(r.replace("@", "-at-") for r in envelope.rcpt_tos)[:80]
        path = self.folder / f"{number:06d}-{recipients}.eml"
        path.write_bytes(envelope.original_content or envelope.content)
        self.written.append(path)  # once complete
        return "250 Message accepted for delivery"


class MailSink:
    """Start with `start()`; messages land in `folder` until `stop()`."""

    def __init__(self, folder: Path, port: int = 2525, host: str = "127.0.0.1") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port
        self._keep = _Keep(folder)
        self._controller = Controller(self._keep, hostname=host, port=port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def messages(self) -> list[Path]:
        return sorted(self.folder.glob("*.eml"))

    @property
    def written(self) -> list[Path]:
        """The files of the messages received so far, each listed once it is complete, in
        the order they were received (no listing of the folder)."""
        return list(self._keep.written)
