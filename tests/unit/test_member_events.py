"""MemberEventRecorder: app_queue's member events turned into `member_events` rows.

Events are AMI bytes parsed with AmiParser, with the headers Asterisk 22 writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.members import offers as offers_module
from sigap_pbx.members.offers import MemberEventRecorder
from sigap_pbx.store import Database
from sigap_pbx.store.shifts import ShiftStore
from sigap_pbx.wire.ami import AmiParser, Event

T0 = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)
CALLER = "1796409216.0"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def agent_event(
    name: str,
    interface: str = "PJSIP/op1",
    *,
    timestamp: str | None = None,
    **extra: str,
) -> Event:
    """Parse an app_queue member event: caller channel, member channel, member."""
    headers = [("Event", name), ("Privilege", "agent,all")]
    if timestamp is not None:
        headers.append(("Timestamp", timestamp))
    headers += [
        ("Channel", "PJSIP/trunk-00000001"),
        ("Uniqueid", CALLER),
        ("Linkedid", CALLER),
        ("DestChannel", f"{interface}-00000002"),
        ("DestUniqueid", "1796409216.1"),
        ("DestLinkedid", CALLER),
        ("Queue", "operators"),
        ("MemberName", interface.split("/")[-1]),
        ("Interface", interface),
    ]
    headers += list(extra.items())
    data = b"".join(f"{key}: {value}\r\n".encode() for key, value in headers)
    (event,) = [m for m in AmiParser().feed(data + b"\r\n") if isinstance(m, Event)]
    return event


@pytest.fixture
async def shifts(tmp_path: Path) -> AsyncIterator[ShiftStore]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/events.db")
    yield ShiftStore(db)
    await db.close()


@contextlib.asynccontextmanager
async def running(recorder: MemberEventRecorder) -> AsyncIterator[MemberEventRecorder]:
    task = asyncio.create_task(recorder.run_writer())
    try:
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stored(shifts: ShiftStore) -> list[dict[str, Any]]:
    return await shifts.list_member_events(T0 - timedelta(days=1), T0 + timedelta(days=1))


async def test_each_event_becomes_one_row(shifts: ShiftStore) -> None:
    recorder = MemberEventRecorder(shifts, clock=FakeClock())
    async with running(recorder):
        recorder.on_event(agent_event("AgentCalled"))
        recorder.on_event(agent_event("AgentRingNoAnswer", RingTime="15000"))
        recorder.on_event(agent_event("AgentCalled"))
        recorder.on_event(agent_event("AgentConnect", RingTime="4", HoldTime="19"))
        recorder.on_event(
            agent_event("AgentComplete", TalkTime="187", HoldTime="19", Reason="caller")
        )
        await recorder.flush()

    rows = await stored(shifts)
    kinds = [row["kind"] for row in rows]
    assert kinds == ["offered", "missed", "offered", "answered", "completed"]
    seconds = [row["seconds"] for row in rows]
    assert seconds == [None, 15.0, None, 4.0, 187.0]
    assert {row["uniqueid"] for row in rows} == {CALLER}
    assert {row["linkedid"] for row in rows} == {CALLER}
    assert {row["interface"] for row in rows} == {"PJSIP/op1"}
    assert {row["member_name"] for row in rows} == {"op1"}
    assert recorder.rows_written == 5


async def test_ring_no_answer_milliseconds(shifts: ShiftStore) -> None:
    recorder = MemberEventRecorder(shifts, clock=FakeClock())
    async with running(recorder):
        recorder.on_event(agent_event("AgentRingNoAnswer", RingTime="2500"))
        await recorder.flush()

    (row,) = await stored(shifts)
    assert row["seconds"] == 2.5


async def test_timestamp_header_dates_row(shifts: ShiftStore) -> None:
    recorder = MemberEventRecorder(shifts, clock=FakeClock())
    async with running(recorder):
        recorder.on_event(agent_event("AgentCalled", timestamp="1796409600.250000"))
        recorder.on_event(agent_event("AgentCalled", timestamp="not-a-number"))
        await recorder.flush()

    times = sorted(row["at"] for row in await stored(shifts))
    assert times == [T0, datetime.fromtimestamp(1796409600.25, UTC)]


async def test_other_events_ignored(shifts: ShiftStore) -> None:
    recorder = MemberEventRecorder(shifts, clock=FakeClock())
    recorder.on_event(agent_event("AgentDump"))
    recorder.on_event(agent_event("QueueMemberPause", Paused="1"))

    assert recorder.pending_writes == 0


async def test_event_without_interface_rejected(shifts: ShiftStore) -> None:
    recorder = MemberEventRecorder(shifts, clock=FakeClock())
    recorder.on_event(agent_event("AgentCalled", interface=""))

    assert recorder.pending_writes == 0
    assert recorder.events_rejected == 1


async def test_bad_ring_time_stored_without_seconds(shifts: ShiftStore) -> None:
    recorder = MemberEventRecorder(shifts, clock=FakeClock())
    async with running(recorder):
        recorder.on_event(agent_event("AgentConnect", RingTime="-3"))
        recorder.on_event(agent_event("AgentComplete", TalkTime="inf"))
        await recorder.flush()

    rows = await stored(shifts)
    assert [row["seconds"] for row in rows] == [None, None]
    assert [row["kind"] for row in rows] == ["answered", "completed"]


class FlakyStore:
    """Store whose first `failures` inserts fail, recording every batch it accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[list[Mapping[str, Any]]] = []

    async def add_member_events(self, rows: Sequence[Mapping[str, Any]]) -> int:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database is gone")
        self.batches.append(list(rows))
        return len(rows)


