"""Queue member pause intervals, followed from AMI events and written to the store.

A pause interval belongs to one interface in one queue and has one reason. A
`QueueMemberPause` with `Paused: 1` opens it under its `PausedReason`, and a
`QueueMemberPause` with `Paused: 0` closes it. Asterisk 22 sends the unpause with an
empty `PausedReason`, so the interval keeps the reason stored when it opened. A pause
under a new reason without an unpause in between closes the interval and opens a new
one. A `QueueMemberRemoved` closes the interval of a member that logs out while paused.

Start and end times come from the controller's clock when the event is handled.
Asterisk's `LastPause` is not used: it counts whole seconds, and Asterisk 22.10.1
sends the unpause with the `LastPause` of the pause unchanged.

Writes go through one ordered queue to the store, so the AMI reader never waits for
the database. Each interval is stored when it opens and updated when it closes, so a
controller that restarts can take over the intervals still open (`restore`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from sigap_pbx.store import retry
from sigap_pbx.store.members import MemberStore, PauseSource
from sigap_pbx.store.retry import write_with_retry
from sigap_pbx.wire.ami import Event

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
MemberKey = tuple[str, str]  # (interface, queue)

# Seconds before the first retry of a failed store write, doubling up to the max.
FIRST_RETRY_DELAY = retry.FIRST_RETRY_DELAY
MAX_RETRY_DELAY = retry.MAX_RETRY_DELAY


def utc_now() -> datetime:
    return datetime.now(UTC)


def member_key(event: Event) -> MemberKey:
    """Return (interface, queue) of a queue member event.

    QueueStatus's `QueueMember` names the interface `Location`, and the member
    events name it `Interface`.
    """
    interface = event.get("Interface") or event.get("Location") or ""
    return interface, event.get("Queue") or ""


def paused_reason(event: Event) -> str:
    """Return the pause reason of a member event, or "" when it has none.

    The AMI documentation of Asterisk 16 lists the reason both as `PausedReason`
    and as `Reason`. That of Asterisk 18 and 20 lists only `PausedReason`.
    """
    reason = event.get("PausedReason")
    if reason is None:
        reason = event.get("Reason")
    return reason or ""


def is_paused(event: Event) -> bool:
    return (event.get("Paused") or "0") == "1"


@dataclass
class PauseInterval:
    """An open pause interval held in memory until it closes.

    `token` identifies the interval between the event handler and the store
    writer, which learns the row id only when the insert has run.
    """

    token: int
    interface: str
    queue: str
    reason: str
    member_name: str | None
    started_at: datetime
    source: PauseSource


@dataclass(frozen=True)
class PauseWrite:
    """One ordered store write: `open` inserts an interval, `close` ends it."""

    kind: str
    interval: PauseInterval
    ended_at: datetime | None = None
    seconds: float | None = None


class PauseTracker:
    """Turn queue member events into stored pause intervals.

    `on_event` and `reset_from_status` must be called from the event loop, and
    `run_writer` must run as a task for the intervals to reach the store.
    """

    def __init__(self, store: MemberStore, *, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock
        # The open interval of each member paused now.
        self.paused: dict[MemberKey, PauseInterval] = {}
        self.intervals_closed = 0
        self._tokens = itertools.count(1)
        self._writes: asyncio.Queue[PauseWrite] = asyncio.Queue()
        self._row_ids: dict[int, int] = {}

    # Event entry points (called by the AMI client, must not block) ----------------

    def on_event(self, event: Event) -> None:
        name = event.name
        if name == "QueueMemberPause":
            self._on_pause(event)
        elif name in ("QueueMemberAdded", "QueueMemberStatus"):
            self._on_member_state(event)
        elif name == "QueueMemberRemoved":
            self._close(member_key(event), "member_removed")

    def _on_pause(self, event: Event) -> None:
        key = member_key(event)
        if not is_paused(event):
            self._close(key, "unpaused")
            return
        reason = paused_reason(event)
        current = self.paused.get(key)
        if current is not None and current.reason == reason:
            # A repeated pause under the same reason continues the interval.
            return
        self._close(key, "reason_changed")
        self._open(key, reason, event, PauseSource.PAUSE_EVENT)

    def _on_member_state(self, event: Event) -> None:
        # These events only fill in a pause the controller has not seen start. They
        # never close or change an open interval, because only QueueMemberPause
        # marks the moment that the pause state changed.
        key = member_key(event)
        if is_paused(event) and key not in self.paused:
            self._open(key, paused_reason(event), event, PauseSource.MEMBER_EVENT)

    def reset_from_status(self, events: Iterable[Event]) -> None:
        """Bring the open intervals in line with a QueueStatus list after a (re)connect.

        Events missed while AMI was away cannot be replayed, so the list decides.
        A member still paused under the same reason keeps its interval. A member
        no longer paused, or no longer listed, has its interval closed now. A
        member paused under a new reason gets a new interval. The list must cover
        every queue, as QueueStatus without a `Queue` header does. Entries other
        than `QueueMember` are ignored.
        """
        listed: dict[MemberKey, Event] = {}
        for event in events:
            if event.name == "QueueMember" and is_paused(event):
                listed[member_key(event)] = event
        for key, interval in list(self.paused.items()):
            current = listed.get(key)
            if current is None or paused_reason(current) != interval.reason:
                self._close(key, "queue_status")
        for key, event in listed.items():
            if key not in self.paused:
                self._open(key, paused_reason(event), event, PauseSource.QUEUE_STATUS)

    # Intervals ----------------------------------------------------------------------

    def _open(
        self, key: MemberKey, reason: str, event: Event, source: PauseSource
    ) -> None:
        interface, queue = key
        if not interface or not queue:
            log.warning("pause_event_without_member", event_name=event.name)
            return
        interval = PauseInterval(
            token=next(self._tokens),
            interface=interface,
            queue=queue,
            reason=reason,
            member_name=event.get("MemberName") or event.get("Name") or None,
            started_at=self.clock(),
            source=source,
        )
        self.paused[key] = interval
        self._writes.put_nowait(PauseWrite("open", interval))
        log.info(
            "pause_started",
            interface=interface,
            queue=queue,
            reason=reason,
            source=str(source),
        )

    def _close(self, key: MemberKey, cause: str) -> None:
        interval = self.paused.pop(key, None)
        if interval is None:
            return
        ended_at = self.clock()
        # NOTE: a wall clock stepped backwards during the pause would give a negative
        # duration, which the store rejects, so the duration is 0 then.
        ended_at = max(ended_at, interval.started_at)
        seconds = (ended_at - interval.started_at).total_seconds()
        self.intervals_closed += 1
        self._writes.put_nowait(PauseWrite("close", interval, ended_at, seconds))
        log.info(
            "pause_ended",
            interface=interval.interface,
            queue=interval.queue,
            reason=interval.reason,
            seconds=round(seconds, 3),
            cause=cause,
        )

    def open_intervals(self) -> list[dict[str, Any]]:
        """Return the open intervals as JSON-ready dicts, oldest first."""
        intervals = sorted(self.paused.values(), key=lambda item: item.started_at)
        return [
            {
                "interface": item.interface,
                "queue": item.queue,
                "reason": item.reason,
                "member_name": item.member_name,
                "started_at": item.started_at.isoformat(),
                "source": str(item.source),
            }
            for item in intervals
        ]

    async def restore(self) -> int:
        """Take over the intervals still open in the store and return how many.

        Call it once at start, before AMI events flow. The next `reset_from_status`
        then keeps or closes each of them. When one member has several open rows
        in a queue, left by a close write lost at shutdown or by a second
        controller on the same database, the newest row is kept and each older
        one ends where the next one starts.
        """
        restored = 0
        for row in await self.store.list_open_pauses():
            key = (row.interface, row.queue)
            older = self.paused.get(key)
            if older is not None:
                self._close_older_row(older, row.started_at)
            interval = PauseInterval(
                token=next(self._tokens),
                interface=row.interface,
                queue=row.queue,
                reason=row.reason,
                member_name=row.member_name,
                started_at=row.started_at,
                source=row.source,
            )
            self._row_ids[interval.token] = row.id
            self.paused[key] = interval
            restored += 1
        log.info("pauses_restored", open_intervals=len(self.paused), rows=restored)
        return restored

    def _close_older_row(self, older: PauseInterval, ended_at: datetime) -> None:
        ended_at = max(ended_at, older.started_at)
        seconds = (ended_at - older.started_at).total_seconds()
        self._writes.put_nowait(PauseWrite("close", older, ended_at, seconds))

    # Store writes ---------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        return self._writes.qsize()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued write is in the store (for tests and shutdown)."""
        await asyncio.wait_for(self._writes.join(), timeout)

    async def run_writer(self) -> None:
        """Apply queued writes in order.

        A write that fails on the database is retried until it succeeds. A write
        with a value the store rejects is logged and dropped.
        """
        while True:
            write = await self._writes.get()
            try:
                await self._apply_with_retry(write)
            finally:
                self._writes.task_done()

    async def _apply_with_retry(self, write: PauseWrite) -> None:
        await write_with_retry(
            lambda: self._apply(write),
            retry_event="pause_write_failed_retrying",
            rejected_event="pause_write_rejected",
            first_delay=FIRST_RETRY_DELAY,
            max_delay=MAX_RETRY_DELAY,
            write=write.kind,
            interface=write.interval.interface,
            queue=write.interval.queue,
        )

    async def _apply(self, write: PauseWrite) -> None:
        interval = write.interval
        if write.kind == "open":
            self._row_ids[interval.token] = await self._insert(interval)
            return
        row_id = self._row_ids.get(interval.token)
        if row_id is None:
            # The insert was rejected when the interval opened, so it is tried
            # again here rather than losing the closed interval.
            row_id = await self._insert(interval)
            self._row_ids[interval.token] = row_id
        assert write.ended_at is not None and write.seconds is not None
        await self.store.close_pause(row_id, write.ended_at, write.seconds)
        del self._row_ids[interval.token]

    async def _insert(self, interval: PauseInterval) -> int:
        return await self.store.open_pause(
            interface=interval.interface,
            queue=interval.queue,
            reason=interval.reason,
            started_at=interval.started_at,
            source=interval.source.value,
            member_name=interval.member_name,
        )
