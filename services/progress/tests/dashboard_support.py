"""A programme's facts fed through progress's handlers, its HTTP API served on a free port, and a
real headless Chromium (Debian's, never a downloaded browser) to look at the dashboard with."""

from __future__ import annotations

import asyncio
import copy
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from playwright.async_api import Browser, async_playwright
from pydantic import BaseModel
from starlette.applications import Starlette
from twoway_dev.localstack.proxy import create_proxy
from twoway_dev.testing.handlers import HandlerBench
from twoway_dev.testing.oidc import TestProvider
from twoway_progress.dashboard import dashboard_routes
from twoway_progress.read_api import read_routes
from twoway_shared.contract import EVENT_MODELS
from twoway_shared.contract.examples import EXAMPLE_DATA
from twoway_shared.contract.values import rfc3339
from twoway_shared.platform.auth import ProviderKeys, TokenVerifier
from twoway_shared.platform.http import Guard

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).resolve().parents[3] / "tests/browser/node_modules/axe-core/axe.min.js"

PROGRAMME = "RM-DASH"
OTHER_PROGRAMME = "RM-OTHER"
SECRET_COMMENT = "private words nobody else may read"


def model(event_type: str, **data: Any) -> BaseModel:
    payload = {**copy.deepcopy(EXAMPLE_DATA[event_type]), **data}
    return EVENT_MODELS[event_type].model_validate(payload)


class Programme:
    """A small reverse-mentoring programme: four pairs in different states, two people
    without a partner, feedback from enough people for aggregates, emails sent and failed."""

    def __init__(self, bench: HandlerBench, programme_id: str = PROGRAMME) -> None:
        self.bench, self.programme_id = bench, programme_id

    async def feed(self, *items: tuple[str, dict[str, Any]]) -> None:
        for event_type, data in items:
            await self.bench.handle(model(event_type, **data))

    def _pair(self, pair_id: str, mentor: str, mentee: str) -> dict[str, str]:
        return {
            "pair_id": pair_id,
            "programme_id": self.programme_id,
            "mentor_id": mentor,
            "mentee_id": mentee,
        }

    async def fill(self) -> None:
        now = self.bench.now
        prefix = self.programme_id
        await self.feed(
            (
                "programme.configured",
                {"programme_id": prefix, "name": f"Digital Leaders {prefix}", "sessions": 3},
            )
        )
        people = [(f"{prefix}-J{i}", "mentor") for i in range(1, 6)]
        people += [(f"{prefix}-S{i}", "mentee") for i in range(1, 7)]
        for participant_id, role in people:
            await self.feed(
                (
                    "participant.enrolled",
                    {
                        "participant_id": participant_id,
                        "programme_id": prefix,
                        "role": role,
                        "display_name": f"Person {participant_id}",
                        "manager_id": None,
                    },
                )
            )
        # Pair 1 completes; pairs 2 and 3 are under way; pair 4 missed its first two sessions.
        weeks_ago = [now - timedelta(days=days, hours=2) for days in (15, 8, 1)]
        for n in range(1, 5):
            pair = self._pair(f"{prefix}-P{n}", f"{prefix}-J{n}", f"{prefix}-S{n}")
            await self.feed(
                ("pair.proposed", {**pair, "score": 0.5 + n / 10, "expires_at": None}),
                ("pair.confirmed", pair),
            )
            for seq, start in enumerate(weeks_ago, start=1):
                await self.feed(
                    (
                        "session.scheduled",
                        {
                            **pair,
                            "session_id": f"{pair['pair_id']}-S{seq}",
                            "sequence": seq,
                            "total": 3,
                            "starts_at": rfc3339(start),
                            "ends_at": rfc3339(start + timedelta(minutes=45)),
                            "revision": 0,
                        },
                    )
                )
        outcomes = {1: "ccc", 2: "cc", 3: "c", 4: "mm"}
        for n, plan in outcomes.items():
            pair = self._pair(f"{prefix}-P{n}", f"{prefix}-J{n}", f"{prefix}-S{n}")
            for seq, outcome in enumerate(plan, start=1):
                session = {**pair, "session_id": f"{pair['pair_id']}-S{seq}", "sequence": seq}
                if outcome == "c":
                    await self.feed(
                        (
                            "session.completed",
                            {**session, "minutes": 45, "ratings": {"mentor": 4, "mentee": 5}},
                        )
                    )
                else:
                    await self.feed(("session.missed", {**session, "absent": [pair["mentor_id"]]}))
            if n <= 3:  # enough people in each direction for the aggregates
                await self.feed(
                    (
                        "session.feedback_submitted",
                        {
                            "session_id": f"{pair['pair_id']}-S1",
                            "pair_id": pair["pair_id"],
                            "participant_id": pair["mentee_id"],
                            "learned": ["prompting", "tiktok"] if n < 3 else ["prompting"],
                            "rating": 5,
                            "fit": "good",
                            "comment": SECRET_COMMENT,
                        },
                    ),
                    (
                        "session.feedback_submitted",
                        {
                            "session_id": f"{pair['pair_id']}-S1",
                            "pair_id": pair["pair_id"],
                            "participant_id": pair["mentor_id"],
                            "learned": ["board-strategy"],
                            "rating": 4,
                            "fit": "good",
                            "comment": SECRET_COMMENT,
                        },
                    ),
                )
        # J5 and S5 were proposed and declined; S6 was never proposed.
        declined = self._pair(f"{prefix}-P5", f"{prefix}-J5", f"{prefix}-S5")
        await self.feed(
            ("pair.proposed", {**declined, "score": 0.4}),
            ("pair.declined", {**declined, "declined_by": f"{prefix}-S5", "reason": "declined"}),
        )
        for i in range(1, 6):
            await self.feed(
                (
                    "notification.sent",
                    {
                        "notification_id": f"{prefix}-N{i}",
                        "participant_id": f"{prefix}-S{i}",
                        "template": "session_booked",
                    },
                )
            )
        await self.feed(
            (
                "notification.failed",
                {"notification_id": f"{prefix}-N9", "participant_id": f"{prefix}-J1"},
            )
        )


def free_port() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def guard_of(oidc: TestProvider) -> Guard:
    """The platform's bearer-token guard, trusting the test's OpenID Connect provider."""
    verifier = TokenVerifier(ProviderKeys(oidc.issuer), audience=oidc.audience, roles_claim="roles")
    return Guard(verifier)


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """`app` on a free local port; yields its base URL."""
    sock = free_port()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not server.started:
            if task.done() or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the HTTP server did not start")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def service_app(pool: asyncpg.Pool, guard: Guard) -> Starlette:
    """Progress's read API and dashboard behind the platform's guard, as the service runs them."""
    routes = [*read_routes(pool), *dashboard_routes(pool)]
    return Starlette(routes=[guard.guarded(route) for route in routes])


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def proxy(upstream: str, token: str) -> AsyncIterator[str]:
    """The local authenticating proxy in front of `upstream`, signed in with `token`."""
    async with serve(create_proxy(upstream, lambda: token)) as base:
        yield base
