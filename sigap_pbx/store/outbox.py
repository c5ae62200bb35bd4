"""Queries on the webhook outbox: claiming due messages and recording the outcome.

The report service inserts one ``outbox`` row per (report, agency, version) in the
same transaction as the report change, with status ``pending``. The webhook sender
claims due rows with a lease. The claim adds one to ``attempts`` and moves
``next_attempt_at`` past the end of the attempt. When a sender dies during the
attempt, any sender claims the row again once the lease ends. Outcomes are
written only while the row is still pending and still carries the attempt number of
the claim, so a sender whose lease ran out cannot overwrite a newer attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Table, func, select, update

from sigap_pbx.store.agencies import Agency
from sigap_pbx.store.calls import (
    _aware_datetime,
    _fields_to_dict,
    _key,
    _one_of,
    _text,
    _validate_id,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import StoreError
from sigap_pbx.store.reports import IncidentReport, OutboxMessage, OutboxStatus

OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]
AGENCIES: Table = Agency.__table__  # type: ignore[assignment]
REPORTS: Table = IncidentReport.__table__  # type: ignore[assignment]

_validate_outbox_status = _one_of(OutboxStatus)


class OutboxMessageNotFound(StoreError, LookupError):
    """An outbox id has no row."""

    def __init__(self, message_id: int) -> None:
        super().__init__(
            f"outbox message id {message_id} not found: list the messages with "
            "GET /api/outbox and use one of their ids"
        )
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message claimed for one delivery attempt, with the agency's webhook settings.

    ``attempt`` is the attempt number this claim made (1 for the first). Pass it
    back to the ``mark_*`` methods.
    """

    id: int
    report_id: int
    agency_id: int
    agency_code: str
    version: int
    priority: int
    payload: dict[str, Any]
    attempt: int
    webhook_url: str | None
    webhook_secret: str | None = None

    @property
    def delivery_id(self) -> str:
        """Idempotency key, the same on every attempt: ``report_id:agency_code:version``."""
        return f"{self.report_id}:{self.agency_code}:{self.version}"

    def __repr__(self) -> str:
        # The default repr would print the secret into logs and tracebacks.
        return (
            f"ClaimedMessage(id={self.id}, delivery_id={self.delivery_id!r}, "
            f"attempt={self.attempt}, webhook_url={self.webhook_url!r})"
        )


@dataclass(frozen=True, slots=True)
class OutboxView:
    """Delivery state of one outbox message, without its payload or any secret."""

    id: int
    report_id: int
    agency_id: int
    agency_code: str
    version: int
    status: OutboxStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None

    @property
    def delivery_id(self) -> str:
        return f"{self.report_id}:{self.agency_code}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        result = _fields_to_dict(self)
        result["delivery_id"] = self.delivery_id
        return result


def _view_query() -> Select[Any]:
    return select(
        OUTBOX.c.id,
        OUTBOX.c.report_id,
        OUTBOX.c.agency_id,
        AGENCIES.c.code.label("agency_code"),
        OUTBOX.c.version,
        OUTBOX.c.status,
        OUTBOX.c.attempts,
        OUTBOX.c.created_at,
        OUTBOX.c.next_attempt_at,
        OUTBOX.c.delivered_at,
        OUTBOX.c.last_error,
    ).join(AGENCIES, AGENCIES.c.id == OUTBOX.c.agency_id)


def _outbox_view(row: Mapping[str, Any]) -> OutboxView:
    return OutboxView(**{**row, "status": OutboxStatus(row["status"])})


