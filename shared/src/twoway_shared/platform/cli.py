"""The `twoway-<service>` command line: `migrate` and `run`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from twoway_shared.platform.logs import configure_logging
from twoway_shared.platform.migrations import MigrationError
from twoway_shared.platform.runtime import Runtime, ServiceSpec, run_migrations
from twoway_shared.platform.settings import Settings, describe_settings_error
from twoway_shared.platform.tracing import configure_tracing, shutdown_tracing


def service_main(
    spec: ServiceSpec,
    settings_cls: type[Settings],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse the command line, read the settings from the environment and run a subcommand."""
    parser = argparse.ArgumentParser(
        prog=f"twoway-{spec.name}",
        description=f"The Twoway {spec.name} service. Configured by TWOWAY_* variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="apply the schema migrations (idempotent, concurrent-safe)")
    commands.add_parser("run", help="consume and produce until SIGTERM, then drain and exit 0")
    args = parser.parse_args(argv)

    try:
        settings = settings_cls()
    except ValidationError as exc:
        problems = describe_settings_error(exc)
        print(f"twoway-{spec.name}: invalid configuration: {problems}", file=sys.stderr)
        return 2
    configure_logging(spec.name, settings.log_level)

    if args.command == "migrate":
        return _migrate(spec, settings)
    configure_tracing(spec.name, settings.otel_exporter_otlp_endpoint)
    try:
        return asyncio.run(_run(spec, settings))
    finally:
        shutdown_tracing()


def _migrate(spec: ServiceSpec, settings: Settings) -> int:
    try:
        applied = asyncio.run(run_migrations(spec, settings))
    except MigrationError as exc:
        print(f"twoway-{spec.name} migrate: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"twoway-{spec.name} migrate: cannot reach PostgreSQL at TWOWAY_DATABASE_URL ({exc})",
            file=sys.stderr,
        )
        return 1
    names = ", ".join(f"{m.component}/{m.version:04d}_{m.name}" for m in applied) or "none"
    print(f"twoway-{spec.name} migrate: applied {len(applied)} migration(s): {names}")
    return 0


async def _run(spec: ServiceSpec, settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime = Runtime(spec, settings)
    return 0 if await runtime.serve_until_stopped(stop) else 1
