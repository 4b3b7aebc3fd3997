"""`twoway-stack`: start, stop and inspect the local Kafka + PostgreSQL stack."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import time
from pathlib import Path

import asyncpg
from twoway_shared.platform.roles import (
    SERVICES,
    ProvisionError,
    migration_dsns,
    provision,
    service_dsns,
)

from twoway_dev.localstack.stack import (
    KAFKA_ADMIN,
    LocalStack,
    StackError,
    StackInfo,
    default_root,
    repo_root,
    saved_ports,
)

DATABASE = "twoway"
ROLE_PREFIX = "twoway_"
KAFKA_PORT = 9092
PG_PORT = 5432


def port(text: str) -> int:
    """An argparse type: a TCP port number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"where the stack keeps its data and logs (default {default_root()})",
    )
    common.add_argument(
        "--kafka-port",
        type=port,
        default=None,
        help=f"Kafka (default: the port it last ran with, else {KAFKA_PORT})",
    )
    common.add_argument(
        "--pg-port",
        type=port,
        default=None,
        help=f"PostgreSQL (default: the port it last ran with, else {PG_PORT})",
    )
    top = argparse.ArgumentParser(
        prog="twoway-stack",
        description=(
            "A local Kafka broker (KRaft) and PostgreSQL server as plain processes, for "
            "development and tests. Needs Java 17+, Maven (first run only) and PostgreSQL."
        ),
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "up",
        parents=[common],
        help="start both, set up the twoway database and roles, print the settings",
    )
    sub.add_parser("down", parents=[common], help="stop both (the data is kept)")
    sub.add_parser("status", parents=[common], help="say what runs; exit 0 when both run, else 3")
    sub.add_parser("env", parents=[common], help="print the TWOWAY_* settings again")
    return top


def settings(info: StackInfo) -> str:
    """The services' settings as shell `export` lines (for `eval "$(twoway-stack env)"`).

    The lines before the first service are the super-user's (for the `twoway` toolkit); each
    service then has its own Kafka principal and database roles: use the block of the one
    you run.
    """

    def exports(env: dict[str, str]) -> list[str]:
        return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]

    def kafka(user: str) -> dict[str, str]:
        if user in info.kafka_passwords:
            return info.kafka_env(user)
        return {"TWOWAY_KAFKA_BOOTSTRAP_SERVERS": info.kafka_bootstrap}

    lines = ["# twoway (toolkit): the Kafka super-user", *exports(kafka(KAFKA_ADMIN))]
    dsns = service_dsns(info.admin_dsn, DATABASE, role_prefix=ROLE_PREFIX)
    owners = migration_dsns(info.admin_dsn, DATABASE, role_prefix=ROLE_PREFIX)
    for service in SERVICES:
        lines.append(f"# twoway-{service}")
        lines += exports(kafka(service))
        lines.append(f"export TWOWAY_DATABASE_URL={shlex.quote(dsns[service])}")
        lines.append(f"export TWOWAY_DATABASE_MIGRATION_URL={shlex.quote(owners[service])}")
    return "\n".join(lines)


def _say(message: str) -> None:
    # Progress goes to stderr so that stdout stays fit for `eval`.
    print(message, file=sys.stderr, flush=True)


def demo_stack_root() -> Path:
    """Where `make demo` (`twoway-dev demo`) keeps its stack."""
    return repo_root() / ".demo" / "stack"


def stack_for(args: argparse.Namespace) -> LocalStack:
    """The stack the arguments name; ports not given are those it last ran with.

    Without --dir, `status` and `env` look at the default folder and then at the demo's, and
    take the first that runs, so `twoway-stack env` finds a running `make demo` too.
    """
    root: Path = args.dir or default_root()
    if args.dir is None and args.command in ("status", "env"):
        for candidate in (default_root(), demo_stack_root()):
            found = _stack_in(candidate, args)
            if found.status().running:
                return found
    return _stack_in(root, args)


def _stack_in(root: Path, args: argparse.Namespace) -> LocalStack:
    kafka_port, pg_port = saved_ports(root) or (KAFKA_PORT, PG_PORT)
    return LocalStack(
        root,
        kafka_port=args.kafka_port or kafka_port,
        pg_port=args.pg_port or pg_port,
    )


def run(args: argparse.Namespace) -> int:
    stack = stack_for(args)
    if args.command == "up":
        running = stack.status()
        if running.running:
            _say(
                f"twoway-stack: a stack already runs in {stack.root} (Kafka pid "
                f"{running.kafka_pid}): use it (`twoway-stack env`), or stop it first "
                "(`twoway-stack down`)"
            )
            return 1
        _say(f"Starting Kafka on {stack.kafka_port} and PostgreSQL on {stack.pg_port} ...")
        started = time.monotonic()
        info = stack.up()
        asyncio.run(provision(info.admin_dsn, DATABASE, role_prefix=ROLE_PREFIX))
        _say(f"Up in {time.monotonic() - started:.1f} s; data and logs in {info.root}")
        _say(f"Admin: {info.admin_dsn}")
        print(settings(info))
        return 0
    if args.command == "down":
        stack.down()
        _say(f"Stopped the stack in {stack.root}")
        return 0
    status = stack.status()
    if args.command == "status":
        kafka = f"running, pid {status.kafka_pid}" if status.kafka_running else "stopped"
        postgres = "running" if status.postgres_running else "stopped"
        print(f"kafka       {status.info.kafka_bootstrap:<22} {kafka}  log {stack.kafka_log}")
        print(f"postgresql  127.0.0.1:{stack.pg_port:<12} {postgres}  log {stack.pg_log}")
        print(f"data        {stack.root}")
        return 0 if status.running else 3
    if not status.running:
        looked = [stack.root] if args.dir else [default_root(), demo_stack_root()]
        where = " or ".join(str(root) for root in looked)
        _say(f"twoway-stack: no stack runs in {where}: start one with `twoway-stack up`")
        return 1
    print(settings(status.info))
    return 0


def main(argv: list[str] | None = None) -> None:
    """The console script; errors are one clear line on stderr and exit code 1."""
    args = parser().parse_args(argv)
    # The stack reports slow steps (the first download) through logging; show them plainly.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        code = run(args)
    except (StackError, ProvisionError, asyncpg.PostgresError, OSError) as exc:
        print(f"twoway-stack: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
