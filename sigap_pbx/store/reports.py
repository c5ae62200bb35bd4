"""Incident report tables: reports, their calls, dispatches to agencies, the webhook
outbox and the forwarding attempts of calls to agency lines.

Below the table models, `ReportStore` reads and writes them, except
`forward_attempts`, which only `sigap_pbx.store.forwarding.ForwardStore` writes.
Each change writes its audit entry, and the webhook messages it causes, in its
own transaction.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import (
    JSON,
    CheckConstraint,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.agencies import AGENCIES, AgencyNotFound, insert_audit
from sigap_pbx.store.calls import (
    CALLS,
    _aware_datetime,
    _fields_to_dict,
    _insert,
    _key,
    _non_negative_int,
    _one_of,
    _text,
    _validate_id,
    _validate_json_object,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import InvalidFieldValue, StoreError, UnknownField
from sigap_pbx.store.models import Base, _check_in

log = structlog.get_logger(__name__)


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


# --- Store -------------------------------------------------------------------

INCIDENT_REPORTS: Table = IncidentReport.__table__  # type: ignore[assignment]
REPORT_CALLS: Table = ReportCall.__table__  # type: ignore[assignment]
REPORT_DISPATCHES: Table = ReportDispatch.__table__  # type: ignore[assignment]
DISPATCH_EVENTS: Table = DispatchEvent.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]
FORWARD_ATTEMPTS: Table = ForwardAttempt.__table__  # type: ignore[assignment]

# Report columns that a create or an update may set.
REPORT_FIELDS = (
    "category",
    "call_type",
    "priority",
    "location_text",
    "kelurahan",
    "kecamatan",
    "latitude",
    "longitude",
    "description",
    "people",
    "status",
)
# Webhook event names in the outbox payload.
EVENT_DISPATCHED = "report.dispatched"
EVENT_UPDATED = "report.updated"



class ReportNotFound(StoreError, LookupError):
    """No incident report has the id asked for."""

    def __init__(self, report_id: int) -> None:
        super().__init__(
            f"report {report_id} not found, check the id with `sigap reports list`"
            " or GET /api/reports"
        )
        self.report_id = report_id


class ReportVersionConflict(StoreError):
    """The report changed after the caller read it."""

    def __init__(self, report_id: int, expected: int, current: int) -> None:
        super().__init__(
            f"report {report_id} is at version {current}, not {expected}: someone"
            " else changed it first; read the report again and repeat the change"
        )
        self.report_id = report_id
        self.expected = expected
        self.current = current


class DispatchRejected(StoreError):
    """A dispatch that cannot be made: a closed report or an inactive agency."""


@dataclass(frozen=True, slots=True)
class ReportView:
    """One incident report, read from ``incident_reports``."""

    id: int
    version: int
    category: ReportCategory
    call_type: CallType
    priority: int
    location_text: str
    kelurahan: str
    kecamatan: str
    latitude: float | None
    longitude: float | None
    description: str
    people: list[dict[str, Any]]
    status: ReportStatus
    created_by: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        result = _fields_to_dict(self, skip=["people"])
        result["people"] = copy.deepcopy(self.people)
        return result


@dataclass(frozen=True, slots=True)
class ReportCallView:
    """A call linked to a report, with the call's record when the store has it."""

    call_uniqueid: str
    linked_at: datetime
    linked_by: str
    # From ``calls``; None while the call tracker has not stored the call.
    call_id: int | None
    caller_number: str | None
    arrived_at: datetime | None
    outcome: str | None

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class DispatchEventView:
    """One status change of a dispatch."""

    status: DispatchStatus
    at: datetime
    actor: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class DispatchView:
    """A report's dispatch to one agency, with its status changes oldest first."""

    id: int
    report_id: int
    agency_id: int
    agency_code: str
    status: DispatchStatus
    sent_at: datetime
    sent_by: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    status_at: datetime
    escalated_at: datetime | None
    escalations: int
    events: tuple[DispatchEventView, ...]

    def to_dict(self) -> dict[str, Any]:
        result = _fields_to_dict(self, skip=["events"])
        result["events"] = [event.to_dict() for event in self.events]
        return result


@dataclass(frozen=True, slots=True)
class OutboxView:
    """One webhook message of a report to an agency."""

    id: int
    report_id: int
    agency_id: int
    agency_code: str
    version: int
    payload: dict[str, Any]
    status: OutboxStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None

    def to_dict(self, *, payload: bool = True) -> dict[str, Any]:
        result = _fields_to_dict(self, skip=["payload"])
        if payload:
            result["payload"] = copy.deepcopy(self.payload)
        return result


