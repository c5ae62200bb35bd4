"""The alarm board: conditions a supervisor must see, from raising to clearing.

Guards (endpoint health, missed calls, coverage) raise an alarm when a condition
starts and clear it when it ends. There is at most one active alarm per
(kind, subject), so raising it again only updates its message and detail. A
supervisor acknowledges an alarm to say that someone is on it, and the alarm stays
active until its condition ends.

Guards call `raise_alarm` and `clear` from AMI event handlers, so neither waits for
the database. Each change goes into one ordered queue that `run_writer` applies.
A row is written with the alarm's state at the time the write runs, so later
changes are never overwritten by earlier ones. See docs/alarms.md for the kinds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from sigap_pbx.members.pauses import (
    FIRST_RETRY_DELAY,
    MAX_RETRY_DELAY,
    Clock,
    utc_now,
)
from sigap_pbx.store.alarms import AlarmNotFound, AlarmSeverity, AlarmStore
from sigap_pbx.store.retry import write_with_retry

log = structlog.get_logger(__name__)

# Number of cleared alarms kept in memory, for `history` when there is no store and
# so that a cleared alarm can still be acknowledged before its row is written.
CLEARED_HISTORY = 200

AlarmKey = tuple[str, str]  # (kind, subject)
# Called with the change ("raised", "updated", "cleared", "acknowledged") and the
# alarm as a JSON-ready dict. It runs in the event loop and must not block.
ChangeListener = Callable[[str, dict[str, Any]], None]
# Writes one audit row: audit(actor, action, subject, detail).
Audit = Callable[[str, str, str, dict[str, Any]], Awaitable[object]]
# Audit action of an acknowledgement, dotted like `roster.save`.
ACKNOWLEDGE_ACTION = "alarm.acknowledge"


@dataclass
class AlarmRecord:
    """One alarm held in memory. `id` is the row id, None until the insert has run."""

    kind: str
    subject: str
    severity: AlarmSeverity
    message: str
    raised_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    cleared_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "severity": self.severity.value,
            "message": self.message,
            "raised_at": self.raised_at.isoformat(),
            "cleared_at": _isoformat(self.cleared_at),
            "acknowledged_at": _isoformat(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "detail": dict(self.detail),
            "active": self.active,
        }

    def row_values(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "message": self.message,
            "detail": dict(self.detail),
            "cleared_at": self.cleared_at,
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
        }


def _isoformat(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _severity(value: str | AlarmSeverity) -> AlarmSeverity:
    try:
        return AlarmSeverity(value)
    except ValueError:
        allowed = ", ".join(member.value for member in AlarmSeverity)
        raise ValueError(
            f"invalid alarm severity {value!r}: expected one of {allowed}"
        ) from None


class AlarmBoard:
    """Active alarms in memory, written to the store in order.

    `store` None keeps alarms in memory only (tests, or a controller without a
    database). `on_change` listeners hear every change, and `audit` records each
    acknowledgement. `raise_alarm` and `clear` must be called from the event loop.
    """

    def __init__(
        self,
        store: AlarmStore | None,
        clock: Clock = utc_now,
        *,
        on_change: Iterable[ChangeListener] = (),
        audit: Audit | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_change: list[ChangeListener] = list(on_change)
        self.audit = audit
        self._active: dict[AlarmKey, AlarmRecord] = {}
        self._cleared: deque[AlarmRecord] = deque(maxlen=CLEARED_HISTORY)
        self._writes: asyncio.Queue[AlarmRecord] = asyncio.Queue()
        # Row ids for alarms held in memory when there is no store.
        self._next_memory_id = 1

    # Raising and clearing (called from event handlers, no database wait) ----------

    def raise_alarm(
        self,
        kind: str,
        subject: str,
        message: str,
        severity: str | AlarmSeverity = AlarmSeverity.WARNING,
        detail: dict[str, Any] | None = None,
    ) -> AlarmRecord:
        """Raise an alarm, or update the message and detail of the active one.

        An active alarm keeps its `raised_at` and acknowledgement. Nothing is
        written or logged when the message, severity and detail are unchanged.
        """
        if not kind or not subject:
            raise ValueError(
                f"alarm kind {kind!r} and subject {subject!r} must both be non-empty"
            )
        level = _severity(severity)
        values = dict(detail or {})
        key = (kind, subject)
        record = self._active.get(key)
        if record is not None:
            if (record.message, record.severity, record.detail) == (message, level, values):
                return record
            record.message = message
            record.severity = level
            record.detail = values
            log.debug("alarm_updated", kind=kind, subject=subject, message=message)
            self._save(record)
            self._notify("updated", record)
            return record

        record = AlarmRecord(
            kind=kind,
            subject=subject,
            severity=level,
            message=message,
            raised_at=self.clock(),
            detail=values,
        )
        self._active[key] = record
        log_method = log.error if level is AlarmSeverity.CRITICAL else log.warning
        log_method(
            "alarm_raised", kind=kind, subject=subject, severity=level.value, message=message
        )
        self._save(record)
        self._notify("raised", record)
        return record

    def clear(self, kind: str, subject: str, reason: str) -> AlarmRecord | None:
        """Clear the active alarm of (kind, subject) and return it, or None if none is."""
        record = self._active.pop((kind, subject), None)
        if record is None:
            return None
        # NOTE: a wall clock stepped backwards would clear before the raise, so the
        # clear time is never earlier than the raise time.
        record.cleared_at = max(self.clock(), record.raised_at)
        self._cleared.append(record)
        log.info(
            "alarm_cleared",
            kind=kind,
            subject=subject,
            message=record.message,
            reason=reason,
            alarm_id=record.id,
        )
        self._save(record)
        self._notify("cleared", record)
        return record

    def get_active(self, kind: str, subject: str) -> AlarmRecord | None:
        return self._active.get((kind, subject))

    def active(self, kind: str | None = None) -> list[AlarmRecord]:
        """Return the active alarms, of one kind or all, oldest first."""
        records = [
            record for record in self._active.values() if kind is None or record.kind == kind
        ]
        return sorted(records, key=lambda record: record.raised_at)

    def snapshot(self) -> list[dict[str, Any]]:
        """Return the active alarms as JSON-ready dicts, oldest first."""
        return [record.to_dict() for record in self.active()]

    def history(self, limit: int) -> list[dict[str, Any]]:
        """Return the alarms held in memory, active and recently cleared, newest first."""
        records = [*self._active.values(), *self._cleared]
        records.sort(key=lambda record: record.raised_at, reverse=True)
        return [record.to_dict() for record in records[:limit]]

    # Acknowledgement -----------------------------------------------------------------

    async def acknowledge(self, alarm_id: int, actor: str) -> dict[str, Any]:
        """Record that `actor` has seen an alarm, and return the alarm as a dict.

        A repeated acknowledgement keeps the first one. The result's
        `already_acknowledged_by` names who acknowledged the alarm before this
        call, and is None when this call recorded the acknowledgement. An alarm
        cleared long ago is looked up in the store. Raises AlarmNotFound for an
        unknown id, and ValueError for an empty actor.
        """
        if not actor or not actor.strip():
            raise ValueError(f"invalid actor {actor!r}: name who acknowledges the alarm")
        record = self._find(alarm_id)
        if record is None:
            if self.store is None:
                raise AlarmNotFound(alarm_id)
            # The board no longer keeps this alarm in memory, so its writer will
            # not write the row again and the store can update it directly.
            now = self.clock()
            view = await self.store.acknowledge(alarm_id, now, actor)
            if view.acknowledged_at != now:
                return self._already_acknowledged(view.to_dict(), actor)
            await self._audit(actor, view.id, view.kind, view.subject)
            return {**view.to_dict(), "already_acknowledged_by": None}
        if record.acknowledged_at is not None:
            return self._already_acknowledged(record.to_dict(), actor)
        record.acknowledged_at = self.clock()
        record.acknowledged_by = actor
        log.info(
            "alarm_acknowledged",
            alarm_id=alarm_id,
            kind=record.kind,
            subject=record.subject,
            actor=actor,
        )
        self._save(record)
        self._notify("acknowledged", record)
        await self._audit(actor, alarm_id, record.kind, record.subject)
        return {**record.to_dict(), "already_acknowledged_by": None}

    @staticmethod
    def _already_acknowledged(alarm: dict[str, Any], actor: str) -> dict[str, Any]:
        log.info(
            "alarm_already_acknowledged",
            alarm_id=alarm["id"],
            actor=actor,
            acknowledged_by=alarm["acknowledged_by"],
        )
        return {**alarm, "already_acknowledged_by": alarm["acknowledged_by"]}

    def _find(self, alarm_id: int) -> AlarmRecord | None:
        for record in [*self._active.values(), *self._cleared]:
            if record.id == alarm_id:
                return record
        return None

    async def _audit(self, actor: str, alarm_id: int, kind: str, subject: str) -> None:
        if self.audit is None:
            return
        try:
            await self.audit(
                actor,
                ACKNOWLEDGE_ACTION,
                f"alarm:{alarm_id}",
                {"alarm_id": alarm_id, "kind": kind, "subject": subject},
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # The acknowledgement itself is in the alarms table, so a failed audit
            # write is logged rather than failing the request.
            log.exception("alarm_audit_failed", alarm_id=alarm_id, actor=actor)

    # Listeners -------------------------------------------------------------------------

    def _notify(self, change: str, record: AlarmRecord) -> None:
        if not self.on_change:
            return
        alarm = record.to_dict()
        for listener in self.on_change:
            try:
                listener(change, alarm)
            except Exception:
                log.exception(
                    "alarm_listener_failed",
                    change=change,
                    kind=record.kind,
                    subject=record.subject,
                )

    # Store -------------------------------------------------------------------------------

    async def restore(self) -> int:
        """Load the alarms not cleared in the store, and return how many are active.

        Call it once at start, before any guard runs. The guards then clear the
        restored alarms whose condition has ended, at their first resync or
        evaluation. When one (kind, subject) has several uncleared rows, left by a
        lost clear write, the newest is kept and each older one is cleared at
        the raise time of the next.
        """
        if self.store is None:
            return 0
        for view in await self.store.list_uncleared():
            key = (view.kind, view.subject)
            older = self._active.get(key)
            if older is not None:
                older.cleared_at = max(view.raised_at, older.raised_at)
                self._save(older)
            self._active[key] = AlarmRecord(
                kind=view.kind,
                subject=view.subject,
                severity=view.severity,
                message=view.message,
                raised_at=view.raised_at,
                detail=dict(view.detail),
                id=view.id,
                acknowledged_at=view.acknowledged_at,
                acknowledged_by=view.acknowledged_by,
            )
        log.info("alarms_restored", active=len(self._active))
        return len(self._active)

    def _save(self, record: AlarmRecord) -> None:
        if self.store is None:
            if record.id is None:
                record.id = self._next_memory_id
                self._next_memory_id += 1
            return
        self._writes.put_nowait(record)

    @property
    def pending_writes(self) -> int:
        return self._writes.qsize()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued write is in the store (for tests and shutdown)."""
        await asyncio.wait_for(self._writes.join(), timeout)

    async def run_writer(self) -> None:
        """Write queued alarms in order, each with its state when the write runs.

        A write that fails on the database is retried until it succeeds. A write
        with a value the store rejects is logged and dropped.
        """
        while True:
            record = await self._writes.get()
            try:
                await self._write_with_retry(record)
            finally:
                self._writes.task_done()

    async def _write_with_retry(self, record: AlarmRecord) -> None:
        await write_with_retry(
            lambda: self._write(record),
            retry_event="alarm_write_failed_retrying",
            rejected_event="alarm_write_rejected",
            first_delay=FIRST_RETRY_DELAY,
            max_delay=MAX_RETRY_DELAY,
            kind=record.kind,
            subject=record.subject,
        )

    async def _write(self, record: AlarmRecord) -> None:
        assert self.store is not None
        if record.id is None:
            record.id = await self.store.insert(
                kind=record.kind,
                subject=record.subject,
                raised_at=record.raised_at,
                **record.row_values(),
            )
            return
        await self.store.update(record.id, **record.row_values())
