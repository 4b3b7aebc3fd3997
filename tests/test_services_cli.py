"""The three console scripts: bad arguments, migrate, and a run that stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys

import httpx
import pytest
from twoway_dev.testing.infra import Infra
from twoway_dev.testing.kafka import eventually
from twoway_shared.contract.access import SERVICES


def script(service: str) -> str:
    found = shutil.which(f"twoway-{service}", path=os.path.dirname(sys.executable))
    assert found is not None, f"twoway-{service} is not installed"
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_bad_subcommand_says_what_is_wrong(service: str) -> None:
    result = subprocess.run([script(service), "fly"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "invalid choice: 'fly'" in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_bad_setting_says_which_variable(service: str) -> None:
    env = {**os.environ, "TWOWAY_TOPIC_PARTITIONS": "many"}
    result = subprocess.run(
        [script(service), "migrate"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 2
    assert "TWOWAY_TOPIC_PARTITIONS" in result.stderr


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.infra
@pytest.mark.parametrize("service", SERVICES)
async def test_run_serves_health_and_stops_cleanly(
    service: str,
    infra: Infra,
    service_dsns: dict[str, str],
    migration_dsn_of: dict[str, str],
    topic_prefix: str,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **infra.kafka_env(service),
        "TWOWAY_DATABASE_URL": service_dsns[service],
        "TWOWAY_DATABASE_MIGRATION_URL": migration_dsn_of[service],
        "TWOWAY_TOPIC_PREFIX": topic_prefix,
        "TWOWAY_HTTP_PORT": str(port),
    }
    for _ in range(2):  # migrate is idempotent
        migrated = await asyncio.create_subprocess_exec(script(service), "migrate", env=env)
        assert await migrated.wait() == 0
    proc = await asyncio.create_subprocess_exec(
        script(service), "run", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def readyz() -> int:
                try:
                    return (await client.get("/readyz")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(readyz, lambda code: code == 200, timeout=60, what="/readyz 200")
            assert (await client.get("/healthz")).json()["status"] == "ok"
            metrics = (await client.get("/metrics")).text
            for name in (
                "twoway_records_consumed_total",
                "twoway_records_produced_total",
                "twoway_records_dead_lettered_total",
                "twoway_handler_seconds",
                "twoway_outbox_backlog",
                "twoway_consumer_lag",
            ):
                assert name in metrics
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = (await proc.stdout.read()).decode() if proc.stdout else ""
    assert '"message": "service stopped"' in output
