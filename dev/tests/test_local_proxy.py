"""The local authenticating proxy of `make demo`: the coordinator's token, from the local
OpenID Connect provider, reaches a guarded read API; another programme stays closed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from twoway_dev.localstack.oidc import ProviderProcess
from twoway_dev.localstack.processes import COORDINATOR_CLIENT_ID, start_provider
from twoway_dev.localstack.proxy import CachedToken, ProxyThread
from twoway_shared.platform.auth import ProviderKeys, TokenVerifier
from twoway_shared.platform.http import Guard, programme_access, read_route


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[str, ProviderProcess]]:
    provider = start_provider(tmp_path, free_port(), managed=["RM-X"])

    async def page(request: Request) -> Response:
        return JSONResponse({"programme": request.path_params["programme_id"]})

    guard = Guard(
        TokenVerifier(ProviderKeys(provider.issuer), audience="twoway", roles_claim="roles")
    )
    app = Starlette(
        routes=[guard.guarded(read_route("/programmes/{programme_id}/page", page,
                                         access=programme_access()))]
    )  # fmt: skip
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "upstream did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", provider
    finally:
        server.should_exit = True
        thread.join(10)
        provider.stop()


def test_the_proxy_signs_requests_in_as_the_programmes_coordinator(
    upstream: tuple[str, ProviderProcess],
) -> None:
    base, provider = upstream
    fetched: list[str] = []

    def fetch() -> str:
        fetched.append("token")
        return provider.token(COORDINATOR_CLIENT_ID)

    proxy = ProxyThread(free_port(), base, CachedToken(fetch))
    proxy.start()
    try:
        direct = httpx.get(f"{base}/programmes/RM-X/page")
        mine = httpx.get(f"{proxy.url}/programmes/RM-X/page?tz=UTC")
        other = httpx.get(f"{proxy.url}/programmes/RM-Y/page")
    finally:
        proxy.stop()
    assert direct.status_code == 401  # without the proxy: no token
    assert mine.status_code == 200
    assert mine.json() == {"programme": "RM-X"}
    assert other.status_code == 403
    assert fetched == ["token"]  # one token, reused while it is fresh
