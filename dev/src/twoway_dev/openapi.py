"""`python -m twoway_dev.openapi` (`make openapi`): write docs/openapi/<service>.json.

Each installed service's routes are built without starting anything (no pool, no broker) and
described with `twoway_shared.platform.openapi.openapi_document`.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from starlette.routing import BaseRoute
from twoway_shared.contract.access import SERVICES
from twoway_shared.platform.http import create_http_app
from twoway_shared.platform.metrics import Metrics
from twoway_shared.platform.openapi import openapi_document
from twoway_shared.platform.settings import Settings


def service_routes(service: str) -> list[BaseRoute] | None:
    """Every HTTP route of an installed service (None when it is not installed or has none)."""
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
    """Write docs/openapi/<service>.json (or into the folder given) for every installed service."""
    args = list(sys.argv[1:] if argv is None else argv)
    folder = Path(args[0]) if args else Path("docs/openapi")
    folder.mkdir(parents=True, exist_ok=True)
    for service, text in documents().items():
        (folder / f"{service}.json").write_text(text)
        print(f"wrote {folder / f'{service}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