class OutboxStore:
    """Queries on the ``outbox`` table in one Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_due(
        self, now: datetime, *, lease_seconds: float, limit: int
    ) -> list[ClaimedMessage]:
        """Claim up to ``limit`` pending messages whose next attempt is due.

        Oldest first. Each claimed row gets one more attempt and
        ``next_attempt_at = now + lease_seconds``, so no other sender claims it
        until the lease ends. A row that another sender claimed between the read
        and the update is skipped.
        """
        now = _aware_datetime("now", now)
        lease_end = now + timedelta(seconds=lease_seconds)
        query = (
            select(
                OUTBOX.c.id,
                OUTBOX.c.report_id,
                OUTBOX.c.agency_id,
                AGENCIES.c.code.label("agency_code"),
                OUTBOX.c.version,
                REPORTS.c.priority,
                OUTBOX.c.payload,
                OUTBOX.c.attempts,
                OUTBOX.c.next_attempt_at,
                AGENCIES.c.webhook_url,
                AGENCIES.c.webhook_secret,
            )
            .join(AGENCIES, AGENCIES.c.id == OUTBOX.c.agency_id)
            .join(REPORTS, REPORTS.c.id == OUTBOX.c.report_id)
            .where(
                OUTBOX.c.status == OutboxStatus.PENDING.value,
                OUTBOX.c.next_attempt_at <= now,
            )
            .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
            .limit(limit)
        )
        claimed: list[ClaimedMessage] = []
        async with self._db.session() as session:
            rows = (await session.execute(query)).mappings().all()
            for row in rows:
                attempt = row["attempts"] + 1
                # Compare-and-set on (status, attempts): on PostgreSQL a concurrent
                # claim of the same row makes this update match nothing.
                result = await session.execute(
                    update(OUTBOX)
                    .where(
                        OUTBOX.c.id == row["id"],
                        OUTBOX.c.status == OutboxStatus.PENDING.value,
                        OUTBOX.c.attempts == row["attempts"],
                    )
                    .values(attempts=attempt, next_attempt_at=lease_end)
                )
                if result.rowcount != 1:
                    continue
                claimed.append(
                    ClaimedMessage(
                        id=row["id"],
                        report_id=row["report_id"],
                        agency_id=row["agency_id"],
                        agency_code=row["agency_code"],
                        version=row["version"],
                        priority=row["priority"],
                        payload=row["payload"],
                        attempt=attempt,
                        webhook_url=row["webhook_url"],
                        webhook_secret=row["webhook_secret"],
                    )
                )
        return claimed

    async def mark_delivered(
        self, message: ClaimedMessage, at: datetime, note: str | None = None
    ) -> bool:
        """Set a claimed message delivered. ``note`` goes to ``last_error``.

        Returns False when the row is no longer pending under this claim's attempt.
        """
        return await self._finish(
            message,
            status=OutboxStatus.DELIVERED,
            delivered_at=_aware_datetime("at", at),
            last_error=None if note is None else _text("note", note),
        )

    async def mark_failed(self, message: ClaimedMessage, error: str) -> bool:
        """Give up on a claimed message: no sender attempts it again by itself."""
        return await self._finish(
            message, status=OutboxStatus.FAILED, last_error=_key("error", error)
        )

    async def schedule_retry(
        self, message: ClaimedMessage, next_attempt_at: datetime, error: str
    ) -> bool:
        """Leave a claimed message pending, due again at ``next_attempt_at``."""
        return await self._finish(
            message,
            status=OutboxStatus.PENDING,
            next_attempt_at=_aware_datetime("next_attempt_at", next_attempt_at),
            last_error=_key("error", error),
        )

    async def _finish(
        self, message: ClaimedMessage, *, status: OutboxStatus, **values: Any
    ) -> bool:
        statement = (
            update(OUTBOX)
            .where(
                OUTBOX.c.id == message.id,
                OUTBOX.c.status == OutboxStatus.PENDING.value,
                OUTBOX.c.attempts == message.attempt,
            )
            .values(status=status.value, **values)
        )
        async with self._db.session() as session:
            result = await session.execute(statement)
        return bool(result.rowcount == 1)

    async def requeue(self, message_id: int, now: datetime) -> OutboxView:
        """Make a failed message pending again, due now, with its attempts reset.

        A message that is pending or delivered is returned unchanged. Raises
        OutboxMessageNotFound for an unknown id.
        """
        message_id = _validate_id("message_id", message_id)
        statement = (
            update(OUTBOX)
            .where(
                OUTBOX.c.id == message_id,
                OUTBOX.c.status == OutboxStatus.FAILED.value,
            )
            .values(
                status=OutboxStatus.PENDING.value,
                attempts=0,
                next_attempt_at=_aware_datetime("now", now),
            )
        )
        async with self._db.session() as session:
            await session.execute(statement)
        return await self.get(message_id)

    async def get(self, message_id: int) -> OutboxView:
        """Return one message's delivery state. Raises OutboxMessageNotFound."""
        message_id = _validate_id("message_id", message_id)
        query = _view_query().where(OUTBOX.c.id == message_id)
        async with self._db.session(write=False) as session:
            row = (await session.execute(query)).mappings().one_or_none()
        if row is None:
            raise OutboxMessageNotFound(message_id)
        return _outbox_view(row)

    async def list_messages(
        self,
        *,
        status: str | None = None,
        agency_code: str | None = None,
        report_id: int | None = None,
        limit: int = 100,
    ) -> list[OutboxView]:
        """Return messages, newest first, optionally of one status, agency or report."""
        query = _view_query()
        if status is not None:
            query = query.where(OUTBOX.c.status == _validate_outbox_status("status", status))
        if agency_code is not None:
            query = query.where(AGENCIES.c.code == _key("agency_code", agency_code))
        if report_id is not None:
            query = query.where(OUTBOX.c.report_id == _validate_id("report_id", report_id))
        query = query.order_by(OUTBOX.c.created_at.desc(), OUTBOX.c.id.desc()).limit(limit)
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_outbox_view(row) for row in rows]

    async def count_by_status(self) -> dict[str, int]:
        """Return how many messages each status has, every status listed."""
        query = select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).all()
        counts = {status.value: 0 for status in OutboxStatus}
        counts.update({status: count for status, count in rows})
        return counts
