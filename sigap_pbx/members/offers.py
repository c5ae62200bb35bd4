"""Calls offered to queue members and what became of each offer, written to the store.

app_queue sends four AMI events per member and caller (Asterisk 22 documents their
fields in `core-en_US.xml`, and `apps/app_queue.c` shows the units):

| Event               | Row kind    | `seconds`                                      |
| ------------------- | ----------- | ---------------------------------------------- |
| `AgentCalled`       | `offered`   | none                                           |
| `AgentConnect`      | `answered`  | `RingTime`, whole seconds                      |
| `AgentRingNoAnswer` | `missed`    | `RingTime`, which is in milliseconds           |
| `AgentComplete`     | `completed` | `TalkTime`, whole seconds                      |

The XML documentation describes both `RingTime` headers as "seconds since 00:00,
Jan 1, 1970", which is wrong for both: `rna()` in app_queue.c logs "Nobody picked up
in %d ms" with the same value it sends. An offer that ends because another member
answered, or because the caller hung up, has no outcome event.

Each row gets the time of the event's `Timestamp` header (the same clock as the call
records), or the controller's clock when the header is missing. `on_event` only
queues a row, and `run_writer` inserts the queued rows in batches, in order, with
retries, so the AMI reader never waits for the database.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from sigap_pbx.store.errors import InvalidFieldValue
from sigap_pbx.store.shifts import MemberEventKind, ShiftStore, member_event_row
from sigap_pbx.wire.ami import Event

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# Rows inserted in one statement at most. At 50 calls/s offered to 8 members each,
# app_queue sends 400 AgentCalled events per second plus the outcomes, so an
# estimated one or two batches per second.
MAX_BATCH = 500
# Seconds before the first retry of a failed insert. Each further failure doubles the
# delay, up to MAX_RETRY_DELAY.
FIRST_RETRY_DELAY = 0.2
MAX_RETRY_DELAY = 5.0
# Rows held while the database is down. Beyond this the oldest rows are dropped
# (and counted), so a long outage cannot exhaust the controller's memory.
MAX_PENDING = 200_000
# A dropped row or a rejected event is logged the first time and then once per this many.
LOG_EVERY = 1000

EVENT_KINDS = {
    "AgentCalled": MemberEventKind.OFFERED,
    "AgentConnect": MemberEventKind.ANSWERED,
    "AgentRingNoAnswer": MemberEventKind.MISSED,
    "AgentComplete": MemberEventKind.COMPLETED,
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    if number is None or not math.isfinite(number) or number < 0:
        return None
    return number


def _event_time(event: Event) -> datetime | None:
    stamp = _number(event.get("Timestamp"))
    if stamp is None:
        return None
    try:
        return datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def event_seconds(kind: MemberEventKind, event: Event) -> float | None:
    """Return the ring or talk time of a member event in seconds, or None."""
    if kind == MemberEventKind.ANSWERED:
        return _number(event.get("RingTime"))
    if kind == MemberEventKind.MISSED:
        milliseconds = _number(event.get("RingTime"))
        return None if milliseconds is None else milliseconds / 1000
    if kind == MemberEventKind.COMPLETED:
        return _number(event.get("TalkTime"))
    return None


class MemberEventRecorder:
    """Turn app_queue's member events into `member_events` rows.

    `on_event` must be called from the event loop, and `run_writer` must run as a
    task for the rows to reach the store.
    """

    def __init__(self, store: ShiftStore, *, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock
        self.rows_written = 0
        self.rows_dropped = 0
        self.events_rejected = 0
        self._pending: deque[dict[str, Any]] = deque()
        # Rows of the batch being inserted, which are no longer in _pending.
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # Event entry point (called by the AMI client, must not block) -------------------

    def on_event(self, event: Event) -> None:
        kind = EVENT_KINDS.get(event.name)
        if kind is None:
            return
        try:
            row = member_event_row(
                at=_event_time(event) or self.clock(),
                interface=event.get("Interface") or "",
                queue=event.get("Queue") or "",
                kind=kind.value,
                member_name=event.get("MemberName") or None,
                uniqueid=event.get("Uniqueid") or None,
                linkedid=event.get("Linkedid") or None,
                seconds=event_seconds(kind, event),
            )
        except InvalidFieldValue as error:
            self.events_rejected += 1
            if self.events_rejected % LOG_EVERY == 1:
                log.warning(
                    "member_event_rejected",
                    event_name=event.name,
                    error=str(error),
                    rejected_events=self.events_rejected,
                )
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.rows_dropped += 1
            if self.rows_dropped % LOG_EVERY == 1:
                log.error(
                    "member_event_dropped",
                    pending=len(self._pending),
                    dropped_rows=self.rows_dropped,
                )
        self._pending.append(row)
        self._idle.clear()
        self._wake.set()

    # Store writes ---------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        return len(self._pending) + self._in_flight

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued row is in the store (for tests and shutdown)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def run_writer(self) -> None:
        """Insert queued rows in order, up to MAX_BATCH per statement.

        A batch that fails on the database is retried until it succeeds. Rows are
        validated when queued, so the store has no value to reject.
        """
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            size = min(len(self._pending), MAX_BATCH)
            batch = [self._pending.popleft() for _ in range(size)]
            self._in_flight = len(batch)
            try:
                await self._insert_with_retry(batch)
            finally:
                self._in_flight = 0

    async def _insert_with_retry(self, batch: list[dict[str, Any]]) -> None:
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                self.rows_written += await self.store.add_member_events(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "member_event_write_failed_retrying",
                    rows=len(batch),
                    pending=len(self._pending),
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
