"""The keeping SMTP sink in a process of its own, as the fault suite and the programme
benchmark use it."""

from __future__ import annotations

import smtplib
import socket
from email.message import EmailMessage
from pathlib import Path

import pytest
from twoway_dev.localstack.mailsink import MailSinkProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _message(n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "twoway@example.com"
    message["To"] = f"person{n}@example.com"
    message["Subject"] = f"message {n}"
    message.set_content(f"body {n}\n")
    return message


def test_a_sink_process_lists_what_it_accepted_in_order_and_serves_again_after_a_stop(
    tmp_path: Path,
) -> None:
    port = _free_port()
    sink = MailSinkProcess(tmp_path / "first", port=port)
    sink.start()
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.ehlo()
            assert client.has_extn("pipelining")
            for n in range(3):
                client.send_message(_message(n))
        # Accepted means listed: the server wrote the index before its reply.
        written = sink.written
        assert [p.read_bytes().count(f"body {n}".encode()) for n, p in enumerate(written)] == [
            1,
            1,
            1,
        ]
        assert sink.written == written  # read once, not listed twice
    finally:
        sink.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # The same port again at once, as the fault suite's SMTP outage does.
    again = MailSinkProcess(tmp_path / "second", port=port)
    again.start()
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(_message(9))
        assert [p.name for p in again.written] == [p.name for p in again.messages()]
        assert len(again.written) == 1
    finally:
        again.stop()
    assert len(sink.written) == 3


def test_a_sink_process_that_cannot_listen_says_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sink = MailSinkProcess(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="exited at start"):
            sink.start()


def test_a_sink_process_stops_when_its_parent_goes(tmp_path: Path) -> None:
    sink = MailSinkProcess(tmp_path, port=_free_port())
    sink.start()
    process = sink._process
    assert process is not None
    assert process.stdin is not None
    try:
        process.stdin.close()  # what the kernel does for a parent that dies
        assert process.wait(timeout=20) == 0
    finally:
        sink.stop()
