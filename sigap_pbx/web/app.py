"""The controller's web server: the pages and the JSON API behind them.

Every route needs a signed-in user with a role allowed on it (see `access`).
Requests must name a loopback host or one of `[web] allowed_hosts` in their Host
header (`reject_foreign_host`), because a web page in a browser could otherwise
reach the server through DNS rebinding. Errors are JSON objects with a stable
`code`, a message naming the bad value, and the fix.
"""

from __future__ import annotations

import importlib
import ipaddress
import itertools
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from sigap_pbx.agencies.reports import CALL_TYPES, CATEGORIES
from sigap_pbx.store import CallOutcome
from sigap_pbx.web.access import CALL_STAFF, PUBLIC, authorize, route
from sigap_pbx.wire.dialstring import validate_endpoint
from sigap_pbx.wire.errors import DialStringError

if TYPE_CHECKING:
    from sigap_pbx.service import Controller

log = structlog.get_logger(__name__)

CONTROLLER = web.AppKey("controller", object)
# Counter of requests rejected for their Host header. A rejection is logged the first
# time and then once per HOST_REJECTION_LOG_EVERY, since a page may retry in a loop.
HOST_REJECTIONS = web.AppKey("host_rejections", itertools.count)
HOST_REJECTION_LOG_EVERY = 100
MAX_LIMIT = 500
# calls.id is an INTEGER column, which PostgreSQL stores in 32 bits; a larger id
# cannot exist and would overflow the query parameter.
MAX_CALL_ID = 2**31 - 1
# A Host header value: a name or IPv4 address, or an IPv6 address in brackets, then
# an optional port.
_HOST_HEADER = re.compile(
    r"(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::[0-9]{1,5})?"
)


