"""Roster tables: saved roster versions, per-shift duty overrides and the audit log.

A roster is stored whole, as one JSON document per saved version, so that every
version can be read back and compared. ``roster_versions`` only grows, and the row
with the highest id is the roster in force.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ColumnElement,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.calls import (
    _aware_datetime,
    _fields_to_dict,
    _key,
    _one_of,
    _text,
    _validate_id,
    _validate_json_object,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import InvalidFieldValue, StoreError
from sigap_pbx.store.models import Base, _check_in


class DutyAction(enum.StrEnum):
    """A change to one operator's queue membership for the rest of one shift."""

    LOGIN = "login"
    LOGOUT = "logout"


class RosterVersion(Base):
    """One saved roster: operators, crews, the shift pattern, rotation and exceptions."""

    __tablename__ = "roster_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    saved_at: Mapped[datetime]
    saved_by: Mapped[str] = mapped_column(String)
    comment: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[dict[str, Any]]
    # Shifts below their minimum when the version was saved, as a list of objects.
    coverage_problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class DutyOverride(Base):
    """An operator's own log in or log out, which holds until the shift ends."""

    __tablename__ = "duty_overrides"
    __table_args__ = (
        CheckConstraint(_check_in("action", DutyAction), name="action"),
        Index(None, "shift_date", "shift_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shift_date: Mapped[date] = mapped_column(Date)
    shift_name: Mapped[str] = mapped_column(String)
    endpoint: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String)
    # Where the change came from: "feature_code", "api", "dialplan_fallback", "reconcile".
    source: Mapped[str] = mapped_column(String)


class AuditEntry(Base):
    """Who changed what, and when: roster saves, operator actions, alarm handling."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "at"), Index(None, "subject", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    subject: Mapped[str] = mapped_column(String)
    detail: Mapped[dict[str, Any]]


ROSTER_VERSIONS: Table = RosterVersion.__table__  # type: ignore[assignment]
DUTY_OVERRIDES: Table = DutyOverride.__table__  # type: ignore[assignment]
AUDIT_LOG: Table = AuditEntry.__table__  # type: ignore[assignment]

# Arbitrary fixed key of the PostgreSQL advisory lock that serialises roster saves,
# so that two saves cannot both build on the same version in force.
ROSTER_SAVE_LOCK_KEY = 112_000_003
MAX_LISTED = 1000

_validate_action = _one_of(DutyAction)


class RosterVersionConflict(StoreError):
    """Another save changed the roster in force after the caller read it."""

    def __init__(self, expected: int | None, current: int | None) -> None:
        super().__init__(
            f"roster version {current} is in force, not {expected} as expected:"
            " another save came first; read the roster again and repeat the change"
        )
        self.expected = expected
        self.current = current


@dataclass(frozen=True, slots=True)
class RosterVersionView:
    """One saved roster version, read from ``roster_versions``."""

    id: int
    saved_at: datetime
    saved_by: str
    comment: str
    content: dict[str, Any]
    coverage_problems: list[dict[str, Any]]

    def to_dict(self, *, content: bool = True) -> dict[str, Any]:
        """Return JSON-ready values; without `content`, only the version's metadata."""
        skip = () if content else ("content",)
        return _fields_to_dict(self, skip)


@dataclass(frozen=True, slots=True)
class DutyOverrideView:
    """One operator's own log in or log out for the rest of a shift."""

    id: int
    shift_date: date
    shift_name: str
    endpoint: str
    action: DutyAction
    at: datetime
    actor: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        values = _fields_to_dict(self)
        values["shift_date"] = self.shift_date.isoformat()
        return values


@dataclass(frozen=True, slots=True)
class AuditEntryView:
    """One row of the audit log."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)


def _limit(value: Any) -> int:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not is_int or not 1 <= value <= MAX_LISTED:
        raise InvalidFieldValue("limit", value, f"an integer from 1 to {MAX_LISTED}")
    return value


def _date(field: str, value: Any) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise InvalidFieldValue(field, value, "a datetime.date without a time")
    return value


def _json_list(field: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidFieldValue(field, value, "a list of JSON objects")
    _validate_json_object(field, {"items": value})
    return value


def _audit_row(
    *, actor: str, action: str, subject: str, detail: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {
        "actor": _key("actor", actor),
        "action": _key("action", action),
        "subject": _text("subject", subject),
        "detail": _validate_json_object("detail", detail),
        "at": _aware_datetime("at", at),
    }


class RosterStore:
    """Reads and writes of roster versions and duty overrides in one Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save_version(
        self,
        *,
        content: dict[str, Any],
        saved_by: str,
        saved_at: datetime,
        coverage_problems: list[dict[str, Any]],
        expected_current_id: int | None,
        comment: str = "",
        audit_action: str = "roster.save",
        audit_detail: dict[str, Any] | None = None,
    ) -> int:
        """Insert a roster version and its audit entry in one transaction.

        Raises RosterVersionConflict, and writes nothing, unless the version in
        force is still `expected_current_id` (None: no version saved yet). The
        audit entry's detail is `audit_detail` with the new version id added.
        """
        row = {
            "content": _validate_json_object("content", content),
            "saved_by": _key("saved_by", saved_by),
            "saved_at": _aware_datetime("saved_at", saved_at),
            "comment": _text("comment", comment),
            "coverage_problems": _json_list("coverage_problems", coverage_problems),
        }
        detail = dict(audit_detail or {})
        audit = _audit_row(
            actor=saved_by,
            action=audit_action,
            subject="roster",
            detail=detail,
            at=saved_at,
        )
        async with self._db.session() as session:
            # SQLite's write session starts with BEGIN IMMEDIATE, which already
            # serialises writers. PostgreSQL needs the lock.
            if self._db.dialect == "postgresql":
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": ROSTER_SAVE_LOCK_KEY},
                )
            current = (
                await session.execute(select(func.max(ROSTER_VERSIONS.c.id)))
            ).scalar_one_or_none()
            if current != expected_current_id:
                raise RosterVersionConflict(expected_current_id, current)
            insert = (
                ROSTER_VERSIONS.insert().values(**row).returning(ROSTER_VERSIONS.c.id)
            )
            version_id = (await session.execute(insert)).scalar_one()
            audit["detail"] = {**detail, "version": version_id}
            await session.execute(AUDIT_LOG.insert().values(**audit))
        return version_id

    async def current_version_id(self) -> int | None:
        """Return the id of the version in force, or None when none is saved."""
        async with self._db.session(write=False) as session:
            return (
                await session.execute(select(func.max(ROSTER_VERSIONS.c.id)))
            ).scalar_one_or_none()

    async def current_version(self) -> RosterVersionView | None:
        """Return the version in force (the highest id), or None."""
        query = select(ROSTER_VERSIONS).order_by(ROSTER_VERSIONS.c.id.desc()).limit(1)
        async with self._db.session(write=False) as session:
            row = (await session.execute(query)).mappings().first()
        return None if row is None else RosterVersionView(**row)

    async def get_version(self, version_id: int) -> RosterVersionView | None:
        """Return one version by id, or None when no version has that id."""
        version_id = _validate_id("version_id", version_id)
        query = select(ROSTER_VERSIONS).where(ROSTER_VERSIONS.c.id == version_id)
        async with self._db.session(write=False) as session:
            row = (await session.execute(query)).mappings().first()
        return None if row is None else RosterVersionView(**row)

    async def list_versions(self, limit: int = 50) -> list[RosterVersionView]:
        """Return the newest versions first, at most `limit` of them."""
        query = (
            select(ROSTER_VERSIONS)
            .order_by(ROSTER_VERSIONS.c.id.desc())
            .limit(_limit(limit))
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [RosterVersionView(**row) for row in rows]

    async def add_duty_override(
        self,
        *,
        shift_date: date,
        shift_name: str,
        endpoint: str,
        action: str,
        at: datetime,
        actor: str,
        source: str,
    ) -> int:
        """Insert an operator's log in or log out for one shift and return its id."""
        row = {
            "shift_date": _date("shift_date", shift_date),
            "shift_name": _key("shift_name", shift_name),
            "endpoint": _key("endpoint", endpoint),
            "action": _validate_action("action", action),
            "at": _aware_datetime("at", at),
            "actor": _key("actor", actor),
            "source": _key("source", source),
        }
        insert = DUTY_OVERRIDES.insert().values(**row).returning(DUTY_OVERRIDES.c.id)
        async with self._db.session() as session:
            return (await session.execute(insert)).scalar_one()

    async def list_duty_overrides(
        self, shift_date: date, shift_name: str
    ) -> list[DutyOverrideView]:
        """Return the overrides of one shift, oldest first."""
        query = (
            select(DUTY_OVERRIDES)
            .where(
                DUTY_OVERRIDES.c.shift_date == _date("shift_date", shift_date),
                DUTY_OVERRIDES.c.shift_name == _key("shift_name", shift_name),
            )
            .order_by(DUTY_OVERRIDES.c.at, DUTY_OVERRIDES.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [
            DutyOverrideView(**{**row, "action": DutyAction(row["action"])})
            for row in rows
        ]


class AuditStore:
    """Writes and reads of the audit log in one Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> int:
        """Insert one audit entry and return its id."""
        row = _audit_row(
            actor=actor, action=action, subject=subject, detail=detail, at=at
        )
        insert = AUDIT_LOG.insert().values(**row).returning(AUDIT_LOG.c.id)
        async with self._db.session() as session:
            return (await session.execute(insert)).scalar_one()

    async def list_entries(
        self,
        *,
        subject: str | None = None,
        action: str | None = None,
        action_prefix: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntryView]:
        """Return entries newest first, filtered by every argument given.

        `subject` and `action` must match exactly, `action_prefix` matches the
        start of the action ("roster." finds "roster.save"), and the time window
        is [since, until).
        """
        conditions: list[ColumnElement[bool]] = []
        if subject is not None:
            conditions.append(AUDIT_LOG.c.subject == _text("subject", subject))
        if action is not None:
            conditions.append(AUDIT_LOG.c.action == _text("action", action))
        if action_prefix is not None:
            prefix = _text("action_prefix", action_prefix)
            # autoescape escapes % and _, which LIKE would read as wildcards.
            conditions.append(AUDIT_LOG.c.action.startswith(prefix, autoescape=True))
        if since is not None:
            conditions.append(AUDIT_LOG.c.at >= _aware_datetime("since", since))
        if until is not None:
            conditions.append(AUDIT_LOG.c.at < _aware_datetime("until", until))
        query = (
            select(AUDIT_LOG)
            .where(*conditions)
            .order_by(AUDIT_LOG.c.at.desc(), AUDIT_LOG.c.id.desc())
            .limit(_limit(limit))
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [AuditEntryView(**row) for row in rows]
