"""Rows of agencies, reports, dispatches and outbox messages, inserted with SQLAlchemy Core.

The dispatch, escalation and webhook tests build their data here rather than through
the report service, so they test only the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from sigap_pbx.store import Database
from sigap_pbx.store.agencies import Agency
from sigap_pbx.store.reports import (
    DispatchEvent,
    IncidentReport,
    OutboxMessage,
    ReportDispatch,
)

T0 = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)

AGENCIES = Agency.__table__
REPORTS = IncidentReport.__table__
DISPATCHES = ReportDispatch.__table__
DISPATCH_EVENTS = DispatchEvent.__table__
OUTBOX = OutboxMessage.__table__


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, *, minutes: float = 0) -> None:
        self.now += timedelta(seconds=seconds, minutes=minutes)


async def _insert(db: Database, table: Any, **values: Any) -> int:
    async with db.session() as session:
        result = await session.execute(insert(table).values(**values).returning(table.c.id))
        return int(result.scalar_one())


async def add_agency(
    db: Database,
    code: str,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    kind: str = "fire",
) -> int:
    return await _insert(
        db,
        AGENCIES,
        code=code,
        name=f"Agency {code}",
        kind=kind,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        active=True,
        created_at=T0,
        updated_at=T0,
    )


async def add_report(
    db: Database, *, priority: int = 1, category: str = "fire", version: int = 1
) -> int:
    return await _insert(
        db,
        REPORTS,
        version=version,
        category=category,
        call_type="emergency",
        priority=priority,
        location_text="Jl. Merdeka 1",
        kelurahan="Gambir",
        kecamatan="Gambir",
        description="house fire",
        people=[],
        status="open",
        created_by="op1",
        created_at=T0,
        updated_at=T0,
    )


async def add_dispatch(
    db: Database,
    report_id: int,
    agency_id: int,
    *,
    sent_at: datetime = T0,
    status: str = "sent",
    escalations: int = 0,
    escalated_at: datetime | None = None,
) -> int:
    dispatch_id = await _insert(
        db,
        DISPATCHES,
        report_id=report_id,
        agency_id=agency_id,
        status=status,
        sent_at=sent_at,
        sent_by="op1",
        status_at=sent_at,
        escalations=escalations,
        escalated_at=escalated_at,
        acknowledged_at=None if status == "sent" else sent_at,
        acknowledged_by=None if status == "sent" else "someone",
    )
    await _insert(
        db,
        DISPATCH_EVENTS,
        dispatch_id=dispatch_id,
        status="sent",
        at=sent_at,
        actor="op1",
        note="",
    )
    return dispatch_id


async def add_outbox(
    db: Database,
    report_id: int,
    agency_id: int,
    *,
    version: int = 1,
    payload: dict[str, Any] | None = None,
    created_at: datetime = T0,
    next_attempt_at: datetime | None = None,
    status: str = "pending",
    attempts: int = 0,
) -> int:
    return await _insert(
        db,
        OUTBOX,
        report_id=report_id,
        agency_id=agency_id,
        version=version,
        payload=payload if payload is not None else sample_payload(report_id, version),
        status=status,
        attempts=attempts,
        created_at=created_at,
        next_attempt_at=next_attempt_at or created_at,
    )


def sample_payload(report_id: int, version: int) -> dict[str, Any]:
    return {
        "event": "report.dispatched",
        "agency": "damkar",
        "sent_at": T0.isoformat(),
        "report": {
            "id": report_id,
            "version": version,
            "category": "fire",
            "priority": 1,
            "location_text": "Jl. Merdeka 1, dekat pasar",
            "latitude": -6.175392,
            "people": [{"name": "Budi", "age": 40}],
        },
    }


async def outbox_row(db: Database, message_id: int) -> dict[str, Any]:
    async with db.session(write=False) as session:
        row = (
            (await session.execute(select(OUTBOX).where(OUTBOX.c.id == message_id)))
            .mappings()
            .one()
        )
    return dict(row)


async def dispatch_row(db: Database, dispatch_id: int) -> dict[str, Any]:
    async with db.session(write=False) as session:
        row = (
            (await session.execute(select(DISPATCHES).where(DISPATCHES.c.id == dispatch_id)))
            .mappings()
            .one()
        )
    return dict(row)
