"""The coordinators' dashboard in a real headless Chromium, on the real PostgreSQL."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_support import (
    AXE,
    OTHER_PROGRAMME,
    PROGRAMME,
    SECRET_COMMENT,
    Programme,
    chromium,
    guard_of,
    proxy,
    serve,
    service_app,
)
from playwright.async_api import Browser, Page
from twoway_dev.testing.handlers import HandlerBench
from twoway_dev.testing.oidc import TestProvider
from twoway_progress.app import create_spec
from twoway_progress.dashboard import CSP

pytestmark = pytest.mark.infra

SCREENSHOTS = os.environ.get("TWOWAY_DASHBOARD_SCREENSHOTS")
"""A folder to keep the screenshots in (docs/images when refreshing the documentation)."""


@pytest.fixture
async def site(service_dsns: dict[str, str], oidc: TestProvider) -> AsyncIterator[str]:
    async with HandlerBench.open(create_spec(), service_dsns["progress"]) as bench:
        await Programme(bench).fill()
        await Programme(bench, OTHER_PROGRAMME).fill()
        async with serve(service_app(bench.pool, guard_of(oidc))) as base:
            yield base


@pytest.fixture
async def coordinator(site: str, oidc: TestProvider) -> AsyncIterator[str]:
    """The dashboard as RM-DASH's manager sees it through the enterprise's proxy."""
    async with proxy(site, oidc.mint([f"twoway.manager:{PROGRAMME}"])) as base:
        yield base


def bearer(token: str) -> dict[str, str]:
    """What the enterprise's authenticating proxy adds to every request it forwards."""
    return {"Authorization": f"Bearer {token}"}


def manager(oidc: TestProvider, programme_id: str = PROGRAMME) -> dict[str, str]:
    return bearer(oidc.mint([f"twoway.manager:{programme_id}"]))


def reader(oidc: TestProvider) -> dict[str, str]:
    return bearer(oidc.mint(["twoway.reader"]))


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as found:
        yield found


def figure(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        value = value[part]
    return value


async def table(page: Page, key: str) -> list[list[str]]:
    rows: list[list[str]] = await page.eval_on_selector_all(
        f"#table-{key} tr",
        "rows => rows.map(r => Array.from(r.children, c => c.textContent.trim()))",
    )
    return rows


async def test_the_dashboard_shows_the_read_apis_numbers_in_a_real_browser(
    site: str, coordinator: str, browser: Browser, oidc: TestProvider, tmp_path: Path
) -> None:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin", accept_downloads=True
    )
    page = await context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    listing = await page.goto(f"{coordinator}/programmes")
    assert listing is not None
    assert listing.status == 200
    await page.wait_for_url("**tz=Europe%2FBerlin**")  # the page's own script set the zone
    assert OTHER_PROGRAMME not in await page.content()  # a manager sees their programme only
    await page.click(f"text=Digital Leaders {PROGRAMME}")
    await page.wait_for_selector("#chart-funnel")
    assert page.url == f"{coordinator}/programmes/{PROGRAMME}/dashboard?tz=Europe%2FBerlin"
    assert await page.inner_text("#zone") == "Europe/Berlin"
    assert await page.title() == f"Digital Leaders {PROGRAMME} · Twoway dashboard"

    response = await page.request.get(page.url)
    assert response.headers["content-security-policy"] == CSP

    # Every figure on the page equals the read API's.
    async with httpx.AsyncClient(base_url=site, headers=reader(oidc)) as client:
        health = (await client.get(f"/programmes/{PROGRAMME}/health")).raise_for_status().json()
    shown = await page.eval_on_selector_all(
        "[data-figure]", "els => els.map(e => [e.dataset.figure, e.textContent.trim()])"
    )
    assert len(shown) == 9
    for path, text in shown:
        assert text == str(figure(health, path)), path
    assert health["pairs"]["at_risk"] == 1
    assert health["sessions"]["missed"] == 2

    funnel = await table(page, "funnel")
    assert funnel[1:] == [
        ["enrolled", "11"],
        ["matched", "10"],
        ["confirmed", "8"],
        ["booked", "8"],
        ["meeting", "6"],
        ["completed", "2"],
    ]
    attention = await table(page, "attention")
    assert [row[0] for row in attention[1:]] == [a["pair_id"] for a in health["attention"]]
    assert "missed in a row" in attention[1][4]
    unmatched = {row[0]: row[3] for row in (await table(page, "unmatched"))[1:]}
    assert set(unmatched) == {f"{PROGRAMME}-J5", f"{PROGRAMME}-S5", f"{PROGRAMME}-S6"}
    assert "declined" in unmatched[f"{PROGRAMME}-S5"]
    assert "not proposed" in unmatched[f"{PROGRAMME}-S6"]
    topics = await table(page, "topics")
    assert topics[1] == ["1", "prompting", "3", "board-strategy", "3"]
    assert all("tiktok" not in row for row in topics)  # two people only: not shown
    assert (await table(page, "emails"))[-1] == ["all", "5", "1"]
    assert [row[:2] for row in (await table(page, "credits"))[1:]] == [
        ["mentee", "1"],
        ["mentor", "1"],
    ]
    content = await page.content()
    assert SECRET_COMMENT not in content

    # At 1280 px every table fits its card: none needs its own sideways scrolling.
    overflowing = await page.eval_on_selector_all(
        ".scroll",
        "els => els.filter(e => e.scrollWidth > e.clientWidth).map(e => e.id || "
        "e.getAttribute('aria-labelledby'))",
    )
    assert overflowing == []

    # The charts are drawn: bars with a size, inside the page's width.
    for chart in ("chart-funnel", "chart-sessions", "chart-health"):
        box = await page.locator(f"#{chart}").bounding_box()
        assert box is not None, chart
        assert 200 < box["width"] <= 1280, chart
        assert box["height"] > 50, chart
    bars = await page.eval_on_selector_all(
        "#chart-sessions rect", "rs => rs.filter(r => r.getBBox().height > 0).length"
    )
    assert bars >= 4

    # A table downloads as CSV with the same cells as on the page.
    async with page.expect_download() as pending:
        await page.click("a[href*='/dashboard/funnel.csv']")
    download = await pending.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert download.suggested_filename == f"{PROGRAMME}-funnel.csv"
    assert list(csv.reader(io.StringIO(saved.read_text()))) == funnel

    # Nothing was requested from anywhere but the service, and nothing was refused or broke.
    assert requests
    assert all(url.startswith(coordinator + "/") for url in requests), requests
    assert problems == [], requests

    if SCREENSHOTS:
        await page.screenshot(path=f"{SCREENSHOTS}/dashboard-1280.png", full_page=True)
    await context.close()


