"""The roster's JSON API: the roster in force, its versions, duties, edits and audit.

Each edit saves a whole new roster version through `RosterService`, which checks
the roster, reports shifts below their minimum and writes the audit entry. An
invalid roster is rejected with code `invalid_roster`, a message and a `problems`
list, each problem starting with the path of the bad field (`crews[2].members[0]`).

The actor recorded in the audit log is the signed-in user. A body "actor" or an
X-Sigap-Actor header is accepted only when it names that user.
The edit routes take the operator or exception object itself as the body, and
remove an "actor" key from it before reading it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sigap_pbx.roster.io import RosterDocumentError
from sigap_pbx.roster.model import RosterError
from sigap_pbx.roster.service import (
    ExceptionNotFound,
    OperatorInCrew,
    OperatorNotFound,
    RosterNotFound,
    date_out_of_range,
)
from sigap_pbx.store.errors import InvalidFieldValue
from sigap_pbx.store.roster import RosterVersionConflict
from sigap_pbx.web.access import CALL_STAFF, SUPERVISORS, claimed_actor, route
from sigap_pbx.web.app import CONTROLLER, MAX_LIMIT, ApiError, _int_param, _time_param

if TYPE_CHECKING:
    from sigap_pbx.roster.service import RosterService

ACTOR_HEADER = "X-Sigap-Actor"
DEFAULT_ACTOR = "api"
MAX_ACTOR_LENGTH = 100
# roster_versions.id is an INTEGER column, 32 bits on PostgreSQL.
MAX_VERSION_ID = 2**31 - 1
PUT_ROSTER_KEYS = ("roster", "actor", "comment")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InvalidRoster(ApiError):
    """An `invalid_roster` error that also lists every problem found."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(400, "invalid_roster", message)
        self.problems = problems

    def response(self) -> web.Response:
        body = {
            "error": {
                "code": self.code,
                "message": self.message,
                "problems": self.problems,
            }
        }
        return web.json_response(body, status=self.status)


def _api_error(error: Exception) -> ApiError:
    """Turn a roster or store error into the API error with its stable code."""
    if isinstance(error, RosterDocumentError):
        return InvalidRoster(str(error), error.problems)
    if isinstance(error, RosterNotFound):
        return ApiError(404, "roster_not_found", str(error))
    if isinstance(error, OperatorNotFound):
        return ApiError(404, "operator_not_found", str(error))
    if isinstance(error, OperatorInCrew):
        return ApiError(409, "operator_in_crew", str(error))
    if isinstance(error, ExceptionNotFound):
        return ApiError(404, "exception_not_found", str(error))
    if isinstance(error, RosterVersionConflict):
        return ApiError(409, "roster_conflict", str(error))
    if isinstance(error, InvalidFieldValue):
        return ApiError(400, "invalid_request", str(error))
    return InvalidRoster(str(error), [str(error)])


def _translating(handler: Handler) -> Handler:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (RosterError, RosterVersionConflict, InvalidFieldValue) as error:
            raise _api_error(error) from None

    return wrapper


def _rosters(request: web.Request) -> RosterService:
    rosters = getattr(request.app[CONTROLLER], "rosters", None)
    if rosters is None:
        raise ApiError(
            503,
            "roster_unavailable",
            "the roster service has not started yet, retry in a few seconds",
        )
    return rosters  # type: ignore[no-any-return]


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(
            400,
            "invalid_json",
            f"the request body is not valid JSON ({error}), send JSON",
        ) from None


async def _object_body(request: web.Request, expected: str) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "invalid_request",
            f"the request body must be a JSON object ({expected}),"
            f" not {type(body).__name__}",
        )
    return body


def _actor(request: web.Request, from_body: Any = None) -> str:
    return claimed_actor(request, from_body)


def _date_param(request: web.Request, name: str, default: date) -> date:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            value = date.fromisoformat(raw)
    except ValueError:
        pass
    if value is None:
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name}={raw!r} must be a date YYYY-MM-DD, e.g. 2026-12-04",
        )
    problem = date_out_of_range(value)
    if problem is not None:
        raise ApiError(400, "invalid_parameter", f"{name}={problem}")
    return value


async def _edit_body(request: web.Request, expected: str) -> tuple[dict[str, Any], str]:
    """Read an edit's body: the object to save, and the actor removed from it."""
    body = await _object_body(request, expected)
    actor = _actor(request, body.pop("actor", None))
    return body, actor


# --- Roster and versions -----------------------------------------------------


@_translating
async def get_roster(request: web.Request) -> web.Response:
    version = await _rosters(request).current_version()
    if version is None:
        raise RosterNotFound()
    return web.json_response(
        {"version": version.to_dict(content=False), "roster": version.content}
    )


