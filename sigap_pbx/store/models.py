"""ORM models of the call record: calls, call legs, the event timeline, checkpoints.

The Alembic revisions in ``migrations/versions`` create these tables. A change here
needs a new revision, and ``tests/store/test_migrations.py`` fails while the two
differ.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class CallOutcome(enum.StrEnum):
    """Result of a call. Every value except ``IN_PROGRESS`` is final."""

    IN_PROGRESS = "in_progress"
    ANSWERED = "answered"
    ABANDONED_BEFORE_QUEUE = "abandoned_before_queue"
    ABANDONED_IN_QUEUE = "abandoned_in_queue"
    OVERFLOWED = "overflowed"
    FAILED = "failed"


class LegOutcome(enum.StrEnum):
    """Result of one operator's ringing channel. Every value except ``RINGING`` is final."""

    RINGING = "ringing"
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class OverflowStage(enum.StrEnum):
    """Overflow target that a call reached after the operator queue."""

    BACKUP = "backup"
    SUPERVISOR = "supervisor"
    ONCALL = "oncall"


class EventSource(enum.StrEnum):
    """Origin of a timeline event."""

    AMI = "ami"
    CEL = "cel"
    CDR = "cdr"
    CONTROLLER = "controller"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _check_in(column: str, values: type[enum.StrEnum]) -> str:
    quoted = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({quoted})"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamp on every dialect.

    PostgreSQL stores ``timestamptz``. SQLite has no timezone type, so the value is
    stored as UTC text without an offset and gets ``tzinfo=UTC`` back on load. Naive
    datetimes are rejected because their zone is unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        return value.astimezone(UTC)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    # Fixed constraint names let later revisions drop or alter them by name.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Call(Base):
    """One emergency call, keyed by the uniqueid of the caller's channel."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(_check_in("outcome", CallOutcome), name="outcome"),
        CheckConstraint(
            "overflow_stage IS NULL OR " + _check_in("overflow_stage", OverflowStage),
            name="overflow_stage",
        ),
        Index(None, "arrived_at"),
        Index(None, "caller_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String, unique=True)
    linkedid: Mapped[str | None] = mapped_column(String, index=True)
    channel: Mapped[str | None] = mapped_column(String)
    caller_number: Mapped[str | None] = mapped_column(String)
    caller_number_raw: Mapped[str | None] = mapped_column(String)
    caller_name: Mapped[str | None] = mapped_column(Text)
    trunk: Mapped[str | None] = mapped_column(String)
    dialled_number: Mapped[str | None] = mapped_column(String)
    queue: Mapped[str | None] = mapped_column(String)
    arrived_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    operator: Mapped[str | None] = mapped_column(String)
    operator_interface: Mapped[str | None] = mapped_column(String)
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(
        String,
        default=CallOutcome.IN_PROGRESS.value,
        server_default=CallOutcome.IN_PROGRESS.value,
    )
    overflow_stage: Mapped[str | None] = mapped_column(String)
    answered_by: Mapped[str | None] = mapped_column(String)
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    hangup_cause_text: Mapped[str | None] = mapped_column(Text)
    reconciled: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )

    legs: Mapped[list[CallLeg]] = relationship(
        back_populates="call", passive_deletes=True
    )


class CallLeg(Base):
    """One channel that rang an operator for a call. Ring-all creates several."""

    __tablename__ = "call_legs"
    __table_args__ = (
        CheckConstraint(_check_in("outcome", LegOutcome), name="outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    uniqueid: Mapped[str] = mapped_column(String, unique=True)
    channel: Mapped[str | None] = mapped_column(String)
    interface: Mapped[str | None] = mapped_column(String)
    member_name: Mapped[str | None] = mapped_column(String)
    queue: Mapped[str | None] = mapped_column(String)
    called_at: Mapped[datetime | None]
    connected_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    ring_seconds: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(
        String,
        default=LegOutcome.RINGING.value,
        server_default=LegOutcome.RINGING.value,
    )
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )

    call: Mapped[Call] = relationship(back_populates="legs")


class CallEvent(Base):
    """One entry of a call's append-only timeline. Rows are never updated."""

    __tablename__ = "call_events"
    __table_args__ = (
        UniqueConstraint("call_id", "dedupe_key"),
        CheckConstraint(_check_in("source", EventSource), name="source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    dedupe_key: Mapped[str] = mapped_column(String)
    data: Mapped[dict[str, Any]]


class Checkpoint(Base):
    """Named position that reconciliation has read up to, such as the last CEL id."""

    __tablename__ = "checkpoints"

    name: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
