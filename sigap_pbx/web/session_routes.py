"""Sign-in and sign-out, for the pages (/login) and for API clients (/api/session).

The session cookie is Secure, HttpOnly and SameSite=Strict. Browsers send Secure
cookies over HTTPS, and also over plain HTTP to localhost and 127.0.0.1, which is
how the server is reached when it listens on loopback. The sign-in form has its
own CSRF token in a short-lived cookie, because there is no session yet.
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from aiohttp import web

from sigap_pbx.accounts import (
    SESSION_MAX_AGE,
    AccountService,
    SignInLimited,
    SignInRejected,
)
from sigap_pbx.store.accounts import Role, UserView
from sigap_pbx.web import i18n
from sigap_pbx.web.access import (
    EVERYONE,
    PUBLIC,
    SESSION_COOKIE,
    accounts_of,
    optional_user,
    route,
    signed_in_of,
)
from sigap_pbx.web.pages import render

LOGIN_CSRF_COOKIE = "sigap_login_csrf"
MAX_FIELD_LENGTH = 1024

HOME_BY_ROLE = {
    Role.OPERATOR: "/console",
    Role.SUPERVISOR: "/wallboard",
    Role.AGENCY: "/portal",
    Role.ADMIN: "/wallboard",
}


def _accounts(request: web.Request) -> AccountService:
    accounts = accounts_of(request)
    if accounts is None:
        raise web.HTTPServiceUnavailable(reason="Accounts unavailable")
    return accounts


def _local_path(value: str | None, default: str) -> str:
    """Return `value` if it is a path on this server, else `default`.

    This stops the sign-in and language links from redirecting to another host
    ('//evil.example' and '/\\evil.example' are both read as hosts by browsers).
    """
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 for c in value)
    ):
        return default
    return value


def _set_session_cookie(response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_MAX_AGE.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def _remote(request: web.Request) -> str:
    return request.remote or "unknown"


async def login_page(request: web.Request, error: str | None = None,
                     status: int = 200) -> web.Response:
    user = optional_user(request)
    next_path = _local_path(request.query.get("next"), "")
    if user is not None and error is None:
        raise web.HTTPSeeOther(next_path or HOME_BY_ROLE[user.role])
    token = secrets.token_urlsafe(24)
    response = render(
        request, "login.html", status=status, error=error, login_csrf=token,
        next_path=next_path,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login", secure=True,
        httponly=True, samesite="Strict",
    )
    return response


async def login_get(request: web.Request) -> web.Response:
    return await login_page(request)


async def login_post(request: web.Request) -> web.Response:
    form = await request.post()
    lang = i18n.language(request.cookies.get(i18n.LANG_COOKIE))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get("csrf_token")
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(
        sent.encode(), expected.encode()
    ):
        return await login_page(request, i18n.translate("login.expired", lang), 403)
    username = form.get("username")
    password = form.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return await login_page(request, i18n.translate("login.failed", lang), 400)
    try:
        signed_in = await _accounts(request).sign_in(
            username[:MAX_FIELD_LENGTH], password[:MAX_FIELD_LENGTH], _remote(request)
        )
    except SignInLimited as exc:
        text = i18n.translate("login.limited", lang).format(seconds=exc.retry_after)
        return await login_page(request, text, 429)
    except SignInRejected:
        return await login_page(request, i18n.translate("login.failed", lang), 401)
    next_form = form.get("next")
    target = _local_path(next_form if isinstance(next_form, str) else None,
                         HOME_BY_ROLE[signed_in.user.role])
    response = web.HTTPSeeOther(target)
    assert signed_in.token is not None
    _set_session_cookie(response, signed_in.token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise response


async def logout_post(request: web.Request) -> web.Response:
    signed_in = signed_in_of(request)
    if signed_in is not None:
        await _accounts(request).sign_out(signed_in)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def _session_body(user: UserView, csrf_token: str) -> dict[str, Any]:
    return {"user": user.to_dict(), "csrf_token": csrf_token}


async def session_get(request: web.Request) -> web.Response:
    signed_in = signed_in_of(request)
    assert signed_in is not None
    return web.json_response(_session_body(signed_in.user, signed_in.session.csrf_token))


def _bad_body() -> web.Response:
    return web.json_response(
        {"error": {
            "code": "invalid_body",
            "message": 'the body must be a JSON object such as '
                       '{"username": "spv1", "password": "..."}',
        }},
        status=400,
    )


async def session_post(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return _bad_body()
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _bad_body()
    if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
            or not isinstance(body.get("password"), str):
        return _bad_body()
    try:
        signed_in = await _accounts(request).sign_in(
            body["username"][:MAX_FIELD_LENGTH], body["password"][:MAX_FIELD_LENGTH],
            _remote(request),
        )
    except SignInLimited as exc:
        return web.json_response(
            {"error": {"code": "sign_in_limited", "message": str(exc)}},
            status=429, headers={"Retry-After": str(exc.retry_after)},
        )
    except SignInRejected as exc:
        return web.json_response(
            {"error": {"code": "sign_in_rejected", "message": str(exc)}}, status=401
        )
    response = web.json_response(
        _session_body(signed_in.user, signed_in.session.csrf_token), status=201
    )
    assert signed_in.token is not None
    _set_session_cookie(response, signed_in.token)
    return response


async def session_delete(request: web.Request) -> web.Response:
    signed_in = signed_in_of(request)
    assert signed_in is not None
    await _accounts(request).sign_out(signed_in)
    response = web.json_response({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def home(request: web.Request) -> web.Response:
    user = optional_user(request)
    raise web.HTTPSeeOther(HOME_BY_ROLE[user.role] if user else "/login")


async def switch_language(request: web.Request) -> web.Response:
    lang = request.match_info["lang"]
    if lang not in i18n.LANGUAGES:
        raise web.HTTPNotFound()
    response = web.HTTPSeeOther(_local_path(request.query.get("next"), "/"))
    response.set_cookie(
        i18n.LANG_COOKIE, lang, max_age=365 * 86400, path="/", samesite="Lax"
    )
    raise response


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/", home, PUBLIC)
    route(app, "GET", "/login", login_get, PUBLIC)
    route(app, "POST", "/login", login_post, PUBLIC)
    route(app, "POST", "/logout", logout_post, EVERYONE)
    route(app, "GET", "/lang/{lang}", switch_language, PUBLIC)
    route(app, "GET", "/api/session", session_get, EVERYONE)
    route(app, "POST", "/api/session", session_post, PUBLIC)
    route(app, "DELETE", "/api/session", session_delete, EVERYONE)
