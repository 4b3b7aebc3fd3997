"""The operator's set-up: each service's role owns its schema and may do nothing else."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from twoway_shared.platform.roles import (
    SERVICES,
    ProvisionError,
    identifier,
    main,
    provision,
    scram_verifier,
    service_dsns,
)
from twoway_shared.testing.infra import Infra, unique_name


def test_identifiers_are_checked_before_they_reach_ddl() -> None:
    assert identifier("twoway_matching") == '"twoway_matching"'
    for bad in ('x"; DROP DATABASE postgres; --', "Upper", "1st", "", "a-b", "a" * 64):
        with pytest.raises(ProvisionError):
            identifier(bad)


def test_service_dsns_swap_user_password_and_database() -> None:
    dsns = service_dsns(
        "postgresql://admin:secret@db.example:6432/postgres?sslmode=require",
        "twoway",
        role_prefix="prod_",
        password="p@ss/w:rd",
    )

    assert set(dsns) == set(SERVICES)
    assert dsns["matching"] == (
        "postgresql://prod_matching:p%40ss%2Fw%3Ard@db.example:6432/twoway?sslmode=require"
    )


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


async def set_up(method: str, admin_dsn: str, database: str, prefix: str) -> dict[str, str]:
    """Provision with the Python set-up or with the operator's SQL script through psql."""
    if method == "python":
        return await provision(admin_dsn, database, role_prefix=prefix)
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
    return service_dsns(admin_dsn, database, role_prefix=prefix)


@pytest.fixture(params=["python", "psql"])
async def provisioned(
    request: pytest.FixtureRequest, admin_dsn: str
) -> AsyncIterator[tuple[str, str, dict[str, str]]]:
    """A fresh database and role prefix, set up by each method; dropped again afterwards."""
    method: str = request.param
    database = unique_name("t_roles_")
    prefix = f"{database}_"
    admin = await asyncpg.connect(admin_dsn)
    try:
        yield database, prefix, await set_up(method, admin_dsn, database, prefix)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for service in SERVICES:
            await admin.execute(f'DROP ROLE IF EXISTS "{prefix}{service}"')
        await admin.close()


async def expect_denied(conn: asyncpg.Connection, sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(sql)


@pytest.mark.infra
async def test_each_role_owns_its_schema_and_nothing_else(
    provisioned: tuple[str, str, dict[str, str]],
) -> None:
    _, prefix, dsns = provisioned
    connections = {service: await asyncpg.connect(dsns[service]) for service in SERVICES}
    try:
        for service, conn in connections.items():
            assert await conn.fetchval("SELECT current_user") == f"{prefix}{service}"
            await conn.execute(f"CREATE TABLE {service}.own (id int PRIMARY KEY)")
            await conn.execute(f"INSERT INTO {service}.own VALUES (1)")
            assert await conn.fetchval(f"SELECT count(*) FROM {service}.own") == 1
            # Unqualified names resolve to the service's own schema.
            assert await conn.fetchval("SELECT count(*) FROM own") == 1

        matching, scheduling = connections["matching"], connections["scheduling"]
        await expect_denied(matching, "CREATE TABLE scheduling.intruder (id int)")
        await expect_denied(matching, "SELECT * FROM scheduling.own")
        await expect_denied(scheduling, "SELECT * FROM matching.own")
        await expect_denied(scheduling, "CREATE SCHEMA extra")
        await expect_denied(scheduling, "CREATE TABLE public.intruder (id int)")
        await expect_denied(scheduling, "CREATE TEMP TABLE scratch (id int)")
        await expect_denied(scheduling, "CREATE EXTENSION IF NOT EXISTS pgcrypto")
        await expect_denied(scheduling, "DROP SCHEMA matching CASCADE")
    finally:
        for conn in connections.values():
            await conn.close()


@pytest.mark.infra
async def test_other_roles_may_not_connect(
    admin_dsn: str, provisioned: tuple[str, str, dict[str, str]]
) -> None:
    database, _, _ = provisioned
    outsider = unique_name("t_outsider_")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE ROLE "{outsider}" LOGIN')
        dsn = urlsplit(with_database(admin_dsn, database))
        host = dsn.netloc.rpartition("@")[2]
        url = urlunsplit((dsn.scheme, f"{outsider}@{host}", dsn.path, dsn.query, ""))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncpg.connect(url)
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{outsider}"')
        await admin.close()


@pytest.mark.infra
async def test_provisioning_twice_is_idempotent(
    admin_dsn: str, provisioned: tuple[str, str, dict[str, str]], request: pytest.FixtureRequest
) -> None:
    database, prefix, dsns = provisioned
    conn = await asyncpg.connect(dsns["notifications"])
    try:
        await conn.execute("CREATE TABLE notifications.kept (id int)")
        await conn.execute("INSERT INTO notifications.kept VALUES (7)")
    finally:
        await conn.close()

    method = request.node.callspec.params["provisioned"]
    again = await set_up(method, admin_dsn, database, prefix)

    assert again == dsns
    conn = await asyncpg.connect(again["notifications"])
    try:
        assert await conn.fetchval("SELECT id FROM notifications.kept") == 7
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
    finally:
        await admin.close()
    assert {row["nspname"]: row["owner"] for row in owners} == {
        service: f"{prefix}{service}" for service in SERVICES
    }


@pytest.mark.infra
async def test_password_is_stored_as_the_scram_verifier_postgres_makes(admin_dsn: str) -> None:
    database = unique_name("t_roles_")
    prefix = f"{database}_"
    admin = await asyncpg.connect(admin_dsn)
    try:
        dsns = await provision(admin_dsn, database, role_prefix=prefix, password="s3cret pass")
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
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for service in SERVICES:
            await admin.execute(f'DROP ROLE IF EXISTS "{prefix}{service}"')
        await admin.close()
