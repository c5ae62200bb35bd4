"""Earlier calls from one caller number, with the incident reports linked to them.

The console's call card shows these. A report is linked to a call through the
``report_calls`` table (call_uniqueid -> report_id), which POST /api/reports
fills when it gets a ``call_uniqueid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from sigap_pbx.store.calls import CALLS, _fields_to_dict, _non_negative_int, _text
from sigap_pbx.store.db import Database
from sigap_pbx.store.reports import INCIDENT_REPORTS, REPORT_CALLS


@dataclass(frozen=True, slots=True)
class LinkedReport:
    id: int
    category: str
    call_type: str
    priority: int
    status: str

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class EarlierCall:
    id: int
    uniqueid: str
    arrived_at: datetime | None
    outcome: str
    operator: str | None
    reports: tuple[LinkedReport, ...]

    def to_dict(self) -> dict[str, Any]:
        result = _fields_to_dict(self, skip=["reports"])
        result["reports"] = [report.to_dict() for report in self.reports]
        # The call type is the operator's judgement in the call's newest report.
        result["call_type"] = self.reports[-1].call_type if self.reports else None
        return result


async def earlier_calls(
    db: Database,
    *,
    numbers: list[str],
    exclude_uniqueid: str | None = None,
    limit: int = 10,
) -> list[EarlierCall]:
    """Return the calls whose normalised or received caller number is one of
    `numbers`, newest first, each with its linked reports (oldest first)."""
    limit = _non_negative_int("limit", limit)
    numbers = [_text("number", number) for number in numbers if number]
    if not numbers:
        return []
    query = select(
        CALLS.c.id, CALLS.c.uniqueid, CALLS.c.arrived_at, CALLS.c.outcome, CALLS.c.operator
    ).where(CALLS.c.caller_number.in_(numbers) | CALLS.c.caller_number_raw.in_(numbers))
    if exclude_uniqueid is not None:
        query = query.where(CALLS.c.uniqueid != exclude_uniqueid)
    query = query.order_by(CALLS.c.arrived_at.desc().nulls_last(), CALLS.c.id.desc()).limit(
        limit
    )
    async with db.session(write=False) as session:
        calls = (await session.execute(query)).mappings().all()
        uniqueids = [row["uniqueid"] for row in calls]
        reports: dict[str, list[LinkedReport]] = {}
        if uniqueids:
            linked = await session.execute(
                select(
                    REPORT_CALLS.c.call_uniqueid,
                    INCIDENT_REPORTS.c.id,
                    INCIDENT_REPORTS.c.category,
                    INCIDENT_REPORTS.c.call_type,
                    INCIDENT_REPORTS.c.priority,
                    INCIDENT_REPORTS.c.status,
                )
                .join(INCIDENT_REPORTS, INCIDENT_REPORTS.c.id == REPORT_CALLS.c.report_id)
                .where(REPORT_CALLS.c.call_uniqueid.in_(uniqueids))
                .order_by(INCIDENT_REPORTS.c.id)
            )
            for row in linked.mappings():
                reports.setdefault(row["call_uniqueid"], []).append(
                    LinkedReport(
                        id=row["id"],
                        category=row["category"],
                        call_type=row["call_type"],
                        priority=row["priority"],
                        status=row["status"],
                    )
                )
    return [
        EarlierCall(
            id=row["id"],
            uniqueid=row["uniqueid"],
            arrived_at=row["arrived_at"],
            outcome=row["outcome"],
            operator=row["operator"],
            reports=tuple(reports.get(row["uniqueid"], ())),
        )
        for row in calls
    ]
