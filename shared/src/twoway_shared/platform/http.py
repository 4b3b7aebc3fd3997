"""The HTTP edge of a service: health, readiness, metrics and the service's read API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.openapi import documented

Check = Callable[[], Awaitable[None]]


def create_http_app(
    *,
    service: str,
    metrics: Metrics,
    checks: dict[str, Check],
    before_metrics: Callable[[], Awaitable[None]] | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """`/healthz` (the process answers), `/readyz` (Kafka and PostgreSQL answer), `/metrics`."""

    @documented(
        "The process answers",
        response={
            "type": "object",
            "properties": {"status": {"const": "ok"}, "service": {"type": "string"}},
        },
    )
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    @documented(
        "Kafka and PostgreSQL answer",
        response={
            "type": "object",
            "properties": {
                "status": {"enum": ["ready", "not ready"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        unavailable="A dependency does not answer; `checks` says which (same body as 200).",
    )
    async def readyz(_: Request) -> Response:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=3.0)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}: {str(exc)[:200]}"
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @documented(
        "Prometheus metrics",
        response={"type": "string"},
        media_type=CONTENT_TYPE_LATEST,
    )
    async def metrics_endpoint(_: Request) -> Response:
        if before_metrics is not None:
            await before_metrics()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *routes,
        ]
    )
