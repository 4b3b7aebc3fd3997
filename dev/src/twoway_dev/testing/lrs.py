"""Ralph, a real learning record store (installed by `make lrs`), as a process tests can stop
and start again."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx

from twoway_dev.localstack.stack import repo_root
from twoway_dev.testing.kafka import eventually

RALPH = repo_root() / ".stack" / "tools" / "ralph" / "bin"
USER, PASSWORD = "twoway", "lrs-secret"

# Ralph's file-system backend writes its one file with operation "create", so it takes a single
# write and then refuses ("already exists"): it is meant for one-batch tests. Our tests write
# many times, so the launcher makes that backend append. Validation, the xAPI routes, auth and
# duplicate-id checks stay Ralph's own.
_LAUNCHER = """
import sys
import uvicorn
from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend

FSLRSBackend.default_operation_type = BaseOperationType.APPEND
uvicorn.run("ralph.api:app", host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
"""


def ralph_installed() -> bool:
    return (RALPH / "uvicorn").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=log)


class RalphLrs:
    """Ralph's LRS API with its file-system backend, basic auth, on a port of its own."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.auth_file = root / "auth.json"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/xAPI/"

    def _write_auth(self) -> None:
        digest = subprocess.run(
            [
                str(RALPH / "python"),
                "-c",
                "import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), "
                "bcrypt.gensalt(4)).decode())",
                PASSWORD,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        account = {"homePage": "http://lrs.test", "name": "twoway-progress"}
        user = {
            "agent": {"objectType": "Agent", "account": account},
            "scopes": ["all"],
            "hash": digest,
            "username": USER,
        }
        self.auth_file.write_text(json.dumps([user]))

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.auth_file.exists():
            self._write_auth()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RALPH_")},
            "RALPH_APP_DIR": str(self.root / "app"),
            "RALPH_AUTH_FILE": str(self.auth_file),
            "RALPH_RUNSERVER_BACKEND": "fs",
            "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(self.root / "data"),
        }
        self.process = _spawn(
            [str(RALPH / "python"), "-c", _LAUNCHER, str(self.port)], env, self.root / "ralph.log"
        )

        async def up() -> int:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"Ralph exited; see {self.root / 'ralph.log'}")
            try:
                async with httpx.AsyncClient() as client:
                    url = f"http://127.0.0.1:{self.port}/__heartbeat__"
                    return (await client.get(url, timeout=2)).status_code
            except httpx.HTTPError:
                return 0

        await eventually(up, lambda code: code == 200, timeout=90, interval=0.3, what="Ralph up")

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 30)
        self.process = None

    async def statements(self) -> list[dict[str, Any]]:
        """Every statement the LRS holds (following `more` links)."""
        found: list[dict[str, Any]] = []
        url: str | None = f"http://127.0.0.1:{self.port}/xAPI/statements?limit=500"
        async with httpx.AsyncClient(
            auth=(USER, PASSWORD), headers={"X-Experience-API-Version": "1.0.3"}
        ) as client:
            while url:
                page = (await client.get(url)).raise_for_status().json()
                found += page["statements"]
                more = page.get("more")
                url = f"http://127.0.0.1:{self.port}{more}" if more else None
        return found
