"""Every read-API route of every service is behind a bearer token (CONTRACT.md section 8)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.routing import Route
from twoway_dev.testing.oidc import TestProvider
from twoway_matching.app import create_spec as matching_spec
from twoway_matching.config import MatchingServiceSettings
from twoway_notifications.app import create_spec as notifications_spec
from twoway_notifications.config import NotificationsSettings
from twoway_progress.app import create_spec as progress_spec
from twoway_progress.config import ProgressSettings
from twoway_scheduling.app import create_spec as scheduling_spec
from twoway_scheduling.config import SchedulingSettings
from twoway_shared.platform.http import ANY_ROLE, Guard, create_http_app
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.runtime import ServiceSpec
from twoway_shared.platform.settings import Settings

SERVICES: list[tuple[ServiceSpec, Settings]] = [
    (matching_spec(), MatchingServiceSettings()),
    (scheduling_spec(), SchedulingSettings(calendar_keys="k")),
    (notifications_spec(), NotificationsSettings()),
    (progress_spec(), ProgressSettings()),
]
OPEN = {"/calendars/{token}.ics"}  # the URL is the credential
ANY_MANAGER = {"/programmes", "/dashboard/static/{name}"}
"""Progress's dashboard list (narrowed to the caller's programmes) and its static files."""


class UnstartedRuntime:
    """Enough of a runtime to build the routes; no request reaching a handler can succeed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: Any = None


@pytest.mark.parametrize(("spec", "settings"), SERVICES, ids=[s.name for s, _ in SERVICES])
async def test_every_read_route_answers_401_without_a_valid_token(
    spec: ServiceSpec, settings: Settings
) -> None:
    routes = list(spec.routes(UnstartedRuntime(settings)))  # type: ignore[arg-type]
    paths = [r.path for r in routes if isinstance(r, Route)]
    assert len(paths) == len(routes)
    assert paths, f"{spec.name} has no read API"
    app = create_http_app(
        service=spec.name, metrics=Metrics(), checks={}, routes=routes, guard=Guard(None)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        for path in paths:
            concrete = re.sub(r"\{[^}]+\}", "X1", path)
            for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                response = await client.get(concrete, headers=headers)
                if path in OPEN:
                    assert response.status_code == 404, path
                else:
                    assert response.status_code == 401, path
                    assert response.headers["www-authenticate"].startswith("Bearer")
        for path in ("/healthz", "/metrics"):
            assert (await client.get(path)).status_code == 200


@pytest.mark.parametrize(("spec", "settings"), SERVICES, ids=[s.name for s, _ in SERVICES])
async def test_managers_read_only_their_programmes_resources(
    spec: ServiceSpec, settings: Settings, oidc: TestProvider
) -> None:
    routes = list(spec.routes(UnstartedRuntime(settings)))  # type: ignore[arg-type]
    guard = Guard.from_settings(Settings(**oidc.settings()), spec.name)
    app = create_http_app(
        service=spec.name, metrics=Metrics(), checks={}, routes=routes, guard=guard
    )
    mine = {"Authorization": f"Bearer {oidc.mint(['twoway.manager:X1'])}"}
    other = {"Authorization": f"Bearer {oidc.mint(['twoway.manager:X2'])}"}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        for route in routes:
            assert isinstance(route, Route)
            if route.path in OPEN:
                continue
            concrete = re.sub(r"\{[^}]+\}", "X1", route.path)
            theirs = (await client.get(concrete, headers=other)).status_code
            if route.path in ANY_MANAGER:
                assert getattr(route, "access", None) == ANY_ROLE, route.path
                assert theirs not in (401, 403), route.path
                continue
            assert theirs == 403, route.path
            if route.path.startswith("/programmes/{programme_id}"):
                # Past the guard: the unstarted runtime then fails, but not with 401 or 403.
                ours = (await client.get(concrete, headers=mine)).status_code
                assert ours not in (401, 403), route.path
