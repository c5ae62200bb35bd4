"""Shift report routes: the stored reports and the figures of the shift in progress.

- `GET /api/shifts/reports?since=YYYY-MM-DD&limit=N`: summaries of stored reports,
  newest first.
- `GET /api/shifts/reports/{date}/{shift}`: one stored report in full.
- `GET /api/shifts/current`: the report of the shift in progress, built now and
  not stored.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from aiohttp import web

from sigap_pbx.roster.reporter import (
    RosterUnavailable,
    ShiftNotFound,
    ShiftNotStarted,
    ShiftReportError,
)
from sigap_pbx.roster.reports import report_summary
from sigap_pbx.store.errors import DatabaseUnavailable, InvalidFieldValue
from sigap_pbx.web.access import CALL_STAFF, SUPERVISORS, route
from sigap_pbx.web.app import CONTROLLER, MAX_LIMIT, ApiError, _int_param

if TYPE_CHECKING:
    from sigap_pbx.roster.reporter import ShiftReporter


def _reporter(request: web.Request) -> ShiftReporter:
    reporter = getattr(request.app[CONTROLLER], "shift_reports", None)
    if reporter is None:
        raise ApiError(
            503,
            "shift_reports_unavailable",
            "shift reports are not running yet; retry once the controller has "
            "opened its database",
        )
    return reporter  # type: ignore[no-any-return]


def _date(name: str, raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name}={raw!r} must be a date as YYYY-MM-DD, e.g. 2026-12-04",
        ) from None


def _report_error(error: ShiftReportError) -> ApiError:
    if isinstance(error, RosterUnavailable):
        return ApiError(503, "roster_missing", str(error))
    if isinstance(error, ShiftNotFound):
        return ApiError(404, "shift_not_found", str(error))
    if isinstance(error, ShiftNotStarted):
        return ApiError(409, "shift_not_started", str(error))
    return ApiError(500, "shift_report_failed", str(error))


def _database_error(error: DatabaseUnavailable) -> ApiError:
    return ApiError(503, "database_unavailable", str(error))


async def list_reports(request: web.Request) -> web.Response:
    reporter = _reporter(request)
    raw_since = request.query.get("since")
    since = _date("since", raw_since) if raw_since is not None else None
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    try:
        reports = await reporter.list_reports(since=since, limit=limit)
    except DatabaseUnavailable as error:
        raise _database_error(error) from None
    return web.json_response(
        {
            "limit": limit,
            "reports": [
                {**report_summary(view.content), "created_at": view.created_at.isoformat()}
                for view in reports
            ],
        }
    )


async def get_report(request: web.Request) -> web.Response:
    reporter = _reporter(request)
    shift_date = _date("date", request.match_info["date"])
    shift_name = request.match_info["shift"]
    try:
        view = await reporter.get_report(shift_date, shift_name)
    except DatabaseUnavailable as error:
        raise _database_error(error) from None
    except InvalidFieldValue as error:
        raise ApiError(400, "invalid_parameter", str(error)) from None
    if view is None:
        raise ApiError(
            404,
            "report_not_found",
            f"no stored report for shift {shift_name!r} on {shift_date}: a report is "
            "stored once its shift has ended; GET /api/shifts/current shows the "
            "shift in progress",
        )
    return web.json_response(
        {"created_at": view.created_at.isoformat(), "report": view.content}
    )


async def current(request: web.Request) -> web.Response:
    reporter = _reporter(request)
    try:
        content = await reporter.report_now()
    except ShiftReportError as error:
        raise _report_error(error) from None
    except DatabaseUnavailable as error:
        raise _database_error(error) from None
    return web.json_response({"report": content})


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/api/shifts/reports", list_reports, SUPERVISORS)
    route(app, "GET", "/api/shifts/reports/{date}/{shift}", get_report, SUPERVISORS)
    route(app, "GET", "/api/shifts/current", current, CALL_STAFF)
