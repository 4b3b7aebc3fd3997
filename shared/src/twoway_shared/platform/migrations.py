"""The migrations runner: numbered SQL files, recorded in the service's own schema."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from twoway_shared.platform.db import schema_identifier

log = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One forward-only SQL file."""

    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """A migration cannot be applied; the message says what to do."""


def load_migrations(
    component: str, directory: Path, *, schema: str | None = None
) -> list[Migration]:
    """The migrations of a folder in version order; `{schema}` is replaced when given."""
    found: list[Migration] = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        sql = path.read_text(encoding="utf-8")
        if schema is not None:
            sql = sql.replace("{schema}", schema_identifier(schema))
        found.append(Migration(component, int(match[1]), match[2], sql))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migration files share a version number")
    return found


def platform_migrations(schema: str) -> list[Migration]:
    """The platform's own tables (inbox, outbox, dead letters) for a service schema."""
    folder = Path(str(resources.files("twoway_shared.platform") / "migrations"))
    return load_migrations("platform", folder, schema=schema)


async def migrate(dsn: str, schema: str, migrations: list[Migration]) -> list[Migration]:
    """Apply the pending migrations in order; returns the ones applied.

    Safe when several instances start at once: a session advisory lock, keyed by the schema,
    serialises the runners, and each one applies only what is not yet recorded.
    """
    schema = schema_identifier(schema)
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    applied: list[Migration] = []
    try:
        await conn.execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))", f"twoway.migrate.{schema}"
        )
        exists = await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema)
        if not exists:
            try:
                await conn.execute(f"CREATE SCHEMA {schema}")
            except asyncpg.InsufficientPrivilegeError as exc:
                raise MigrationError(
                    f"schema {schema} does not exist and this role may not create it: "
                    "ask the operator to run the role set-up (deploy/postgres/README.md)"
                ) from exc
        owner = await conn.fetchval(
            "SELECT pg_has_role(nspowner, 'USAGE') FROM pg_namespace WHERE nspname = $1", schema
        )
        if not owner:
            raise MigrationError(
                f"this role does not own schema {schema}, so it may not change it: run "
                "`migrate` with the owner role's URL in TWOWAY_DATABASE_MIGRATION_URL "
                "(deploy/postgres/README.md)"
            )
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    component  text        NOT NULL,
                    version    integer     NOT NULL,
                    name       text        NOT NULL,
                    checksum   text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (component, version))"""
        )
        done = {
            (r["component"], r["version"]): r["checksum"]
            for r in await conn.fetch(
                f"SELECT component, version, checksum FROM {schema}.schema_migrations"
            )
        }
        for migration in migrations:
            key = (migration.component, migration.version)
            if key in done:
                if done[key] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.component}/{migration.version:04d}_{migration.name}"
                        " was changed after it was applied; add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {schema}.schema_migrations (component, version, name, checksum)"
                    " VALUES ($1, $2, $3, $4)",
                    migration.component,
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info(
                "applied migration",
                extra={"component": migration.component, "version": migration.version},
            )
            applied.append(migration)
    finally:
        try:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))", f"twoway.migrate.{schema}"
            )
        finally:
            await conn.close()
    return applied


def migrations_dir(package_file: str) -> Path:
    """A service's migrations folder: inside the installed package, or beside `src/` in an
    editable install (`package_file` is the service's `app.py`)."""
    here = Path(package_file).resolve()
    installed = here.parent / "migrations"
    return installed if installed.is_dir() else here.parents[2] / "migrations"
