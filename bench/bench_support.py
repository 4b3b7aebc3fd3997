"""What every benchmark stands on: the tests' broker and database, a fresh database and prefix.

`bench_infra()` finds the infrastructure exactly as the tests do (`session_infra`): external
PLAINTEXT endpoints (`TWOWAY_TEST_KAFKA_BOOTSTRAP_SERVERS` + `TWOWAY_TEST_DATABASE_URL`), a
running project stack shared with others (`TWOWAY_TEST_STACK_DIR`, SASL/SCRAM with one
principal per service), or a local stack of its own. `Place` is one benchmark's database
(roles per service) and topic prefix, with each service's ACLs granted under that prefix, so
a service in a benchmark runs as its own principal with only the rights it has in production.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from twoway_dev.testing.infra import Infra, session_infra, unique_name
from twoway_shared.contract.access import all_acls
from twoway_shared.platform.kafka_acls import grant, revoke
from twoway_shared.platform.roles import migration_dsns, provision
from twoway_shared.platform.settings import Settings

S = TypeVar("S", bound=Settings)


@contextlib.contextmanager
def bench_infra() -> Iterator[Infra]:
    """The broker and database of the tests (see the module docstring)."""
    with session_infra() as infra:
        yield infra


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass(frozen=True)
class Place:
    """A fresh database with every service's schema roles, and a topic prefix with the ACLs."""

    infra: Infra
    database: str
    dsns: dict[str, str]
    owners: dict[str, str]
    prefix: str

    def settings(self, cls: type[S], service: str, **extra: Any) -> S:
        """`service`'s settings: its own principal, runtime role and owner, this prefix."""
        values: dict[str, Any] = {
            **self.infra.kafka_settings(service),
            "database_url": self.dsns[service],
            "database_migration_url": self.owners[service],
            "topic_prefix": self.prefix,
            "http_port": 0,
            **extra,
        }
        return cls(**values)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"


@contextlib.asynccontextmanager
async def fresh_place(infra: Infra, tag: str = "bench") -> AsyncIterator[Place]:
    """A new database and topic prefix for one benchmark run; the ACLs revoked afterwards."""
    database = unique_name(f"{tag}_")
    dsns = await provision(infra.admin_dsn, database, role_prefix=f"{database}_")
    owners = migration_dsns(infra.admin_dsn, database, role_prefix=f"{database}_")
    prefix = f"{unique_name(tag)}."
    acls = all_acls(prefix) if infra.kafka_secured else []
    await grant(infra.kafka_admin_options(), acls)
    try:
        yield Place(infra, database, dsns, owners, prefix)
    finally:
        await revoke(infra.kafka_admin_options(), acls)
