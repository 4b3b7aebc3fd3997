"""OpenAPI documents of the services' HTTP APIs, generated from the routes themselves.

Each endpoint carries its own description (`@documented(...)`), so the route list of a service
is the single description of its API: `python -m twoway_dev.openapi` (`make openapi`) writes
docs/openapi/<service>.json from it, and a test fails when a route has no description or a
document is stale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "__twoway_openapi__"
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "What is wrong, for a person."}},
    "required": ["error"],
}
_GUARDED = "__twoway_guarded__"
BEARER_SCHEME = "bearerAuth"
GUARD_RESPONSES: dict[str, dict[str, Any]] = {
    "401": {
        "description": "No valid bearer token. The body is the same whatever failed (missing, "
        "expired, wrong signature, issuer or audience), so it never says why.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": ERROR}},
    },
    "403": {
        "description": "The token is valid but its roles do not allow this resource "
        "(`twoway.reader`, or `twoway.manager:<programme>` of this programme).",
        "content": {"application/json": {"schema": ERROR}},
    },
    "503": {
        "description": "The identity provider's signing keys cannot be fetched; try again "
        "after `Retry-After` seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": ERROR}},
    },
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


def mark_guarded(endpoint: F) -> F:
    """Say that `endpoint` needs a bearer token (the read-API guard puts it in front)."""
    setattr(endpoint, _GUARDED, True)
    return endpoint


def _operation(route: Route, service: str) -> dict[str, Any]:
    operation = getattr(route.endpoint, _ATTRIBUTE, None)
    if operation is None:
        raise Undocumented(
            f"twoway-{service}: {route.path} has no description; add @documented(...) "
            "to its endpoint (twoway_shared.platform.openapi)"
        )
    if not getattr(route.endpoint, _GUARDED, False):
        return dict(operation)
    # The guard's answers come first; the endpoint's own (404, ...) win where both say one.
    responses = {**GUARD_RESPONSES, **operation["responses"]}
    return {
        **operation,
        "responses": dict(sorted(responses.items())),
        "security": [{BEARER_SCHEME: []}],
    }


def openapi_document(service: str, routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a service's routes; Undocumented names any bare route."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        operation = _operation(route, service)
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
        "components": {
            "securitySchemes": {
                BEARER_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token of the organisation's OpenID Connect "
                    "provider (TWOWAY_OIDC_ISSUER, audience TWOWAY_OIDC_AUDIENCE), roles in "
                    "TWOWAY_OIDC_ROLES_CLAIM.",
                }
            }
        },
    }
