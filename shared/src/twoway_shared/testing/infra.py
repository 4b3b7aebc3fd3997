"""Real infrastructure for tests: external endpoints, testcontainers, or the local stack."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from twoway_shared.localstack.stack import LocalStack, hold

SERVICES = ("matching", "scheduling", "notifications", "progress")


@dataclass(frozen=True)
class Infra:
    """Where the session's broker and database are, and how they were obtained."""

    kafka_bootstrap: str
    admin_dsn: str
    origin: str


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "services").is_dir():
            return parent
    return Path.cwd()


@contextlib.contextmanager
def session_infra() -> Iterator[Infra]:
    """External `TWOWAY_TEST_*` endpoints when set, else testcontainers, else the local stack."""
    kafka = os.environ.get("TWOWAY_TEST_KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("TWOWAY_TEST_DATABASE_URL")
    if kafka and database:
        yield Infra(kafka, database, "external")
        return
    if os.environ.get("TWOWAY_TEST_NO_DOCKER") != "1" and _docker_answers():
        with _containers() as infra:
            yield infra
        return
    stack = LocalStack(
        repo_root() / ".stack" / "test",
        kafka_port=int(os.environ.get("TWOWAY_TEST_KAFKA_PORT", "29092")),
        pg_port=int(os.environ.get("TWOWAY_TEST_PG_PORT", "25432")),
    )
    # Held for the whole session: a second `make test` here would stop this one's broker.
    with hold(stack.root, "a test session (make test)"):
        info = stack.up()
        try:
            yield Infra(info.kafka_bootstrap, info.admin_dsn, "local stack")
        finally:
            if os.environ.get("TWOWAY_TEST_KEEP_STACK") != "1":
                stack.down()


@contextlib.contextmanager
def _containers() -> Iterator[Infra]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        PostgresContainer("postgres:15", driver=None) as pg,
    ):
        yield Infra(kafka.get_bootstrap_server(), pg.get_connection_url(), "testcontainers")


def unique_name(prefix: str) -> str:
    """A short unique name for a test's database, roles or topic prefix."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"
