"""The fault-injection suite's own Kafka and PostgreSQL (they are killed and restarted, so
never the shared ones), the clean run every faulty run is compared with, and the figures."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from twoway_dev.localstack.stack import LocalStack
from twoway_dev.testing.kafka import authenticate

from tests.reliability.support import FIGURES, Figures, Outcome, Run, infra_of


@pytest.fixture(scope="session")
def own_stack() -> Iterator[LocalStack]:
    """A broker and a database for this suite alone, on ports of its own."""
    # World-searchable, since PostgreSQL runs as its own user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="twoway-reliability-", dir="/tmp"))
    root.chmod(0o755)
    stack = LocalStack(
        root / "stack",
        kafka_port=int(os.environ.get("TWOWAY_RELIABILITY_KAFKA_PORT", "59092")),
        pg_port=int(os.environ.get("TWOWAY_RELIABILITY_PG_PORT", "55432")),
    )
    info = stack.up()
    # The suite's helpers (publish, read, barriers) connect as the broker's super-user.
    authenticate(info.kafka_bootstrap, info.kafka_client_options())
    try:
        yield stack
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def clean(own_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The programme once without faults: what every faulty run must produce, exactly."""
    run = Run(infra_of(own_stack), tmp_path_factory.mktemp("clean"))
    outcome, seconds, _ = await run.execute(None)
    assert outcome.pairs, "the clean run formed no pair"
    assert not outcome.duplicate_facts
    assert all(n == 1 for n in outcome.message_ids.values())
    FIGURES.append(
        Figures(
            name="clean run",
            faults=0,
            events=outcome.events,
            emails=sum(outcome.emails.values()),
            lost=0,
            duplicated=0,
            redelivered=outcome.redelivered,
            seconds=seconds,
            recovery=0.0,
            crashed=[],
            detail=[],
        )
    )
    print(FIGURES[-1].line())
    return outcome


@pytest.fixture
async def run(own_stack: LocalStack, tmp_path: Path) -> AsyncIterator[Run]:
    yield Run(infra_of(own_stack), tmp_path)
    # A test that left the broker or the database down must not break the next one.
    own_stack.up()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for figures in FIGURES:
            terminalreporter.write_line(figures.line())
