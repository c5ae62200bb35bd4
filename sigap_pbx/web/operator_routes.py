"""Operator state and actions: log in, log out, pause with a reason, unpause."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sigap_pbx.members.actions import PAUSE_REASONS, OperatorActionError
from sigap_pbx.store.accounts import Role
from sigap_pbx.web.access import CALL_STAFF, SUPERVISORS, claimed_actor, route, user_of
from sigap_pbx.web.app import CONTROLLER, ApiError


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return body


def actor_of(request: web.Request, body: dict[str, Any]) -> str:
    return claimed_actor(request, body.get("actor"))


def _check_own_endpoint(request: web.Request, endpoint: str) -> None:
    """Let an operator act only on their own phone; supervisors act on any."""
    user = user_of(request)
    if user.role is Role.OPERATOR and user.endpoint != endpoint:
        raise ApiError(
            403, "forbidden",
            f"operator {user.username!r} may act only on their own endpoint "
            f"{user.endpoint!r}, not {endpoint!r}; ask a supervisor",
        )


async def list_operators(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    live = controller.live
    on_duty = controller.membership.desired_slots() if controller.membership else set()
    operators = []
    for operator in controller.config.sip.operators:
        interface = f"PJSIP/{operator.endpoint}"
        queues = []
        for queue in sorted(live.queues.values(), key=lambda item: item.name):
            member = queue.members.get(interface)
            if member is None:
                continue
            queues.append(
                {
                    "queue": queue.name,
                    "status": member.status,
                    "paused": member.paused,
                    "paused_reason": member.paused_reason,
                    "in_call": member.in_call,
                    "penalty": getattr(member, "penalty", None),
                }
            )
        operators.append(
            {
                "endpoint": operator.endpoint,
                "name": operator.name,
                "rostered_queues": sorted(q for q, e in on_duty if e == operator.endpoint),
                "queues": queues,
            }
        )
    return web.json_response(
        {"live_view_synced": live.synced, "operators": operators,
         "pause_reasons": PAUSE_REASONS}
    )


async def operator_action(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    endpoint = request.match_info["endpoint"]
    action = request.match_info["action"]
    _check_own_endpoint(request, endpoint)
    body = await _body(request)
    actor = actor_of(request, body)
    actions = controller.operator_actions
    try:
        if action == "login":
            await actions.login(endpoint, actor)
        elif action == "logout":
            await actions.logout(endpoint, actor)
        elif action == "pause":
            reason = body.get("reason")
            if reason is None:
                raise ApiError(
                    400, "missing_reason",
                    f"body field reason is missing, use one of {', '.join(PAUSE_REASONS)}",
                )
            if not isinstance(reason, str):
                raise ApiError(
                    400, "invalid_reason",
                    f"reason {reason!r} is not text, use one of {', '.join(PAUSE_REASONS)}",
                )
            await actions.pause(endpoint, reason, actor)
        elif action == "unpause":
            await actions.unpause(endpoint, actor)
        else:
            raise ApiError(
                404, "unknown_action",
                f"action {action!r} not found, use login, logout, pause or unpause",
            )
    except OperatorActionError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    return web.json_response({"endpoint": endpoint, "action": action, "actor": actor,
                              "result": "ok"})


async def membership(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    if controller.membership is None:
        raise ApiError(503, "not_started", "the membership manager has not started yet")
    return web.json_response(controller.membership.snapshot())


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/operators", list_operators, CALL_STAFF)
    route(app, "POST", "/api/operators/{endpoint}/{action}", operator_action, CALL_STAFF)
    route(app, "GET", "/api/membership", membership, SUPERVISORS)
