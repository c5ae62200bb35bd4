"""Signed-in web test clients: a real AccountService, user and session per client.

The session cookie is Secure, which aiohttp's client does not send over plain
HTTP, so the client sends it in a Cookie header of its own, with the session's
CSRF token in X-CSRF-Token.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from sigap_pbx.accounts import AccountService
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import Role
from sigap_pbx.web.access import CSRF_HEADER, SESSION_COOKIE
from sigap_pbx.web.app import create_app


class SignedInClient(TestClient):
    """A TestClient that also closes the account database it opened."""

    owned_db: Database | None = None
    username: str = ""
    password: str = ""
    csrf_token: str = ""
    session_token: str = ""

    async def close(self) -> None:
        await super().close()
        if self.owned_db is not None:
            await self.owned_db.close()
            self.owned_db = None


async def ensure_accounts(controller: Any, db: Database | None = None) -> Database | None:
    """Give `controller` an AccountService if it has none; return a db it must close."""
    if getattr(controller, "accounts", None) is not None:
        return None
    owned = None
    if db is None:
        path = Path(tempfile.mkdtemp(prefix="sigap-accounts-")) / "accounts.db"
        db = owned = await Database.open(f"sqlite+aiosqlite:///{path}")
    controller.accounts = AccountService(db)
    return owned


async def add_user(
    controller: Any,
    role: Role | str = Role.ADMIN,
    *,
    username: str | None = None,
    endpoint: str | None = None,
    agency: str | None = None,
) -> tuple[str, str]:
    """Add a user to `controller.accounts`; return (username, password)."""
    role = Role(role)
    username = username or f"{role.value}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    await controller.accounts.add_user(
        username, password, role, endpoint=endpoint, agency_code=agency, actor="test"
    )
    return username, password


async def signed_in_client(
    controller: Any,
    role: Role | str = Role.ADMIN,
    *,
    username: str | None = None,
    endpoint: str | None = None,
    agency: str | None = None,
    db: Database | None = None,
    csrf: bool = True,
) -> SignedInClient:
    """Start the controller's app and return a client signed in with `role`.

    With csrf=False the client sends no CSRF token, to test that it is required.
    """
    owned = await ensure_accounts(controller, db)
    username, password = await add_user(
        controller, role, username=username, endpoint=endpoint, agency=agency
    )
    signed_in = await controller.accounts.sign_in(username, password, "127.0.0.1")
    headers = {"Cookie": f"{SESSION_COOKIE}={signed_in.token}"}
    if csrf:
        headers[CSRF_HEADER] = signed_in.session.csrf_token
    client = SignedInClient(TestServer(create_app(controller)), headers=headers)
    client.owned_db = owned
    client.username = username
    client.password = password
    client.csrf_token = signed_in.session.csrf_token
    assert signed_in.token is not None
    client.session_token = signed_in.token
    await client.start_server()
    return client
