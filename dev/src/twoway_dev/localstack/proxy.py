"""A local stand-in for the enterprise's authenticating proxy: it forwards GET requests to a
service and adds the bearer token of the person it signed in, so a plain browser can open a
read-API page (the coordinators' dashboard) on a developer's machine."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Hop-by-hop and framing headers are the proxy's own business, never forwarded.
_DROPPED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
            "authorization", "cookie", "content-encoding"}  # fmt: skip


def create_proxy(upstream: str, token: Callable[[], str]) -> Starlette:
    """Forwards `GET` to `upstream` with `Authorization: Bearer <token()>`, nothing else."""
    client = httpx.AsyncClient(base_url=upstream, timeout=30)

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
        headers["Authorization"] = f"Bearer {token()}"
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        answer = await client.get(path, headers=headers)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[Route("/{path:path}", forward)], lifespan=lifespan)


class CachedToken:
    """A token from `fetch`, fetched again a minute before it would expire (tokens last 5+ min)."""

    def __init__(self, fetch: Callable[[], str], lifetime: float = 240.0) -> None:
        self._fetch, self._lifetime = fetch, lifetime
        self._token, self._until = "", 0.0

    def __call__(self) -> str:
        now = time.monotonic()
        if now >= self._until:
            self._token, self._until = self._fetch(), now + self._lifetime
        return self._token


class ProxyThread:
    """The proxy served by uvicorn in a background thread of the calling process."""

    def __init__(self, port: int, upstream: str, token: Callable[[], str]) -> None:
        self.port = port
        config = uvicorn.Config(
            create_proxy(upstream, token), host="127.0.0.1", port=port, log_config=None
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="auth-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the local proxy did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