@_translating
async def put_roster(request: web.Request) -> web.Response:
    body = await _object_body(
        request, '{"roster": {...}, "actor": ..., "comment": ...}'
    )
    unknown = sorted(set(body) - set(PUT_ROSTER_KEYS))
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            f"unknown keys {unknown} in the request body, send only"
            f" {', '.join(PUT_ROSTER_KEYS)}",
        )
    if "roster" not in body:
        raise ApiError(
            400, "invalid_request", "'roster' is missing from the request body, add it"
        )
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise ApiError(400, "invalid_request", f"comment {comment!r} must be a string")
    result = await _rosters(request).save(
        body["roster"], _actor(request, body.get("actor")), comment
    )
    return web.json_response(result.to_dict())


@_translating
async def list_versions(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    versions = await _rosters(request).versions(limit)
    return web.json_response({"versions": [v.to_dict(content=False) for v in versions]})


@_translating
async def get_version(request: web.Request) -> web.Response:
    raw = request.match_info["version_id"]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(
            400, "invalid_parameter", f"version id {raw!r} must be a whole number"
        )
    version_id = int(raw)
    version = (
        await _rosters(request).version(version_id)
        if version_id <= MAX_VERSION_ID
        else None
    )
    if version is None:
        raise ApiError(
            404, "roster_version_not_found", f"no roster version with id {raw}"
        )
    return web.json_response(
        {"version": version.to_dict(content=False), "roster": version.content}
    )


# --- Duty --------------------------------------------------------------------


@_translating
async def get_duty(request: web.Request) -> web.Response:
    rosters = _rosters(request)
    shift_date = _date_param(request, "date", rosters.today())
    version_id = await rosters.current_version_id()
    shifts = []
    for shift in await rosters.shifts(shift_date, 1):
        item = shift.to_dict(rosters.zone)
        overrides = await rosters.duty_overrides(shift.shift_date, shift.shift.name)
        item["overrides"] = [override.to_dict() for override in overrides]
        shifts.append(item)
    return web.json_response(
        {
            "date": shift_date.isoformat(),
            "timezone": rosters.zone.key,
            "version_id": version_id,
            "shifts": shifts,
        }
    )


# --- Edits -------------------------------------------------------------------


@_translating
async def put_operator(request: web.Request) -> web.Response:
    endpoint = request.match_info["endpoint"]
    operator, actor = await _edit_body(request, "an operator")
    body_endpoint = operator.setdefault("endpoint", endpoint)
    if body_endpoint != endpoint:
        raise ApiError(
            400,
            "invalid_roster",
            f"operator.endpoint {body_endpoint!r} differs from {endpoint!r}"
            " in the path,"
            " send the same endpoint or leave it out of the body",
        )
    result = await _rosters(request).upsert_operator(operator, actor)
    return web.json_response(result.to_dict())


@_translating
async def delete_operator(request: web.Request) -> web.Response:
    endpoint = request.match_info["endpoint"]
    result = await _rosters(request).remove_operator(endpoint, _actor(request))
    return web.json_response(result.to_dict())


@_translating
async def post_exception(request: web.Request) -> web.Response:
    change, actor = await _edit_body(request, "a roster exception")
    result = await _rosters(request).add_exception(change, actor)
    return web.json_response(result.to_dict(), status=201)


@_translating
async def delete_exception(request: web.Request) -> web.Response:
    change, actor = await _edit_body(request, "the roster exception to remove")
    result = await _rosters(request).remove_exception(change, actor)
    return web.json_response(result.to_dict())


# --- Audit -------------------------------------------------------------------


@_translating
async def get_audit(request: web.Request) -> web.Response:
    entries = await _rosters(request).audit_entries(
        subject=request.query.get("subject"),
        action_prefix=request.query.get("action"),
        since=_time_param(request, "since"),
        until=_time_param(request, "until"),
        limit=_int_param(request, "limit", 100, 1, MAX_LIMIT),
    )
    return web.json_response({"entries": [entry.to_dict() for entry in entries]})


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/roster", get_roster, CALL_STAFF)
    route(app, "PUT", "/api/roster", put_roster, SUPERVISORS)
    route(app, "GET", "/api/roster/versions", list_versions, SUPERVISORS)
    route(app, "GET", "/api/roster/versions/{version_id}", get_version, SUPERVISORS)
    route(app, "GET", "/api/roster/duty", get_duty, CALL_STAFF)
    route(app, "PUT", "/api/roster/operators/{endpoint}", put_operator, SUPERVISORS)
    route(app, "DELETE", "/api/roster/operators/{endpoint}", delete_operator, SUPERVISORS)
    route(app, "POST", "/api/roster/exceptions", post_exception, SUPERVISORS)
    route(app, "DELETE", "/api/roster/exceptions", delete_exception, SUPERVISORS)
    route(app, "GET", "/api/audit", get_audit, SUPERVISORS)
