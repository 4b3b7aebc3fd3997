"""Session-wide real Kafka broker and PostgreSQL; per-test databases, roles and topic names."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from twoway_dev.testing.infra import Infra, session_infra, unique_name
from twoway_dev.testing.oidc import TestProvider
from twoway_dev.testing.service import MIGRATION_DSNS, Sandbox
from twoway_shared.contract.access import all_acls
from twoway_shared.platform.kafka_acls import grant, revoke
from twoway_shared.platform.roles import migration_dsns, provision


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
    """A fresh database with the services' schemas and roles; service -> runtime DSN.

    The owners' DSNs are noted in MIGRATION_DSNS, so `running_service` migrates as the owner.
    """
    return await _fresh_database(infra)


@pytest.fixture
async def twin_service_dsns(infra: Infra) -> dict[str, str]:
    """A second database like `service_dsns`: the same records handled two ways, compared."""
    return await _fresh_database(infra)


async def _fresh_database(infra: Infra) -> dict[str, str]:
    database = unique_name("t_")
    dsns = await provision(infra.admin_dsn, database, role_prefix=f"{database}_")
    owners = migration_dsns(infra.admin_dsn, database, role_prefix=f"{database}_")
    MIGRATION_DSNS.update({dsns[service]: owners[service] for service in dsns})
    return dsns


@pytest.fixture
def migration_dsn_of(service_dsns: dict[str, str]) -> dict[str, str]:
    """Service -> the schema owner's DSN of the test's database (TWOWAY_DATABASE_MIGRATION_URL)."""
    return {service: MIGRATION_DSNS[dsn] for service, dsn in service_dsns.items()}


@pytest.fixture
async def topic_prefix(infra: Infra) -> AsyncIterator[str]:
    """A topic prefix no other test uses, so tests never see each other's records.

    On a broker that enforces ACLs each service's principal is granted exactly its ACLs of
    `contract.access` under this prefix for the test, so every test proves they suffice.
    """
    prefix = f"{unique_name('t')}."
    acls = all_acls(prefix) if infra.kafka_secured else []
    await grant(infra.kafka_admin_options(), acls)
    try:
        yield prefix
    finally:
        await revoke(infra.kafka_admin_options(), acls)


@pytest.fixture
def sandbox(
    infra: Infra, service_dsns: dict[str, str], topic_prefix: str, oidc: TestProvider
) -> Sandbox:
    """The test's database and topic prefix, where `sandbox.service(...)` runs a service."""
    return Sandbox(infra, service_dsns, topic_prefix, oidc)
