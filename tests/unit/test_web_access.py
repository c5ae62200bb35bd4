"""Sign-in, sessions, roles, CSRF, the action audit and the Host check, over HTTP.

The role matrix sends a request to every registered route as every role and
checks the result against `route_roles`. A separate hand-written table states the
rules that matter most, so that a wrong role set in a route module fails a test
even though the matrix would follow it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sigap_pbx.accounts import (
    MAX_FAILURES,
    MAX_FAILURES_PER_ADDRESS,
    SESSION_IDLE,
    AccountService,
)
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import Role
from sigap_pbx.web.access import CSRF_HEADER, SESSION_COOKIE, route_roles
from sigap_pbx.web.app import create_app
from sigap_pbx.web.session_routes import LOGIN_CSRF_COOKIE
from tests.web_auth import add_user, signed_in_client

PASSWORD = "correct horse battery"
ROLES = [role.value for role in Role]
# Values for path parameters. An operator's own endpoint is op1, so the
# handler's own-endpoint check does not turn an allowed request into a 403.
PATH_VALUES = {"endpoint": "op1", "action": "login", "lang": "en", "name": "sigap.css",
               "how": "join", "date": "2026-12-04", "shift": "early",
               "uniqueid": "1796409216.1", "code": "damkar"}


def fill_path(path: str) -> str:
    return re.sub(r"\{([^}:]+)\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)


def all_routes() -> list[tuple[str, str, frozenset[Role]]]:
    app = create_app(SimpleNamespace())  # type: ignore[arg-type]
    return sorted(
        (method, path, roles)
        for (method, path), roles in route_roles(app).items()
        if method != "HEAD"
    )


class Controller(SimpleNamespace):
    """A controller with accounts only: handlers that need more fail after the
    role check, with a status other than 401 or 403."""


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'web.db'}")
    yield db
    await db.close()


@pytest.fixture
async def controller(database: Database) -> Controller:
    controller = Controller()
    controller.accounts = AccountService(database)
    return controller


@pytest.fixture
async def anonymous(controller: Controller) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(create_app(controller)))  # type: ignore[arg-type]
    await client.start_server()
    yield client
    await client.close()


async def client_as(controller: Controller, role: str, **options: Any) -> Any:
    if role == "agency":
        options.setdefault("agency", "damkar")
    if role in ("operator", "supervisor"):
        options.setdefault("endpoint", "op1")
    return await signed_in_client(controller, role, **options)


def request_options(method: str) -> dict[str, Any]:
    return {"json": {}} if method not in ("GET", "HEAD") else {}


# --- Role matrix --------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix(controller: Controller, role: str) -> None:
    client = await client_as(controller, role)
    wrong: list[str] = []
    try:
        for method, path, roles in all_routes():
            if method == "GET" and path == "/api/events":
                continue  # a stream: checked in test_events_stream_roles
            if path in ("/logout", "/api/session") and method != "GET":
                continue  # would end this client's session; checked below
            if (method, path) == ("POST", "/login"):
                continue  # its own form token gives 403: checked below
            response = await client.request(
                method, fill_path(path), allow_redirects=False, **request_options(method)
            )
            allowed = not roles or Role(role) in roles
            if allowed and response.status in (401, 403):
                wrong.append(f"{method} {path}: {response.status}, expected allowed")
            if not allowed:
                if response.status != 403:
                    wrong.append(f"{method} {path}: {response.status}, expected 403")
                elif path.startswith("/api/"):
                    code = (await response.json())["error"]["code"]
                    if code != "forbidden":
                        wrong.append(f"{method} {path}: code {code}")
    finally:
        await client.close()

    assert wrong == []


KEY_RULES = [
    ("agency", "GET", "/api/calls", False),
    ("agency", "GET", "/api/calls/1", False),
    ("agency", "GET", "/api/calls.csv", False),
    ("agency", "GET", "/api/live", False),
    ("agency", "GET", "/wallboard", False),
    ("agency", "GET", "/console", False),
    ("agency", "POST", "/api/reports", False),
    ("agency", "GET", "/api/consults", False),
    ("agency", "GET", "/portal", True),
    ("agency", "POST", "/api/dispatches/1/ack", True),
    ("operator", "PUT", "/api/roster", False),
    ("operator", "POST", "/api/alarms/1/ack", False),
    ("operator", "GET", "/api/audit", False),
    ("operator", "GET", "/api/outbox", False),
    ("operator", "GET", "/wallboard", False),
    ("operator", "POST", "/api/wallboard/spy", False),
    ("operator", "POST", "/api/dispatches/1/ack", False),
    ("operator", "POST", "/api/diversions", False),
    ("operator", "GET", "/portal", False),
    ("operator", "GET", "/console", True),
    ("operator", "GET", "/api/calls", True),
    ("operator", "POST", "/api/operators/op1/pause", True),
    ("supervisor", "GET", "/api/audit", True),
    ("supervisor", "PUT", "/api/roster", True),
    ("supervisor", "POST", "/api/wallboard/spy", True),
    ("supervisor", "PUT", "/api/agencies/damkar", False),
    ("supervisor", "PUT", "/api/agencies", False),
    ("supervisor", "DELETE", "/api/agencies/damkar", False),
    ("admin", "PUT", "/api/agencies/damkar", True),
    ("admin", "GET", "/api/audit", True),
    ("admin", "GET", "/portal", True),
]


@pytest.mark.parametrize(("role", "method", "path", "allowed"), KEY_RULES)
async def test_key_rules(
    controller: Controller, role: str, method: str, path: str, allowed: bool
) -> None:
    client = await client_as(controller, role)
    try:
        response = await client.request(
            method, path, allow_redirects=False, **request_options(method)
        )
    finally:
        await client.close()

    if allowed:
        assert response.status not in (401, 403)
    else:
        assert response.status == 403


async def test_operator_only_own_endpoint(controller: Controller) -> None:
    client = await client_as(controller, "operator", endpoint="op1")
    try:
        response = await client.post("/api/operators/op2/pause", json={"reason": "toilet"})
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 403
    assert body["error"]["code"] == "forbidden"


async def test_forbidden_page_is_html(controller: Controller) -> None:
    client = await client_as(controller, "agency")
    try:
        response = await client.get("/wallboard", allow_redirects=False)
        html = await response.text()
    finally:
        await client.close()

    assert response.status == 403
    assert response.content_type == "text/html"
    assert 'data-status="403"' in html
    assert "Halaman ini bukan untuk peran Anda." in html


async def test_events_stream_roles(controller: Controller) -> None:
    # Without a feed the route answers 503 after the role check, so no stream opens.
    for role in ROLES:
        client = await client_as(controller, role)
        try:
            response = await client.get("/api/events")
        finally:
            await client.close()
        assert response.status == 503, role


# --- Without a session --------------------------------------------------------------


async def test_unauthenticated_requests(anonymous: TestClient) -> None:
    wrong: list[str] = []
    for method, path, roles in all_routes():
        if not roles:
            continue
        response = await anonymous.request(
            method, fill_path(path), allow_redirects=False, **request_options(method)
        )
        if path.startswith("/api/") and path != "/api/docs" or method != "GET":
            if response.status != 401:
                wrong.append(f"{method} {path}: {response.status}, expected 401")
            elif (await response.json())["error"]["code"] != "not_signed_in":
                wrong.append(f"{method} {path}: wrong code")
        else:
            location = unquote(response.headers.get("Location", ""))
            if response.status != 303 or location != f"/login?next={fill_path(path)}":
                wrong.append(f"{method} {path}: {response.status} to {location!r}")

    assert wrong == []


async def test_page_redirect_keeps_query(anonymous: TestClient) -> None:
    response = await anonymous.get("/history?number=0812&since=x", allow_redirects=False)

    assert response.status == 303
    assert unquote(response.headers["Location"]) == "/login?next=/history?number=0812&since=x"


async def test_public_routes_need_no_session(anonymous: TestClient) -> None:
    login = await anonymous.get("/login")
    static = await anonymous.get("/static/sigap.css")

    assert login.status == 200
    assert static.status == 200


async def test_route_without_rule_rejected(controller: Controller) -> None:
    app = create_app(controller)  # type: ignore[arg-type]

    async def secret(request: Any) -> Any:
        raise AssertionError("the handler must not run")

    app.router.add_get("/api/unruled", secret)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/api/unruled")
        body = await response.json()

    assert response.status == 403
    assert body["error"]["code"] == "forbidden"
    assert "has no access rule" in body["error"]["message"]


# --- CSRF ---------------------------------------------------------------------------


def unsafe_routes() -> list[tuple[str, str]]:
    return [
        (method, path)
        for method, path, roles in all_routes()
        if roles and method in ("POST", "PUT", "PATCH", "DELETE")
    ]


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
async def test_csrf_required(controller: Controller, token: str | None) -> None:
    client = await signed_in_client(controller, "admin", csrf=False)
    headers = {} if token is None else {CSRF_HEADER: token}
    wrong: list[str] = []
    try:
        for method, path in unsafe_routes():
            response = await client.request(
                method, fill_path(path), json={}, headers=headers, allow_redirects=False
            )
            if response.status != 403:
                wrong.append(f"{method} {path}: {response.status}")
            elif not path.startswith("/api/"):
                # A page's form gets an HTML page asking to reload, not JSON.
                if "Formulir kedaluwarsa" not in await response.text():
                    wrong.append(f"{method} {path}: no expired-form page")
            elif (await response.json())["error"]["code"] != "csrf_rejected":
                wrong.append(f"{method} {path}: wrong code")
        session = await client.get("/api/session")
    finally:
        await client.close()

    assert unsafe_routes() != []
    assert wrong == []
    assert session.status == 200


async def test_csrf_form_field_accepted(controller: Controller) -> None:
    client = await signed_in_client(controller, "operator", csrf=False)
    try:
        response = await client.post(
            "/logout", data={"csrf_token": client.csrf_token}, allow_redirects=False
        )
        after = await client.get("/api/session")
    finally:
        await client.close()

    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert after.status == 401


# --- Sign-in ------------------------------------------------------------------------


async def login_form(client: TestClient, next_path: str = "") -> tuple[str, str]:
    """Open /login; return the form's CSRF token and the cookie header to send."""
    response = await client.get(f"/login?next={next_path}" if next_path else "/login")
    html = await response.text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token is not None
    cookie = SimpleCookie(response.headers["Set-Cookie"])[LOGIN_CSRF_COOKIE].value
    assert cookie == token.group(1)
    return token.group(1), f"{LOGIN_CSRF_COOKIE}={cookie}"


