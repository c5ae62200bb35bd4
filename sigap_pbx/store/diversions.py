"""Diversion flags on caller numbers: a repeat prank caller gets a warning or a
lower-priority queue for a limited time.

A number is never cut off for good: every flag has an ``until`` at most
MAX_DIVERSION_DAYS after it was set, and records who set it and who lifted it.
The operator console shows the flags in force on the call card, and the
controller publishes them to AstDB, from which the emergency dialplan routes
(sigap_pbx/calls/diversions.py).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from sigap_pbx.store.calls import _aware_datetime, _fields_to_dict, _key, _validate_id
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import InvalidFieldValue, StoreError
from sigap_pbx.store.models import Base, _check_in

MAX_DIVERSION_DAYS = 30
MAX_REASON_LENGTH = 500
# A caller number as stored: an optional '+' and 3 to 20 digits.
NUMBER_PATTERN = re.compile(r"\+?[0-9]{3,20}")


class DiversionAction(enum.StrEnum):
    """The treatment of a diverted number's calls in the emergency dialplan."""

    WARNING = "warning"  # the caller hears a warning after the greeting, while queued
    LOW_PRIORITY = "low_priority"  # the caller waits behind every other caller


class NumberDiversion(Base):
    """One diversion flag. It is in force from ``set_at`` until ``until`` or
    ``lifted_at``, whichever comes first."""

    __tablename__ = "number_diversions"
    __table_args__ = (
        CheckConstraint(_check_in("action", DiversionAction), name="action"),
        Index(None, "number", "until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String)
    set_at: Mapped[datetime]
    until: Mapped[datetime]
    lifted_by: Mapped[str | None] = mapped_column(String)
    lifted_at: Mapped[datetime | None]


NUMBER_DIVERSIONS: Table = NumberDiversion.__table__  # type: ignore[assignment]


class DiversionNotFound(StoreError, LookupError):
    """A diversion id has no row in ``number_diversions``."""

    def __init__(self, diversion_id: int) -> None:
        super().__init__(
            f"diversion id {diversion_id} not found: list a number's diversions with "
            "GET /api/diversions?number=... and use an id from there"
        )
        self.diversion_id = diversion_id


@dataclass(frozen=True, slots=True)
class DiversionView:
    """One diversion flag, read from ``number_diversions``."""

    id: int
    number: str
    action: DiversionAction
    reason: str
    set_by: str
    set_at: datetime
    until: datetime
    lifted_by: str | None
    lifted_at: datetime | None

    def in_force(self, at: datetime) -> bool:
        return self.lifted_at is None and self.set_at <= at < self.until

    def to_dict(self, at: datetime | None = None) -> dict[str, Any]:
        """Return JSON-ready values; with `at`, also whether the flag is in force then."""
        result = _fields_to_dict(self)
        if at is not None:
            result["in_force"] = self.in_force(at)
        return result


def _view(row: Mapping[str, Any]) -> DiversionView:
    return DiversionView(**{**row, "action": DiversionAction(row["action"])})


def validate_number(field: str, value: Any) -> str:
    """Return a caller number of an optional '+' and 3 to 20 digits; raise otherwise."""
    if not isinstance(value, str) or not NUMBER_PATTERN.fullmatch(value):
        raise InvalidFieldValue(
            field, value, "an optional '+' and 3 to 20 digits"
        )
    return value


def _reason(value: Any) -> str:
    text = _key("reason", value).strip()
    if not text or len(text) > MAX_REASON_LENGTH or re.search(r"[\x00-\x1f\x7f]", text):
        raise InvalidFieldValue(
            "reason", value,
            f"1 to {MAX_REASON_LENGTH} characters of text on one line",
        )
    return text


def _until(until: Any, set_at: datetime) -> datetime:
    until = _aware_datetime("until", until)
    if until <= set_at:
        raise InvalidFieldValue(
            "until", until.isoformat(), f"a time after now ({set_at.isoformat()})"
        )
    latest = set_at + timedelta(days=MAX_DIVERSION_DAYS)
    if until > latest:
        raise InvalidFieldValue(
            "until", until.isoformat(),
            f"at most {MAX_DIVERSION_DAYS} days ahead, by {latest.isoformat()}; "
            "a number is never diverted for good, so set a new flag when this one ends",
        )
    return until


def _in_force(at: datetime) -> tuple[ColumnElement[bool], ...]:
    """Return the conditions of a flag in force at `at`: set, not lifted, not ended."""
    return (
        NUMBER_DIVERSIONS.c.lifted_at.is_(None),
        NUMBER_DIVERSIONS.c.set_at <= at,
        NUMBER_DIVERSIONS.c.until > at,
    )


class DiversionStore:
    """Reads and writes of diversion flags. Each method runs in its own transaction,
    and invalid values raise InvalidFieldValue before anything is written."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        *,
        number: str,
        action: str,
        reason: str,
        set_by: str,
        set_at: datetime,
        until: datetime,
    ) -> DiversionView:
        """Insert a diversion flag and return it."""
        set_at = _aware_datetime("set_at", set_at)
        if action not in {a.value for a in DiversionAction}:
            raise InvalidFieldValue(
                "action", action, "one of the actions", [a.value for a in DiversionAction]
            )
        row = {
            "number": validate_number("number", number),
            "action": action,
            "reason": _reason(reason),
            "set_by": _key("set_by", set_by),
            "set_at": set_at,
            "until": _until(until, set_at),
            "lifted_by": None,
            "lifted_at": None,
        }
        insert = NUMBER_DIVERSIONS.insert().values(**row).returning(NUMBER_DIVERSIONS.c.id)
        async with self._db.session() as session:
            diversion_id = (await session.execute(insert)).scalar_one()
        return _view({"id": diversion_id, **row})

    async def lift(self, diversion_id: int, *, by: str, at: datetime) -> DiversionView:
        """Record who lifted a flag and when, and return it.

        A flag lifted before keeps its first lift, so a repeated request changes
        nothing. Raises DiversionNotFound for an unknown id.
        """
        diversion_id = _validate_id("diversion_id", diversion_id)
        by = _key("by", by)
        at = _aware_datetime("at", at)
        statement = (
            update(NUMBER_DIVERSIONS)
            .where(
                NUMBER_DIVERSIONS.c.id == diversion_id,
                NUMBER_DIVERSIONS.c.lifted_at.is_(None),
            )
            .values(lifted_by=by, lifted_at=at)
        )
        query = select(NUMBER_DIVERSIONS).where(NUMBER_DIVERSIONS.c.id == diversion_id)
        async with self._db.session() as session:
            await session.execute(statement)
            row = (await session.execute(query)).mappings().one_or_none()
        if row is None:
            raise DiversionNotFound(diversion_id)
        return _view(row)

    async def get(self, diversion_id: int) -> DiversionView | None:
        diversion_id = _validate_id("diversion_id", diversion_id)
        query = select(NUMBER_DIVERSIONS).where(NUMBER_DIVERSIONS.c.id == diversion_id)
        async with self._db.session(write=False) as session:
            row = (await session.execute(query)).mappings().one_or_none()
        return None if row is None else _view(row)

    async def list_in_force(self, at: datetime) -> list[DiversionView]:
        """Return every flag in force at `at`, oldest first."""
        query = (
            select(NUMBER_DIVERSIONS)
            .where(*_in_force(_aware_datetime("at", at)))
            .order_by(NUMBER_DIVERSIONS.c.set_at, NUMBER_DIVERSIONS.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_view(row) for row in rows]

    async def list_for(
        self, numbers: list[str], *, in_force_at: datetime | None = None, limit: int = 50
    ) -> list[DiversionView]:
        """Return the flags of any of `numbers`, newest first.

        With `in_force_at`, only the flags in force at that time: set, not lifted,
        and not yet at ``until``.
        """
        numbers = [validate_number("number", number) for number in numbers]
        query = select(NUMBER_DIVERSIONS).where(NUMBER_DIVERSIONS.c.number.in_(numbers))
        if in_force_at is not None:
            query = query.where(*_in_force(_aware_datetime("in_force_at", in_force_at)))
        query = query.order_by(
            NUMBER_DIVERSIONS.c.set_at.desc(), NUMBER_DIVERSIONS.c.id.desc()
        ).limit(limit)
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_view(row) for row in rows]
