"""Incident report tables: reports, their calls, dispatches to agencies, the webhook
outbox and the forwarding attempts of calls to agency lines.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.models import Base, _check_in


class ReportCategory(enum.StrEnum):
    FIRE = "fire"
    TRAFFIC_ACCIDENT = "traffic_accident"
    NATURAL_DISASTER = "natural_disaster"
    SECURITY = "security"  # security and public order
    HEALTH = "health"
    OTHER = "other"


class CallType(enum.StrEnum):
    EMERGENCY = "emergency"  # genuine emergency
    INFORMATION = "information"  # information request
    PRANK = "prank"
    GHOST = "ghost"  # ghost or silent call
    MISDIAL = "misdial"


class ReportStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class DispatchStatus(enum.StrEnum):
    """Where an agency is with a report, in the order it usually moves."""

    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    FALSE_ALARM = "false_alarm"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last retry


class ForwardMode(enum.StrEnum):
    CONFERENCE = "conference"
    TRANSFER = "transfer"
    CONSULT = "consult"
    ESCALATION = "escalation"  # a call-out about a report nobody acknowledged


class ForwardResult(enum.StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    CANCELLED = "cancelled"


class IncidentReport(Base):
    """An operator's report of an incident; `version` grows with every change."""

    __tablename__ = "incident_reports"
    __table_args__ = (
        CheckConstraint(_check_in("category", ReportCategory), name="category"),
        CheckConstraint(_check_in("call_type", CallType), name="call_type"),
        CheckConstraint(_check_in("status", ReportStatus), name="status"),
        CheckConstraint("priority BETWEEN 1 AND 4", name="priority"),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    category: Mapped[str] = mapped_column(String)
    call_type: Mapped[str] = mapped_column(String)
    # 1 is the most urgent.
    priority: Mapped[int] = mapped_column(Integer)
    location_text: Mapped[str] = mapped_column(Text, default="")
    kelurahan: Mapped[str] = mapped_column(String, default="")
    kecamatan: Mapped[str] = mapped_column(String, default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text, default="")
    # People involved: a list of objects such as {"name", "role", "age", "condition"}.
    people: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String, default=ReportStatus.OPEN.value)
    created_by: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ReportCall(Base):
    """A call about a report; a second call about the same incident adds a row."""

    __tablename__ = "report_calls"
    __table_args__ = (
        UniqueConstraint("report_id", "call_uniqueid"),
        Index(None, "call_uniqueid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(
        ForeignKey("incident_reports.id", ondelete="CASCADE")
    )
    # Uniqueid of the caller's channel, as in calls.uniqueid.
    call_uniqueid: Mapped[str] = mapped_column(String)
    linked_at: Mapped[datetime]
    linked_by: Mapped[str] = mapped_column(String)


class ReportDispatch(Base):
    """A report sent to one agency, and how far the agency has got with it."""

    __tablename__ = "report_dispatches"
    __table_args__ = (
        CheckConstraint(_check_in("status", DispatchStatus), name="status"),
        UniqueConstraint("report_id", "agency_id"),
        Index(None, "status", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(
        ForeignKey("incident_reports.id", ondelete="CASCADE")
    )
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String)
    sent_at: Mapped[datetime]
    sent_by: Mapped[str] = mapped_column(String)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String)
    status_at: Mapped[datetime]
    escalated_at: Mapped[datetime | None]
    escalations: Mapped[int] = mapped_column(Integer, default=0)


class DispatchEvent(Base):
    """One status change of a dispatch, with its time and who reported it."""

    __tablename__ = "dispatch_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dispatch_id: Mapped[int] = mapped_column(
        ForeignKey("report_dispatches.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String)
    note: Mapped[str] = mapped_column(Text, default="")


class OutboxMessage(Base):
    """A webhook delivery, written in the same transaction as the change it reports.

    One row per report version and agency: a retry sends the same payload again,
    so an agency never gets two different bodies for one (report id, version).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_check_in("status", OutboxStatus), name="status"),
        UniqueConstraint("report_id", "agency_id", "version"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(
        ForeignKey("incident_reports.id", ondelete="CASCADE")
    )
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class ForwardAttempt(Base):
    """One attempt to reach an agency line for a call or a report."""

    __tablename__ = "forward_attempts"
    __table_args__ = (
        CheckConstraint(_check_in("mode", ForwardMode), name="mode"),
        CheckConstraint(_check_in("result", ForwardResult), name="result"),
        Index(None, "call_uniqueid"),
        Index(None, "report_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uniqueid: Mapped[str | None] = mapped_column(String)
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("incident_reports.id", ondelete="SET NULL")
    )
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE")
    )
    line_priority: Mapped[int | None] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String)
    mode: Mapped[str] = mapped_column(String)
    result: Mapped[str] = mapped_column(String)
    # The channel Asterisk created for the agency line.
    channel: Mapped[str | None] = mapped_column(String)
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    seconds: Mapped[float | None] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String)
