"""Alarms: conditions a supervisor must see, from raising to clearing and acknowledgement.

One row is one alarm episode: it is inserted when a condition starts and gets
``cleared_at`` when it ends. A condition that comes back later gets a new row. Only
the controller's AlarmBoard writes this table, through one ordered writer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Table, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.calls import (
    _aware_datetime,
    _fields_to_dict,
    _key,
    _non_negative_int,
    _one_of,
    _text,
    _validate_id,
    _validate_json_object,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import StoreError, UnknownField
from sigap_pbx.store.models import Base


class AlarmSeverity(enum.StrEnum):
    """How urgent an alarm is. ``CRITICAL`` means callers may reach nobody."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alarm(Base):
    """One alarm. ``cleared_at`` is NULL while the condition still holds."""

    __tablename__ = "alarms"
    __table_args__ = (Index(None, "raised_at"), Index(None, "kind", "subject"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String)
    # What the alarm is about: an endpoint, a queue or a shift, as text.
    subject: Mapped[str] = mapped_column(String)
    severity: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String)
    detail: Mapped[dict[str, Any]]


ALARMS: Table = Alarm.__table__  # type: ignore[assignment]

_validate_severity = _one_of(AlarmSeverity)


def _optional_datetime(field: str, value: Any) -> datetime | None:
    return None if value is None else _aware_datetime(field, value)


def _optional_key(field: str, value: Any) -> str | None:
    return None if value is None else _key(field, value)


# Columns that `AlarmStore.update` may set, with their validators. None is a valid
# value for the nullable ones, so an update can also empty them.
UPDATABLE_FIELDS = {
    "severity": _validate_severity,
    "message": _text,
    "detail": _validate_json_object,
    "cleared_at": _optional_datetime,
    "acknowledged_at": _optional_datetime,
    "acknowledged_by": _optional_key,
}


class AlarmNotFound(StoreError, LookupError):
    """An alarm id has no row in ``alarms``."""

    def __init__(self, alarm_id: int) -> None:
        super().__init__(
            f"alarm id {alarm_id} not found: list the alarms with "
            "GET /api/alarms or `sigap alarms` and use an id from there"
        )
        self.alarm_id = alarm_id


@dataclass(frozen=True, slots=True)
class AlarmView:
    """One alarm, read from ``alarms``."""

    id: int
    kind: str
    subject: str
    severity: AlarmSeverity
    message: str
    raised_at: datetime
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    detail: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        result = _fields_to_dict(self, skip=["detail"])
        result["detail"] = dict(self.detail)
        result["active"] = self.active
        return result


def _alarm_view(row: Mapping[str, Any]) -> AlarmView:
    return AlarmView(**{**row, "severity": AlarmSeverity(row["severity"])})


class AlarmStore:
    """Reads and writes of alarms in one Database.

    Every method runs in its own transaction. Invalid values raise
    InvalidFieldValue, a ValueError, before anything is written.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(
        self,
        *,
        kind: str,
        subject: str,
        severity: str,
        message: str,
        raised_at: datetime,
        detail: dict[str, Any] | None = None,
        cleared_at: datetime | None = None,
        acknowledged_at: datetime | None = None,
        acknowledged_by: str | None = None,
    ) -> int:
        """Insert an alarm and return its id."""
        row = {
            "kind": _key("kind", kind),
            "subject": _key("subject", subject),
            "severity": _validate_severity("severity", severity),
            "message": _text("message", message),
            "raised_at": _aware_datetime("raised_at", raised_at),
            "detail": _validate_json_object("detail", {} if detail is None else detail),
            "cleared_at": _optional_datetime("cleared_at", cleared_at),
            "acknowledged_at": _optional_datetime("acknowledged_at", acknowledged_at),
            "acknowledged_by": _optional_key("acknowledged_by", acknowledged_by),
        }
        insert = ALARMS.insert().values(**row).returning(ALARMS.c.id)
        async with self._db.session() as session:
            return (await session.execute(insert)).scalar_one()

    async def update(self, alarm_id: int, **fields: Any) -> None:
        """Set the given columns of one alarm (see UPDATABLE_FIELDS).

        Raises AlarmNotFound for an unknown id and UnknownField for a column
        that cannot be updated.
        """
        alarm_id = _validate_id("alarm_id", alarm_id)
        values: dict[str, Any] = {}
        for name, value in fields.items():
            validate = UPDATABLE_FIELDS.get(name)
            if validate is None:
                raise UnknownField("update", name, UPDATABLE_FIELDS)
            values[name] = validate(name, value)
        if not values:
            return
        statement = (
            update(ALARMS)
            .where(ALARMS.c.id == alarm_id)
            .values(**values)
            .returning(ALARMS.c.id)
        )
        async with self._db.session() as session:
            if (await session.execute(statement)).scalar_one_or_none() is None:
                raise AlarmNotFound(alarm_id)

    async def acknowledge(
        self, alarm_id: int, at: datetime, actor: str
    ) -> AlarmView:
        """Record who acknowledged an alarm and when, and return the alarm.

        An alarm acknowledged before keeps its first acknowledgement, so a
        repeated request changes nothing. Raises AlarmNotFound for an unknown id.
        """
        alarm_id = _validate_id("alarm_id", alarm_id)
        at = _aware_datetime("at", at)
        actor = _key("actor", actor)
        statement = (
            update(ALARMS)
            .where(ALARMS.c.id == alarm_id, ALARMS.c.acknowledged_at.is_(None))
            .values(acknowledged_at=at, acknowledged_by=actor)
        )
        async with self._db.session() as session:
            await session.execute(statement)
            row = (
                (await session.execute(select(ALARMS).where(ALARMS.c.id == alarm_id)))
                .mappings()
                .one_or_none()
            )
        if row is None:
            raise AlarmNotFound(alarm_id)
        return _alarm_view(row)

    async def get(self, alarm_id: int) -> AlarmView | None:
        """Return one alarm, or None when the id has no row."""
        alarm_id = _validate_id("alarm_id", alarm_id)
        query = select(ALARMS).where(ALARMS.c.id == alarm_id)
        async with self._db.session(write=False) as session:
            row = (await session.execute(query)).mappings().one_or_none()
        return None if row is None else _alarm_view(row)

    async def list_alarms(
        self,
        *,
        active: bool | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AlarmView]:
        """Return alarms, newest raised first.

        ``active=True`` returns only alarms not cleared, ``active=False`` only
        cleared ones, and None both. ``since`` keeps the alarms that were active
        at some time at or after it: raised after it, or cleared after it, or
        not cleared.
        """
        limit = _non_negative_int("limit", limit)
        query = select(ALARMS)
        if active is True:
            query = query.where(ALARMS.c.cleared_at.is_(None))
        elif active is False:
            query = query.where(ALARMS.c.cleared_at.is_not(None))
        if since is not None:
            since = _aware_datetime("since", since)
            query = query.where(
                (ALARMS.c.raised_at >= since)
                | ALARMS.c.cleared_at.is_(None)
                | (ALARMS.c.cleared_at >= since)
            )
        query = query.order_by(ALARMS.c.raised_at.desc(), ALARMS.c.id.desc()).limit(limit)
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_alarm_view(row) for row in rows]

    async def list_uncleared(self) -> list[AlarmView]:
        """Return every alarm whose ``cleared_at`` is NULL, oldest first."""
        query = (
            select(ALARMS)
            .where(ALARMS.c.cleared_at.is_(None))
            .order_by(ALARMS.c.raised_at, ALARMS.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_alarm_view(row) for row in rows]
