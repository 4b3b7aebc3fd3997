"""The HTTP edge of a service: health, readiness, metrics and the service's read API.

Every read-API route is guarded (CONTRACT.md section 8): a route declares what it needs with
`read_route(..., access=...)`, and a plain `Route` needs `twoway.reader`. Only `/healthz`,
`/readyz`, `/metrics` and routes declared `CAPABILITY` (calendar feeds by token) are open.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from twoway_shared.platform.auth import (
    InvalidToken,
    KeysUnavailable,
    Principal,
    ProviderKeys,
    TokenVerifier,
)
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.openapi import documented, mark_guarded
from twoway_shared.platform.settings import Settings

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Access:
    """What a read-API route needs from the caller's token."""

    programme_param: str | None = None
    """Path parameter naming a programme whose `twoway.manager:<id>` may also read it."""
    capability: bool = False
    """No token: the URL itself is the secret (calendar feeds by token)."""
    any_role: bool = False
    """`twoway.reader` or any programme's manager; the endpoint narrows what it shows with
    `principal_of(request)` (a list of the programmes the caller may see)."""


READER = Access()
"""Needs `twoway.reader`."""
CAPABILITY = Access(capability=True)
ANY_ROLE = Access(any_role=True)


def programme_access(param: str = "programme_id") -> Access:
    """Needs `twoway.reader`, or `twoway.manager:<id>` of the programme in the path."""
    return Access(programme_param=param)


class ReadRoute(Route):
    """A read-API route that says what it needs."""

    def __init__(
        self, path: str, endpoint: Endpoint, *, access: Access, methods: list[str] | None = None
    ) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.access = access


def read_route(path: str, endpoint: Endpoint, *, access: Access = READER) -> ReadRoute:
    """`GET path`, guarded by `access`."""
    return ReadRoute(path, endpoint, access=access, methods=["GET"])


_BEARER = {"WWW-Authenticate": 'Bearer realm="twoway"'}


def _unauthorized() -> Response:
    # The same body whatever failed: no token, a bad signature, an expiry, a wrong audience.
    return JSONResponse({"error": "unauthorized"}, status_code=401, headers=_BEARER)


def _forbidden() -> Response:
    return JSONResponse({"error": "forbidden"}, status_code=403)


class Guard:
    """Decides whether a request may reach a read-API route."""

    def __init__(self, verifier: TokenVerifier | None, *, disabled: bool = False) -> None:
        self.verifier = verifier
        self.disabled = disabled

    @classmethod
    def from_settings(cls, settings: Settings, service: str) -> Guard:
        if settings.auth_disabled:
            log.warning(
                "TWOWAY_AUTH_DISABLED=true: the read API answers anyone without a token; "
                "for local development only",
                extra={"service": service},
            )
            return cls(None, disabled=True)
        if not settings.oidc_issuer:
            log.warning(
                "TWOWAY_OIDC_ISSUER is not set: every read-API request is answered 401",
                extra={"service": service},
            )
            return cls(None)
        keys = ProviderKeys(settings.oidc_issuer)
        return cls(
            TokenVerifier(
                keys, audience=settings.oidc_audience, roles_claim=settings.oidc_roles_claim
            )
        )

    async def check(self, request: Request, access: Access) -> Response | None:
        """None when the request may go on, else the 401, 403 or 503 to answer."""
        if access.capability or self.disabled:
            return None
        if self.verifier is None:
            return _unauthorized()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized()
        try:
            principal = await self.verifier.verify(token.strip())
        except InvalidToken:
            return _unauthorized()
        except KeysUnavailable:
            return JSONResponse(
                {"error": "unavailable"}, status_code=503, headers={"Retry-After": "30"}
            )
        if not _may_read(principal, access, request):
            return _forbidden()
        request.state.principal = principal
        return None

    def guarded(self, route: BaseRoute) -> BaseRoute:
        """The route with this guard in front of its endpoint."""
        if not isinstance(route, Route):
            raise TypeError(f"only plain routes can be guarded, not {route!r}")
        access = route.access if isinstance(route, ReadRoute) else READER
        endpoint = route.endpoint

        # wraps: the endpoint's name and its OpenAPI description stay visible.
        @functools.wraps(endpoint)
        async def guarded_endpoint(request: Request) -> Response:
            denied = await self.check(request, access)
            if denied is not None:
                return denied
            response = endpoint(request)
            if isinstance(response, Awaitable):
                response = await response
            assert isinstance(response, Response)
            return response

        if not access.capability:
            mark_guarded(guarded_endpoint)
        methods = sorted(route.methods - {"HEAD"}) if route.methods else None
        return Route(route.path, guarded_endpoint, methods=methods, name=route.name)


def principal_of(request: Request) -> Principal | None:
    """Who the guard let through; None when nobody was checked (`TWOWAY_AUTH_DISABLED`, or a
    route served without the guard in a test), which reads as: may see everything."""
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else None


def _may_read(principal: Principal, access: Access, request: Request) -> bool:
    if principal.reader:
        return True
    if access.any_role:
        return principal.manages_any
    if access.programme_param is None:
        return False
    # Decided from the path alone, before anything is looked up: another programme's
    # resources are 403 whether they exist or not.
    return principal.manages(str(request.path_params.get(access.programme_param, "")))


def create_http_app(
    *,
    service: str,
    metrics: Metrics,
    checks: dict[str, Check],
    before_metrics: Callable[[], Awaitable[None]] | None = None,
    routes: Sequence[BaseRoute] = (),
    guard: Guard | None = None,
) -> Starlette:
    """`/healthz` (the process answers), `/readyz` (Kafka and PostgreSQL answer), `/metrics`,
    and the read-API `routes` behind `guard` (default: closed, every request 401)."""
    guard = guard or Guard(None)

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
            *(guard.guarded(route) for route in routes),
        ]
    )
