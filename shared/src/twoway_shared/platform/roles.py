"""The operator's set-up: the database, one least-privileged login role and schema per service."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

SERVICES = ("matching", "scheduling", "notifications", "progress")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# PostgreSQL silently truncates longer names, which would break the DSNs we hand out.
_MAX_NAME = 63
# One key for the whole cluster: roles are cluster-wide, and set-up is rare and quick.
_LOCK_KEY = "twoway.provision"
_SCRAM_ITERATIONS = 4096


class ProvisionError(RuntimeError):
    """The set-up was refused; the message says why."""


def identifier(name: str) -> str:
    """The name double-quoted for DDL, after checking it is a plain lower-case identifier.

    DDL cannot take bind parameters, so names go into the statement text: only names that
    need no escaping at all are accepted.
    """
    if not _NAME.match(name) or len(name) > _MAX_NAME:
        raise ProvisionError(
            f"invalid name {name!r}: use at most {_MAX_NAME} lower-case letters, digits "
            "and _, not starting with a digit"
        )
    return f'"{name}"'


def role_name(role_prefix: str, service: str) -> str:
    """The login role of a service, checked."""
    name = f"{role_prefix}{service}"
    identifier(name)
    return name


def service_dsns(
    admin_dsn: str, database: str, *, role_prefix: str = "twoway_", password: str | None = None
) -> dict[str, str]:
    """Service -> DSN: the admin DSN with each service's role, password and the database."""
    parts = urlsplit(admin_dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ProvisionError("the admin DSN must be a URL: postgresql://user@host:port/database")
    identifier(database)
    # rpartition keeps multi-host lists ("h1:5432,h2:5432") and IPv6 brackets intact.
    hosts = parts.netloc.rpartition("@")[2]
    secret = f":{quote(password, safe='')}" if password else ""
    return {
        service: urlunsplit(
            (
                parts.scheme,
                f"{quote(role_name(role_prefix, service), safe='')}{secret}@{hosts}",
                f"/{database}",
                parts.query,
                "",
            )
        )
        for service in SERVICES
    }


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS
) -> str:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it (RFC 5802/7677).

    Sent instead of the password so the clear text never appears in a statement, where the
    server's statement log or pg_stat_activity could show it.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def _password_clause(conn: asyncpg.Connection, password: str | None) -> str:
    if password is None:
        return ""
    # The server normalises other passwords (SASLprep) before hashing: let it do those.
    plain = password.isascii() and password.isprintable()
    secret = scram_verifier(password) if plain else password
    literal: str = await conn.fetchval("SELECT quote_literal($1::text)", secret)
    return f" PASSWORD {literal}"


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


async def provision(
    admin_dsn: str,
    database: str,
    *,
    role_prefix: str = "twoway_",
    password: str | None = None,
) -> dict[str, str]:
    """Create (or bring up to date) the database, each service's role and schema.

    Each role `{role_prefix}{service}` may log in and connect to the database, owns the schema
    named after its service and has no other privilege: no CREATE or TEMP on the database, no
    CREATE on `public`, no access to the other schemas. Safe to run again and concurrently.
    Returns service -> DSN for the service's role.
    """
    db = identifier(database)
    roles = {service: role_name(role_prefix, service) for service in SERVICES}
    dsns = service_dsns(admin_dsn, database, role_prefix=role_prefix, password=password)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", _LOCK_KEY)
        superuser: bool = await admin.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        if not await admin.fetchval("SELECT true FROM pg_database WHERE datname = $1", database):
            await admin.execute(f"CREATE DATABASE {db}")
        # Without this every role in the cluster may connect and create temporary tables.
        await admin.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
        for role in roles.values():
            name = identifier(role)
            secret = await _password_clause(admin, password)
            if await admin.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
                # An existing role is brought back to least privilege, not trusted as it is.
                attributes = " NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                # Only a superuser may even clear REPLICATION and BYPASSRLS.
                extra = attributes if superuser else " NOCREATEDB NOCREATEROLE"
                await admin.execute(f"ALTER ROLE {name} LOGIN{extra}{secret}")
            else:
                await admin.execute(f"CREATE ROLE {name} LOGIN{secret}")
            if not superuser:
                # A non-superuser admin (managed services) must be a member to give it a schema.
                await admin.execute(f"GRANT {name} TO CURRENT_USER")
            await admin.execute(f"GRANT CONNECT ON DATABASE {db} TO {name}")
        target = await asyncpg.connect(_with_database(admin_dsn, database))
        try:
            # PostgreSQL 15+ does this already; older servers and old databases do not.
            await target.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            for service, role in roles.items():
                schema, owner = identifier(service), identifier(role)
                exists = await target.fetchval(
                    "SELECT true FROM pg_namespace WHERE nspname = $1", service
                )
                if exists:
                    await target.execute(f"ALTER SCHEMA {schema} OWNER TO {owner}")
                else:
                    await target.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {owner}")
                # Unqualified names then mean the service's own schema.
                await target.execute(
                    f"ALTER ROLE {owner} IN DATABASE {db} SET search_path = {schema}"
                )
        finally:
            await target.close()
    finally:
        await admin.close()
    return dsns


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    user, _, rest = parts.netloc.rpartition("@")
    if ":" in user:
        user = f"{user.split(':', 1)[0]}:***"
    return urlunsplit((parts.scheme, f"{user}@{rest}", parts.path, parts.query, ""))


def main(argv: list[str] | None = None) -> None:
    """`twoway-db-setup`: run the operator's set-up and print each service's DSN."""
    parser = argparse.ArgumentParser(
        prog="twoway-db-setup",
        description=(
            "Create the Twoway database, and for each service a login role that owns the "
            "service's schema and has no other privilege. Safe to run again."
        ),
    )
    parser.add_argument(
        "--admin-url",
        required=True,
        help="a superuser's (or CREATEDB+CREATEROLE role's) URL, postgresql://user@host/db",
    )
    parser.add_argument("--database", default="twoway", help="database to set up (twoway)")
    parser.add_argument("--role-prefix", default="twoway_", help="role name prefix (twoway_)")
    parser.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the roles' password (none: no password is set)",
    )
    args = parser.parse_args(argv)
    password: str | None = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            parser.error(f"--password-env: the environment variable {args.password_env} is empty")
    try:
        dsns = asyncio.run(
            provision(
                args.admin_url, args.database, role_prefix=args.role_prefix, password=password
            )
        )
    except (
        ProvisionError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        OSError,
        ValueError,
    ) as exc:
        print(f"twoway-db-setup: error: {exc}", file=sys.stderr)
        sys.exit(1)
    for service, dsn in dsns.items():
        # The password is shown masked: it is in the environment variable already.
        print(f"# twoway-{service}")
        print(f"TWOWAY_DATABASE_URL={_redacted(dsn)}")


if __name__ == "__main__":
    main()
