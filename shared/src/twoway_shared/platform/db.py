"""PostgreSQL access shared by the services: the pool and the schema identifiers."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

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


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool for one service's role."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=60,
        server_settings={"application_name": "twoway"},
    )
    return pool


Record = asyncpg.Record
Connection = asyncpg.Connection
Row = dict[str, Any]
