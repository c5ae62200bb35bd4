"""The pages at the sizes they are used at: a 1366x768 operator screen and wall TVs.

Each page is opened signed in as its user, with a shift in force, three
operators in the queue and two reports sent to the fire agency, so the tables
have rows. On the operator screen no page
scrolls sideways, and the controls an operator or supervisor reaches for during a
call are inside the first screen. The wallboard's TV mode fits a 1080p and a 4K TV
without scrolling, and its figures grow with the screen.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from sigap_pbx.store.accounts import Role
from tests.browser.conftest import assert_png, screenshot, sign_in
from tests.browser.test_call_flow import DIRECTORY, live
from tests.integration.stack import Stack, running_controller
from tests.integration.test_shifts import roster_starting_now

pytestmark = [pytest.mark.browser, pytest.mark.asterisk, pytest.mark.timeout(300)]

OPERATOR_SCREEN = (1366, 768)
TV_SCREENS = {"tv-1080p": (1920, 1080), "tv-4k": (3840, 2160)}
# Page, the role that opens it, and the elements that must be inside the first screen.
PAGES = [
    ("/console", Role.OPERATOR, [
        "#call-card", '[data-field="my_state"]', "#report-save",
        '[data-forward-mode="consult"]', "#callbacks",
    ]),
    ("/wallboard", Role.SUPERVISOR, [
        "#queues section[data-queue]", "#figures", '[data-operator="op3"]', "#tv-toggle",
    ]),
    ("/portal", Role.AGENCY, ["#include-final", "#dispatches [data-dispatch-id]",
                              "#dispatches .ack-button"]),
    ("/history", Role.SUPERVISOR, ["#history-form", "#history-search", "#history-csv"]),
]

# The page's size and how far it scrolls each way.
EXTENT = """() => ({
  width: window.innerWidth, height: window.innerHeight,
  scrollWidth: document.documentElement.scrollWidth,
  scrollHeight: document.documentElement.scrollHeight,
})"""


async def extent(page: Page) -> dict[str, int]:
    return await page.evaluate(EXTENT)


async def inside_first_screen(page: Page, selector: str) -> None:
    element = page.locator(selector).first
    await expect(element).to_be_visible()
    box = await element.bounding_box()
    assert box is not None, selector
    size = page.viewport_size
    assert size is not None
    assert box["x"] >= 0, (selector, box)
    assert box["x"] + box["width"] <= size["width"], (selector, box)
    assert box["y"] >= 0, (selector, box)
    assert box["y"] + box["height"] <= size["height"], (selector, box)


async def signed_in_page(
    new_context: Any, controller: Any, base_url: str, role: Role, size: tuple[int, int]
) -> Page:
    page = await (await new_context(*size)).new_page()
    options: dict[str, str] = {}
    if role is Role.OPERATOR:
        options["endpoint"] = "op1"
    if role is Role.AGENCY:
        options["agency"] = "damkar"
    await sign_in(page, base_url, controller.accounts, role, **options)
    return page


async def test_pages_fit_operator_screen_and_tv(
    clean_stack: Stack, config, new_context, requests_made, artifacts: Path
):
    stack = clean_stack
    shots: list[Path] = []
    async with running_controller(config) as controller:
        await controller.agencies.import_yaml(DIRECTORY, actor="test")
        roster, _, _ = roster_starting_now(config.roster.zone)
        await controller.rosters.save(roster, actor="test")
        await controller.membership.reconcile("test")
        for endpoint in ("op2", "op3"):
            stack.add_member(endpoint)
        # Two reports sent to the fire agency, so the portal has rows.
        for location in ("Jalan Gajah Mada 12", "Jalan Tanjungpura 3"):
            report = await controller.reports.create({
                "category": "fire", "call_type": "emergency", "priority": 1,
                "location_text": location, "description": "Asap tebal dari ruko",
            }, actor="op1")
            await controller.reports.dispatch(report.id, ["damkar"], actor="op1")
        base_url = f"http://127.0.0.1:{controller.web_port}"

        for path, role, controls in PAGES:
            page = await signed_in_page(new_context, controller, base_url, role,
                                        OPERATOR_SCREEN)
            if page.url != f"{base_url}{path}":
                await page.goto(f"{base_url}{path}")
            if path != "/history":  # the only page without live updates
                await live(page)
            else:
                await expect(page.locator("#history-results tr")).not_to_have_count(0)
            if path == "/wallboard":
                await expect(page.locator('[data-operator="op3"]')).to_be_visible()
            shots.append(await screenshot(page, artifacts, f"1366x768{path.replace('/', '-')}"))
            size = await extent(page)
            assert size["scrollWidth"] <= size["width"], (path, size)
            for selector in controls:
                await inside_first_screen(page, selector)

        figure_sizes = {}
        for name, dimensions in TV_SCREENS.items():
            page = await signed_in_page(new_context, controller, base_url, Role.SUPERVISOR,
                                        dimensions)
            await page.goto(f"{base_url}/wallboard?tv=1")
            await live(page)
            await expect(page.locator("body")).to_have_class(re.compile(r"\bwall\b"))
            await expect(page.locator('[data-operator="op3"]')).to_be_visible()
            shots.append(await screenshot(page, artifacts, f"wallboard-{name}"))
            size = await extent(page)
            assert size["scrollWidth"] <= size["width"], (name, size)
            assert size["scrollHeight"] <= size["height"], (name, size)
            for selector in ("#queues section[data-queue]", "#figures", '[data-operator="op3"]'):
                await inside_first_screen(page, selector)
            figure_sizes[name] = await page.locator("#figures .figure").first.evaluate(
                "(node) => parseFloat(getComputedStyle(node).fontSize)"
            )

        assert figure_sizes["tv-4k"] > figure_sizes["tv-1080p"], figure_sizes

    for path in shots:
        assert_png(path)
    assert requests_made.foreign() == []
