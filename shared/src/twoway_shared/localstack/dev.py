"""`twoway-dev run`: the local stack, a local OpenID Connect provider and the three services
as separate processes."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twoway_shared.localstack.oidc import Client, ProviderProcess
from twoway_shared.localstack.stack import LocalStack, StackError, StackInfo, hold
from twoway_shared.platform.roles import migration_dsns, provision, service_dsns
from twoway_shared.testing.infra import SERVICES, repo_root

HTTP_PORTS = {"matching": 8081, "scheduling": 8082, "notifications": 8083, "progress": 8084}
OIDC_PORT = 8180
DASHBOARD_PORT = 8190
"""The local authenticating proxy in front of progress's dashboard (`make demo`)."""
COORDINATOR_CLIENT_ID = "twoway-local-coordinator"
READER_CLIENT_ID = "twoway-local-reader"


def http_ports(first: int) -> dict[str, int]:
    """Each service's HTTP port, from `first` on in the order of HTTP_PORTS."""
    return {name: first + index for index, name in enumerate(HTTP_PORTS)}


@dataclass
class ServiceProcess:
    """One running `twoway-<service> run` and where its logs go."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    http_port: int


def service_env(
    info: StackInfo, service: str, http_port: int, extra: dict[str, str]
) -> dict[str, str]:
    """A service's environment: its own Kafka principal and its two database roles."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOWAY_")}
    env.update(
        **info.kafka_env(service),
        TWOWAY_DATABASE_URL=service_dsns(info.admin_dsn, "twoway")[service],
        TWOWAY_DATABASE_MIGRATION_URL=migration_dsns(info.admin_dsn, "twoway")[service],
        TWOWAY_HTTP_PORT=str(http_port),
        TWOWAY_HTTP_HOST="127.0.0.1",
        **extra,
    )
    return env


def start_provider(root: Path, port: int, managed: Sequence[str] = ()) -> ProviderProcess:
    """The local OpenID Connect provider, with one client whose tokens carry `twoway.reader`
    and, when `managed` names programmes, a coordinator client that manages those."""
    (root / "logs").mkdir(parents=True, exist_ok=True)
    clients = [Client(READER_CLIENT_ID, secrets.token_urlsafe(24), ("twoway.reader",))]
    if managed:
        roles = tuple(f"twoway.manager:{programme_id}" for programme_id in managed)
        clients.append(Client(COORDINATOR_CLIENT_ID, secrets.token_urlsafe(24), roles))
    provider = ProviderProcess(port, clients=clients, log_path=root / "logs" / "oidc.log")
    provider.start()
    return provider


def security_env(
    root: Path, provider: ProviderProcess, ports: dict[str, int] = HTTP_PORTS
) -> dict[str, str]:
    """Read-API tokens from the local provider; calendar links signed by this stack's key."""
    key_file = root / "calendar-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(32))
        key_file.chmod(0o600)
    return {
        "TWOWAY_OIDC_ISSUER": provider.issuer,
        "TWOWAY_OIDC_AUDIENCE": provider.audience,
        "TWOWAY_CALENDAR_KEYS": key_file.read_text().strip(),
        "TWOWAY_CALENDAR_BASE_URL": f"http://127.0.0.1:{ports['scheduling']}",
    }


def command(service: str) -> str:
    found = shutil.which(f"twoway-{service}")
    if found is None:
        raise SystemExit(f"twoway-{service} is not installed: run `make install` first")
    return found


def start_services(
    info: StackInfo,
    log_dir: Path,
    extra: dict[str, str],
    ports: dict[str, int] = HTTP_PORTS,
) -> list[ServiceProcess]:
    """Migrate each service with its owner role, then start it with its runtime role."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for name in SERVICES:
        env = service_env(info, name, ports[name], extra)
        log_path = log_dir / f"{name}.log"
        log = log_path.open("ab")
        migrated = subprocess.run([command(name), "migrate"], env=env, stdout=log, stderr=log)
        if migrated.returncode != 0:
            raise SystemExit(f"twoway-{name} migrate failed; see {log_path}")
        process = subprocess.Popen([command(name), "run"], env=env, stdout=log, stderr=log)
        started.append(ServiceProcess(name, process, log_path, ports[name]))
    return started


def wait_ready(services: list[ServiceProcess], timeout: float = 90.0) -> None:
    """Wait until every service's /readyz answers 200, or fail naming the one that did not."""
    deadline = time.monotonic() + timeout
    for svc in services:
        url = f"http://127.0.0.1:{svc.http_port}/readyz"
        while True:
            if svc.process.poll() is not None:
                raise SystemExit(
                    f"twoway-{svc.name} exited with {svc.process.returncode}; see {svc.log_path}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"twoway-{svc.name} not ready after {timeout} s; see {svc.log_path}"
                )
            time.sleep(0.2)


def stop_services(services: list[ServiceProcess], timeout: float = 60.0) -> int:
    """SIGTERM every service, wait for each to drain; the worst exit code."""
    for svc in services:
        if svc.process.poll() is None:
            svc.process.send_signal(signal.SIGTERM)
    worst = 0
    for svc in services:
        try:
            code = svc.process.wait(timeout)
        except subprocess.TimeoutExpired:
            svc.process.kill()
            code = svc.process.wait()
        print(f"  twoway-{svc.name} exited with {code}")
        worst = worst or code
    return worst


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
        from twoway_shared.localstack.demo import run_demo

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


def curl_line(provider: ProviderProcess, port: int, path: str) -> str:
    """A `curl` command that reads `path` with a fresh reader token from the provider."""
    token = provider.token(READER_CLIENT_ID)
    return f"curl -H 'Authorization: Bearer {token}' http://127.0.0.1:{port}{path}"
