"""Forwarding attempts: one row per agency line tried for a call or a report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, update

from sigap_pbx.store.calls import _fields_to_dict
from sigap_pbx.store.db import Database
from sigap_pbx.store.reports import ForwardAttempt, ForwardMode, ForwardResult

FORWARD_ATTEMPTS: Table = ForwardAttempt.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class ForwardAttemptView:
    id: int
    call_uniqueid: str | None
    report_id: int | None
    agency_id: int
    line_priority: int | None
    target: str
    mode: str
    result: str
    channel: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    seconds: float | None
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)


class ForwardStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_attempt(
        self,
        *,
        agency_id: int,
        target: str,
        mode: ForwardMode,
        started_at: datetime,
        actor: str,
        call_uniqueid: str | None = None,
        report_id: int | None = None,
        line_priority: int | None = None,
    ) -> int:
        """Insert an attempt that is ringing now and return its id."""
        insert = (
            FORWARD_ATTEMPTS.insert()
            .values(
                agency_id=agency_id,
                target=target,
                mode=ForwardMode(mode).value,
                result=ForwardResult.RINGING.value,
                started_at=started_at,
                actor=actor,
                call_uniqueid=call_uniqueid,
                report_id=report_id,
                line_priority=line_priority,
            )
            .returning(FORWARD_ATTEMPTS.c.id)
        )
        async with self._db.session() as session:
            return (await session.execute(insert)).scalar_one()

    async def finish_attempt(
        self,
        attempt_id: int,
        *,
        result: ForwardResult,
        ended_at: datetime,
        answered_at: datetime | None = None,
        seconds: float | None = None,
    ) -> None:
        """Store how an attempt ended."""
        statement = (
            update(FORWARD_ATTEMPTS)
            .where(FORWARD_ATTEMPTS.c.id == attempt_id)
            .values(
                result=ForwardResult(result).value,
                ended_at=ended_at,
                answered_at=answered_at,
                seconds=seconds,
            )
        )
        async with self._db.session() as session:
            await session.execute(statement)

    async def list_attempts(
        self, *, call_uniqueid: str | None = None, report_id: int | None = None
    ) -> list[ForwardAttemptView]:
        """Return the attempts of a call or of a report, oldest first."""
        query = select(FORWARD_ATTEMPTS).order_by(FORWARD_ATTEMPTS.c.id)
        if call_uniqueid is not None:
            query = query.where(FORWARD_ATTEMPTS.c.call_uniqueid == call_uniqueid)
        if report_id is not None:
            query = query.where(FORWARD_ATTEMPTS.c.report_id == report_id)
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [ForwardAttemptView(**row) for row in rows]