async def test_failed_insert_retried_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offers_module, "FIRST_RETRY_DELAY", 0.001)
    store = FlakyStore(failures=2)
    recorder = MemberEventRecorder(store, clock=FakeClock())  # type: ignore[arg-type]
    async with running(recorder):
        for second in range(3):
            recorder.on_event(agent_event("AgentCalled", timestamp=f"{1796409600 + second}"))
        await recorder.flush()

    rows = [row for batch in store.batches for row in batch]
    assert [row["at"].timestamp() for row in rows] == [1796409600, 1796409601, 1796409602]
    assert recorder.pending_writes == 0


async def test_batches_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offers_module, "MAX_BATCH", 4)
    store = FlakyStore(failures=0)
    recorder = MemberEventRecorder(store, clock=FakeClock())  # type: ignore[arg-type]
    for second in range(10):
        recorder.on_event(agent_event("AgentCalled", timestamp=f"{1796409600 + second}"))
    async with running(recorder):
        await recorder.flush()

    assert [len(batch) for batch in store.batches] == [4, 4, 2]
    rows = [row for batch in store.batches for row in batch]
    assert [int(row["at"].timestamp()) - 1796409600 for row in rows] == list(range(10))


async def test_oldest_rows_dropped_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offers_module, "MAX_PENDING", 3)
    store = FlakyStore(failures=0)
    recorder = MemberEventRecorder(store, clock=FakeClock())  # type: ignore[arg-type]
    for second in range(5):
        recorder.on_event(agent_event("AgentCalled", timestamp=f"{1796409600 + second}"))

    assert recorder.rows_dropped == 2
    async with running(recorder):
        await recorder.flush()
    rows = [row for batch in store.batches for row in batch]
    assert [int(row["at"].timestamp()) - 1796409600 for row in rows] == [2, 3, 4]


async def test_flush_times_out_while_database_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(offers_module, "FIRST_RETRY_DELAY", 0.001)
    store = FlakyStore(failures=10**9)
    recorder = MemberEventRecorder(store, clock=FakeClock())  # type: ignore[arg-type]
    async with running(recorder):
        recorder.on_event(agent_event("AgentCalled"))
        with pytest.raises(TimeoutError):
            await recorder.flush(timeout=0.05)
        assert recorder.pending_writes == 1