async def test_the_dashboard_is_usable_at_phone_width_and_by_keyboard(
    coordinator: str, browser: Browser
) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, timezone_id="Europe/London", is_mobile=True
    )
    page = await context.new_page()
    await page.goto(f"{coordinator}/programmes/{PROGRAMME}/dashboard")
    await page.wait_for_url("**tz=Europe%2FLondon**")
    await page.wait_for_selector("#chart-health")
    # No sideways scrolling of the page; wide tables scroll inside their own region.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    box = await page.locator("#chart-sessions").bounding_box()
    assert box is not None
    assert box["width"] <= 390

    # Tab goes from the skip link through the time zone form to every CSV link.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    reached: list[str] = []
    for _ in range(40):
        await page.keyboard.press("Tab")
        reached.append(
            await page.evaluate(
                "(e => e.getAttribute('href') || e.id || e.tagName)(document.activeElement)"
            )
        )
    assert "tz" in reached
    csv_links = {r for r in reached if r.endswith(".csv?tz=Europe%2FLondon")}
    assert len(csv_links) == 9
    # Enter on the time zone form shows the page in the chosen zone.
    await page.focus("#tz")
    await page.select_option("#tz", "America/New_York")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Show"
    await page.keyboard.press("Enter")
    await page.wait_for_url("**tz=America%2FNew_York**")
    assert await page.inner_text("#zone") == "America/New_York"

    if SCREENSHOTS:
        await page.screenshot(path=f"{SCREENSHOTS}/dashboard-phone.png", full_page=True)
    await context.close()


async def test_axe_core_finds_no_serious_violation(
    site: str, browser: Browser, oidc: TestProvider
) -> None:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, extra_http_headers=reader(oidc)
    )
    page = await context.new_page()
    for path in ("/programmes?tz=UTC", f"/programmes/{PROGRAMME}/dashboard?tz=UTC"):
        await page.goto(site + path)
        # Evaluated through the debugging protocol, which the page's CSP does not govern.
        await page.evaluate(AXE.read_text())
        result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        serious = [
            (v["id"], v["impact"], len(v["nodes"]))
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], path
        assert result["passes"], "axe ran its checks"
    await context.close()


async def test_a_manager_of_another_programme_is_refused(
    site: str, browser: Browser, oidc: TestProvider
) -> None:
    context = await browser.new_context(extra_http_headers=manager(oidc, OTHER_PROGRAMME))
    page = await context.new_page()
    for path in (
        f"/programmes/{PROGRAMME}/dashboard?tz=UTC",
        f"/programmes/{PROGRAMME}/dashboard/funnel.csv",
        "/programmes/NOT-EVEN-THERE/dashboard",
    ):
        refused = await page.request.get(site + path)
        assert refused.status == 403, path
        assert PROGRAMME not in await refused.text()
    shown = await page.goto(f"{site}/programmes/{OTHER_PROGRAMME}/dashboard?tz=UTC")
    assert shown is not None
    assert shown.status == 200
    await context.close()
    async with httpx.AsyncClient(base_url=site) as client:
        anonymous = await client.get(f"/programmes/{PROGRAMME}/dashboard")
        no_role = await client.get("/programmes", headers=bearer(oidc.mint(["someone.else"])))
        listing = await client.get("/programmes", headers=reader(oidc))
    assert anonymous.status_code == 401
    assert no_role.status_code == 403
    assert PROGRAMME in listing.text  # a reader sees every programme
    assert OTHER_PROGRAMME in listing.text


async def test_unknown_programme_and_table_are_404(site: str, oidc: TestProvider) -> None:
    async with httpx.AsyncClient(base_url=site, headers=reader(oidc)) as client:
        missing = await client.get("/programmes/NOPE/dashboard")
        table_missing = await client.get(f"/programmes/{PROGRAMME}/dashboard/nope.csv")
        asset_missing = await client.get("/dashboard/static/../app.py")
    assert missing.status_code == 404
    assert table_missing.status_code == 404
    assert asset_missing.status_code == 404
