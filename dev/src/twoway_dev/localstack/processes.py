"""The services as local processes: ports, environment, start, readiness and stop.

Used by `twoway-dev run`, the demo and the end-to-end tests.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twoway_shared.contract.access import SERVICES
from twoway_shared.platform.roles import migration_dsns, service_dsns

from twoway_dev.localstack.oidc import Client, ProviderProcess
from twoway_dev.localstack.stack import StackInfo

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


def curl_line(provider: ProviderProcess, port: int, path: str) -> str:
    """A `curl` command that reads `path` with a fresh reader token from the provider."""
    token = provider.token(READER_CLIENT_ID)
    return f"curl -H 'Authorization: Bearer {token}' http://127.0.0.1:{port}{path}"