class ApiError(Exception):
    """An API error, rendered by `errors_as_json` as JSON with a stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.json_response(
            {"error": {"code": self.code, "message": self.message}}, status=self.status
        )


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # isdigit() alone accepts digits such as '²' that int() rejects.
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(
            400, "invalid_parameter", f"{name}={raw!r} must be a whole number from {low} to {high}"
        )
    return int(raw)


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name}={raw!r} must be an ISO 8601 time with an offset, "
            "e.g. 2026-12-04T07:00:00+07:00",
        )
    return value


def _choice_param(
    request: web.Request, name: str, allowed: Sequence[str], *, empty_is_absent: bool
) -> str | None:
    raw = request.query.get(name)
    if raw == "" and empty_is_absent:
        return None
    if raw is not None and raw not in allowed:
        raise ApiError(
            400, "invalid_parameter", f"{name}={raw!r} must be one of {', '.join(allowed)}"
        )
    return raw


def _endpoint_param(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name) or None
    if raw is None:
        return None
    try:
        return validate_endpoint(raw, field=name)
    except DialStringError as error:
        raise ApiError(400, "invalid_parameter", str(error)) from None


def _filters(request: web.Request) -> dict[str, Any]:
    """Return the call filters of a /api/calls or /api/calls.csv query.

    Empty `number`, `operator`, `category` and `call_type` values count as absent,
    so a search form may send its empty fields.
    """
    outcomes = [o.value for o in CallOutcome]
    return {
        "since": _time_param(request, "since"),
        "until": _time_param(request, "until"),
        "outcome": _choice_param(request, "outcome", outcomes, empty_is_absent=False),
        "number": request.query.get("number") or None,
        "operator": _endpoint_param(request, "operator"),
        "category": _choice_param(request, "category", CATEGORIES, empty_is_absent=True),
        "call_type": _choice_param(request, "call_type", CALL_TYPES, empty_is_absent=True),
    }


async def list_calls(request: web.Request) -> web.Response:
    """List calls newest first, each with the incident reports linked to it."""
    controller: Controller = request.app[CONTROLLER]  # type: ignore[assignment]
    assert controller.store is not None
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 10_000_000)
    filters = _filters(request)
    calls = await controller.store.list_calls(limit=limit, offset=offset, **filters)
    total = await controller.store.count_calls(**filters)
    reports = await controller.store.linked_reports(call.uniqueid for call in calls)
    return web.json_response(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "calls": [
                {
                    **call.to_dict(),
                    "answering_endpoint": call.answering_endpoint,
                    "reports": reports.get(call.uniqueid, []),
                }
                for call in calls
            ],
        }
    )


async def get_call(request: web.Request) -> web.Response:
    controller: Controller = request.app[CONTROLLER]  # type: ignore[assignment]
    assert controller.store is not None
    raw = request.match_info["call_id"]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, "invalid_parameter", f"call id {raw!r} must be a whole number")
    call_id = int(raw)
    call = await controller.store.get_call(call_id) if call_id <= MAX_CALL_ID else None
    if call is None:
        raise ApiError(404, "call_not_found", f"no call with id {raw}")
    return web.json_response(call.to_dict())


async def live(request: web.Request) -> web.Response:
    controller: Controller = request.app[CONTROLLER]  # type: ignore[assignment]
    return web.json_response(controller.live.snapshot())


async def health(request: web.Request) -> web.Response:
    controller: Controller = request.app[CONTROLLER]  # type: ignore[assignment]
    body = controller.health()
    healthy = body["ami_connected"] and not body.get("database_problem")
    return web.json_response(body, status=200 if healthy else 503)


def is_loopback_host(host_header: str) -> bool:
    """Return whether a Host header names `localhost` or a loopback IP address.

    The port is ignored. `localhost` is accepted because a browser sends that name
    only for a page that was itself loaded from localhost.
    """
    match = _HOST_HEADER.fullmatch(host_header)
    if match is None:
        return False
    if match["host"] is not None and match["host"].lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(match["ipv6"] or match["host"])
    except ValueError:
        return False
    return address.is_loopback and (match["ipv6"] is None) == (address.version == 4)


def _is_allowed_name(request: web.Request, host_header: str) -> bool:
    config = getattr(request.app[CONTROLLER], "config", None)
    allowed = config.web.allowed_hosts if config is not None else []
    match = _HOST_HEADER.fullmatch(host_header)
    return bool(match and match["host"] and match["host"].lower() in allowed)


@web.middleware
async def reject_foreign_host(request: web.Request, handler: Any) -> web.StreamResponse:
    """Reject with 421 a request whose Host header does not name a loopback host.

    With DNS rebinding, an attacker's name resolves first to their server and then
    to 127.0.0.1, so the browser treats their page and this API as one origin. The
    page's requests still carry the attacker's name in Host, which this rejects.
    """
    host = request.headers.get("Host")
    if host is not None and (is_loopback_host(host) or _is_allowed_name(request, host)):
        return await handler(request)

    rejected_before = next(request.app[HOST_REJECTIONS])
    if rejected_before % HOST_REJECTION_LOG_EVERY == 0:
        log.warning(
            "web_request_host_rejected",
            host=host,
            path=request.path,
            origin=request.headers.get("Origin"),
            rejected_requests=rejected_before + 1,
        )
    host_text = "(missing)" if host is None else repr(host)
    return ApiError(
        421,
        "host_not_allowed",
        f"Host header {host_text} is not allowed: this server serves only requests "
        "addressed to localhost, a loopback address such as 127.0.0.1 or [::1], "
        "or a name in [web] allowed_hosts; open it through one of those names",
    ).response()


@web.middleware
async def errors_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPNotFound:
        if request.method == "GET" and not request.path.startswith("/api/"):
            from sigap_pbx.web.pages import error_page

            return error_page(request, 404, "error.not_found")
        return ApiError(404, "not_found", f"no route for {request.path}").response()
    except web.HTTPMethodNotAllowed:
        return ApiError(
            405, "method_not_allowed", f"{request.method} is not allowed on {request.path}"
        ).response()
    except web.HTTPRequestEntityTooLarge:
        return ApiError(
            413, "body_too_large",
            "request body is larger than the 1 MiB limit; send a smaller body",
        ).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_") if exc.reason else "http_error"
        return ApiError(exc.status, code, exc.text or exc.reason).response()
    except RecursionError:
        return ApiError(
            400, "invalid_json", "request body is nested too deeply; flatten it"
        ).response()
    except Exception:
        # Unexpected: log it with the request, and reply in the API's format.
        log.exception("api_request_failed", method=request.method, path=request.path)
        return ApiError(
            500, "internal_error",
            "the server failed on this request; the controller log has the details",
        ).response()


async def _api_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Keep API replies, which carry callers' numbers and names, out of caches."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


def create_app(controller: Controller) -> web.Application:
    # The first middleware is the outermost, so a request with a foreign Host reaches
    # no handler.
    # The role check comes after errors_as_json so that its errors, and those of
    # the handlers, are rendered the same way.
    app = web.Application(middlewares=[reject_foreign_host, errors_as_json, authorize])
    app[CONTROLLER] = controller
    app[HOST_REJECTIONS] = itertools.count()
    app.on_response_prepare.append(_api_headers)
    route(app, "GET", "/api/calls", list_calls, CALL_STAFF)
    route(app, "GET", "/api/calls/{call_id}", get_call, CALL_STAFF)
    route(app, "GET", "/api/live", live, CALL_STAFF)
    route(app, "GET", "/api/health", health, PUBLIC)
    for name in ROUTE_MODULES:
        importlib.import_module(name).add_routes(app)
    return app


# Modules with more routes. Each has add_routes(app), and its handlers reach the
# controller through request.app[CONTROLLER].
ROUTE_MODULES = (
    "sigap_pbx.web.pages",
    "sigap_pbx.web.session_routes",
    "sigap_pbx.web.feed",
    "sigap_pbx.web.roster_routes",
    "sigap_pbx.web.shift_routes",
    "sigap_pbx.web.alarm_routes",
    "sigap_pbx.web.operator_routes",
    "sigap_pbx.web.dispatch_routes",
    "sigap_pbx.web.agency_routes",
    "sigap_pbx.web.report_routes",
    "sigap_pbx.web.forward_routes",
    "sigap_pbx.web.openapi",
    "sigap_pbx.web.history_routes",
    "sigap_pbx.web.portal_routes",
    "sigap_pbx.web.wallboard_routes",
    "sigap_pbx.web.console_routes",
)
