"""Fixtures for the browser tests: Debian's Chromium driven by Playwright.

Playwright's own browser downloads are never used: the tests launch
/usr/bin/chromium, which scripts/setup.sh installs (Debian package chromium).
Each test gets a fresh browser, and each signed-in user a browser context of its
own, so cookies never leak between users or tests. Screenshots go to
test-artifacts/<test name>/ at the repository root.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from sigap_pbx.store.accounts import Role
from sigap_pbx.web.session_routes import HOME_BY_ROLE
from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS

# The Asterisk fixtures of the integration tests, for the end-to-end test.
from tests.integration.conftest import (  # noqa: F401
    caller_number,
    clean_stack,
    config,
    no_stuck_tasks,
    stack,
)
from tests.integration.stack import REPO

ARTIFACTS = REPO / "test-artifacts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Playwright's expect() waits this long (ms) for a page to reach a state.
WAIT_MS = 30_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: `make test` installs it (Debian package chromium)"
        )
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


class RequestLog:
    """Every URL the pages of the test's browser contexts requested."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def follow(self, context: BrowserContext) -> None:
        context.on("request", lambda request: self.urls.append(request.url))

    def foreign(self) -> list[str]:
        """Return the requested URLs that went anywhere but http://127.0.0.1."""
        return [
            url
            for url in self.urls
            if urlsplit(url).scheme != "http" or urlsplit(url).hostname != "127.0.0.1"
        ]


@pytest.fixture
def requests_made() -> RequestLog:
    return RequestLog()


@pytest.fixture
async def new_context(
    browser: Browser, requests_made: RequestLog
) -> AsyncIterator[Callable[..., Awaitable[BrowserContext]]]:
    """Return a function that opens a browser context whose requests are logged.

    The context's viewport is 1366x900 unless the function is given a size.
    """
    contexts: list[BrowserContext] = []

    async def open_context(width: int = 1366, height: int = 900) -> BrowserContext:
        context = await browser.new_context(
            locale="id-ID", viewport={"width": width, "height": height}
        )
        requests_made.follow(context)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        await context.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """The directory for this test's screenshots, emptied first."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    directory = ARTIFACTS / name
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    return directory


async def screenshot(page: Page, directory: Path, name: str) -> Path:
    """Save a full-page PNG of `page` as directory/name.png and return its path."""
    path = directory / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def assert_png(path: Path) -> None:
    assert path.is_file(), f"screenshot {path} was not written"
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE), f"screenshot {path} is empty"
    assert data.startswith(PNG_SIGNATURE), f"screenshot {path} is not a PNG"


async def add_web_user(
    accounts: Any,
    role: Role | str,
    *,
    endpoint: str | None = None,
    agency: str | None = None,
) -> tuple[str, str]:
    """Add a user through controller.accounts; return (username, password)."""
    role = Role(role)
    username = f"web-{role.value}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    await accounts.add_user(
        username, password, role, endpoint=endpoint, agency_code=agency,
        actor="browser-test",
    )
    return username, password


async def submit_login(page: Page, base_url: str, username: str, password: str) -> None:
    """Fill in and send the /login form (the page must show it already)."""
    form = page.locator("form.login")
    await form.locator('input[name="username"]').fill(username)
    await form.locator('input[name="password"]').fill(password)
    async with page.expect_navigation():
        await form.locator('button[type="submit"]').click()


async def sign_in(
    page: Page,
    base_url: str,
    accounts: Any,
    role: Role | str,
    *,
    endpoint: str | None = None,
    agency: str | None = None,
) -> str:
    """Add a user with `role` and sign `page` in through the /login form.

    Returns the username once the browser shows the role's home page.
    """
    username, password = await add_web_user(
        accounts, role, endpoint=endpoint, agency=agency
    )
    await page.goto(f"{base_url}/login")
    await submit_login(page, base_url, username, password)
    await expect(page).to_have_url(f"{base_url}{HOME_BY_ROLE[Role(role)]}")
    return username