async def test_login_form_redirects_to_role_home(
    controller: Controller, anonymous: TestClient
) -> None:
    homes = {"operator": "/console", "supervisor": "/wallboard",
             "agency": "/portal", "admin": "/wallboard"}
    for role, home in homes.items():
        username, password = await add_user(
            controller, role, agency="damkar" if role == "agency" else None
        )
        token, cookie = await login_form(anonymous)
        response = await anonymous.post(
            "/login",
            data={"csrf_token": token, "username": username, "password": password},
            headers={"Cookie": cookie},
            allow_redirects=False,
        )
        assert response.status == 303, role
        assert response.headers["Location"] == home
        assert SESSION_COOKIE in SimpleCookie(response.headers.getall("Set-Cookie")[0])


async def test_login_form_follows_next(
    controller: Controller, anonymous: TestClient
) -> None:
    username, password = await add_user(controller, "operator")
    token, cookie = await login_form(anonymous, "/history%3Fnumber%3D0812")

    response = await anonymous.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password,
              "next": "/history?number=0812"},
        headers={"Cookie": cookie},
        allow_redirects=False,
    )

    assert response.headers["Location"] == "/history?number=0812"


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "/\\evil.example", "https://evil.example/", "evil",
     "/\t/evil.example", "javascript:alert(1)", ""],
)
async def test_login_rejects_open_redirect(
    controller: Controller, anonymous: TestClient, target: str
) -> None:
    username, password = await add_user(controller, "supervisor")
    token, cookie = await login_form(anonymous)

    response = await anonymous.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password,
              "next": target},
        headers={"Cookie": cookie},
        allow_redirects=False,
    )

    assert response.status == 303
    assert response.headers["Location"] == "/wallboard"


