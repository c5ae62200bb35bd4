"""The incident reports' JSON API: list, create, read, update, link calls, dispatch.

A report field that fails its check is rejected with code `invalid_report`, a
message and a `problems` list that names each field (`category: 'banjir' is
invalid, use one of fire, ...`). A PATCH may send `"version"`, and is then
rejected with `report_conflict` when someone else changed the report first.

Agency staff may read only the reports dispatched to their own agency, and see
only the report's fields and their own agency's dispatch. Another report is
reported as not found. The actor in the audit log is the signed-in user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sigap_pbx.agencies.reports import (
    CALL_TYPES,
    CATEGORIES,
    STATUSES,
    ReportDocumentError,
)
from sigap_pbx.store.agencies import AgencyNotFound
from sigap_pbx.store.errors import InvalidFieldValue
from sigap_pbx.store.reports import (
    DispatchRejected,
    ReportNotFound,
    ReportVersionConflict,
)
from sigap_pbx.web.access import AGENCY_STAFF, CALL_STAFF, route, user_of
from sigap_pbx.web.app import CONTROLLER, MAX_LIMIT, ApiError, _int_param, _time_param
from sigap_pbx.web.dispatch_routes import agency_filter, own_agency
from sigap_pbx.web.roster_routes import _actor, _object_body

if TYPE_CHECKING:
    from sigap_pbx.agencies.reports import ReportService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# incident_reports.id is an INTEGER column, 32 bits on PostgreSQL.
MAX_REPORT_ID = 2**31 - 1
# Roles that may read reports. Agency staff read only those sent to their agency.
REPORT_READERS = CALL_STAFF | AGENCY_STAFF


class InvalidReport(ApiError):
    """An `invalid_report` error that also lists every problem found."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(400, "invalid_report", message)
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
        except ReportDocumentError as error:
            raise InvalidReport(str(error), error.problems) from None
        except ReportNotFound as error:
            raise ApiError(404, "report_not_found", str(error)) from None
        except AgencyNotFound as error:
            raise ApiError(404, "agency_not_found", str(error)) from None
        except ReportVersionConflict as error:
            raise ApiError(409, "report_conflict", str(error)) from None
        except DispatchRejected as error:
            raise ApiError(409, "dispatch_rejected", str(error)) from None
        except InvalidFieldValue as error:
            raise ApiError(400, "invalid_request", str(error)) from None

    return wrapper


def _reports(request: web.Request) -> ReportService:
    reports = getattr(request.app[CONTROLLER], "reports", None)
    if reports is None:
        raise ApiError(
            503,
            "reports_unavailable",
            "the report service has not started yet, retry in a few seconds",
        )
    return reports  # type: ignore[no-any-return]


def _report_id(request: web.Request) -> int:
    raw = request.match_info["report_id"]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(
            400, "invalid_parameter", f"report id {raw!r} must be a whole number"
        )
    if int(raw) > MAX_REPORT_ID:
        raise ApiError(404, "report_not_found", f"report {raw} not found")
    return int(raw)


def _choice_param(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in allowed:
        raise ApiError(
            400, "invalid_parameter", f"{name}={raw!r} must be one of {', '.join(allowed)}"
        )
    return raw


def _filters(request: web.Request) -> dict[str, Any]:
    return {
        "status": _choice_param(request, "status", STATUSES),
        "category": _choice_param(request, "category", CATEGORIES),
        "call_type": _choice_param(request, "call_type", CALL_TYPES),
        "since": _time_param(request, "since"),
        "until": _time_param(request, "until"),
        "number": request.query.get("number") or None,
    }


@_translating
async def list_reports(request: web.Request) -> web.Response:
    """List reports newest first; `agency=CODE` keeps those sent to one agency."""
    service = _reports(request)
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 10_000_000)
    filters = _filters(request)
    filters["agency_code"] = agency_filter(request, "reports")
    reports = await service.list_reports(limit=limit, offset=offset, **filters)
    total = await service.count_reports(**filters)
    return web.json_response(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "reports": [report.to_dict() for report in reports],
        }
    )


@_translating
async def post_report(request: web.Request) -> web.Response:
    body = await _object_body(request, "the report's fields")
    actor = _actor(request, body.pop("actor", None))
    call_uniqueid = body.pop("call_uniqueid", None)
    report = await _reports(request).create(body, actor, call_uniqueid=call_uniqueid)
    return web.json_response(report.to_dict(), status=201)


@_translating
async def get_report(request: web.Request) -> web.Response:
    report_id = _report_id(request)
    detail = await _reports(request).get(report_id)
    own = own_agency(user_of(request))
    if own is None:
        return web.json_response(detail.to_dict())
    dispatches = [d for d in detail.dispatches if d.agency_code == own]
    if not dispatches:
        raise ReportNotFound(report_id)
    return web.json_response(
        {
            "report": detail.report.to_dict(),
            "dispatches": [dispatch.to_dict() for dispatch in dispatches],
        }
    )


@_translating
async def patch_report(request: web.Request) -> web.Response:
    report_id = _report_id(request)
    body = await _object_body(request, "the fields to change")
    actor = _actor(request, body.pop("actor", None))
    version = body.pop("version", None)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidReport(
            f"version {version!r} must be a whole number",
            [f"version: {version!r} is invalid, send the version you read, or leave it out"],
        )
    outcome = await _reports(request).update(
        report_id, body, actor, expected_version=version
    )
    return web.json_response(outcome.to_dict())


@_translating
async def post_call(request: web.Request) -> web.Response:
    report_id = _report_id(request)
    body = await _object_body(request, '{"call_uniqueid": ...}')
    actor = _actor(request, body.pop("actor", None))
    unknown = sorted(set(body) - {"call_uniqueid"})
    if unknown or "call_uniqueid" not in body:
        raise InvalidReport(
            "send only call_uniqueid (and actor)",
            [f"call_uniqueid: missing or with unknown keys {unknown}, send only"
             " call_uniqueid (and actor)"],
        )
    linked = await _reports(request).link_call(report_id, body["call_uniqueid"], actor)
    return web.json_response(
        {"report_id": report_id, "call_uniqueid": body["call_uniqueid"], "linked": linked},
        status=201 if linked else 200,
    )


@_translating
async def post_dispatch(request: web.Request) -> web.Response:
    report_id = _report_id(request)
    body = await _object_body(request, '{"agencies": ["damkar", ...]}')
    actor = _actor(request, body.pop("actor", None))
    agencies = body.get("agencies")
    if (
        set(body) != {"agencies"}
        or not isinstance(agencies, list)
        or not agencies
        or not all(isinstance(code, str) for code in agencies)
    ):
        raise InvalidReport(
            "agencies must be a non-empty list of agency codes",
            [f"agencies: {agencies!r} is invalid, send a non-empty list of agency codes"],
        )
    outcome = await _reports(request).dispatch(report_id, agencies, actor)
    return web.json_response(outcome.to_dict())


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/reports", list_reports, REPORT_READERS)
    route(app, "POST", "/api/reports", post_report, CALL_STAFF)
    route(app, "GET", "/api/reports/{report_id}", get_report, REPORT_READERS)
    route(app, "PATCH", "/api/reports/{report_id}", patch_report, CALL_STAFF)
    route(app, "POST", "/api/reports/{report_id}/calls", post_call, CALL_STAFF)
    route(app, "POST", "/api/reports/{report_id}/dispatch", post_dispatch, CALL_STAFF)
