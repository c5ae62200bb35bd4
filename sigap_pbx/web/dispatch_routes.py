"""Dispatch and outbox routes of the JSON API: the agencies' portal queue, their
acknowledgements and status updates, and the webhook delivery state.

Agency staff see and change only their own agency's dispatches. Another agency's
dispatch is reported as not found, so a response never reveals that its id exists.
The actor recorded for an acknowledgement or a status is the signed-in user.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sigap_pbx.agencies.dispatch import InvalidTransition, parse_status
from sigap_pbx.store.accounts import Role, UserView
from sigap_pbx.store.dispatch import DispatchNotFound
from sigap_pbx.store.errors import InvalidFieldValue
from sigap_pbx.store.outbox import OutboxMessageNotFound
from sigap_pbx.store.reports import OutboxStatus
from sigap_pbx.web.access import (
    AGENCY_STAFF,
    CALL_STAFF,
    SUPERVISORS,
    claimed_actor,
    route,
    user_of,
)
from sigap_pbx.web.app import CONTROLLER, MAX_LIMIT, ApiError, _int_param

if TYPE_CHECKING:
    from sigap_pbx.agencies.dispatch import DispatchService
    from sigap_pbx.agencies.webhooks import WebhookSender
    from sigap_pbx.store.dispatch import DispatchView

MAX_NOTE_LENGTH = 2000
# report_dispatches.id and outbox.id are INTEGER columns, 32 bits on PostgreSQL.
MAX_ID = 2**31 - 1
STATUS_EXAMPLE = '{"status": "en_route", "note": "unit 3"}'
# Roles that may read dispatches. Agency staff read only their own agency's.
DISPATCH_READERS = CALL_STAFF | AGENCY_STAFF


def own_agency(user: UserView) -> str | None:
    """Return the only agency whose reports and dispatches `user` may see.

    Returns None for operators, supervisors and admins, who see every agency's.
    """
    if user.role is not Role.AGENCY:
        return None
    if not user.agency_code:
        raise ApiError(
            403,
            "agency_not_set",
            f"user {user.username!r} has role agency but no agency code: ask an "
            "admin to set the user's agency",
        )
    return user.agency_code


def _dispatches(request: web.Request) -> DispatchService:
    service: DispatchService | None = getattr(request.app[CONTROLLER], "dispatches", None)
    if service is None:
        raise ApiError(503, "dispatches_unavailable", "the dispatch service has not started yet")
    return service


def _webhooks(request: web.Request) -> WebhookSender:
    sender: WebhookSender | None = getattr(request.app[CONTROLLER], "webhooks", None)
    if sender is None:
        raise ApiError(503, "webhooks_unavailable", "the webhook sender has not started yet")
    return sender


def _id_param(request: web.Request, name: str, what: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
        raise ApiError(400, "invalid_parameter", f"{what} id {raw!r} must be a whole number")
    return int(raw)


def _flag_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "0")
    if raw not in ("0", "1"):
        raise ApiError(400, "invalid_parameter", f"{name}={raw!r} must be 0 or 1")
    return raw == "1"


async def _body(request: web.Request, example: str) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", f"the body must be a JSON object such as {example}")
    return body


def _actor(request: web.Request, body: dict[str, Any]) -> str:
    return claimed_actor(request, body.get("actor"))


def _note(body: dict[str, Any]) -> str:
    note = body.get("note", "")
    if note is None:
        return ""
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH or "\x00" in note:
        raise ApiError(
            400,
            "invalid_note",
            f"note must be text of at most {MAX_NOTE_LENGTH} characters without NUL",
        )
    return note


def agency_filter(request: web.Request, listed: str) -> str | None:
    """Return the `agency` filter of a list, forced to an agency user's own agency.

    `listed` names what the list contains, for the error message.
    """
    requested = request.query.get("agency") or None
    own = own_agency(user_of(request))
    if own is None:
        return requested
    if requested is not None and requested != own:
        raise ApiError(
            403,
            "forbidden",
            f"agency={requested!r} is not your agency: agency staff see only their "
            f"own agency's {listed}, so leave the agency filter out",
        )
    return own


async def visible_dispatch(
    request: web.Request, service: DispatchService, dispatch_id: int
) -> DispatchView:
    """Return a dispatch the signed-in user may see, or raise 404.

    Another agency's dispatch gets the same 404 as an unknown id.
    """
    try:
        view = await service.get(dispatch_id)
    except DispatchNotFound as error:
        raise ApiError(404, "dispatch_not_found", str(error)) from None
    own = own_agency(user_of(request))
    if own is not None and view.agency_code != own:
        raise ApiError(
            404, "dispatch_not_found", str(DispatchNotFound(f"id {dispatch_id}"))
        )
    return view


async def list_dispatches(request: web.Request) -> web.Response:
    """List dispatches for the portal: unacknowledged first, then newest first.

    `agency=CODE` limits the list to one agency, and `all=1` includes resolved
    and false-alarm dispatches. Agency staff always get their own agency's list.
    """
    service = _dispatches(request)
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    agency = agency_filter(request, "dispatches")
    include_final = _flag_param(request, "all")
    views = await service.list_for_agency(agency, include_final=include_final, limit=limit)
    return web.json_response({"dispatches": [view.to_dict() for view in views]})


async def get_dispatch(request: web.Request) -> web.Response:
    service = _dispatches(request)
    dispatch_id = _id_param(request, "dispatch_id", "dispatch")
    view = await visible_dispatch(request, service, dispatch_id)
    events = await service.events(dispatch_id)
    return web.json_response({**view.to_dict(), "events": [e.to_dict() for e in events]})


async def acknowledge_dispatch(request: web.Request) -> web.Response:
    service = _dispatches(request)
    dispatch_id = _id_param(request, "dispatch_id", "dispatch")
    body = await _body(request, '{"note": "unit 3 on the way"}')
    actor = _actor(request, body)
    note = _note(body)
    await visible_dispatch(request, service, dispatch_id)
    try:
        view = await service.acknowledge(dispatch_id, actor, note)
    except DispatchNotFound as error:
        raise ApiError(404, "dispatch_not_found", str(error)) from None
    return web.json_response(view.to_dict())


async def update_dispatch_status(request: web.Request) -> web.Response:
    service = _dispatches(request)
    dispatch_id = _id_param(request, "dispatch_id", "dispatch")
    body = await _body(request, STATUS_EXAMPLE)
    if "status" not in body:
        raise ApiError(
            400, "invalid_body", f"the body must name the new status, such as {STATUS_EXAMPLE}"
        )
    try:
        status = parse_status(body["status"])
    except ValueError as error:
        raise ApiError(400, "invalid_status", str(error)) from None
    actor = _actor(request, body)
    note = _note(body)
    await visible_dispatch(request, service, dispatch_id)
    try:
        view = await service.update_status(dispatch_id, status, actor, note)
    except DispatchNotFound as error:
        raise ApiError(404, "dispatch_not_found", str(error)) from None
    except InvalidTransition as error:
        raise ApiError(409, "invalid_transition", str(error)) from None
    return web.json_response(view.to_dict())


async def list_outbox(request: web.Request) -> web.Response:
    """List webhook messages, newest first, without payloads or secrets.

    Filters: `status` (pending, delivered, failed), `agency=CODE`, `report=ID`.
    The response also counts the messages of each status.
    """
    sender = _webhooks(request)
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    status = request.query.get("status") or None
    allowed = [s.value for s in OutboxStatus]
    if status is not None and status not in allowed:
        raise ApiError(
            400, "invalid_parameter", f"status={status!r} must be one of {', '.join(allowed)}"
        )
    report = request.query.get("report")
    if report is not None and not (report.isascii() and report.isdigit()):
        raise ApiError(400, "invalid_parameter", f"report={report!r} must be a whole number")
    try:
        views = await sender.store.list_messages(
            status=status,
            agency_code=request.query.get("agency") or None,
            report_id=None if report is None else int(report),
            limit=limit,
        )
    except InvalidFieldValue as error:
        raise ApiError(400, "invalid_parameter", str(error)) from None
    counts = await sender.store.count_by_status()
    return web.json_response(
        {"counts": counts, "messages": [view.to_dict() for view in views]}
    )


async def retry_outbox_message(request: web.Request) -> web.Response:
    """Send a failed message again: it becomes pending with its attempts reset."""
    sender = _webhooks(request)
    message_id = _id_param(request, "message_id", "outbox message")
    try:
        view = await sender.store.requeue(message_id, sender.clock())
    except OutboxMessageNotFound as error:
        raise ApiError(404, "outbox_message_not_found", str(error)) from None
    sender.notify()
    return web.json_response(view.to_dict())


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/dispatches", list_dispatches, DISPATCH_READERS)
    route(app, "GET", "/api/dispatches/{dispatch_id}", get_dispatch, DISPATCH_READERS)
    route(app, "POST", "/api/dispatches/{dispatch_id}/ack", acknowledge_dispatch, AGENCY_STAFF)
    route(app, "POST", "/api/dispatches/{dispatch_id}/status", update_dispatch_status, AGENCY_STAFF)
    route(app, "GET", "/api/outbox", list_outbox, SUPERVISORS)
    route(app, "POST", "/api/outbox/{message_id}/retry", retry_outbox_message, SUPERVISORS)
