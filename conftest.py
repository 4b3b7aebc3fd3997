"""Session-wide real Kafka broker and PostgreSQL; per-test databases, roles and topic names."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twoway_shared.platform.roles import provision
from twoway_shared.testing.infra import Infra, session_infra, unique_name
from twoway_shared.testing.oidc import TestProvider


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """One real broker and one real PostgreSQL for the whole test session."""
    with session_infra() as found:
        yield found


@pytest.fixture(scope="session")
def oidc() -> Iterator[TestProvider]:
    """One real local OpenID Connect provider process for the whole test session."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with TestProvider(port) as provider:
        yield provider


@pytest.fixture
async def service_dsns(infra: Infra) -> dict[str, str]:
    """A fresh database with the three schemas and least-privileged roles; service -> DSN."""
    database = unique_name("t_")
    return await provision(infra.admin_dsn, database, role_prefix=f"{database}_")


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses, so tests never see each other's records."""
    return f"{unique_name('t')}."
