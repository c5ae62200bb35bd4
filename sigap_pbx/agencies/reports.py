"""Incident reports: `ReportService` for the CLI, the web API and the call side.

An operator writes a report during or after a call, links further calls about
the same incident to it, and dispatches it to agencies. Every change bumps the
report's version. A dispatch, and every change to a report that was dispatched,
queues one webhook message per agency in the same transaction (the outbox), so
an agency's app receives each version once the webhook sender delivers it.

Report fields are checked here, and every problem is reported at once with the
field name, the value and the fix (``category: 'banjir' is invalid, use one of
fire, ...``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from sigap_pbx.config import Config
from sigap_pbx.store.agencies import AgencyStore
from sigap_pbx.store.db import Database
from sigap_pbx.store.reports import (
    REPORT_FIELDS,
    CallType,
    DispatchOutcome,
    ReportCategory,
    ReportDetail,
    ReportNotFound,
    ReportStatus,
    ReportStore,
    ReportView,
    UpdateOutcome,
)

log = structlog.get_logger(__name__)

CATEGORIES = tuple(c.value for c in ReportCategory)
CALL_TYPES = tuple(t.value for t in CallType)
STATUSES = tuple(s.value for s in ReportStatus)
PERSON_KEYS = ("name", "role", "age", "gender", "condition", "note")
MAX_TEXT = 4000
MAX_SHORT_TEXT = 200
MAX_PEOPLE = 100
MAX_AGE = 150
# Asterisk uniqueids are "<epoch>.<sequence>", optionally after a system name
# ("sigap1-1733312345.17"); this also keeps them printable and short.
UNIQUEID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# Indonesian labels, as the operators' screens and the agencies' apps show them.
LABELS_ID: dict[str, dict[str, str]] = {
    "category": {
        "fire": "Kebakaran",
        "traffic_accident": "Kecelakaan lalu lintas",
        "natural_disaster": "Bencana alam",
        "security": "Keamanan dan ketertiban",
        "health": "Kesehatan",
        "other": "Lainnya",
    },
    "call_type": {
        "emergency": "Darurat",
        "information": "Permintaan informasi",
        "prank": "Panggilan iseng",
        "ghost": "Panggilan kosong",
        "misdial": "Salah sambung",
    },
    "status": {"open": "Terbuka", "closed": "Ditutup"},
    "dispatch_status": {
        "sent": "Terkirim",
        "acknowledged": "Diterima",
        "dispatched": "Unit diberangkatkan",
        "en_route": "Dalam perjalanan",
        "on_scene": "Tiba di lokasi",
        "resolved": "Selesai",
        "false_alarm": "Laporan palsu",
    },
}


class ReportDocumentError(ValueError):
    """Report fields with one or more problems, each naming its field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = f"invalid report: {self.problems[0]}"
        else:
            message = f"invalid report, {len(self.problems)} problems: " + "; ".join(
                self.problems
            )
        super().__init__(message)


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_text(
    problems: list[str], field: str, value: Any, limit: int, *, lines: bool
) -> None:
    if not isinstance(value, str):
        problems.append(f"{field}: {_quoted(value)} is not text, send a string")
        return
    control = r"[\x00-\x08\x0b-\x1f\x7f]" if lines else r"[\x00-\x1f\x7f]"
    if re.search(control, value):
        problems.append(f"{field}: {_quoted(value)} contains a control character, remove it")
    if len(value) > limit:
        problems.append(f"{field}: is {len(value)} characters long, use at most {limit}")


