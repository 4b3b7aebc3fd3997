"""`twoway-dev`: run Twoway locally (the stack, a local OpenID Connect provider and the four
services as separate processes), the demo on top of it, and the command shims."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from twoway_shared.platform.roles import provision

from twoway_dev.localstack.processes import (
    HTTP_PORTS,
    OIDC_PORT,
    curl_line,
    security_env,
    start_provider,
    start_services,
    stop_services,
    wait_ready,
)
from twoway_dev.localstack.stack import LocalStack, StackError, hold, repo_root

SHIM_COMMANDS = ("twoway", "twoway-stack", "twoway-dev")


def write_shims(bin_dir: Path, venv_bin: Path | None = None) -> list[Path]:
    """Small scripts in `bin_dir` that run this checkout's toolkit commands from anywhere."""
    venv_bin = venv_bin or Path(sys.executable).parent
    bin_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SHIM_COMMANDS:
        target = venv_bin / name
        if not target.is_file():
            raise SystemExit(f"{target} is missing: run `make install` first")
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\n# Written by `twoway-dev shim`.\nexec "{target}" "$@"\n')
        shim.chmod(0o755)
        written.append(shim)
    return written


def main(argv: list[str] | None = None) -> None:
    """The console script; a stack that cannot start is one line on stderr and exit code 1."""
    try:
        _main(argv)
    except StackError as exc:
        print(f"twoway-dev: error: {exc}", file=sys.stderr)
        sys.exit(1)


def _main(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="twoway-dev", description="Run Twoway locally: Kafka, PostgreSQL and the services."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start everything and wait for Ctrl-C")
    run.add_argument("--once", action="store_true", help="stop again as soon as all are ready")
    run.add_argument("--dir", type=Path, default=None, help="where the stack keeps its data")
    run.add_argument("--kafka-port", type=int, default=9092)
    run.add_argument("--pg-port", type=int, default=5432)
    run.add_argument("--oidc-port", type=int, default=OIDC_PORT, help="the local OIDC provider")
    demo = sub.add_parser(
        "demo", help="everything, plus a synthetic programme flowing through, and a report"
    )
    demo.add_argument("--n", type=int, default=300, help="people in the programme (default 300)")
    demo.add_argument("--seed", type=int, default=2027, help="seed of the synthetic cohort")
    demo.add_argument("--once", action="store_true", help="exit after the report")
    demo.add_argument("--kafka-port", type=int, default=9092)
    demo.add_argument("--pg-port", type=int, default=5432)
    demo.add_argument(
        "--http-port",
        type=int,
        default=HTTP_PORTS["matching"],
        help="matching's HTTP port; the other services take the next ones (8081)",
    )
    demo.add_argument("--smtp-port", type=int, default=2525, help="the local SMTP sink")
    demo.add_argument("--oidc-port", type=int, default=OIDC_PORT, help="the local OIDC provider")
    demo.add_argument("--timeout", type=float, default=300, help="seconds to wait for settling")
    demo.add_argument(
        "--csv",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the report as CSV files in DIR",
    )
    demo.add_argument(
        "--min-score", type=float, default=0.0, help="matching.min_score of the programme (0)"
    )
    shim = sub.add_parser("shim", help="put twoway, twoway-stack and twoway-dev on your PATH")
    shim.add_argument(
        "--bin-dir",
        type=Path,
        default=Path.home() / ".local" / "bin",
        help="where to write them (default ~/.local/bin)",
    )
    args = parser.parse_args(argv)
    if args.command == "shim":
        for path in write_shims(args.bin_dir):
            print(f"wrote {path}")
        if str(args.bin_dir) not in os.environ.get("PATH", "").split(os.pathsep):
            print(f"{args.bin_dir} is not on your PATH: add it, e.g. in ~/.profile")
        return
    if args.command == "demo":
        if args.n < 2:
            parser.error("--n must be at least 2")
        from twoway_dev.demo.programme import run_demo

        sys.exit(
            run_demo(
                n=args.n,
                seed=args.seed,
                once=args.once,
                kafka_port=args.kafka_port,
                pg_port=args.pg_port,
                smtp_port=args.smtp_port,
                http_port=args.http_port,
                oidc_port=args.oidc_port,
                timeout=args.timeout,
                csv_dir=args.csv,
                min_score=args.min_score,
            )
        )

    root = args.dir or repo_root() / ".stack" / "local"
    stack = LocalStack(root, kafka_port=args.kafka_port, pg_port=args.pg_port)
    with hold(stack.root, "twoway-dev run"):
        _run(args, stack)


def _run(args: argparse.Namespace, stack: LocalStack) -> None:
    root = stack.root
    print(f"Starting Kafka on {args.kafka_port} and PostgreSQL on {args.pg_port} ...")
    info = stack.up()
    asyncio.run(provision(info.admin_dsn, "twoway", role_prefix="twoway_"))
    print(f"Starting the local OpenID Connect provider on {args.oidc_port} ...")
    provider = start_provider(root, args.oidc_port)
    services = []
    try:
        services = start_services(info, root / "logs", security_env(root, provider))
        wait_ready(services)
        print("Twoway is running:")
        for svc in services:
            print(f"  {svc.name:<14} http://127.0.0.1:{svc.http_port}/readyz  logs {svc.log_path}")
        print(f"  read APIs need a token from {provider.issuer}, for example (valid one hour):")
        example = "/participants/E1/notifications"
        print(f"  {curl_line(provider, HTTP_PORTS['notifications'], example)}")
        if not args.once:
            print("Press Ctrl-C to stop.")
            # Blocked only now, after the children started, so they still receive SIGTERM.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        print("Stopping the services ...")
        code = stop_services(services)
        provider.stop()
    sys.exit(code)