async def test_login_form_without_csrf_cookie(
    controller: Controller, anonymous: TestClient
) -> None:
    username, password = await add_user(controller, "supervisor")
    token, _ = await login_form(anonymous)

    missing = await anonymous.post(
        "/login", data={"csrf_token": token, "username": username, "password": password},
        headers={"Cookie": ""}, allow_redirects=False,
    )
    mismatched = await anonymous.post(
        "/login", data={"csrf_token": "other", "username": username,
                        "password": password},
        headers={"Cookie": f"{LOGIN_CSRF_COOKIE}={token}"}, allow_redirects=False,
    )

    assert missing.status == 403
    assert mismatched.status == 403
    assert "Set-Cookie" not in mismatched.headers or SESSION_COOKIE not in (
        mismatched.headers["Set-Cookie"]
    )
    assert "Formulir kedaluwarsa" in await missing.text()


async def test_login_form_wrong_password(
    controller: Controller, anonymous: TestClient
) -> None:
    username, _ = await add_user(controller, "supervisor")
    token, cookie = await login_form(anonymous)

    response = await anonymous.post(
        "/login", data={"csrf_token": token, "username": username, "password": "nope"},
        headers={"Cookie": f"{cookie}; sigap_lang=en"}, allow_redirects=False,
    )
    html = await response.text()

    assert response.status == 401
    assert response.content_type == "text/html"
    assert "The username or password is wrong" in html
    assert all(SESSION_COOKIE not in value
               for value in response.headers.getall("Set-Cookie", []))


