"""OpenAPI documents of the services' HTTP APIs, generated from the routes themselves.

Each endpoint carries its own description (`@documented(...)`), so the route list of a service
is the single description of its API: `python -m twoway_shared.platform.openapi` writes
docs/openapi/<service>.json from it, and a test fails when a route has no description or a
document is stale.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
SERVICES = ("matching", "scheduling", "notifications", "progress")
_ATTRIBUTE = "__twoway_openapi__"
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "What is wrong, for a person."}},
    "required": ["error"],
}


class Undocumented(ValueError):
    """A route without a `@documented` description."""


def documented(
    summary: str,
    *,
    response: dict[str, Any],
    description: str = "",
    media_type: str = "application/json",
    not_found: str | None = None,
    unavailable: str | None = None,
) -> Callable[[F], F]:
    """Describe an endpoint for the OpenAPI document: its 200 body (a JSON Schema) and errors."""
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {media_type: {"schema": response}}}
    }
    for code, text in (("404", not_found), ("503", unavailable)):
        if text:
            responses[code] = {
                "description": text,
                "content": {"application/json": {"schema": ERROR}},
            }
    operation = {"summary": summary, "responses": responses}
    if description:
        operation["description"] = description

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, operation)
        return endpoint

    return mark


def openapi_document(service: str, routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a service's routes; Undocumented names any bare route."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        operation = getattr(route.endpoint, _ATTRIBUTE, None)
        if operation is None:
            raise Undocumented(
                f"twoway-{service}: {route.path} has no description; add @documented(...) "
                "to its endpoint (twoway_shared.platform.openapi)"
            )
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.param_convertors
        ]
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            entry = {**operation, "operationId": f"{service}_{route.name}_{method.lower()}"}
            if parameters:
                entry["parameters"] = parameters
            paths.setdefault(route.path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Twoway {service}",
            "version": "1.1",
            "description": f"The HTTP API of twoway-{service}: health, metrics and read API. "
            "Generated from the routes; do not edit.",
        },
        "paths": dict(sorted(paths.items())),
    }


def service_routes(service: str) -> list[BaseRoute] | None:
    """Every HTTP route of an installed service (None when it is not installed or has none)."""
    from twoway_shared.platform.http import create_http_app

    try:
        app = importlib.import_module(f"twoway_{service}.app")
    except ModuleNotFoundError:
        return None
    create_spec = getattr(app, "create_spec", None)
    if create_spec is None:
        return None
    spec = create_spec()
    # Route builders read the runtime only when a request comes; nothing is started here.
    runtime = SimpleNamespace(
        pool=None,
        database=None,
        db=None,
        settings=_settings_of(service),
        metrics=Metrics(),
        spec=spec,
    )
    http = create_http_app(
        service=service, metrics=Metrics(), checks={}, routes=spec.routes(runtime)
    )
    return list(http.routes)


def _settings_of(service: str) -> Settings:
    """The service's own settings class with its defaults (the environment is not read)."""
    config = importlib.import_module(f"twoway_{service}.config")
    classes = [
        value
        for value in vars(config).values()
        if isinstance(value, type)
        and issubclass(value, Settings)
        and value.__module__ == config.__name__
    ]
    cls = classes[0] if classes else Settings
    return cls.model_construct()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def documents() -> dict[str, str]:
    """service -> its OpenAPI document as text, for every installed service."""
    found = {}
    for service in SERVICES:
        routes = service_routes(service)
        if routes is not None:
            found[service] = render(openapi_document(service, routes))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Write docs/openapi/<service>.json for every installed service."""
    from twoway_shared.localstack.stack import repo_root

    args = list(sys.argv[1:] if argv is None else argv)
    folder = Path(args[0]) if args else repo_root() / "docs" / "openapi"
    folder.mkdir(parents=True, exist_ok=True)
    for service, text in documents().items():
        (folder / f"{service}.json").write_text(text)
        print(f"wrote {folder / f'{service}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
