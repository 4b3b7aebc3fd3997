"""Benchmark: the mailer alone, emails/s and its CPU per email, with and without PIPELINING.

Four connections (as the sender's lanes) send a 3 kB email each in turn to a discarding
aiosmtpd process, one offering PIPELINING (the project's sink) and one not (aiosmtpd's
own), in turn: no broker, no database, only the SMTP conversation and the event loop.

Usage: uv run python bench/notifications_smtp.py [--count 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from email.message import EmailMessage

from bench_support import load_average
from notifications_support import start_sink
from twoway_notifications.mailer import Delivery, Email, Mailer, SmtpConfig

SINKS = {
    "PIPELINING offered": "twoway_dev.localstack.mailsink.Discard",
    "one command at a time": "aiosmtpd.handlers.Sink",
}


def email() -> Email:
    message = EmailMessage()
    message["From"], message["To"] = "no-reply@twoway.test", "someone@example.org"
    message["Subject"] = "benchmark"
    message.set_content("x" * 3000)
    return Email.of(message)


async def run(port: int, count: int, lanes: int = 4) -> tuple[float, float]:
    """Emails/s and the process's CPU ms per email over `count` emails (after a warm-up)."""
    mail = email()
    mailers = [Mailer(SmtpConfig("127.0.0.1", port)) for _ in range(lanes)]

    async def lane(mailer: Mailer, emails: int) -> None:
        for _ in range(emails):
            result = await mailer.send(mail)
            if result.delivery is not Delivery.SENT:
                raise RuntimeError(f"not sent: {result}")

    try:
        await asyncio.gather(*(lane(m, 20) for m in mailers))
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(lane(m, count // lanes) for m in mailers))
        cpu, elapsed = time.process_time() - cpu, time.perf_counter() - started
    finally:
        for mailer in mailers:
            await mailer.close()
    sent = count // lanes * lanes
    return sent / elapsed, 1000 * cpu / sent


async def compare(ports: dict[str, int], count: int, rounds: int) -> None:
    """The sinks in turn, `rounds` times (a busy machine moves single runs a lot): the
    median and the best of each."""
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in ports}
    for _ in range(rounds):
        for name, port in ports.items():
            found[name].append(await run(port, count))
    for name, runs in found.items():
        rates, cpus = sorted(r for r, _ in runs), sorted(c for _, c in runs)
        print(
            f"mailer, {name}: {statistics.median(rates):.0f} emails/s (best {rates[-1]:.0f}), "
            f"{statistics.median(cpus):.3f} ms CPU an email (best {cpus[0]:.3f})"
        )
    print(f"load average {load_average()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="emails a run")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    sinks = {name: start_sink(handler) for name, handler in SINKS.items()}
    try:
        asyncio.run(
            compare(
                {name: port for name, (_, port) in sinks.items()}, arguments.count, arguments.rounds
            )
        )
    finally:
        for process, _ in sinks.values():
            process.terminate()
            process.wait()
