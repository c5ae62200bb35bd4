"""Page scripts in Chromium against the fake wallboard controller: the controls
that the console and the wallboard enable, translated redraws and TV mode.

No Asterisk is involved: AMI events go in through FakeAmi.emit, and the pages get
the resulting snapshots over GET /api/events from an app on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from sigap_pbx.web.access import SESSION_COOKIE
from sigap_pbx.web.wallboard import attach
from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS
from tests.unit.wallboard_fakes import FakeController, member_event
from tests.web_auth import signed_in_client

pytestmark = pytest.mark.browser

# Playwright's expect() waits this long (ms) for a page to reach a state.
WAIT_MS = 15_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium)")
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def controller() -> AsyncIterator[FakeController]:
    controller = FakeController()
    attach(controller)
    controller.live.reset_from_status([])
    controller.ami.emit(member_event("QueueMemberAdded", "op1"))
    controller.ami.emit(member_event("QueueMemberAdded", "op2"))
    yield controller
    await controller.close()


async def open_page(
    browser: Browser, controller: Any, role: str, path: str,
    viewport: tuple[int, int] = (1366, 768), **user: Any,
) -> tuple[Page, Any]:
    """Sign in a new user with `role` and open `path` in a browser context of its own."""
    client = await signed_in_client(controller, role, **user)
    base = str(client.make_url("/")).rstrip("/")
    width, height = viewport
    context = await browser.new_context(viewport={"width": width, "height": height})
    await context.add_cookies(
        [{"name": SESSION_COOKIE, "value": client.session_token, "url": base}]
    )
    page = await context.new_page()
    await page.goto(base + path)
    return page, client


async def test_console_enables_controls_by_state(browser, controller):
    page, client = await open_page(browser, controller, "operator", "/console",
                                   endpoint="op1")
    try:
        badge = page.locator('[data-field="my_state"]')
        await expect(badge).to_have_attribute("data-state", "available")
        await expect(page.locator("#pause")).to_be_enabled()
        await expect(page.locator("#unpause")).to_be_disabled()
        await expect(page.locator("#login")).to_be_disabled()
        await expect(page.locator("#logout")).to_be_enabled()

        controller.ami.emit(member_event("QueueMemberPause", "op1", paused=True,
                                         reason="break"))
        await expect(badge).to_have_attribute("data-state", "paused")
        # The reason as the pause menu names it, not its code.
        await expect(badge).to_contain_text("(Istirahat)")
        await expect(page.locator("#pause")).to_be_disabled()
        await expect(page.locator("#unpause")).to_be_enabled()
        await expect(page.locator("#login")).to_be_disabled()
        await expect(page.locator("#logout")).to_be_enabled()

        controller.ami.emit(member_event("QueueMemberPause", "op1", paused=True,
                                         reason="wrapup"))
        await expect(badge).to_have_attribute("data-state", "wrapup")
        await expect(page.locator("#pause")).to_be_enabled()
        await expect(page.locator("#unpause")).to_be_enabled()

        controller.ami.emit(member_event("QueueMemberRemoved", "op1"))
        await expect(badge).to_have_attribute("data-state", "logged_off")
        await expect(page.locator("#pause")).to_be_disabled()
        await expect(page.locator("#unpause")).to_be_disabled()
        await expect(page.locator("#login")).to_be_enabled()
        await expect(page.locator("#logout")).to_be_disabled()
    finally:
        await page.context.close()
        await client.close()


async def test_wallboard_without_phone_disables_spying(browser, controller):
    page, client = await open_page(browser, controller, "supervisor", "/wallboard")
    try:
        # Three buttons for each of op1, op2 and the supervisor line spv1.
        spy = page.locator(".spy-listen, .spy-whisper, .spy-barge")
        await expect(spy).to_have_count(9)
        for index in range(9):
            await expect(spy.nth(index)).to_be_disabled()
        await expect(page.locator("#wallboard-message")).to_be_visible()

        # A snapshot redraws the rows through wallboard.js.
        controller.ami.emit(member_event("QueueMemberPause", "op2", paused=True,
                                         reason="break"))
        row = page.locator('tr[data-operator="op2"]')
        await expect(row).to_have_attribute("data-state", "paused")
        for index in range(9):
            await expect(spy.nth(index)).to_be_disabled()
        # The operator actions need no phone of the supervisor's own.
        await expect(row.locator(".op-unpause")).to_be_enabled()
    finally:
        await page.context.close()
        await client.close()


async def test_wallboard_with_phone_enables_spying(browser, controller):
    page, client = await open_page(browser, controller, "supervisor", "/wallboard",
                                   endpoint="spv1")
    try:
        controller.ami.emit(member_event("QueueMemberPause", "op2", paused=True,
                                         reason="break"))
        row = page.locator('tr[data-operator="op2"]')
        await expect(row).to_have_attribute("data-state", "paused")
        await expect(row.locator(".spy-listen")).to_be_enabled()
        await expect(page.locator("#wallboard-message")).to_be_hidden()
        # A paused operator can be unpaused or logged out, not paused again.
        await expect(row.locator(".op-pause")).to_be_disabled()
        await expect(row.locator(".op-unpause")).to_be_enabled()
        await expect(row.locator(".op-logout")).to_be_enabled()
    finally:
        await page.context.close()
        await client.close()


async def test_wallboard_redraw_is_translated(browser, controller):
    page, client = await open_page(browser, controller, "supervisor", "/wallboard",
                                   endpoint="spv1")
    try:
        controller.alarms.raise_alarm("endpoint_unreachable", "op1", "Phone op1 gone")
        controller.ami.emit(member_event("QueueMemberPause", "op2", paused=True,
                                         reason="break"))
        message = page.locator('.alarm-message[data-kind="endpoint_unreachable"]')
        await expect(message).to_have_text("Telepon op1 tidak terjangkau")
        await expect(message).to_have_attribute("title", "Phone op1 gone")
        reason = page.locator('tr[data-operator="op2"] [data-field="pause_reason"]')
        await expect(reason).to_have_text("Istirahat")
        await expect(page.locator("#figures-error")).to_have_text(
            "Laporan shift belum berjalan."
        )
    finally:
        await page.context.close()
        await client.close()


async def test_tv_mode_fills_screen(browser, controller):
    page, client = await open_page(browser, controller, "supervisor", "/wallboard?tv=1",
                                   viewport=(1920, 1080))
    try:
        await expect(page.locator("body")).to_have_class("wallboard-page wall")
        await expect(page.locator("#wallboard-message")).to_be_hidden()
        await expect(page.locator(".spy-listen").first).to_be_hidden()
        font_size = await page.evaluate(
            "parseFloat(getComputedStyle(document.body).fontSize)"
        )
        operators = await page.locator(".wb-operators").bounding_box()
        body_grid = await page.locator(".wb-body").bounding_box()
    finally:
        await page.context.close()
        await client.close()

    # 1.5vw of 1920 px is 28.8 px.
    assert font_size >= 28
    assert operators is not None
    assert body_grid is not None
    assert operators["y"] + operators["height"] >= 1080 * 0.95
    assert body_grid["width"] >= 1920 * 0.95
