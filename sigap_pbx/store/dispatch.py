"""Reads and writes of report dispatches: the agencies' progress on a report.

The report service inserts a ``report_dispatches`` row in status ``sent`` when an
operator sends a report to an agency. The queries here record the agency's
acknowledgement and status updates, each with a ``dispatch_events`` row in the same
transaction, and the escalation watcher's marks. Every change is a compare-and-set on
the current status or escalation count. Of two writers racing on one dispatch, only
the first applies a change that was valid before the other's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, case, insert, select, update

from sigap_pbx.store.agencies import Agency
from sigap_pbx.store.calls import (
    _aware_datetime,
    _fields_to_dict,
    _key,
    _one_of,
    _text,
    _validate_id,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import StoreError
from sigap_pbx.store.reports import (
    DispatchEvent,
    DispatchStatus,
    IncidentReport,
    ReportDispatch,
)

DISPATCHES: Table = ReportDispatch.__table__  # type: ignore[assignment]
DISPATCH_EVENTS: Table = DispatchEvent.__table__  # type: ignore[assignment]
REPORTS: Table = IncidentReport.__table__  # type: ignore[assignment]
AGENCIES: Table = Agency.__table__  # type: ignore[assignment]

# Statuses after which an agency reports nothing more about the dispatch.
FINAL_STATUSES = frozenset({DispatchStatus.RESOLVED, DispatchStatus.FALSE_ALARM})

_validate_status = _one_of(DispatchStatus)


class DispatchNotFound(StoreError, LookupError):
    """A dispatch id, or a (report id, agency code) pair, has no dispatch row."""

    def __init__(self, description: str) -> None:
        super().__init__(
            f"dispatch {description} not found: list the agency's dispatches with "
            "GET /api/dispatches?agency=CODE and use one of their ids"
        )
        self.description = description


@dataclass(frozen=True, slots=True)
class DispatchView:
    """One dispatch with the agency and report fields that the portal shows."""

    id: int
    report_id: int
    agency_id: int
    agency_code: str
    agency_name: str
    status: DispatchStatus
    sent_at: datetime
    sent_by: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    status_at: datetime
    escalated_at: datetime | None
    escalations: int
    report_version: int
    priority: int
    category: str
    report_status: str
    location_text: str
    kelurahan: str
    kecamatan: str

    @property
    def acknowledged(self) -> bool:
        return self.status is not DispatchStatus.SENT

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class DispatchEventView:
    """One status change of a dispatch, read from ``dispatch_events``."""

    id: int
    dispatch_id: int
    status: DispatchStatus
    at: datetime
    actor: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One status to record: the dispatch moves to ``status`` at ``at``."""

    status: DispatchStatus
    at: datetime
    actor: str
    note: str = ""


def _view_query() -> Select[Any]:
    return (
        select(
            DISPATCHES,
            AGENCIES.c.code.label("agency_code"),
            AGENCIES.c.name.label("agency_name"),
            REPORTS.c.version.label("report_version"),
            REPORTS.c.priority,
            REPORTS.c.category,
            REPORTS.c.status.label("report_status"),
            REPORTS.c.location_text,
            REPORTS.c.kelurahan,
            REPORTS.c.kecamatan,
        )
        .join(AGENCIES, AGENCIES.c.id == DISPATCHES.c.agency_id)
        .join(REPORTS, REPORTS.c.id == DISPATCHES.c.report_id)
    )


def _dispatch_view(row: Mapping[str, Any]) -> DispatchView:
    return DispatchView(**{**row, "status": DispatchStatus(row["status"])})


def _event_view(row: Mapping[str, Any]) -> DispatchEventView:
    return DispatchEventView(**{**row, "status": DispatchStatus(row["status"])})


