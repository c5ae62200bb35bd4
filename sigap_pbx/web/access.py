"""Who may use which route: sign-in sessions, roles, CSRF and the action audit.

Every route is added with `route()`, which records the roles allowed on it. The
`authorize` middleware rejects a route with no rule, so a route added without one
is closed rather than open. A request with a method other than GET, HEAD or OPTIONS
must carry the session's CSRF token in the X-CSRF-Token header or in a
`csrf_token` form field, and each such request that succeeds is written to the
audit log with the user's name.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from aiohttp import web

from sigap_pbx.store.accounts import Role, UserView

if TYPE_CHECKING:
    from sigap_pbx.accounts import AccountService, SignedIn

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "sigap_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Role sets used by the route modules.
EVERYONE = frozenset(Role)
ADMIN = frozenset({Role.ADMIN})
SUPERVISORS = frozenset({Role.SUPERVISOR, Role.ADMIN})
CALL_STAFF = frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.ADMIN})
AGENCY_STAFF = frozenset({Role.AGENCY, Role.SUPERVISOR, Role.ADMIN})
# A public route needs no session: the sign-in page, static files, health.
PUBLIC: frozenset[Role] = frozenset()

ROUTE_ROLES = web.AppKey("route_roles", dict)
USER_KEY = web.RequestKey("sigap_user", UserView)
SIGNED_IN_KEY: web.RequestKey[SignedIn] = web.RequestKey("sigap_signed_in")


def route(
    app: web.Application,
    method: str,
    path: str,
    handler: Handler,
    roles: Iterable[Role],
) -> None:
    """Add a route that only users with one of `roles` may use (PUBLIC: anyone)."""
    roles = frozenset(roles)
    app.router.add_route(method, path, handler)
    rules: dict[tuple[str, str], frozenset[Role]] = app.setdefault(ROUTE_ROLES, {})
    rules[(method, path)] = roles
    if method == "GET":
        # aiohttp also serves HEAD on every GET route.
        rules[("HEAD", path)] = roles


def route_roles(app: web.Application) -> dict[tuple[str, str], frozenset[Role]]:
    return app.get(ROUTE_ROLES, {})


def user_of(request: web.Request) -> UserView:
    """Return the signed-in user of a request that passed `authorize`."""
    return request[USER_KEY]


def optional_user(request: web.Request) -> UserView | None:
    return request.get(USER_KEY)


def signed_in_of(request: web.Request) -> SignedIn | None:
    return request.get(SIGNED_IN_KEY)


# Paths under /api/ that browsers open as pages, so that a request without a session
# is sent to the sign-in page rather than given a JSON 401.
PAGES_UNDER_API = frozenset({"/api/docs"})


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") and request.path not in PAGES_UNDER_API


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _rule_for(request: web.Request) -> frozenset[Role] | None:
    info = request.match_info
    if info.http_exception is not None:
        return PUBLIC  # 404 and 405 are rendered by errors_as_json
    resource = info.route.resource
    if resource is None:
        return None
    canonical = resource.canonical
    rules = route_roles(request.app)
    return rules.get((request.method, canonical), rules.get(("*", canonical)))


async def _csrf_matches(request: web.Request, expected: str) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def accounts_of(request: web.Request) -> AccountService | None:
    from sigap_pbx.web.app import CONTROLLER

    return getattr(request.app[CONTROLLER], "accounts", None)


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    rule = _rule_for(request)
    if rule is None:
        log.error("web_route_without_rule", method=request.method, path=request.path)
        return _error(403, "forbidden", f"{request.method} {request.path} has no access rule")

    accounts = accounts_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    signed_in = await accounts.resolve(token) if accounts and token else None
    if signed_in is not None:
        request[USER_KEY] = signed_in.user
        request[SIGNED_IN_KEY] = signed_in

    if rule is PUBLIC or not rule:
        return await handler(request)
    if signed_in is None:
        if is_api(request) or request.method not in SAFE_METHODS:
            return _error(
                401, "not_signed_in",
                "this route needs a signed-in user: sign in with POST /api/session "
                "or at /login",
            )
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    user = signed_in.user
    if user.role not in rule:
        if not is_api(request) and request.method in SAFE_METHODS:
            return _error_page(request, 403, "error.forbidden")
        allowed = ", ".join(sorted(role.value for role in rule))
        return _error(
            403, "forbidden",
            f"user {user.username!r} has role {user.role.value}; "
            f"{request.method} {request.path} is for {allowed}",
        )
    if request.method not in SAFE_METHODS and not await _csrf_matches(
        request, signed_in.session.csrf_token
    ):
        if not is_api(request):
            # A form from a page that was open across a sign-out and sign-in.
            return _error_page(request, 403, "login.expired")
        return _error(
            403, "csrf_rejected",
            f"the request has no valid CSRF token: send the token from "
            f"GET /api/session in the {CSRF_HEADER} header",
        )
    response = await handler(request)
    if request.method not in SAFE_METHODS and response.status < 400 and accounts:
        await _audit_action(accounts, user, request, response.status)
    return response


def _error_page(request: web.Request, status: int, message_key: str) -> web.Response:
    # pages imports this module, so it is imported here rather than at the top.
    from sigap_pbx.web.pages import error_page

    return error_page(request, status, message_key)


async def _audit_action(
    accounts: AccountService, user: UserView, request: web.Request, status: int
) -> None:
    resource = request.match_info.route.resource
    try:
        await accounts.record_action(
            user,
            f"web.{request.method.lower()}",
            request.path[:200],
            {
                "route": resource.canonical if resource else request.path,
                "status": status,
                "remote": request.remote or "",
            },
        )
    except Exception:
        # The action itself is done; a failed audit write must not turn it into an
        # error the user would retry.
        log.exception("web_action_audit_failed", user=user.username, path=request.path)


def actor_of(request: web.Request) -> str:
    """Return the name written to the audit log for a request's action."""
    user = optional_user(request)
    return user.username if user is not None else "anonymous"


def claimed_actor(request: web.Request, claimed: Any = None) -> str:
    """Return the signed-in user's name for the audit log.

    A request may still name its actor (the body's `actor` or the X-Sigap-Actor
    header, from before accounts existed), but only as the signed-in user's name.
    """
    from sigap_pbx.web.app import ApiError

    name = actor_of(request)
    if claimed is None:
        claimed = request.headers.get("X-Sigap-Actor")
    if claimed is not None and claimed != name:
        raise ApiError(
            400,
            "actor_mismatch",
            f"actor {claimed!r} is not the signed-in user {name!r}: the audit log "
            "names the signed-in user, so drop the actor field or sign in as that user",
        )
    return name