async def test_api_sign_in_cookie_flags(
    controller: Controller, anonymous: TestClient
) -> None:
    username, password = await add_user(controller, "operator")

    response = await anonymous.post(
        "/api/session", json={"username": username, "password": password}
    )
    body = await response.json()

    assert response.status == 201
    assert body["user"]["username"] == username
    assert "password_hash" not in body["user"]
    (header,) = response.headers.getall("Set-Cookie")
    parts = [part.strip() for part in header.split(";")]
    assert parts[0].startswith(f"{SESSION_COOKIE}=")
    flags = {part.split("=")[0].lower(): part for part in parts[1:]}
    assert "secure" in flags
    assert "httponly" in flags
    assert flags["samesite"] == "SameSite=Strict"
    assert flags["path"] == "Path=/"
    token = parts[0].split("=", 1)[1]
    session = await anonymous.get(
        "/api/session", headers={"Cookie": f"{SESSION_COOKIE}={token}"}
    )
    assert (await session.json())["csrf_token"] == body["csrf_token"]


@pytest.mark.parametrize(
    "body",
    [{"username": "x"}, {"username": 1, "password": "x"}, [1], "text"],
)
async def test_api_sign_in_bad_body(anonymous: TestClient, body: Any) -> None:
    response = await anonymous.post("/api/session", json=body)

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_body"


async def test_api_sign_in_needs_json(
    controller: Controller, anonymous: TestClient
) -> None:
    # A cross-site form can send only form encodings, so JSON sign-in is safe from
    # login CSRF.
    username, password = await add_user(controller, "operator")

    response = await anonymous.post(
        "/api/session", data={"username": username, "password": password}
    )

    assert response.status == 400