class DispatchStore:
    """Queries on ``report_dispatches`` and ``dispatch_events`` in one Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, dispatch_id: int) -> DispatchView:
        """Return one dispatch. Raises DispatchNotFound for an unknown id."""
        dispatch_id = _validate_id("dispatch_id", dispatch_id)
        query = _view_query().where(DISPATCHES.c.id == dispatch_id)
        async with self._db.session(write=False) as session:
            row = (await session.execute(query)).mappings().one_or_none()
        if row is None:
            raise DispatchNotFound(f"id {dispatch_id}")
        return _dispatch_view(row)

    async def find(self, report_id: int, agency_code: str) -> DispatchView:
        """Return the dispatch of one report to one agency, by the agency's code.

        Raises DispatchNotFound when the report was not sent to that agency.
        """
        report_id = _validate_id("report_id", report_id)
        agency_code = _key("agency_code", agency_code)
        query = _view_query().where(
            DISPATCHES.c.report_id == report_id, AGENCIES.c.code == agency_code
        )
        async with self._db.session(write=False) as session:
            row = (await session.execute(query)).mappings().one_or_none()
        if row is None:
            raise DispatchNotFound(f"of report {report_id} to agency {agency_code!r}")
        return _dispatch_view(row)

    async def list_dispatches(
        self,
        *,
        agency_code: str | None = None,
        include_final: bool = False,
        limit: int = 100,
    ) -> list[DispatchView]:
        """Return dispatches, unacknowledged ones first, then newest first.

        Dispatches in a final status (resolved, false alarm) are left out unless
        ``include_final`` is true.
        """
        query = _view_query()
        if agency_code is not None:
            query = query.where(AGENCIES.c.code == _key("agency_code", agency_code))
        if not include_final:
            query = query.where(DISPATCHES.c.status.not_in([s.value for s in FINAL_STATUSES]))
        unacknowledged_first = case((DISPATCHES.c.status == DispatchStatus.SENT.value, 0), else_=1)
        query = query.order_by(
            unacknowledged_first, DISPATCHES.c.sent_at.desc(), DISPATCHES.c.id.desc()
        ).limit(limit)
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_dispatch_view(row) for row in rows]

    async def list_waiting_since(self, since: datetime, *, limit: int = 500) -> list[DispatchView]:
        """Return the dispatches sent at or after `since` and not yet acknowledged,
        oldest first."""
        query = (
            _view_query()
            .where(
                DISPATCHES.c.status == DispatchStatus.SENT.value,
                DISPATCHES.c.sent_at >= _aware_datetime("since", since),
            )
            .order_by(DISPATCHES.c.sent_at, DISPATCHES.c.id)
            .limit(limit)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_dispatch_view(row) for row in rows]

    async def list_unacknowledged(self) -> list[DispatchView]:
        """Return every dispatch still in status ``sent``, oldest first."""
        query = (
            _view_query()
            .where(DISPATCHES.c.status == DispatchStatus.SENT.value)
            .order_by(DISPATCHES.c.sent_at, DISPATCHES.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_dispatch_view(row) for row in rows]

    async def events(self, dispatch_id: int) -> list[DispatchEventView]:
        """Return the status history of one dispatch, oldest first."""
        dispatch_id = _validate_id("dispatch_id", dispatch_id)
        query = (
            select(DISPATCH_EVENTS)
            .where(DISPATCH_EVENTS.c.dispatch_id == dispatch_id)
            .order_by(DISPATCH_EVENTS.c.at, DISPATCH_EVENTS.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_event_view(row) for row in rows]

    async def change_status(
        self,
        dispatch_id: int,
        *,
        expected: DispatchStatus,
        changes: Sequence[StatusChange],
    ) -> bool:
        """Apply status changes if the dispatch is still in status ``expected``.

        Each change adds a ``dispatch_events`` row, and the last one sets the
        dispatch's status and ``status_at``. A change to ``acknowledged``, or any
        change from ``sent``, also sets ``acknowledged_at`` and ``acknowledged_by``.
        Returns False, with nothing written, when the status is no longer
        ``expected`` because another writer changed it first.
        """
        dispatch_id = _validate_id("dispatch_id", dispatch_id)
        expected = DispatchStatus(_validate_status("expected", expected))
        if not changes:
            raise ValueError("change_status() needs at least one StatusChange")
        events = [
            {
                "dispatch_id": dispatch_id,
                "status": _validate_status("status", change.status),
                "at": _aware_datetime("at", change.at),
                "actor": _key("actor", change.actor),
                "note": _text("note", change.note),
            }
            for change in changes
        ]
        last = events[-1]
        values: dict[str, Any] = {"status": last["status"], "status_at": last["at"]}
        if expected is DispatchStatus.SENT:
            values["acknowledged_at"] = events[0]["at"]
            values["acknowledged_by"] = events[0]["actor"]
        statement = (
            update(DISPATCHES)
            .where(DISPATCHES.c.id == dispatch_id, DISPATCHES.c.status == expected.value)
            .values(**values)
        )
        async with self._db.session() as session:
            result = await session.execute(statement)
            if result.rowcount != 1:
                return False
            await session.execute(insert(DISPATCH_EVENTS), events)
        return True

    async def mark_escalated(
        self, dispatch_id: int, *, at: datetime, expected_escalations: int
    ) -> bool:
        """Record one more escalation of a dispatch that is still unacknowledged.

        Returns False, with nothing written, when the dispatch was acknowledged or
        another watcher escalated it after ``expected_escalations`` was read.
        """
        dispatch_id = _validate_id("dispatch_id", dispatch_id)
        statement = (
            update(DISPATCHES)
            .where(
                DISPATCHES.c.id == dispatch_id,
                DISPATCHES.c.status == DispatchStatus.SENT.value,
                DISPATCHES.c.escalations == expected_escalations,
            )
            .values(
                escalated_at=_aware_datetime("at", at),
                escalations=expected_escalations + 1,
            )
        )
        async with self._db.session() as session:
            result = await session.execute(statement)
        return bool(result.rowcount == 1)
