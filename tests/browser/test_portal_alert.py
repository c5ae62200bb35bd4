"""The agency portal's new-report banner in Chromium, against the real web app.

The page runs the real portal.js with the real dispatch API and event stream on
127.0.0.1. Only Asterisk and the rest of the controller are left out.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from sigap_pbx.accounts import AccountService
from sigap_pbx.agencies.directory import AgencyService
from sigap_pbx.agencies.dispatch import DispatchService
from sigap_pbx.agencies.reports import ReportService
from sigap_pbx.config import Config
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import Role
from sigap_pbx.web import portal_routes
from sigap_pbx.web.app import create_app
from sigap_pbx.web.feed import Feed
from tests.unit.agency_rows import FakeClock, add_report

pytestmark = pytest.mark.browser

PASSWORD = "portal alert password"


@dataclass
class FakeController:
    """The parts of the controller that the portal page and its API use."""

    agencies: AgencyService
    reports: ReportService
    dispatches: DispatchService
    accounts: AccountService
    clock: Any
    feed: Feed = field(default_factory=Feed)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    outside_dispatches: portal_routes.OutsideDispatches | None = None

    def _spawn(self, coro: Any, name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))


@dataclass
class PortalServer:
    controller: FakeController
    db: Database
    base_url: str


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[PortalServer]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'portal.db'}")
    config = Config()
    clock = FakeClock()
    agencies = AgencyService(db, config, clock=clock)
    damkar = {"code": "damkar", "name": "Damkar Kota", "kind": "fire"}
    await agencies.upsert(damkar, "spv")
    controller = FakeController(
        agencies,
        ReportService(db, config, clock=clock),
        DispatchService(db, clock=clock),
        AccountService(db),
        clock,
    )
    portal_routes.attach(controller)  # type: ignore[arg-type]
    test_server = TestServer(create_app(controller), host="127.0.0.1")
    await test_server.start_server()
    try:
        yield PortalServer(controller, db, f"http://127.0.0.1:{test_server.port}")
    finally:
        await test_server.close()
        for task in controller.tasks:
            task.cancel()
        await asyncio.gather(*controller.tasks, return_exceptions=True)
        await db.close()


@pytest.fixture
async def page(browser: Browser, server: PortalServer) -> AsyncIterator[Page]:
    """A damkar user's portal, signed in through /login, once its list is loaded.

    The browser context closes before the server, because the server waits for
    open event streams when it shuts down.
    """
    await server.controller.accounts.add_user(
        "damkar1", PASSWORD, Role.AGENCY, agency_code="damkar", actor="test"
    )
    context = await browser.new_context(locale="id-ID")
    try:
        page = await context.new_page()
        await page.goto(f"{server.base_url}/login")
        form = page.locator("form.login")
        await form.locator('input[name="username"]').fill("damkar1")
        await form.locator('input[name="password"]').fill(PASSWORD)
        async with page.expect_navigation():
            await form.locator('button[type="submit"]').click()
        await expect(page).to_have_url(f"{server.base_url}/portal")
        await expect(page.locator("#live-status")).not_to_have_class(
            re.compile(r"\bdown\b")
        )
        # The first list is loaded: a dispatch made before it raises no banner.
        await expect(page.locator("#portal-message")).to_have_text("Tidak ada laporan.")
        yield page
    finally:
        await context.close()


async def dispatch_new_report(server: PortalServer) -> int:
    """Send a new report to damkar and return the dispatch's id."""
    report_id = await add_report(server.db)
    await server.controller.reports.dispatch(report_id, ["damkar"], "op1")
    dispatch = await server.controller.dispatches.find(report_id, "damkar")
    return dispatch.id


async def test_banner_counts_down_to_hidden(page: Page, server: PortalServer) -> None:
    alert = page.locator("#new-report-alert")
    await expect(alert).to_be_hidden()

    first = await dispatch_new_report(server)
    await expect(alert).to_be_visible()
    await expect(alert).to_have_attribute("data-count", "1")
    second = await dispatch_new_report(server)
    await expect(alert).to_have_attribute("data-count", "2")
    await expect(alert).to_contain_text("2")

    # Acknowledged on the page: one new report is left.
    card = page.locator(f'#dispatches [data-dispatch-id="{first}"]')
    await card.locator(".ack-button").click()
    await expect(card).to_have_attribute("data-acknowledged", "true")
    await expect(alert).to_have_attribute("data-count", "1")
    await expect(alert).to_be_visible()

    # Acknowledged elsewhere (another user, or 1 pressed on the call-out): none left.
    await server.controller.dispatches.acknowledge(second, "damkar2")
    await expect(alert).to_be_hidden()
    await expect(alert).to_have_attribute("data-count", "0")


async def test_banner_hidden_after_status(page: Page, server: PortalServer) -> None:
    alert = page.locator("#new-report-alert")
    dispatch_id = await dispatch_new_report(server)
    await expect(alert).to_have_attribute("data-count", "1")

    # A status reported while the dispatch is still sent acknowledges it too.
    card = page.locator(f'#dispatches [data-dispatch-id="{dispatch_id}"]')
    await card.locator(".status-select").select_option("en_route")
    await card.locator(".status-save").click()

    await expect(card).to_have_attribute("data-status", "en_route")
    await expect(alert).to_be_hidden()


async def test_dismissed_banner_stays_hidden(page: Page, server: PortalServer) -> None:
    alert = page.locator("#new-report-alert")
    first = await dispatch_new_report(server)
    await expect(alert).to_have_attribute("data-count", "1")

    await alert.click()
    await expect(alert).to_be_hidden()
    await server.controller.dispatches.acknowledge(first, "damkar2")
    card = page.locator(f'#dispatches [data-dispatch-id="{first}"]')
    await expect(card).to_have_attribute("data-acknowledged", "true")
    await expect(alert).to_be_hidden()

    # A later report raises the banner again, counting only itself.
    await dispatch_new_report(server)
    await expect(alert).to_be_visible()
    await expect(alert).to_have_attribute("data-count", "1")
