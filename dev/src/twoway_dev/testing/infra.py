"""Real infrastructure for tests: external endpoints, testcontainers, or the local stack."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twoway_dev.localstack.stack import (
    KAFKA_ADMIN,
    LocalStack,
    hold,
    repo_root,
    sasl_client_options,
    saved_ports,
)
from twoway_dev.testing.kafka import authenticate


@dataclass(frozen=True)
class Infra:
    """Where the session's broker and database are, and how they were obtained.

    `kafka_passwords` holds the SCRAM passwords (user -> password) when the broker requires
    SASL (the project's own stack): services then run as their own principal, with only the
    ACLs of `contract.access`; empty for a PLAINTEXT broker (external endpoints).
    """

    kafka_bootstrap: str
    admin_dsn: str
    origin: str
    kafka_passwords: Mapping[str, str] = field(default_factory=dict)

    @property
    def kafka_secured(self) -> bool:
        return bool(self.kafka_passwords)

    def kafka_admin_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments of a super-user client (tests and tools)."""
        if not self.kafka_secured:
            return {"bootstrap_servers": self.kafka_bootstrap}
        password = self.kafka_passwords[KAFKA_ADMIN]
        return sasl_client_options(self.kafka_bootstrap, KAFKA_ADMIN, password)

    def kafka_settings(self, service: str) -> dict[str, Any]:
        """Settings keyword arguments that connect as `service`'s own principal."""
        if not self.kafka_secured:
            return {"kafka_bootstrap_servers": self.kafka_bootstrap}
        return {
            "kafka_bootstrap_servers": self.kafka_bootstrap,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": service,
            "kafka_sasl_password": self.kafka_passwords[service],
        }

    def kafka_env(self, service: str) -> dict[str, str]:
        """The same as `TWOWAY_*` environment variables, for services run as processes."""
        return {
            f"TWOWAY_{name.upper()}": str(value)
            for name, value in self.kafka_settings(service).items()
        }


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def session_infra() -> Iterator[Infra]:
    """External `TWOWAY_TEST_*` endpoints when set, else testcontainers, else the local stack.

    `TWOWAY_TEST_STACK_DIR` names a project stack that is already running (`twoway-stack up
    --dir DIR ...`): several test sessions and benchmarks can then share it at once, as its
    own principals, and none of them stops it.
    """
    kafka = os.environ.get("TWOWAY_TEST_KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("TWOWAY_TEST_DATABASE_URL")
    if kafka and database:
        yield Infra(kafka, database, "external")
        return
    shared_dir = os.environ.get("TWOWAY_TEST_STACK_DIR")
    if shared_dir:
        yield running_stack(Path(shared_dir))
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
        authenticate(info.kafka_bootstrap, info.kafka_client_options())
        try:
            yield Infra(info.kafka_bootstrap, info.admin_dsn, "local stack", info.kafka_passwords)
        finally:
            if os.environ.get("TWOWAY_TEST_KEEP_STACK") != "1":
                stack.down()


def running_stack(root: Path) -> Infra:
    """A project stack someone else started and keeps running under root."""
    ports = saved_ports(root)
    if ports is None:
        raise RuntimeError(f"no stack was started in {root}: run `twoway-stack up --dir {root}`")
    info = LocalStack(root, kafka_port=ports[0], pg_port=ports[1]).info
    authenticate(info.kafka_bootstrap, info.kafka_client_options())
    return Infra(info.kafka_bootstrap, info.admin_dsn, f"stack in {root}", info.kafka_passwords)


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
