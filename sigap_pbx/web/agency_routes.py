"""The agency directory's JSON API: list, read, create or replace, and deactivate.

An invalid agency is rejected with code `invalid_agency`, a message and a
`problems` list, each problem starting with the path of the bad field
(`agency.lines[0].target`). Webhook secrets are accepted but never returned.

The actor recorded in the audit log is the signed-in user. A body "actor" or an
X-Sigap-Actor header is accepted only when it names that user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from sigap_pbx.agencies.directory import AgencyDocumentError, directory_from_dict
from sigap_pbx.store.agencies import AgencyConflict, AgencyNotFound
from sigap_pbx.store.errors import InvalidFieldValue
from sigap_pbx.web.access import ADMIN, CALL_STAFF, route
from sigap_pbx.web.app import CONTROLLER, ApiError
from sigap_pbx.web.roster_routes import _actor, _object_body

if TYPE_CHECKING:
    from sigap_pbx.agencies.directory import AgencyService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InvalidAgency(ApiError):
    """An `invalid_agency` error that also lists every problem found."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(400, "invalid_agency", message)
        self.problems = problems

    def response(self) -> web.Response:
        body = {
            "error": {"code": self.code, "message": self.message, "problems": self.problems}
        }
        return web.json_response(body, status=self.status)


def _translating(handler: Handler) -> Handler:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AgencyDocumentError as error:
            raise InvalidAgency(str(error), error.problems) from None
        except AgencyNotFound as error:
            raise ApiError(404, "agency_not_found", str(error)) from None
        except AgencyConflict as error:
            raise ApiError(409, "agency_conflict", str(error)) from None
        except InvalidFieldValue as error:
            raise ApiError(400, "invalid_request", str(error)) from None

    return wrapper


def _agencies(request: web.Request) -> AgencyService:
    agencies = getattr(request.app[CONTROLLER], "agencies", None)
    if agencies is None:
        raise ApiError(
            503,
            "agencies_unavailable",
            "the agency directory has not started yet, retry in a few seconds",
        )
    return agencies  # type: ignore[no-any-return]


def _active_filter(request: web.Request) -> bool | None:
    raw = request.query.get("active")
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise ApiError(400, "invalid_parameter", f"active={raw!r} must be true or false")
    return raw == "true"


@_translating
async def list_agencies(request: web.Request) -> web.Response:
    agencies = await _agencies(request).list_agencies(active=_active_filter(request))
    return web.json_response({"agencies": [agency.to_dict() for agency in agencies]})


@_translating
async def get_agency(request: web.Request) -> web.Response:
    service = _agencies(request)
    agency = await service.get(request.match_info["code"])
    body = agency.to_dict()
    body["staffed_lines"] = [line.to_dict() for line in service.lines_for(agency)]
    return web.json_response(body)


@_translating
async def put_agency(request: web.Request) -> web.Response:
    code = request.match_info["code"]
    body = await _object_body(request, "an agency")
    actor = _actor(request, body.pop("actor", None))
    body_code = body.setdefault("code", code)
    if body_code != code:
        raise InvalidAgency(
            f"agency.code {body_code!r} differs from {code!r} in the path",
            [
                f"agency.code: {body_code!r} differs from {code!r} in the path, send"
                " the same code or leave it out of the body"
            ],
        )
    service = _agencies(request)
    outcome = await service.upsert(body, actor)
    agency = await service.get(code)
    status = 201 if outcome.action == "created" else 200
    return web.json_response(
        {"outcome": outcome.to_dict(), "agency": agency.to_dict()}, status=status
    )


@_translating
async def put_agencies(request: web.Request) -> web.Response:
    """Create or replace every agency of a directory document in one transaction."""
    body = await _object_body(request, '{"agencies": [...], "actor": ...}')
    actor = _actor(request, body.pop("actor", None))
    specs = directory_from_dict(body)
    outcomes = await _agencies(request).save_all(specs, actor)
    return web.json_response({"outcomes": [outcome.to_dict() for outcome in outcomes]})


@_translating
async def delete_agency(request: web.Request) -> web.Response:
    """Deactivate an agency. Its record stays, because reports refer to it."""
    agency, changed = await _agencies(request).deactivate(
        request.match_info["code"], _actor(request)
    )
    return web.json_response({"agency": agency.to_dict(), "changed": changed})


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/agencies", list_agencies, CALL_STAFF)
    route(app, "PUT", "/api/agencies", put_agencies, ADMIN)
    route(app, "GET", "/api/agencies/{code}", get_agency, CALL_STAFF)
    route(app, "PUT", "/api/agencies/{code}", put_agency, ADMIN)
    route(app, "DELETE", "/api/agencies/{code}", delete_agency, ADMIN)
