"""Roster tables: saved roster versions, per-shift duty overrides and the audit log.

A roster is stored whole, as one JSON document per saved version, so that every
version can be read back and compared. ``roster_versions`` only grows, and the row
with the highest id is the roster in force.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

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