def _check_coordinate(problems: list[str], field: str, value: Any, limit: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{field}: {_quoted(value)} is not a number, send decimal degrees")
    elif not math.isfinite(value) or not -limit <= value <= limit:
        problems.append(
            f"{field}: {value!r} is out of range, use decimal degrees from"
            f" -{limit} to {limit}"
        )


def _check_people(problems: list[str], value: Any) -> None:
    if not isinstance(value, list):
        problems.append(f"people: {_quoted(value)} is not a list, send a list of objects")
        return
    if len(value) > MAX_PEOPLE:
        problems.append(f"people: {len(value)} entries, send at most {MAX_PEOPLE}")
        return
    for index, person in enumerate(value):
        path = f"people[{index}]"
        if not isinstance(person, Mapping):
            problems.append(
                f"{path}: {_quoted(person)} is not an object, send one with any of"
                f" {', '.join(PERSON_KEYS)}"
            )
            continue
        for key, item in person.items():
            if key not in PERSON_KEYS:
                problems.append(
                    f"{path}.{key}: unknown key, use any of {', '.join(PERSON_KEYS)}"
                )
            elif key == "age":
                if item is not None and (
                    isinstance(item, bool)
                    or not isinstance(item, int)
                    or not 0 <= item <= MAX_AGE
                ):
                    problems.append(
                        f"{path}.age: {_quoted(item)} is invalid, use a whole number"
                        f" from 0 to {MAX_AGE} or null"
                    )
            else:
                _check_text(problems, f"{path}.{key}", item, MAX_SHORT_TEXT, lines=False)


def _check_choice(
    problems: list[str], field: str, value: Any, allowed: Sequence[str]
) -> None:
    if not isinstance(value, str) or value not in allowed:
        problems.append(f"{field}: {_quoted(value)} is invalid, use one of {', '.join(allowed)}")


def validate_report_fields(data: Any, *, new: bool) -> dict[str, Any]:
    """Check report fields and return them; raise ReportDocumentError.

    A new report needs `category`, `call_type` and `priority`. An update may
    send any subset of the fields. `latitude` and `longitude` go together.
    """
    if not isinstance(data, Mapping):
        raise ReportDocumentError(
            [f"report: {_quoted(data)} is not an object, send the report's fields"]
        )
    problems: list[str] = []
    for key in data:
        if key not in REPORT_FIELDS:
            problems.append(
                f"{key}: unknown field, use any of {', '.join(REPORT_FIELDS)}"
            )
    if new:
        for key in ("category", "call_type", "priority"):
            if key not in data:
                problems.append(f"{key}: missing, a new report needs it")
    if "category" in data:
        _check_choice(problems, "category", data["category"], CATEGORIES)
    if "call_type" in data:
        _check_choice(problems, "call_type", data["call_type"], CALL_TYPES)
    if "status" in data:
        _check_choice(problems, "status", data["status"], STATUSES)
    if "priority" in data:
        priority = data["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 4:
            problems.append(
                f"priority: {_quoted(priority)} is invalid, use 1 (most urgent) to 4"
            )
    for key, limit in (
        ("location_text", MAX_TEXT),
        ("description", MAX_TEXT),
        ("kelurahan", MAX_SHORT_TEXT),
        ("kecamatan", MAX_SHORT_TEXT),
    ):
        if key in data:
            _check_text(problems, key, data[key], limit, lines=limit == MAX_TEXT)
    _check_coordinate(problems, "latitude", data.get("latitude"), 90)
    _check_coordinate(problems, "longitude", data.get("longitude"), 180)
    if ("latitude" in data) != ("longitude" in data) or (
        (data.get("latitude") is None) != (data.get("longitude") is None)
    ):
        problems.append(
            "latitude, longitude: send both, or neither (null for both to clear them)"
        )
    if "people" in data:
        _check_people(problems, data["people"])
    if problems:
        raise ReportDocumentError(problems)
    values = dict(data)
    for key in ("latitude", "longitude"):
        if values.get(key) is not None:
            values[key] = float(values[key])
    if "people" in values:
        values["people"] = [dict(person) for person in values["people"]]
    return values


def validate_uniqueid(value: Any, field: str = "call_uniqueid") -> str:
    """Return `value` if it looks like an Asterisk uniqueid; raise ReportDocumentError."""
    if not isinstance(value, str) or not UNIQUEID_PATTERN.fullmatch(value):
        raise ReportDocumentError(
            [
                f"{field}: {_quoted(value)} is invalid, use the uniqueid of the"
                " caller's channel such as 1733312345.17 (1 to 64 characters from"
                " A-Z, a-z, 0-9, '.', '_' and '-')"
            ]
        )
    return value


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Called after a dispatch that sent a report to at least one agency.
DispatchListener = Callable[[DispatchOutcome], Awaitable[None]]


class ReportService:
    """Incident reports and their dispatches, stored in one Database.

    ``dispatch_listeners`` are awaited after each dispatch that sent the report to
    a new agency (the web portal's live alert is one). A listener that fails is
    logged and does not fail the dispatch, which is already stored.
    """

    def __init__(
        self, db: Database, config: Config, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._store = ReportStore(db)
        self._agencies = AgencyStore(db)
        self._config = config
        self._clock = clock
        self.dispatch_listeners: list[DispatchListener] = []

    async def create(
        self,
        data: Mapping[str, Any],
        actor: str,
        *,
        call_uniqueid: str | None = None,
    ) -> ReportView:
        """Create a report at version 1, linked to a call when `call_uniqueid` is
        given (during the call, or afterwards from the call record)."""
        values = validate_report_fields(data, new=True)
        if call_uniqueid is not None:
            validate_uniqueid(call_uniqueid)
        return await self._store.create_report(
            values, actor=actor, at=self._clock(), call_uniqueid=call_uniqueid
        )

    async def update(
        self,
        report_id: int,
        changes: Mapping[str, Any],
        actor: str,
        *,
        expected_version: int | None = None,
    ) -> UpdateOutcome:
        """Change fields, bump the version and queue the new version for every
        agency the report was dispatched to. Raises ReportDocumentError,
        ReportNotFound or ReportVersionConflict."""
        values = validate_report_fields(changes, new=False)
        return await self._store.update_report(
            report_id,
            values,
            actor=actor,
            at=self._clock(),
            expected_version=expected_version,
        )

    async def link_call(self, report_id: int, call_uniqueid: str, actor: str) -> bool:
        """Link another call about the same incident; False when already linked."""
        validate_uniqueid(call_uniqueid)
        return await self._store.link_call(
            report_id, call_uniqueid, actor=actor, at=self._clock()
        )

    async def reports_for_call(self, call_uniqueid: str) -> list[int]:
        return await self._store.reports_for_call(validate_uniqueid(call_uniqueid))

    async def list_reports(
        self,
        *,
        status: str | None = None,
        category: str | None = None,
        call_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        number: str | None = None,
        agency_code: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReportView]:
        """Return reports newest first; see ReportStore.list_reports."""
        return await self._store.list_reports(
            status=status,
            category=category,
            call_type=call_type,
            since=since,
            until=until,
            number=number,
            agency_code=agency_code,
            limit=limit,
            offset=offset,
        )

    async def count_reports(self, **filters: Any) -> int:
        return await self._store.count_reports(**filters)

    async def get(self, report_id: int) -> ReportDetail:
        """Return a report with its calls, dispatches, outbox and forward
        attempts, or raise ReportNotFound."""
        detail = await self._store.get_report(report_id)
        if detail is None:
            raise ReportNotFound(report_id)
        return detail

    async def dispatch(
        self, report_id: int, agency_codes: Sequence[str], actor: str
    ) -> DispatchOutcome:
        """Send a report to agencies, each once; see ReportStore.dispatch."""
        outcome = await self._store.dispatch(
            report_id, agency_codes, actor=actor, at=self._clock()
        )
        if outcome.sent:
            for listener in list(self.dispatch_listeners):
                try:
                    await listener(outcome)
                except Exception:
                    log.exception(
                        "dispatch_listener_failed", report_id=report_id, sent=outcome.sent
                    )
        return outcome

