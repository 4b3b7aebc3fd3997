"""Local SMTP servers: one that keeps every message it receives as an .eml file in a folder
(in this process, or in one of its own), and one that discards them (for benchmarks); all
offer PIPELINING."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

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
    def __init__(self, folder: Path, index: IO[str] | None = None) -> None:
        self.folder = folder
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._index = index
        self.written: list[Path] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            number = next(self._numbers)
        recipients = "_".join(r.replace("@", "-at-") for r in envelope.rcpt_tos)[:80]
        path = self.folder / f"{number:06d}-{recipients}.eml"
        path.write_bytes(envelope.original_content or envelope.content)
        self.written.append(path)  # once complete
        if self._index is not None:  # before the reply: what was accepted is listed
            self._index.write(f"{path.name}\n")
            self._index.flush()
        return "250 Message accepted for delivery"


INDEX = "index"
READY = b"listening\n"


class MailSink:
    """Start with `start()`; messages land in `folder` until `stop()`."""

    def __init__(
        self, folder: Path, port: int = 2525, host: str = "127.0.0.1", *, index: bool = False
    ) -> None:
        """`index`: also append each message's file name to `folder/index` (MailSinkProcess
        reads it)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port
        self._index = (folder / INDEX).open("a", encoding="utf-8") if index else None
        self._keep = _Keep(folder, self._index)
        self._controller = Controller(self._keep, hostname=host, port=port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
        if self._index is not None:
            self._index.close()

    def messages(self) -> list[Path]:
        return sorted(self.folder.glob("*.eml"))

    @property
    def written(self) -> list[Path]:
        """The files of the messages received so far, each listed once it is complete, in
        the order they were received (no listing of the folder)."""
        return list(self._keep.written)


class MailSinkProcess:
    """A MailSink in a process of its own: a harness that reads a run's output while it
    grows (the Kafka topics, these files) then shares no interpreter lock with the server.

    The server appends each message's file name to `index` once the file is complete and
    before it answers the end of data, so `written` lists exactly what it accepted.
    """

    def __init__(self, folder: Path, port: int = 2525, host: str = "127.0.0.1") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port
        self.host = host
        self._index = folder / INDEX
        self._offset = 0
        self._written: list[Path] = []
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and return once it listens (it says so on its stdout)."""
        # Its errors to a file, not to a pipe nobody reads once it runs (a full pipe would
        # stop it); the child keeps its own copy of the file.
        with (self.folder / "sink.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __name__,
                    str(self.folder),
                    "--port",
                    str(self.port),
                    "--host",
                    self.host,
                ],
                # Its stdin ends when this process does, however it ends: then it stops too.
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self._process = process
        assert process.stdout is not None
        ready = selectors.DefaultSelector()
        ready.register(process.stdout, selectors.EVENT_READ)
        with ready:
            said = process.stdout.readline() if ready.select(timeout) else None
        if said == READY:
            return
        if said == b"":  # its stdout closed: it is exiting
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            error = (self.folder / "sink.log").read_text(errors="replace").strip()
            self.stop()
            raise RuntimeError(f"the SMTP sink exited at start: {error[-500:]}")
        self.stop()
        raise TimeoutError(f"the SMTP sink did not listen on {self.port} in {timeout} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def messages(self) -> list[Path]:
        return sorted(self.folder.glob("*.eml"))

    @property
    def written(self) -> list[Path]:
        """The files of the messages accepted so far, in the order they were accepted (the
        index is read from where the last call stopped, complete lines only)."""
        if self._index.exists():
            with self._index.open("rb") as index:
                index.seek(self._offset)
                chunk = index.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offset += len(complete)
            self._written.extend(self.folder / name for name in complete.decode().split())
        return list(self._written)


def main(argv: list[str] | None = None) -> None:
    """`python -m twoway_dev.localstack.mailsink FOLDER --port P`: serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    sink = MailSink(args.folder, port=args.port, host=args.host, index=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())

    def orphaned() -> None:  # the parent closed our stdin, or died
        sys.stdin.buffer.read()
        stopped.set()

    threading.Thread(target=orphaned, daemon=True).start()
    sink.start()
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()
    try:
        stopped.wait()
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