async def test_api_sign_in_wrong_password(
    controller: Controller, anonymous: TestClient
) -> None:
    username, _ = await add_user(controller, "operator")

    response = await anonymous.post(
        "/api/session", json={"username": username, "password": "wrong password"}
    )

    assert response.status == 401
    assert (await response.json())["error"]["code"] == "sign_in_rejected"
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("spread", ["username", "address"])
async def test_sixth_failure_429(
    controller: Controller, anonymous: TestClient, spread: str
) -> None:
    username, password = await add_user(controller, "operator")
    limit = MAX_FAILURES if spread == "username" else MAX_FAILURES_PER_ADDRESS
    for attempt in range(limit):
        # Per username: the same name every time. Per address: a new name each
        # time, from the test client's one address.
        name = username if spread == "username" else f"guess{attempt}"
        failed = await anonymous.post(
            "/api/session", json={"username": name, "password": "wrong password"}
        )
        assert failed.status == 401

    limited = await anonymous.post(
        "/api/session", json={"username": username, "password": password}
    )

    assert limited.status == 429
    assert (await limited.json())["error"]["code"] == "sign_in_limited"
    assert int(limited.headers["Retry-After"]) > 0


async def test_login_form_limited(controller: Controller, anonymous: TestClient) -> None:
    username, password = await add_user(controller, "operator")
    for _ in range(MAX_FAILURES):
        await anonymous.post("/api/session", json={"username": username,
                                                   "password": "wrong password"})
    token, cookie = await login_form(anonymous)

    response = await anonymous.post(
        "/login", data={"csrf_token": token, "username": username, "password": password},
        headers={"Cookie": cookie}, allow_redirects=False,
    )

    assert response.status == 429
    assert "Terlalu banyak percobaan gagal" in await response.text()


async def test_signed_in_login_page_redirects(controller: Controller) -> None:
    client = await client_as(controller, "agency")
    try:
        response = await client.get("/login", allow_redirects=False)
        root = await client.get("/", allow_redirects=False)
    finally:
        await client.close()

    assert response.headers["Location"] == "/portal"
    assert root.headers["Location"] == "/portal"


# --- Sessions -----------------------------------------------------------------------


async def test_sign_out_ends_session(controller: Controller) -> None:
    client = await client_as(controller, "supervisor")
    try:
        signed_out = await client.delete("/api/session")
        cookie = signed_out.headers["Set-Cookie"]
        body = await signed_out.json()
        after = await client.get("/api/session")
    finally:
        await client.close()

    assert signed_out.status == 200
    assert body == {"signed_out": True}
    assert f"{SESSION_COOKIE}=" in cookie
    assert "Max-Age=0" in cookie
    assert after.status == 401


async def test_idle_session_rejected(controller: Controller) -> None:
    client = await client_as(controller, "supervisor")
    now = controller.accounts.clock()
    controller.accounts.clock = lambda: now + SESSION_IDLE + SESSION_IDLE
    try:
        response = await client.get("/api/session")
    finally:
        await client.close()

    assert response.status == 401


@pytest.mark.parametrize("change", ["password", "disable"])
async def test_account_change_ends_session(controller: Controller, change: str) -> None:
    client = await client_as(controller, "supervisor")
    try:
        before = await client.get("/api/session")
        if change == "password":
            await controller.accounts.set_password(
                client.username, "another passphrase", actor="admin1"
            )
        else:
            await controller.accounts.set_disabled(client.username, True, actor="admin1")
        after = await client.get("/api/session")
    finally:
        await client.close()

    assert before.status == 200
    assert after.status == 401


# --- Audit --------------------------------------------------------------------------


