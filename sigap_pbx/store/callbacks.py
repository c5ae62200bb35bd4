"""Callbacks of abandoned calls: the list to call back and every attempt made.

An operator calls an abandoned caller back from the console. Each attempt is one
row in ``callback_attempts``, written when the controller sends the AMI Originate
and updated from the OriginateResponse, the dialplan's result event and the
Hangup. A call leaves the callback list once one attempt reached the caller
(outcome ``answered``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.calls import (
    CALLS,
    _aware_datetime,
    _fields_to_dict,
    _key,
    _non_negative_int,
    _one_of,
    _validate_id,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import StoreError
from sigap_pbx.store.models import Base, CallOutcome, _check_in

ABANDONED_OUTCOMES = (
    CallOutcome.ABANDONED_BEFORE_QUEUE.value,
    CallOutcome.ABANDONED_IN_QUEUE.value,
)


class CallbackOutcome(enum.StrEnum):
    """The result of a callback attempt. Every value except ``CALLING`` is final."""

    CALLING = "calling"  # Originate sent, the attempt is still going on
    OPERATOR_NO_ANSWER = "operator_no_answer"  # the operator's own phone never answered
    ANSWERED = "answered"  # the caller answered
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"  # the carrier rejected the call or Asterisk could not place it
    CANCELLED = "cancelled"  # the operator hung up before the caller answered


class CallbackAttempt(Base):
    """One attempt to call an abandoned caller back from an operator's phone."""

    __tablename__ = "callback_attempts"
    __table_args__ = (
        CheckConstraint(_check_in("outcome", CallbackOutcome), name="outcome"),
        Index(None, "call_id"),
        Index(None, "uniqueid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    # The number dialled through the trunk.
    caller_number: Mapped[str] = mapped_column(String)
    username: Mapped[str] = mapped_column(String)
    endpoint: Mapped[str] = mapped_column(String)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String)
    # The operator phone's channel and its uniqueid (the Originate's ChannelId).
    channel: Mapped[str | None] = mapped_column(String)
    uniqueid: Mapped[str | None] = mapped_column(String)


CALLBACK_ATTEMPTS: Table = CallbackAttempt.__table__  # type: ignore[assignment]

_validate_outcome = _one_of(CallbackOutcome)


class CallbackAttemptNotFound(StoreError, LookupError):
    def __init__(self, attempt_id: int) -> None:
        super().__init__(f"callback attempt id {attempt_id} not found")
        self.attempt_id = attempt_id


@dataclass(frozen=True, slots=True)
class CallbackAttemptView:
    """One callback attempt, read from ``callback_attempts``."""

    id: int
    call_id: int
    caller_number: str
    username: str
    endpoint: str
    started_at: datetime
    ended_at: datetime | None
    outcome: CallbackOutcome
    channel: str | None
    uniqueid: str | None

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """An abandoned call not yet called back successfully, with its attempts so far."""

    call_id: int
    uniqueid: str
    caller_number: str | None
    caller_number_raw: str | None
    caller_name: str | None
    arrived_at: datetime | None
    ended_at: datetime | None
    outcome: str
    wait_seconds: float | None
    attempts: tuple[CallbackAttemptView, ...]

    def to_dict(self) -> dict[str, Any]:
        result = _fields_to_dict(self, skip=["attempts"])
        result["attempts"] = [attempt.to_dict() for attempt in self.attempts]
        return result


def _attempt_view(row: Mapping[str, Any]) -> CallbackAttemptView:
    return CallbackAttemptView(**{**row, "outcome": CallbackOutcome(row["outcome"])})


class CallbackStore:
    """Reads and writes of callback attempts. Each method runs in its own transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_attempt(
        self,
        *,
        call_id: int,
        caller_number: str,
        username: str,
        endpoint: str,
        started_at: datetime,
        uniqueid: str | None = None,
    ) -> int:
        """Insert an attempt in progress (outcome ``calling``) and return its id."""
        insert = (
            CALLBACK_ATTEMPTS.insert()
            .values(
                call_id=_validate_id("call_id", call_id),
                caller_number=_key("caller_number", caller_number),
                username=_key("username", username),
                endpoint=_key("endpoint", endpoint),
                started_at=_aware_datetime("started_at", started_at),
                outcome=CallbackOutcome.CALLING.value,
                uniqueid=uniqueid,
            )
            .returning(CALLBACK_ATTEMPTS.c.id)
        )
        async with self._db.session() as session:
            return (await session.execute(insert)).scalar_one()

    async def update_attempt(
        self,
        attempt_id: int,
        *,
        outcome: str | None = None,
        ended_at: datetime | None = None,
        channel: str | None = None,
    ) -> CallbackAttemptView:
        """Set an attempt's outcome, end time or channel; return the attempt.

        A final outcome is not replaced by ``calling``, and an attempt that has
        ended keeps its first ``ended_at``, so late or repeated events change
        nothing. Raises CallbackAttemptNotFound for an unknown id.
        """
        attempt_id = _validate_id("attempt_id", attempt_id)
        query = select(CALLBACK_ATTEMPTS).where(CALLBACK_ATTEMPTS.c.id == attempt_id)
        async with self._db.session() as session:
            row = (await session.execute(query)).mappings().one_or_none()
            if row is None:
                raise CallbackAttemptNotFound(attempt_id)
            values: dict[str, Any] = {}
            if outcome is not None:
                outcome = _validate_outcome("outcome", outcome)
                if outcome != CallbackOutcome.CALLING or row["outcome"] == outcome:
                    values["outcome"] = outcome
            if ended_at is not None and row["ended_at"] is None:
                values["ended_at"] = _aware_datetime("ended_at", ended_at)
            if channel is not None and row["channel"] is None:
                values["channel"] = _key("channel", channel)
            if values:
                await session.execute(
                    update(CALLBACK_ATTEMPTS)
                    .where(CALLBACK_ATTEMPTS.c.id == attempt_id)
                    .values(**values)
                )
            return _attempt_view({**row, **values})

    async def list_attempts(self, call_id: int) -> list[CallbackAttemptView]:
        """Return a call's attempts, oldest first."""
        query = (
            select(CALLBACK_ATTEMPTS)
            .where(CALLBACK_ATTEMPTS.c.call_id == _validate_id("call_id", call_id))
            .order_by(CALLBACK_ATTEMPTS.c.started_at, CALLBACK_ATTEMPTS.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_attempt_view(row) for row in rows]

    async def unfinished_attempts(self) -> list[CallbackAttemptView]:
        """Return the attempts still ``calling``, oldest first."""
        query = (
            select(CALLBACK_ATTEMPTS)
            .where(CALLBACK_ATTEMPTS.c.outcome == CallbackOutcome.CALLING.value)
            .order_by(CALLBACK_ATTEMPTS.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_attempt_view(row) for row in rows]

    async def pending_callbacks(
        self, *, since: datetime | None = None, limit: int = 50
    ) -> list[PendingCallback]:
        """Return abandoned calls with a caller number, no answered callback and no
        later call from that number that someone answered, newest arrival first,
        each with its attempts.

        `since` keeps the calls that arrived at or after it.
        """
        limit = _non_negative_int("limit", limit)
        reached = (
            select(CALLBACK_ATTEMPTS.c.id)
            .where(
                CALLBACK_ATTEMPTS.c.call_id == CALLS.c.id,
                CALLBACK_ATTEMPTS.c.outcome == CallbackOutcome.ANSWERED.value,
            )
            .exists()
        )
        # A later call from the same number was answered, so this caller needs no
        # callback.
        later = CALLS.alias("later")
        served_later = (
            select(later.c.id)
            .where(
                later.c.caller_number == CALLS.c.caller_number,
                later.c.arrived_at > CALLS.c.arrived_at,
                later.c.answered_at.is_not(None),
            )
            .exists()
        )
        query = select(
            CALLS.c.id,
            CALLS.c.uniqueid,
            CALLS.c.caller_number,
            CALLS.c.caller_number_raw,
            CALLS.c.caller_name,
            CALLS.c.arrived_at,
            CALLS.c.ended_at,
            CALLS.c.outcome,
            CALLS.c.wait_seconds,
        ).where(
            CALLS.c.outcome.in_(ABANDONED_OUTCOMES),
            CALLS.c.caller_number.is_not(None),
            CALLS.c.caller_number != "",
            ~reached,
            ~served_later,
        )
        if since is not None:
            query = query.where(CALLS.c.arrived_at >= _aware_datetime("since", since))
        query = query.order_by(
            CALLS.c.arrived_at.desc().nulls_last(), CALLS.c.id.desc()
        ).limit(limit)
        async with self._db.session(write=False) as session:
            calls = (await session.execute(query)).mappings().all()
            ids = [row["id"] for row in calls]
            attempts: dict[int, list[CallbackAttemptView]] = {}
            if ids:
                rows = await session.execute(
                    select(CALLBACK_ATTEMPTS)
                    .where(CALLBACK_ATTEMPTS.c.call_id.in_(ids))
                    .order_by(CALLBACK_ATTEMPTS.c.started_at, CALLBACK_ATTEMPTS.c.id)
                )
                for row in rows.mappings():
                    attempts.setdefault(row["call_id"], []).append(_attempt_view(row))
        return [
            PendingCallback(
                call_id=row["id"],
                uniqueid=row["uniqueid"],
                caller_number=row["caller_number"],
                caller_number_raw=row["caller_number_raw"],
                caller_name=row["caller_name"],
                arrived_at=row["arrived_at"],
                ended_at=row["ended_at"],
                outcome=row["outcome"],
                wait_seconds=row["wait_seconds"],
                attempts=tuple(attempts.get(row["id"], ())),
            )
            for row in calls
        ]
