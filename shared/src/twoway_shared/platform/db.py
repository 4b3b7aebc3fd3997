"""PostgreSQL access shared by the services: the pool and the schema identifiers."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    D = TypeVar("D", bound=DataclassInstance)

SERVICE_SCHEMAS = frozenset({"matching", "scheduling", "notifications"})
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def schema_identifier(schema: str) -> str:
    """A schema name checked to be a plain identifier.

    DDL and the platform's shared tables need the schema in the statement text (it cannot
    be a $n parameter), so the name is validated instead of being formatted blindly.
    """
    if not _IDENTIFIER.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lower-case letters, digits, _")
    return schema


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection returned to the pool needs beyond asyncpg's own clean-up: nothing.

    asyncpg always rolls back an open transaction and drops listeners on release; its
    default reset then sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`, a round trip per unit of work. Pooled connections never hold session state
    (LISTEN, session advisory locks and the like live on dedicated connections: the outbox
    relay, the migrations, the wake-up listeners), so that round trip buys nothing.
    """


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool for one service's role."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=60,
        server_settings={"application_name": "twoway"},
        reset=_keep_session,
    )
    return pool


Record = asyncpg.Record
Connection = asyncpg.Connection
Row = dict[str, Any]


def from_row(cls: type[D], row: asyncpg.Record | Mapping[str, Any], **values: Any) -> D:
    """An instance of the dataclass `cls` from a row whose columns carry its field names.

    `values` gives the fields that are not plain column values (parsed JSON, enums,
    conversions); a field the row does not select keeps its default.
    """
    for f in dataclasses.fields(cls):
        if f.name not in values:
            try:
                values[f.name] = row[f.name]
            except KeyError:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise
    return cls(**values)
