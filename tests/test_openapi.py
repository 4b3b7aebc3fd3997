"""The checked-in OpenAPI documents are generated from the routes, are fresh, list every route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.responses import Response
from starlette.routing import Route
from twoway_dev.openapi import documents, service_routes
from twoway_shared.platform.openapi import Undocumented, openapi_document

DOCS = Path(__file__).resolve().parents[1] / "docs" / "openapi"
GENERATED = documents()


@pytest.mark.parametrize("service", sorted(GENERATED))
def test_the_checked_in_document_is_fresh(service: str) -> None:
    checked_in = DOCS / f"{service}.json"
    assert checked_in.is_file(), f"missing {checked_in}: run `make openapi`"
    assert checked_in.read_text() == GENERATED[service], "stale: run `make openapi`"


@pytest.mark.parametrize("service", sorted(GENERATED))
def test_every_route_is_listed(service: str) -> None:
    import json

    document = json.loads((DOCS / f"{service}.json").read_text())
    routes = service_routes(service)
    assert routes is not None
    paths = {route.path for route in routes if isinstance(route, Route)}

    assert set(document["paths"]) == paths
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    for path, methods in document["paths"].items():
        for operation in methods.values():
            assert "200" in operation["responses"], path
            names = [p["name"] for p in operation.get("parameters", [])]
            assert names == re.findall(r"\{(\w+)\}", path)


def test_the_three_services_and_their_read_apis_are_documented() -> None:
    assert {"matching", "scheduling", "notifications"} <= set(GENERATED)
    assert '"/programmes/{programme_id}/pairs"' in GENERATED["matching"]
    assert '"/participants/{participant_id}/sessions"' in GENERATED["scheduling"]
    assert '"/participants/{participant_id}/notifications"' in GENERATED["notifications"]


def test_a_route_without_a_description_is_refused() -> None:
    async def bare(_: object) -> Response:
        return Response()

    with pytest.raises(Undocumented, match=r"twoway-x: /bare has no description"):
        openapi_document("x", [Route("/bare", bare)])


@pytest.mark.parametrize("service", sorted(GENERATED))
def test_guarded_routes_document_the_bearer_token_and_its_answers(service: str) -> None:
    """What the guard answers is in the document of every route it stands in front of."""
    import json

    document = json.loads(GENERATED[service])
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    open_paths = {"/healthz", "/readyz", "/metrics", "/calendars/{token}.ics"}
    for path, methods in document["paths"].items():
        for operation in methods.values():
            if path in open_paths:
                assert "security" not in operation, path
                assert "401" not in operation["responses"], path
            else:
                assert operation["security"] == [{"bearerAuth": []}], path
                assert {"401", "403", "503"} <= set(operation["responses"]), path
