"""The operator's set-up: the database, and per service a schema with two least-privileged roles.

`<prefix><service>_owner` owns the schema and runs `migrate`; `<prefix><service>` is the runtime
role of `run`, which may only read and write the rows of its own schema's tables.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

SERVICES = ("matching", "scheduling", "notifications", "progress")
OWNER_SUFFIX = "_owner"
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
    """The runtime login role of a service (rows only), checked."""
    name = f"{role_prefix}{service}"
    identifier(name)
    return name


def owner_name(role_prefix: str, service: str) -> str:
    """The migration owner role of a service (owns its schema), checked."""
    name = f"{role_prefix}{service}{OWNER_SUFFIX}"
    identifier(name)
    return name


def role_names(role_prefix: str = "twoway_") -> list[str]:
    """Every role the set-up makes: each service's runtime and owner role."""
    return [
        name
        for service in SERVICES
        for name in (role_name(role_prefix, service), owner_name(role_prefix, service))
    ]


def generate_passwords(role_prefix: str = "twoway_") -> dict[str, str]:
    """A fresh random password for each role (role -> password)."""
    return {role: secrets.token_urlsafe(24) for role in role_names(role_prefix)}


def _dsn(admin_dsn: str, database: str, role: str, password: str | None) -> str:
    parts = urlsplit(admin_dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ProvisionError("the admin DSN must be a URL: postgresql://user@host:port/database")
    identifier(database)
    # rpartition keeps multi-host lists ("h1:5432,h2:5432") and IPv6 brackets intact.
    hosts = parts.netloc.rpartition("@")[2]
    secret = f":{quote(password, safe='')}" if password else ""
    netloc = f"{quote(role, safe='')}{secret}@{hosts}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


def _dsns_of(
    admin_dsn: str,
    database: str,
    role_of: Callable[[str, str], str],
    role_prefix: str,
    passwords: Mapping[str, str] | None,
) -> dict[str, str]:
    """Service -> the admin DSN with `role_of(role_prefix, service)` and its password."""
    secrets_ = passwords or {}
    return {
        service: _dsn(
            admin_dsn,
            database,
            role_of(role_prefix, service),
            secrets_.get(role_of(role_prefix, service)),
        )
        for service in SERVICES
    }


def service_dsns(
    admin_dsn: str,
    database: str,
    *,
    role_prefix: str = "twoway_",
    passwords: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Service -> runtime DSN (`TWOWAY_DATABASE_URL`): the admin DSN with the runtime role."""
    return _dsns_of(admin_dsn, database, role_name, role_prefix, passwords)


def migration_dsns(
    admin_dsn: str,
    database: str,
    *,
    role_prefix: str = "twoway_",
    passwords: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Service -> owner DSN (`TWOWAY_DATABASE_MIGRATION_URL`), used by `migrate` only."""
    return _dsns_of(admin_dsn, database, owner_name, role_prefix, passwords)


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
    passwords: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Create (or bring up to date) the database, each service's schema and two roles.

    The owner role `{role_prefix}{service}_owner` owns the schema named after its service (its
    migrations create and change tables there). The runtime role `{role_prefix}{service}` may
    use that schema and SELECT, INSERT, UPDATE and DELETE rows of its tables (and use its
    sequences), today's and, through default privileges, those later migrations create; it
    cannot create, alter, drop, truncate or grant anything. Neither role has CREATE or TEMP on
    the database, CREATE on `public`, or any access to the other schemas. `passwords` maps a
    role to its password (none: no password is set). Safe to run again and concurrently.
    Returns service -> runtime DSN (see `migration_dsns` for the owners').
    """
    db = identifier(database)
    roles = {service: role_name(role_prefix, service) for service in SERVICES}
    owners = {service: owner_name(role_prefix, service) for service in SERVICES}
    secrets_ = passwords or {}
    dsns = service_dsns(admin_dsn, database, role_prefix=role_prefix, passwords=passwords)
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
        for role in [*roles.values(), *owners.values()]:
            name = identifier(role)
            secret = await _password_clause(admin, secrets_.get(role))
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
            for service in SERVICES:
                schema = identifier(service)
                owner, runtime = identifier(owners[service]), identifier(roles[service])
                exists = await target.fetchval(
                    "SELECT true FROM pg_namespace WHERE nspname = $1", service
                )
                if exists:
                    await target.execute(f"ALTER SCHEMA {schema} OWNER TO {owner}")
                    # Before owner roles existed the runtime role owned the tables: hand them
                    # over, or it could still alter and drop them.
                    await target.execute(f"REASSIGN OWNED BY {runtime} TO {owner}")
                else:
                    await target.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {owner}")
                await target.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
                await target.execute(f"GRANT USAGE ON SCHEMA {schema} TO {runtime}")
                rows = "SELECT, INSERT, UPDATE, DELETE"
                await target.execute(f"GRANT {rows} ON ALL TABLES IN SCHEMA {schema} TO {runtime}")
                await target.execute(
                    f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {runtime}"
                )
                # Tables and sequences later migrations create get the same grants.
                default = f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
                await target.execute(f"{default} GRANT {rows} ON TABLES TO {runtime}")
                await target.execute(f"{default} GRANT USAGE, SELECT ON SEQUENCES TO {runtime}")
                # Unqualified names then mean the service's own schema.
                for role in (owner, runtime):
                    await target.execute(
                        f"ALTER ROLE {role} IN DATABASE {db} SET search_path = {schema}"
                    )
        finally:
            await target.close()
    finally:
        await admin.close()
    return dsns


def main(argv: list[str] | None = None) -> None:
    """`twoway-db-setup`: run the operator's set-up and print each service's DSNs."""
    parser = argparse.ArgumentParser(
        prog="twoway-db-setup",
        description=(
            "Create the Twoway database, and for each service a schema, an owner role that "
            "runs migrations and a runtime role that may only read and write rows. Safe to "
            "run again."
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
        "--generate-passwords",
        action="store_true",
        help="set a new random password on every role and print the URLs with them, once",
    )
    args = parser.parse_args(argv)
    passwords = generate_passwords(args.role_prefix) if args.generate_passwords else None
    try:
        dsns = asyncio.run(
            provision(
                args.admin_url, args.database, role_prefix=args.role_prefix, passwords=passwords
            )
        )
        owners = migration_dsns(
            args.admin_url, args.database, role_prefix=args.role_prefix, passwords=passwords
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
    if passwords:
        print("# New passwords: store these URLs in your secret store now; they are not kept.")
    for service, dsn in dsns.items():
        print(f"# twoway-{service}")
        print(f"TWOWAY_DATABASE_URL={dsn}")
        print(f"TWOWAY_DATABASE_MIGRATION_URL={owners[service]}")


if __name__ == "__main__":
    main()
