"""Shift statistics tables: queue member events and the stored shift reports.

``member_events`` holds one row per offer of a call to a queue member and per
outcome of that offer, taken from app_queue's AMI events. Shift reports are built
from it, from ``member_pauses`` and from ``calls`` when a shift ends.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, Date, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.models import Base, _check_in


class MemberEventKind(enum.StrEnum):
    """The app_queue AMI event behind a member event row."""

    OFFERED = "offered"  # AgentCalled
    ANSWERED = "answered"  # AgentConnect; seconds is the ring time
    MISSED = "missed"  # AgentRingNoAnswer; seconds is the ring time
    COMPLETED = "completed"  # AgentComplete; seconds is the talk time


class MemberEvent(Base):
    """One offer of a call to a queue member, or one outcome of such an offer."""

    __tablename__ = "member_events"
    __table_args__ = (
        CheckConstraint(_check_in("kind", MemberEventKind), name="kind"),
        CheckConstraint("seconds IS NULL OR seconds >= 0", name="seconds"),
        Index(None, "interface", "at"),
        Index(None, "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    interface: Mapped[str] = mapped_column(String)
    member_name: Mapped[str | None] = mapped_column(String)
    queue: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    # Uniqueid and linkedid of the caller's channel.
    uniqueid: Mapped[str | None] = mapped_column(String)
    linkedid: Mapped[str | None] = mapped_column(String)
    seconds: Mapped[float | None] = mapped_column(Float)


class ShiftReport(Base):
    """Figures of one shift window, per operator and for the whole queue."""

    __tablename__ = "shift_reports"
    __table_args__ = (UniqueConstraint("shift_date", "shift_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shift_date: Mapped[date] = mapped_column(Date)
    shift_name: Mapped[str] = mapped_column(String)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    created_at: Mapped[datetime]
    crew: Mapped[str | None] = mapped_column(String)
    content: Mapped[dict[str, Any]]