async def test_audit_of_sign_ins_and_actions(
    controller: Controller, anonymous: TestClient
) -> None:
    username, password = await add_user(controller, "supervisor", username="spv9")
    await anonymous.post("/api/session", json={"username": "spv9", "password": "nope"})
    signed_in = await anonymous.post(
        "/api/session", json={"username": username, "password": password}
    )
    session = await signed_in.json()
    token = SimpleCookie(signed_in.headers["Set-Cookie"])[SESSION_COOKIE].value
    headers = {"Cookie": f"{SESSION_COOKIE}={token}", CSRF_HEADER: session["csrf_token"]}
    # The handler fails with 503 (no alarm board), so no action entry is written.
    failed_action = await anonymous.post("/api/alarms/1/ack", headers=headers)
    signed_out = await anonymous.delete("/api/session", headers=headers)

    entries = await controller.accounts.audit.list_entries()
    by_action = {entry.action: entry for entry in entries}
    assert failed_action.status == 503
    assert signed_out.status == 200
    assert by_action["signin.failed"].actor == "spv9"
    assert by_action["signin.failed"].detail["remote"] == "127.0.0.1"
    assert by_action["signin"].actor == "spv9"
    assert by_action["signout"].actor == "spv9"
    assert by_action["web.delete"].actor == "spv9"
    assert by_action["web.delete"].subject == "/api/session"
    assert by_action["web.delete"].detail["route"] == "/api/session"
    assert by_action["web.delete"].detail["status"] == 200
    assert "web.post" not in by_action


# --- Language -----------------------------------------------------------------------


async def test_language_switch(anonymous: TestClient) -> None:
    default = await (await anonymous.get("/login")).text()
    response = await anonymous.get("/lang/en?next=/login", allow_redirects=False)
    cookie = SimpleCookie(response.headers["Set-Cookie"])
    page = await (await anonymous.get("/login")).text()

    assert '<html lang="id">' in default
    assert "Kata sandi" in default
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert cookie["sigap_lang"].value == "en"
    assert '<html lang="en">' in page
    assert "Password" in page


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example", "/\\x"])
async def test_language_switch_no_open_redirect(
    anonymous: TestClient, target: str
) -> None:
    response = await anonymous.get(
        "/lang/id", params={"next": target}, allow_redirects=False
    )

    assert response.headers["Location"] == "/"


async def test_unknown_language_404(anonymous: TestClient) -> None:
    response = await anonymous.get("/lang/fr", allow_redirects=False)

    assert response.status == 404


# --- Host header --------------------------------------------------------------------


async def test_allowed_hosts(database: Database) -> None:
    controller = Controller()
    controller.accounts = AccountService(database)
    controller.config = SimpleNamespace(
        web=SimpleNamespace(allowed_hosts=["sigap.example.go.id"])
    )
    client = TestClient(TestServer(create_app(controller)))  # type: ignore[arg-type]
    await client.start_server()
    try:
        named = await client.get("/login", headers={"Host": "sigap.example.go.id"})
        with_port = await client.get("/login", headers={"Host": "SIGAP.example.go.id:8112"})
        other = await client.get("/login", headers={"Host": "evil.example"})
        other_code = (await other.json())["error"]["code"]
        suffix = await client.get("/login", headers={"Host": "sigap.example.go.id.evil"})
    finally:
        await client.close()

    assert named.status == 200
    assert with_port.status == 200
    assert other.status == 421
    assert other_code == "host_not_allowed"
    assert suffix.status == 421


async def test_unknown_page_is_html(anonymous: TestClient) -> None:
    page = await anonymous.get("/no-such-page")
    api = await anonymous.get("/api/no-such-route")

    assert page.status == 404
    assert page.content_type == "text/html"
    assert "Halaman ini tidak ada." in await page.text()
    assert api.status == 404
    assert (await api.json())["error"]["code"] == "not_found"


async def test_api_replies_not_cached(controller: Controller) -> None:
    client = await signed_in_client(controller, "supervisor")
    try:
        response = await client.get("/api/session")
    finally:
        await client.close()

    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