@dataclass(frozen=True, slots=True)
class ForwardAttemptView:
    """One attempt to reach an agency line."""

    id: int
    call_uniqueid: str | None
    report_id: int | None
    agency_id: int
    agency_code: str
    line_priority: int | None
    target: str
    mode: ForwardMode
    result: ForwardResult
    channel: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    seconds: float | None
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class ReportDetail:
    """A report with its calls, dispatches, webhook messages and forward attempts."""

    report: ReportView
    calls: tuple[ReportCallView, ...]
    dispatches: tuple[DispatchView, ...]
    outbox: tuple[OutboxView, ...]
    forward_attempts: tuple[ForwardAttemptView, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values; outbox messages without their payloads."""
        return {
            "report": self.report.to_dict(),
            "calls": [call.to_dict() for call in self.calls],
            "dispatches": [dispatch.to_dict() for dispatch in self.dispatches],
            "outbox": [message.to_dict(payload=False) for message in self.outbox],
            "forward_attempts": [a.to_dict() for a in self.forward_attempts],
        }


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    """The report after an update, the fields that changed and the messages queued."""

    report: ReportView
    changed: tuple[str, ...]
    outbox_messages: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": self.report.to_dict(),
            "changed": list(self.changed),
            "outbox_messages": self.outbox_messages,
        }


@dataclass(frozen=True, slots=True)
class DispatchOutcome:
    """Agencies a dispatch sent the report to, and those it had reached before."""

    report_id: int
    version: int
    sent: tuple[str, ...]
    already_sent: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "version": self.version,
            "sent": list(self.sent),
            "already_sent": list(self.already_sent),
        }


def _report_view(row: Mapping[str, Any]) -> ReportView:
    return ReportView(
        **{
            **{name: row[name] for name in ReportView.__slots__},  # type: ignore[attr-defined]
            "category": ReportCategory(row["category"]),
            "call_type": CallType(row["call_type"]),
            "status": ReportStatus(row["status"]),
            "people": list(row["people"] or []),
        }
    )


def report_payload(
    report: ReportView, agency_code: str, sent_at: datetime, event: str
) -> dict[str, Any]:
    """Build the webhook body for one agency and one report version.

    It carries the report's fields but not who created it: an agency needs the
    incident, not the operator's name.
    """
    body = report.to_dict()
    body.pop("created_by")
    return {
        "event": event,
        "agency": agency_code,
        "sent_at": sent_at.isoformat(),
        "report": body,
    }


def _report_row(values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(REPORT_FIELDS))
    if unknown:
        raise UnknownField("report", unknown[0], REPORT_FIELDS)
    row = dict(values)
    for name in ("category", "call_type", "status"):
        if name in row:
            row[name] = {
                "category": _validate_category,
                "call_type": _validate_call_type,
                "status": _validate_status,
            }[name](name, row[name])
    if "priority" in row:
        priority = row["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 4:
            raise InvalidFieldValue("priority", priority, "an integer from 1 to 4")
    for name in ("location_text", "kelurahan", "kecamatan", "description"):
        if name in row:
            _text(name, row[name])
    if "people" in row:
        _validate_json_object("people", {"people": row["people"]})
    return row


_validate_category = _one_of(ReportCategory)
_validate_call_type = _one_of(CallType)
_validate_status = _one_of(ReportStatus)


class ReportStore:
    """Reads and writes of incident reports, their dispatches and the outbox.

    Every change writes its audit entry, and any webhook messages it causes, in
    the same transaction as the change itself.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- Reports -------------------------------------------------------------

    async def create_report(
        self,
        values: Mapping[str, Any],
        *,
        actor: str,
        at: datetime,
        call_uniqueid: str | None = None,
    ) -> ReportView:
        """Insert a report at version 1, optionally linked to a call; return it."""
        row = _report_row(values)
        for name in ("category", "call_type", "priority"):
            if name not in row:
                raise InvalidFieldValue(name, None, f"a {name} for a new report")
        row.setdefault("people", [])
        row.update(
            version=1,
            created_by=_key("actor", actor),
            created_at=_aware_datetime("at", at),
            updated_at=at,
        )
        row.setdefault("status", ReportStatus.OPEN.value)
        async with self._db.session() as session:
            insert = INCIDENT_REPORTS.insert().values(**row).returning(INCIDENT_REPORTS)
            report = _report_view((await session.execute(insert)).mappings().one())
            if call_uniqueid is not None:
                await self._link(session, report.id, call_uniqueid, actor, at)
            await insert_audit(
                session,
                actor=actor,
                action="report.create",
                subject=f"report:{report.id}",
                detail={
                    "report_id": report.id,
                    "category": report.category.value,
                    "call_type": report.call_type.value,
                    "priority": report.priority,
                    "call_uniqueid": call_uniqueid,
                    "summary": f"report {report.id} created",
                },
                at=at,
            )
        log.info(
            "report_created", report_id=report.id, actor=actor, call_uniqueid=call_uniqueid
        )
        return report

    async def update_report(
        self,
        report_id: int,
        values: Mapping[str, Any],
        *,
        actor: str,
        at: datetime,
        expected_version: int | None = None,
    ) -> UpdateOutcome:
        """Change report fields, bump the version and queue one webhook message
        per agency the report was dispatched to, all in one transaction.

        Values equal to the stored ones change nothing: when none differ, the
        version stays and no message or audit entry is written. Raises
        ReportNotFound, or ReportVersionConflict when `expected_version` is given
        and the report is at another version.
        """
        _validate_id("report_id", report_id)
        row = _report_row(values)
        _key("actor", actor)
        _aware_datetime("at", at)
        async with self._db.session() as session:
            current = await self._locked_report(session, report_id)
            if expected_version is not None and expected_version != current.version:
                raise ReportVersionConflict(report_id, expected_version, current.version)
            old = current.to_dict()
            changed = tuple(
                name for name in REPORT_FIELDS if name in row and _differs(old[name], row[name])
            )
            if not changed:
                return UpdateOutcome(current, (), 0)
            assignments = {name: row[name] for name in changed}
            statement = (
                update(INCIDENT_REPORTS)
                .where(INCIDENT_REPORTS.c.id == report_id)
                .values(
                    **assignments,
                    version=INCIDENT_REPORTS.c.version + 1,
                    updated_at=at,
                )
                .returning(INCIDENT_REPORTS)
            )
            report = _report_view((await session.execute(statement)).mappings().one())
            messages = await self._queue_updates(session, report, at)
            await insert_audit(
                session,
                actor=actor,
                action="report.update",
                subject=f"report:{report_id}",
                detail={
                    "report_id": report_id,
                    "version": report.version,
                    "changed": list(changed),
                    "before": {name: old[name] for name in changed},
                    "outbox_messages": messages,
                    "summary": f"report {report_id} version {report.version}:"
                    f" {', '.join(changed)} changed",
                },
                at=at,
            )
        log.info(
            "report_updated",
            report_id=report_id,
            version=report.version,
            changed=list(changed),
            outbox_messages=messages,
            actor=actor,
        )
        return UpdateOutcome(report, changed, messages)

    async def _locked_report(self, session: AsyncSession, report_id: int) -> ReportView:
        """Read a report for a change; on PostgreSQL the row stays locked until
        the transaction ends, and SQLite's write transaction already excludes
        other writers."""
        query = select(INCIDENT_REPORTS).where(INCIDENT_REPORTS.c.id == report_id)
        if self._db.dialect == "postgresql":
            query = query.with_for_update()
        row = (await session.execute(query)).mappings().one_or_none()
        if row is None:
            raise ReportNotFound(report_id)
        return _report_view(row)

    async def _queue_updates(
        self, session: AsyncSession, report: ReportView, at: datetime
    ) -> int:
        query = (
            select(REPORT_DISPATCHES.c.agency_id, AGENCIES.c.code)
            .join(AGENCIES, AGENCIES.c.id == REPORT_DISPATCHES.c.agency_id)
            .where(REPORT_DISPATCHES.c.report_id == report.id)
            .order_by(AGENCIES.c.code)
        )
        targets = (await session.execute(query)).all()
        for agency_id, code in targets:
            await self._insert_outbox(session, report, agency_id, code, at, EVENT_UPDATED)
        return len(targets)

    @staticmethod
    async def _insert_outbox(
        session: AsyncSession,
        report: ReportView,
        agency_id: int,
        agency_code: str,
        at: datetime,
        event: str,
    ) -> None:
        await session.execute(
            OUTBOX.insert().values(
                report_id=report.id,
                agency_id=agency_id,
                version=report.version,
                payload=report_payload(report, agency_code, at, event),
                status=OutboxStatus.PENDING.value,
                attempts=0,
                created_at=at,
                next_attempt_at=at,
            )
        )

    # --- Calls ---------------------------------------------------------------

    async def link_call(
        self, report_id: int, call_uniqueid: str, *, actor: str, at: datetime
    ) -> bool:
        """Link a call to a report; return False when it was linked already.

        A call may be linked to several reports, and a report to several calls.
        Linking does not change the report's fields, so its version stays.
        """
        _validate_id("report_id", report_id)
        _key("actor", actor)
        _aware_datetime("at", at)
        async with self._db.session() as session:
            await self._locked_report(session, report_id)
            linked = await self._link(session, report_id, call_uniqueid, actor, at)
            if linked:
                await insert_audit(
                    session,
                    actor=actor,
                    action="report.link_call",
                    subject=f"report:{report_id}",
                    detail={
                        "report_id": report_id,
                        "call_uniqueid": call_uniqueid,
                        "summary": f"call {call_uniqueid} linked to report {report_id}",
                    },
                    at=at,
                )
        if linked:
            log.info(
                "report_call_linked",
                report_id=report_id,
                call_uniqueid=call_uniqueid,
                actor=actor,
            )
        return linked

    async def _link(
        self,
        session: AsyncSession,
        report_id: int,
        call_uniqueid: str,
        actor: str,
        at: datetime,
    ) -> bool:
        insert = (
            _insert(self._db.dialect, REPORT_CALLS)
            .values(
                report_id=report_id,
                call_uniqueid=_key("call_uniqueid", call_uniqueid),
                linked_at=at,
                linked_by=actor,
            )
            .on_conflict_do_nothing(index_elements=["report_id", "call_uniqueid"])
        )
        result = await session.execute(insert)
        return bool(result.rowcount)

    async def reports_for_call(self, call_uniqueid: str) -> list[int]:
        """Return the ids of the reports a call is linked to, oldest first."""
        query = (
            select(REPORT_CALLS.c.report_id)
            .where(REPORT_CALLS.c.call_uniqueid == _text("call_uniqueid", call_uniqueid))
            .order_by(REPORT_CALLS.c.report_id)
        )
        async with self._db.session(write=False) as session:
            return list((await session.execute(query)).scalars())

    # --- Dispatch ------------------------------------------------------------

    async def dispatch(
        self,
        report_id: int,
        agency_codes: Sequence[str],
        *,
        actor: str,
        at: datetime,
    ) -> DispatchOutcome:
        """Send a report to agencies: one dispatch, one "sent" event and one
        webhook message per agency, all in one transaction with the audit entry.

        An agency that has the report already is listed in `already_sent` and
        gets nothing new. Raises ReportNotFound, AgencyNotFound, or
        DispatchRejected for a closed report or an inactive agency, and then
        writes nothing.
        """
        _validate_id("report_id", report_id)
        _key("actor", actor)
        _aware_datetime("at", at)
        codes = list(dict.fromkeys(_key("agency", code) for code in agency_codes))
        if not codes:
            raise InvalidFieldValue("agencies", list(agency_codes), "at least one agency code")
        async with self._db.session() as session:
            report = await self._locked_report(session, report_id)
            if report.status is ReportStatus.CLOSED:
                raise DispatchRejected(
                    f"report {report_id} is closed, so it cannot be dispatched; set its"
                    " status to open first"
                )
            agencies = {
                row["code"]: row
                for row in (
                    await session.execute(
                        select(AGENCIES.c.id, AGENCIES.c.code, AGENCIES.c.active).where(
                            AGENCIES.c.code.in_(codes)
                        )
                    )
                ).mappings()
            }
            for code in codes:
                if code not in agencies:
                    raise AgencyNotFound(code)
                if not agencies[code]["active"]:
                    raise DispatchRejected(
                        f"agency {code!r} is inactive, so it cannot receive reports;"
                        " activate it in the directory or choose another agency"
                    )
            existing = set(
                (
                    await session.execute(
                        select(REPORT_DISPATCHES.c.agency_id).where(
                            REPORT_DISPATCHES.c.report_id == report_id
                        )
                    )
                ).scalars()
            )
            sent: list[str] = []
            already: list[str] = []
            for code in codes:
                agency_id = agencies[code]["id"]
                if agency_id in existing:
                    already.append(code)
                    continue
                insert = (
                    REPORT_DISPATCHES.insert()
                    .values(
                        report_id=report_id,
                        agency_id=agency_id,
                        status=DispatchStatus.SENT.value,
                        sent_at=at,
                        sent_by=actor,
                        status_at=at,
                        escalations=0,
                    )
                    .returning(REPORT_DISPATCHES.c.id)
                )
                dispatch_id = (await session.execute(insert)).scalar_one()
                await session.execute(
                    DISPATCH_EVENTS.insert().values(
                        dispatch_id=dispatch_id,
                        status=DispatchStatus.SENT.value,
                        at=at,
                        actor=actor,
                        note="",
                    )
                )
                await self._insert_outbox(
                    session, report, agency_id, code, at, EVENT_DISPATCHED
                )
                sent.append(code)
            if sent:
                await insert_audit(
                    session,
                    actor=actor,
                    action="report.dispatch",
                    subject=f"report:{report_id}",
                    detail={
                        "report_id": report_id,
                        "version": report.version,
                        "agencies": sent,
                        "already_sent": already,
                        "summary": f"report {report_id} sent to {', '.join(sent)}",
                    },
                    at=at,
                )
        if sent:
            log.info(
                "report_dispatched",
                report_id=report_id,
                version=report.version,
                agencies=sent,
                actor=actor,
            )
        return DispatchOutcome(report_id, report.version, tuple(sent), tuple(already))

    # --- Reading -------------------------------------------------------------

    async def get_report(self, report_id: int) -> ReportDetail | None:
        """Return a report with its calls, dispatches, outbox and attempts, or None."""
        _validate_id("report_id", report_id)
        async with self._db.session(write=False) as session:
            row = (
                (
                    await session.execute(
                        select(INCIDENT_REPORTS).where(INCIDENT_REPORTS.c.id == report_id)
                    )
                )
                .mappings()
                .one_or_none()
            )
            if row is None:
                return None
            calls_query = (
                select(
                    REPORT_CALLS.c.call_uniqueid,
                    REPORT_CALLS.c.linked_at,
                    REPORT_CALLS.c.linked_by,
                    CALLS.c.id.label("call_id"),
                    CALLS.c.caller_number,
                    CALLS.c.arrived_at,
                    CALLS.c.outcome,
                )
                .select_from(
                    REPORT_CALLS.outerjoin(
                        CALLS, CALLS.c.uniqueid == REPORT_CALLS.c.call_uniqueid
                    )
                )
                .where(REPORT_CALLS.c.report_id == report_id)
                .order_by(REPORT_CALLS.c.linked_at, REPORT_CALLS.c.id)
            )
            calls = tuple(
                ReportCallView(**call)
                for call in (await session.execute(calls_query)).mappings()
            )
            dispatches = await self._dispatches(session, report_id)
            outbox_query = (
                select(OUTBOX, AGENCIES.c.code.label("agency_code"))
                .join(AGENCIES, AGENCIES.c.id == OUTBOX.c.agency_id)
                .where(OUTBOX.c.report_id == report_id)
                .order_by(OUTBOX.c.id)
            )
            outbox = tuple(
                OutboxView(**{**message, "status": OutboxStatus(message["status"])})
                for message in (await session.execute(outbox_query)).mappings()
            )
            attempts = await self._attempts(
                session, FORWARD_ATTEMPTS.c.report_id == report_id
            )
        return ReportDetail(_report_view(row), calls, dispatches, outbox, tuple(attempts))

    async def _dispatches(
        self, session: AsyncSession, report_id: int
    ) -> tuple[DispatchView, ...]:
        query = (
            select(REPORT_DISPATCHES, AGENCIES.c.code.label("agency_code"))
            .join(AGENCIES, AGENCIES.c.id == REPORT_DISPATCHES.c.agency_id)
            .where(REPORT_DISPATCHES.c.report_id == report_id)
            .order_by(REPORT_DISPATCHES.c.sent_at, REPORT_DISPATCHES.c.id)
        )
        rows = (await session.execute(query)).mappings().all()
        events: dict[int, list[DispatchEventView]] = {}
        if rows:
            event_query = (
                select(DISPATCH_EVENTS)
                .where(DISPATCH_EVENTS.c.dispatch_id.in_([row["id"] for row in rows]))
                .order_by(DISPATCH_EVENTS.c.at, DISPATCH_EVENTS.c.id)
            )
            for event in (await session.execute(event_query)).mappings():
                events.setdefault(event["dispatch_id"], []).append(
                    DispatchEventView(
                        DispatchStatus(event["status"]),
                        event["at"],
                        event["actor"],
                        event["note"],
                    )
                )
        return tuple(
            DispatchView(
                **{
                    **row,
                    "status": DispatchStatus(row["status"]),
                    "events": tuple(events.get(row["id"], ())),
                }
            )
            for row in rows
        )

    @staticmethod
    async def _attempts(
        session: AsyncSession, condition: ColumnElement[bool]
    ) -> list[ForwardAttemptView]:
        query = (
            select(FORWARD_ATTEMPTS, AGENCIES.c.code.label("agency_code"))
            .join(AGENCIES, AGENCIES.c.id == FORWARD_ATTEMPTS.c.agency_id)
            .where(condition)
            .order_by(FORWARD_ATTEMPTS.c.started_at, FORWARD_ATTEMPTS.c.id)
        )
        return [
            ForwardAttemptView(
                **{
                    **row,
                    "mode": ForwardMode(row["mode"]),
                    "result": ForwardResult(row["result"]),
                }
            )
            for row in (await session.execute(query)).mappings()
        ]

    async def list_reports(
        self,
        *,
        status: str | None = None,
        category: str | None = None,
        call_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        number: str | None = None,
        agency_code: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReportView]:
        """Return reports newest first, filtered by every argument given.

        `since` is inclusive and `until` exclusive, both on ``created_at``.
        `number` finds reports with a linked call from that caller number,
        normalised or as received. `agency_code` finds reports dispatched to
        that agency.
        """
        query = (
            self._filter(
                select(INCIDENT_REPORTS),
                status,
                category,
                call_type,
                since,
                until,
                number,
                agency_code,
            )
            .order_by(INCIDENT_REPORTS.c.created_at.desc(), INCIDENT_REPORTS.c.id.desc())
            .limit(_non_negative_int("limit", limit))
            .offset(_non_negative_int("offset", offset))
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_report_view(row) for row in rows]

    async def count_reports(
        self,
        *,
        status: str | None = None,
        category: str | None = None,
        call_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        number: str | None = None,
        agency_code: str | None = None,
    ) -> int:
        """Return how many reports `list_reports` would list without a limit."""
        query = self._filter(
            select(func.count()).select_from(INCIDENT_REPORTS),
            status,
            category,
            call_type,
            since,
            until,
            number,
            agency_code,
        )
        async with self._db.session(write=False) as session:
            return (await session.execute(query)).scalar_one()

    @staticmethod
    def _filter(
        query: Select[Any],
        status: str | None,
        category: str | None,
        call_type: str | None,
        since: datetime | None,
        until: datetime | None,
        number: str | None,
        agency_code: str | None = None,
    ) -> Select[Any]:
        conditions: list[ColumnElement[bool]] = []
        if status is not None:
            conditions.append(INCIDENT_REPORTS.c.status == _validate_status("status", status))
        if category is not None:
            conditions.append(
                INCIDENT_REPORTS.c.category == _validate_category("category", category)
            )
        if call_type is not None:
            conditions.append(
                INCIDENT_REPORTS.c.call_type == _validate_call_type("call_type", call_type)
            )
        if since is not None:
            conditions.append(INCIDENT_REPORTS.c.created_at >= _aware_datetime("since", since))
        if until is not None:
            conditions.append(INCIDENT_REPORTS.c.created_at < _aware_datetime("until", until))
        if number is not None:
            number = _key("number", number)
            linked = (
                select(REPORT_CALLS.c.id)
                .join(CALLS, CALLS.c.uniqueid == REPORT_CALLS.c.call_uniqueid)
                .where(
                    REPORT_CALLS.c.report_id == INCIDENT_REPORTS.c.id,
                    (CALLS.c.caller_number == number) | (CALLS.c.caller_number_raw == number),
                )
            )
            conditions.append(linked.exists())
        if agency_code is not None:
            dispatched = (
                select(REPORT_DISPATCHES.c.id)
                .join(AGENCIES, AGENCIES.c.id == REPORT_DISPATCHES.c.agency_id)
                .where(
                    REPORT_DISPATCHES.c.report_id == INCIDENT_REPORTS.c.id,
                    AGENCIES.c.code == _text("agency_code", agency_code),
                )
            )
            conditions.append(dispatched.exists())
        return query.where(*conditions)


def _differs(old: Any, new: Any) -> bool:
    # 1 and 1.0 are the same coordinate, but True is not the same as 1.
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is not type(new) or old != new
    return bool(old != new)
