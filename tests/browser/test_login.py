"""The sign-in page in Chromium: languages, a wrong and a right password."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from sigap_pbx.accounts import AccountService
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import Role
from sigap_pbx.web import i18n
from sigap_pbx.web.access import SESSION_COOKIE
from sigap_pbx.web.app import create_app
from sigap_pbx.web.session_routes import HOME_BY_ROLE
from tests.browser.conftest import (
    add_web_user,
    assert_png,
    screenshot,
    submit_login,
)

pytestmark = pytest.mark.browser


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SimpleNamespace]:
    """The web app on 127.0.0.1 with real accounts and no other controller part."""
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}")
    controller = SimpleNamespace(accounts=AccountService(db))
    test_server = TestServer(create_app(controller), host="127.0.0.1")
    await test_server.start_server()
    try:
        yield SimpleNamespace(
            base_url=f"http://127.0.0.1:{test_server.port}", accounts=controller.accounts
        )
    finally:
        await test_server.close()
        await db.close()


def text(key: str, lang: str) -> str:
    return i18n.translate(key, lang)


async def test_sign_in_page_languages_and_passwords(
    server, new_context, requests_made, artifacts
):
    username, password = await add_web_user(server.accounts, Role.OPERATOR, endpoint="op1")
    context = await new_context()
    page = await context.new_page()

    await page.goto(f"{server.base_url}/")
    # Someone not signed in is sent to the sign-in page, in Indonesian.
    await expect(page).to_have_url(f"{server.base_url}/login")
    await expect(page.locator("html")).to_have_attribute("lang", "id")
    await expect(page.locator("form.login h1")).to_have_text(text("login.title", "id"))
    await expect(page.locator("form.login button[type=submit]")).to_have_text(
        text("login.submit", "id")
    )
    await expect(page.locator("form.login")).to_contain_text(text("login.password", "id"))
    indonesian = await screenshot(page, artifacts, "login-id")

    # A wrong password in Indonesian.
    await submit_login(page, server.base_url, username, password + "x")
    await expect(page.locator("form.login .error")).to_have_text(
        text("login.failed", "id")
    )

    # The language switch gives English, on the same page.
    async with page.expect_navigation():
        await page.locator(".lang-switch").click()
    await expect(page).to_have_url(f"{server.base_url}/login")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("form.login h1")).to_have_text(text("login.title", "en"))
    await expect(page.locator("form.login")).to_contain_text(text("login.username", "en"))
    await expect(page.locator(".lang-switch")).to_have_text(text("nav.language", "en"))
    english = await screenshot(page, artifacts, "login-en")

    await submit_login(page, server.base_url, username, "not-" + password)
    await expect(page.locator("form.login .error")).to_have_text(
        text("login.failed", "en")
    )
    failed = await screenshot(page, artifacts, "login-failed-en")

    # The right password lands on the operator's home, the console.
    await submit_login(page, server.base_url, username, password)
    await expect(page).to_have_url(f"{server.base_url}{HOME_BY_ROLE[Role.OPERATOR]}")

    # Chromium keeps the Secure session cookie over plain HTTP to 127.0.0.1 and
    # sends it back, so the session API returns the signed-in user.
    cookies = {cookie["name"]: cookie for cookie in await context.cookies()}
    assert SESSION_COOKIE in cookies, sorted(cookies)
    assert cookies[SESSION_COOKIE]["secure"] is True
    assert cookies[SESSION_COOKIE]["httpOnly"] is True
    assert cookies[SESSION_COOKIE]["sameSite"] == "Strict"
    session = await page.evaluate(
        "fetch('/api/session').then(async (r) => ({status: r.status, body: await r.json()}))"
    )
    assert session["status"] == 200, session
    assert session["body"]["user"]["username"] == username
    assert session["body"]["user"]["role"] == "operator"

    for path in (indonesian, english, failed):
        assert_png(path)
    assert requests_made.urls, "no request was logged"
    assert requests_made.foreign() == []


async def test_sign_in_lands_on_each_role_home(server, new_context, requests_made):
    for role, extra in (
        (Role.SUPERVISOR, {}),
        (Role.AGENCY, {"agency": "damkar"}),
        (Role.ADMIN, {}),
    ):
        username, password = await add_web_user(server.accounts, role, **extra)
        context = await new_context()
        page = await context.new_page()
        await page.goto(f"{server.base_url}/login")
        await submit_login(page, server.base_url, username, password)
        await expect(page).to_have_url(f"{server.base_url}{HOME_BY_ROLE[role]}")
    assert requests_made.foreign() == []
