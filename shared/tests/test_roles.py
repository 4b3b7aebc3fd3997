"""The operator's set-up: per service an owner role for migrations and a runtime role for rows."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from twoway_dev.testing.infra import Infra, unique_name
from twoway_shared.platform.roles import (
    SERVICES,
    ProvisionError,
    generate_passwords,
    identifier,
    main,
    migration_dsns,
    provision,
    role_names,
    scram_verifier,
    service_dsns,
)


def test_identifiers_are_checked_before_they_reach_ddl() -> None:
    assert identifier("twoway_matching") == '"twoway_matching"'
    for bad in ('x"; DROP DATABASE postgres; --', "Upper", "1st", "", "a-b", "a" * 64):
        with pytest.raises(ProvisionError):
            identifier(bad)


def test_service_dsns_swap_user_password_and_database() -> None:
    admin = "postgresql://admin:secret@db.example:6432/postgres?sslmode=require"
    passwords = {"prod_matching": "p@ss/w:rd", "prod_matching_owner": "other"}
    dsns = service_dsns(admin, "twoway", role_prefix="prod_", passwords=passwords)
    owners = migration_dsns(admin, "twoway", role_prefix="prod_", passwords=passwords)

    assert set(dsns) == set(owners) == set(SERVICES)
    assert dsns["matching"] == (
        "postgresql://prod_matching:p%40ss%2Fw%3Ard@db.example:6432/twoway?sslmode=require"
    )
    assert owners["matching"] == (
        "postgresql://prod_matching_owner:other@db.example:6432/twoway?sslmode=require"
    )
    assert (
        dsns["scheduling"] == "postgresql://prod_scheduling@db.example:6432/twoway?sslmode=require"
    )


def test_every_role_gets_a_password_of_its_own() -> None:
    passwords = generate_passwords("p_")

    assert set(passwords) == set(role_names("p_"))
    assert len(set(passwords.values())) == len(passwords) == 2 * len(SERVICES)
    assert all(len(p) >= 32 for p in passwords.values())


def test_bad_names_are_refused_before_connecting() -> None:
    with pytest.raises(ProvisionError):
        service_dsns("postgresql://localhost/postgres", "two way")
    with pytest.raises(ProvisionError):
        service_dsns("postgresql://localhost/postgres", "twoway", role_prefix="Bad-")


def test_db_setup_cli_requires_an_admin_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--database", "twoway"])

    assert exited.value.code == 2
    assert "--admin-url" in capsys.readouterr().err


@pytest.fixture
def admin_dsn(infra: Infra) -> str:
    return infra.admin_dsn


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


SETUP_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "setup-roles.sql"


@dataclass(frozen=True)
class Provisioned:
    database: str
    prefix: str
    runtime: dict[str, str]
    owner: dict[str, str]


async def set_up(method: str, admin_dsn: str, database: str, prefix: str) -> Provisioned:
    """Provision with the Python set-up or with the operator's SQL script through psql."""
    owners = migration_dsns(admin_dsn, database, role_prefix=prefix)
    if method == "python":
        runtime = await provision(admin_dsn, database, role_prefix=prefix)
        return Provisioned(database, prefix, runtime, owners)
    psql = shutil.which("psql")
    if psql is None or not SETUP_SQL.is_file():
        pytest.skip("psql or deploy/postgres/setup-roles.sql is not available")
    process = await asyncio.create_subprocess_exec(
        psql,
        admin_dsn,
        "-X",
        "-v",
        f"database={database}",
        "-v",
        f"role_prefix={prefix}",
        "-f",
        str(SETUP_SQL),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    runtime = service_dsns(admin_dsn, database, role_prefix=prefix)
    return Provisioned(database, prefix, runtime, owners)


async def drop(admin_dsn: str, database: str, prefix: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in role_names(prefix):
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await admin.close()


@pytest.fixture(params=["python", "psql"])
async def provisioned(request: pytest.FixtureRequest, admin_dsn: str) -> AsyncIterator[Provisioned]:
    """A fresh database and role prefix, set up by each method; dropped again afterwards."""
    method: str = request.param
    database = unique_name("t_roles_")
    prefix = f"{database}_"
    try:
        yield await set_up(method, admin_dsn, database, prefix)
    finally:
        await drop(admin_dsn, database, prefix)


async def expect_denied(conn: asyncpg.Connection, sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(sql)


@pytest.mark.infra
async def test_owner_shapes_its_schema_and_runtime_only_reads_and_writes_rows(
    provisioned: Provisioned,
) -> None:
    prefix = provisioned.prefix
    for service in SERVICES:
        owner = await asyncpg.connect(provisioned.owner[service])
        runtime = await asyncpg.connect(provisioned.runtime[service])
        try:
            assert await owner.fetchval("SELECT current_user") == f"{prefix}{service}_owner"
            assert await runtime.fetchval("SELECT current_user") == f"{prefix}{service}"
            # The owner (what `migrate` runs as) creates tables, with a sequence.
            await owner.execute(f"CREATE TABLE {service}.own (id bigserial PRIMARY KEY, note text)")
            # Rows: everything, through default privileges on a table made after set-up.
            await runtime.execute("INSERT INTO own (note) VALUES ('a'), ('b')")
            await runtime.execute("UPDATE own SET note = 'c' WHERE note = 'a'")
            await runtime.execute("DELETE FROM own WHERE note = 'b'")
            assert await runtime.fetchval(f"SELECT note FROM {service}.own") == "c"
            # Nothing else: no DDL, no GRANT, no TRUNCATE, not even on its own tables.
            for sql in (
                "CREATE TABLE own2 (id int)",
                f"CREATE TABLE {service}.own2 (id int)",
                "ALTER TABLE own ADD COLUMN extra int",
                "CREATE INDEX own_note ON own (note)",
                "DROP TABLE own",
                "TRUNCATE own",
                f"ALTER SCHEMA {service} RENAME TO other",
                f"DROP SCHEMA {service} CASCADE",
                "CREATE TEMP TABLE scratch (id int)",
                "CREATE TABLE public.intruder (id int)",
                "CREATE SCHEMA extra",
            ):
                await expect_denied(runtime, sql)
            # GRANT without the grant option only warns, and gives nothing away.
            other = f"{prefix}{'scheduling' if service == 'matching' else 'matching'}"
            await runtime.execute(f"GRANT SELECT, INSERT ON own TO {other}, PUBLIC")
            granted = "SELECT has_table_privilege($1, $2, 'SELECT, INSERT')"
            assert not await runtime.fetchval(granted, other, f"{service}.own")
            assert not await runtime.fetchval(granted, "public", f"{service}.own")
        finally:
            await owner.close()
            await runtime.close()


@pytest.mark.infra
async def test_no_role_sees_another_services_schema(provisioned: Provisioned) -> None:
    matching = await asyncpg.connect(provisioned.owner["matching"])
    try:
        await matching.execute("CREATE TABLE matching.secret (id int)")
    finally:
        await matching.close()
    for service in [s for s in SERVICES if s != "matching"]:
        for dsn in (provisioned.runtime[service], provisioned.owner[service]):
            conn = await asyncpg.connect(dsn)
            try:
                assert not await conn.fetchval("SELECT has_schema_privilege('matching', 'USAGE')")
                await expect_denied(conn, "SELECT * FROM matching.secret")
                await expect_denied(conn, "CREATE TABLE matching.intruder (id int)")
                await expect_denied(conn, "DROP SCHEMA matching CASCADE")
                await expect_denied(conn, "CREATE EXTENSION IF NOT EXISTS pgcrypto")
                # Not even the table's name resolves without USAGE on the schema.
                await expect_denied(conn, "SELECT 'matching.secret'::regclass")
            finally:
                await conn.close()


@pytest.mark.infra
async def test_other_roles_may_not_connect(admin_dsn: str, provisioned: Provisioned) -> None:
    outsider = unique_name("t_outsider_")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE ROLE "{outsider}" LOGIN')
        dsn = urlsplit(with_database(admin_dsn, provisioned.database))
        host = dsn.netloc.rpartition("@")[2]
        url = urlunsplit((dsn.scheme, f"{outsider}@{host}", dsn.path, dsn.query, ""))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncpg.connect(url)
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{outsider}"')
        await admin.close()


@pytest.mark.infra
async def test_provisioning_twice_is_idempotent_and_takes_tables_from_the_runtime_role(
    admin_dsn: str, provisioned: Provisioned, request: pytest.FixtureRequest
) -> None:
    """Tables an earlier set-up let the runtime role own are handed to the owner role."""
    database, prefix = provisioned.database, provisioned.prefix
    runtime_role = f"{prefix}notifications"
    admin = await asyncpg.connect(with_database(admin_dsn, database))
    try:
        # As before owner roles: the runtime role owned its tables.
        await admin.execute("CREATE TABLE notifications.kept (id int) ")
        await admin.execute(f'ALTER TABLE notifications.kept OWNER TO "{runtime_role}"')
        await admin.execute("INSERT INTO notifications.kept VALUES (7)")
    finally:
        await admin.close()

    method = request.node.callspec.params["provisioned"]
    again = await set_up(method, admin_dsn, database, prefix)

    assert again.runtime == provisioned.runtime
    conn = await asyncpg.connect(again.runtime["notifications"])
    try:
        assert await conn.fetchval("SELECT id FROM notifications.kept") == 7
        await expect_denied(conn, "DROP TABLE notifications.kept")
        await expect_denied(conn, "CREATE SCHEMA extra")
        await expect_denied(conn, "SELECT 1 FROM matching.nothing")
    finally:
        await conn.close()
    admin = await asyncpg.connect(with_database(admin_dsn, database))
    try:
        owners = await admin.fetch(
            "SELECT nspname, pg_get_userbyid(nspowner) AS owner FROM pg_namespace"
            " WHERE nspname = ANY($1::text[])",
            list(SERVICES),
        )
        kept = await admin.fetchval(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'notifications'"
            " AND tablename = 'kept'"
        )
    finally:
        await admin.close()
    assert {row["nspname"]: row["owner"] for row in owners} == {
        service: f"{prefix}{service}_owner" for service in SERVICES
    }
    assert kept == f"{prefix}notifications_owner"


@pytest.mark.infra
async def test_password_is_stored_as_the_scram_verifier_postgres_makes(admin_dsn: str) -> None:
    database = unique_name("t_roles_")
    prefix = f"{database}_"
    admin = await asyncpg.connect(admin_dsn)
    try:
        passwords = {role: "other" for role in role_names(prefix)}
        passwords[f"{prefix}matching"] = "s3cret pass"
        dsns = await provision(admin_dsn, database, role_prefix=prefix, passwords=passwords)
        assert urlsplit(dsns["matching"]).password == "s3cret%20pass"
        role = f"{prefix}matching"
        ours = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
        # The server hashing the same password with our salt must give the same verifier.
        iterations, salt = ours.split("$")[1].split(":")
        await admin.execute(f"ALTER ROLE \"{role}\" PASSWORD 's3cret pass'")
        theirs = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
        their_iterations, their_salt = theirs.split("$")[1].split(":")
        assert ours.startswith("SCRAM-SHA-256$")
        assert theirs == scram_verifier(
            "s3cret pass", salt=base64.b64decode(their_salt), iterations=int(their_iterations)
        )
        assert ours == scram_verifier(
            "s3cret pass", salt=base64.b64decode(salt), iterations=int(iterations)
        )
    finally:
        await admin.close()
        await drop(admin_dsn, database, prefix)
