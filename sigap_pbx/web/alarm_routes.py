"""Alarm routes of the JSON API: list alarms and acknowledge one.

The acknowledging actor is the signed-in user. A body `actor` or X-Sigap-Actor
header is accepted only when it names that user.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sigap_pbx.store.alarms import AlarmNotFound
from sigap_pbx.web.access import SUPERVISORS, claimed_actor, route
from sigap_pbx.web.app import CONTROLLER, MAX_LIMIT, ApiError, _int_param, _time_param

if TYPE_CHECKING:
    from sigap_pbx.alarms import AlarmBoard

DEFAULT_ACTOR = "api"
ACTOR_HEADER = "X-Sigap-Actor"
ACK_BODY_KEYS = ("actor",)
MAX_ACTOR_LENGTH = 64
# alarms.id is an INTEGER column, 32 bits on PostgreSQL.
MAX_ALARM_ID = 2**31 - 1


def _board(request: web.Request) -> AlarmBoard:
    board: AlarmBoard | None = getattr(request.app[CONTROLLER], "alarms", None)
    if board is None:
        raise ApiError(503, "alarms_unavailable", "the alarm board has not started yet")
    return board


def _active_param(request: web.Request) -> bool:
    raw = request.query.get("active", "0")
    if raw not in ("0", "1"):
        raise ApiError(400, "invalid_parameter", f"active={raw!r} must be 0 or 1")
    return raw == "1"


async def list_alarms(request: web.Request) -> web.Response:
    """List alarms, newest first: `active=1` for the active ones only.

    Active alarms come from memory, so one raised a moment ago is listed before
    its row is written, with `id` null until then. History comes from the store.
    """
    board = _board(request)
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    since = _time_param(request, "since")
    if _active_param(request):
        alarms = board.snapshot()
        alarms.sort(key=lambda alarm: alarm["raised_at"], reverse=True)
        return web.json_response({"alarms": alarms[:limit]})
    if board.store is None:
        return web.json_response({"alarms": board.history(limit)})
    views = await board.store.list_alarms(since=since, limit=limit)
    return web.json_response({"alarms": [view.to_dict() for view in views]})


async def _actor(request: web.Request) -> str:
    body: Any = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(
                400, "invalid_body", 'the body must be a JSON object such as {"actor": "spv1"}'
            ) from None
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_body", 'the body must be a JSON object such as {"actor": "spv1"}'
        )
    unknown = sorted(str(key) for key in body if key not in ACK_BODY_KEYS)
    if unknown:
        raise ApiError(
            400,
            "invalid_body",
            f"unknown keys {unknown} in the body, send only {', '.join(ACK_BODY_KEYS)}"
            ' such as {"actor": "spv1"}, or no body',
        )
    return claimed_actor(request, body.get("actor"))


async def acknowledge_alarm(request: web.Request) -> web.Response:
    board = _board(request)
    raw = request.match_info["alarm_id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_ALARM_ID:
        raise ApiError(400, "invalid_parameter", f"alarm id {raw!r} must be a whole number")
    actor = await _actor(request)
    try:
        alarm = await board.acknowledge(int(raw), actor)
    except AlarmNotFound:
        raise ApiError(404, "alarm_not_found", f"no alarm with id {raw}") from None
    return web.json_response(alarm)


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/alarms", list_alarms, SUPERVISORS)
    route(app, "POST", "/api/alarms/{alarm_id}/ack", acknowledge_alarm, SUPERVISORS)
