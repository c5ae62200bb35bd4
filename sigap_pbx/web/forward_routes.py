"""Forwarding a call to an agency: conference, blind transfer, consult."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sigap_pbx.agencies.forwarding import ForwardError
from sigap_pbx.ami.client import AmiActionFailed
from sigap_pbx.store.accounts import Role
from sigap_pbx.web.access import CALL_STAFF, route, user_of
from sigap_pbx.web.app import CONTROLLER, ApiError
from sigap_pbx.web.operator_routes import _body, _check_own_endpoint, actor_of

MODES = ("conference", "transfer", "consult")
ALLOWED_KEYS = {"agency", "mode", "report_id", "actor"}


def _forwarder(request: web.Request) -> Any:
    forwarder = getattr(request.app[CONTROLLER], "forwarder", None)
    if forwarder is None:
        raise ApiError(503, "not_started", "forwarding has not started yet; retry shortly")
    return forwarder


def _report_id(body: dict[str, Any]) -> int | None:
    value = body.get("report_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, "invalid_report_id",
                       f"report_id {value!r} is invalid, use a report's id (a positive integer)")
    return value


async def forward(request: web.Request) -> web.Response:
    forwarder = _forwarder(request)
    body = await _body(request)
    unknown = sorted(set(body) - ALLOWED_KEYS)
    if unknown:
        raise ApiError(400, "invalid_body",
                       f"unknown field {unknown[0]!r}, use {', '.join(sorted(ALLOWED_KEYS))}")
    actor = actor_of(request, body)
    mode = body.get("mode")
    if mode not in MODES:
        raise ApiError(400, "invalid_mode", f"mode {mode!r} is invalid, use one of {', '.join(MODES)}")
    agency = body.get("agency")
    if not isinstance(agency, str) or not agency:
        raise ApiError(400, "missing_agency", "body field agency is missing: give its code")
    uniqueid = request.match_info["uniqueid"]
    try:
        result = await getattr(forwarder, mode)(
            uniqueid, agency, actor=actor, report_id=_report_id(body)
        )
    except ForwardError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    except AmiActionFailed as exc:
        raise ApiError(409, "asterisk_rejected",
                       f"Asterisk rejected the forward: {exc}; the call may have ended") from None
    return web.json_response(result, status=202)


async def consults(request: web.Request) -> web.Response:
    """List the consults in progress: an operator's own, or every one for a supervisor."""
    forwarder = _forwarder(request)
    user = user_of(request)
    endpoint = user.endpoint if user.role is Role.OPERATOR else None
    if user.role is Role.OPERATOR and not endpoint:
        return web.json_response({"consults": []})
    return web.json_response(
        {"consults": [consult.to_dict() for consult in forwarder.consults_for(endpoint)]}
    )


async def consult_complete(request: web.Request) -> web.Response:
    forwarder = _forwarder(request)
    body = await _body(request)
    actor = actor_of(request, body)
    consult = forwarder.consults.get(request.match_info["uniqueid"])
    if consult is not None:
        # A consult from a channel that is no operator's phone is a supervisor's.
        _check_own_endpoint(request, consult.operator_endpoint or "")
    try:
        result = await forwarder.consult_complete(
            request.match_info["uniqueid"], request.match_info["how"], actor=actor
        )
    except ForwardError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    except AmiActionFailed as exc:
        raise ApiError(409, "asterisk_rejected", f"Asterisk rejected the action: {exc}") from None
    return web.json_response(result)


async def attempts(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    store = getattr(controller, "forward_store", None)
    if store is None:
        raise ApiError(503, "not_started", "forwarding has not started yet; retry shortly")
    rows = await store.list_attempts(call_uniqueid=request.match_info["uniqueid"])
    return web.json_response({"attempts": [row.to_dict() for row in rows]})


def add_routes(app: web.Application) -> None:
    route(app, "POST", "/api/calls/{uniqueid}/forward", forward, CALL_STAFF)
    route(app, "GET", "/api/consults", consults, CALL_STAFF)
    route(app, "POST", "/api/calls/{uniqueid}/consult/{how}", consult_complete, CALL_STAFF)
    route(app, "GET", "/api/calls/{uniqueid}/forwards", attempts, CALL_STAFF)
