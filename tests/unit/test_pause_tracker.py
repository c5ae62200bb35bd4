"""PauseTracker: queue member events turned into stored pause intervals.

Events are AMI bytes parsed with AmiParser, either replayed from the recorded
Asterisk 22.10.1 transcript or written the way Asterisk writes them. A fake clock
dates the intervals, so every duration is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigap_pbx.members import pauses as pauses_module
from sigap_pbx.members.pauses import PauseTracker
from sigap_pbx.store import Database, MemberStore, PauseSource, PauseView
from sigap_pbx.wire.ami import AmiParser, Event

TRANSCRIPTS = Path(__file__).parent / "transcripts"
T0 = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)


class FakeClock:
    """Controller clock that moves only when a test advances it."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def parse(data: bytes) -> list[Event]:
    return [message for message in AmiParser().feed(data) if isinstance(message, Event)]


def recorded_pause_events() -> list[Event]:
    data = (TRANSCRIPTS / "ami_events.raw").read_bytes()
    return [event for event in parse(data) if event.name == "QueueMemberPause"]


def member_event(
    name: str,
    interface: str = "PJSIP/op1",
    queue: str = "operators",
    *,
    paused: bool,
    reason: str = "",
    member_name: str = "op1",
) -> Event:
    """Parse one queue member event as Asterisk 22 writes it."""
    headers = [
        ("Event", name),
        ("Privilege", "agent,all"),
        ("Queue", queue),
        ("MemberName", member_name),
        ("Interface", interface),
        ("StateInterface", interface),
        ("Membership", "dynamic"),
        ("Penalty", "0"),
        ("CallsTaken", "0"),
        ("LastCall", "0"),
        ("LastPause", "1796409566"),
        ("LoginTime", "1796409560"),
        ("InCall", "0"),
        ("Status", "1"),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", reason),
        ("Ringinuse", "0"),
        ("Wrapuptime", "0"),
    ]
    data = b"".join(f"{key}: {value}\r\n".encode() for key, value in headers)
    (event,) = parse(data + b"\r\n")
    return event


def pause(reason: str, **kwargs: str) -> Event:
    return member_event("QueueMemberPause", paused=True, reason=reason, **kwargs)


def unpause(**kwargs: str) -> Event:
    return member_event("QueueMemberPause", paused=False, **kwargs)


def queue_member(
    interface: str, *, paused: bool, reason: str = "", queue: str = "operators"
) -> Event:
    """Parse a QueueMember entry of a QueueStatus list, which names the interface
    `Location`."""
    headers = [
        ("Event", "QueueMember"),
        ("Queue", queue),
        ("Name", interface.split("/")[-1]),
        ("Location", interface),
        ("StateInterface", interface),
        ("Membership", "dynamic"),
        ("Status", "1"),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", reason),
        ("ActionID", "queuestatus-1"),
    ]
    data = b"".join(f"{key}: {value}\r\n".encode() for key, value in headers)
    (event,) = parse(data + b"\r\n")
    return event


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MemberStore]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/pauses.db")
    yield MemberStore(db)
    await db.close()


@contextlib.asynccontextmanager
async def running(tracker: PauseTracker) -> AsyncIterator[PauseTracker]:
    writer = asyncio.create_task(tracker.run_writer())
    try:
        yield tracker
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def tracker(store: MemberStore, clock: FakeClock) -> AsyncIterator[PauseTracker]:
    async with running(PauseTracker(store, clock=clock)) as started:
        yield started


async def stored(tracker: PauseTracker) -> list[PauseView]:
    await tracker.flush()
    return await tracker.store.list_pauses()


def feed(tracker: PauseTracker, events: Iterable[Event]) -> None:
    for event in events:
        tracker.on_event(event)


# --- Pause and unpause ------------------------------------------------------


async def test_recorded_unpause_closes_under_r1(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    paused, unpaused = recorded_pause_events()
    # In the recording, the unpause carries no reason and the pause's LastPause,
    # so neither can give the reason or the duration.
    assert paused.get("PausedReason") == "R1"
    assert unpaused.get("PausedReason") == ""
    assert unpaused.get("LastPause") == paused.get("LastPause")

    tracker.on_event(paused)
    clock.advance(42.5)
    tracker.on_event(unpaused)

    (interval,) = await stored(tracker)
    assert interval.reason == "R1"
    assert interval.interface == "Local/member@wire"
    assert interval.queue == "sigap-test"
    assert interval.member_name == "op1"
    assert interval.started_at == T0
    assert interval.ended_at == T0 + timedelta(seconds=42.5)
    assert interval.seconds == 42.5
    assert interval.source is PauseSource.PAUSE_EVENT
    assert tracker.paused == {}
    assert tracker.intervals_closed == 1


async def test_open_interval_stored_at_once(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(pause("break"))

    (interval,) = await stored(tracker)
    assert interval.reason == "break"
    assert interval.started_at == T0
    assert interval.ended_at is None
    assert tracker.open_intervals()[0]["reason"] == "break"


async def test_new_reason_starts_new_interval(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(pause("R1"))
    clock.advance(10)
    tracker.on_event(pause("R2"))
    clock.advance(5)
    tracker.on_event(unpause())

    first, second = await stored(tracker)
    assert first.reason == "R1"
    assert first.seconds == 10.0
    assert second.reason == "R2"
    assert second.seconds == 5.0
    assert second.started_at == first.ended_at


async def test_same_reason_again_one_interval(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(pause("break"))
    clock.advance(3)
    tracker.on_event(pause("break"))
    clock.advance(4)
    tracker.on_event(unpause())

    (interval,) = await stored(tracker)
    assert interval.seconds == 7.0


async def test_removed_paused_member_closes(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(pause("briefing"))
    clock.advance(7)
    tracker.on_event(member_event("QueueMemberRemoved", paused=True, reason="briefing"))

    (interval,) = await stored(tracker)
    assert interval.reason == "briefing"
    assert interval.seconds == 7.0
    assert tracker.paused == {}


async def test_unpause_without_pause_ignored(tracker: PauseTracker) -> None:
    tracker.on_event(unpause())

    assert await stored(tracker) == []


async def test_pause_without_reason_stored_empty(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(pause(""))
    clock.advance(2)
    tracker.on_event(unpause())

    (interval,) = await stored(tracker)
    assert interval.reason == ""
    assert interval.seconds == 2.0


async def test_intervals_kept_per_queue(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(pause("wrapup", queue="operators"))
    tracker.on_event(pause("wrapup", queue="operators-backup"))
    clock.advance(30)
    tracker.on_event(unpause(queue="operators"))

    first, second = await stored(tracker)
    assert (first.queue, first.seconds) == ("operators", 30.0)
    assert (second.queue, second.ended_at) == ("operators-backup", None)


async def test_member_added_paused_opens(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(member_event("QueueMemberAdded", paused=True, reason="login"))
    clock.advance(12)
    tracker.on_event(unpause())

    (interval,) = await stored(tracker)
    assert interval.reason == "login"
    assert interval.source is PauseSource.MEMBER_EVENT
    assert interval.seconds == 12.0


async def test_member_status_paused_opens(tracker: PauseTracker) -> None:
    tracker.on_event(member_event("QueueMemberStatus", paused=True, reason="break"))

    (interval,) = await stored(tracker)
    assert interval.source is PauseSource.MEMBER_EVENT
    assert interval.ended_at is None


async def test_member_status_keeps_interval(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(pause("R1"))
    clock.advance(1)
    tracker.on_event(member_event("QueueMemberStatus", paused=False))
    tracker.on_event(member_event("QueueMemberStatus", paused=True, reason="R2"))

    (interval,) = await stored(tracker)
    assert interval.reason == "R1"
    assert interval.source is PauseSource.PAUSE_EVENT
    assert interval.ended_at is None


# --- Resync and restart -----------------------------------------------------


async def test_resync_after_reconnect(tracker: PauseTracker, clock: FakeClock) -> None:
    feed(
        tracker,
        [
            pause("R1", interface="PJSIP/op1"),
            pause("R1", interface="PJSIP/op2"),
            pause("break", interface="PJSIP/op3"),
        ],
    )
    clock.advance(60)

    tracker.reset_from_status(
        [
            queue_member("PJSIP/op1", paused=True, reason="R1"),
            queue_member("PJSIP/op2", paused=False),
            queue_member("PJSIP/op3", paused=True, reason="lunch"),
            queue_member("PJSIP/op4", paused=True, reason="training"),
        ]
    )

    by_member = {}
    for interval in await stored(tracker):
        by_member.setdefault(interval.interface, []).append(interval)
    (op1,) = by_member["PJSIP/op1"]
    assert op1.ended_at is None
    assert op1.started_at == T0
    (op2,) = by_member["PJSIP/op2"]
    assert op2.seconds == 60.0
    op3_old, op3_new = by_member["PJSIP/op3"]
    assert (op3_old.reason, op3_old.seconds) == ("break", 60.0)
    assert (op3_new.reason, op3_new.ended_at) == ("lunch", None)
    assert op3_new.source is PauseSource.QUEUE_STATUS
    (op4,) = by_member["PJSIP/op4"]
    assert (op4.reason, op4.started_at) == ("training", T0 + timedelta(seconds=60))
    assert op4.source is PauseSource.QUEUE_STATUS


async def test_resync_closes_member_gone(
    tracker: PauseTracker, clock: FakeClock
) -> None:
    tracker.on_event(pause("R1"))
    clock.advance(9)

    tracker.reset_from_status([])

    (interval,) = await stored(tracker)
    assert interval.seconds == 9.0
    assert tracker.paused == {}


async def test_restart_takes_over_open_row(
    store: MemberStore, clock: FakeClock
) -> None:
    async with running(PauseTracker(store, clock=clock)) as before:
        before.on_event(pause("R1"))
        await before.flush()
    clock.advance(100)

    async with running(PauseTracker(store, clock=clock)) as after:
        assert await after.restore() == 1
        after.reset_from_status([queue_member("PJSIP/op1", paused=True, reason="R1")])
        clock.advance(20)
        after.on_event(unpause())

        (interval,) = await stored(after)
    assert interval.reason == "R1"
    assert interval.started_at == T0
    assert interval.seconds == 120.0


async def test_restore_ends_older_duplicate(
    store: MemberStore, clock: FakeClock
) -> None:
    for minute in (0, 5):
        await store.open_pause(
            interface="PJSIP/op1",
            queue="operators",
            reason="break",
            started_at=T0 + timedelta(minutes=minute),
            source="pause_event",
        )

    async with running(PauseTracker(store, clock=clock)) as tracker:
        await tracker.restore()
        older, newer = await stored(tracker)

    assert older.ended_at == newer.started_at
    assert older.seconds == 300.0
    assert newer.ended_at is None
    assert len(tracker.paused) == 1


# --- Store failures ---------------------------------------------------------


class FlakyStore:
    """MemberStore wrapper that raises a given error once, on open or on close."""

    def __init__(
        self,
        store: MemberStore,
        *,
        open_error: Exception | None = None,
        close_error: Exception | None = None,
    ) -> None:
        self.store = store
        self.open_error = open_error
        self.close_error = close_error

    async def open_pause(self, **fields: object) -> int:
        if self.open_error is not None:
            error, self.open_error = self.open_error, None
            raise error
        return await self.store.open_pause(**fields)  # type: ignore[arg-type]

    async def close_pause(
        self, pause_id: int, ended_at: datetime, seconds: float
    ) -> None:
        if self.close_error is not None:
            error, self.close_error = self.close_error, None
            raise error
        await self.store.close_pause(pause_id, ended_at, seconds)

    async def list_pauses(self) -> list[PauseView]:
        return await self.store.list_pauses()


async def test_failed_close_retried(
    store: MemberStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pauses_module, "FIRST_RETRY_DELAY", 0.01)
    flaky = FlakyStore(store, close_error=ConnectionResetError("connection lost"))
    async with running(PauseTracker(flaky, clock=clock)) as tracker:  # type: ignore[arg-type]
        tracker.on_event(pause("R1"))
        clock.advance(4)
        tracker.on_event(unpause())
        await tracker.flush()

    assert flaky.close_error is None
    (interval,) = await store.list_pauses()
    assert interval.seconds == 4.0


async def test_rejected_open_kept_at_close(
    store: MemberStore, clock: FakeClock
) -> None:
    flaky = FlakyStore(store, open_error=ValueError("rejected once"))
    async with running(PauseTracker(flaky, clock=clock)) as tracker:  # type: ignore[arg-type]
        tracker.on_event(pause("R1"))
        await tracker.flush()
        assert await store.list_pauses() == []
        clock.advance(6)
        tracker.on_event(unpause())
        await tracker.flush()

    (interval,) = await store.list_pauses()
    assert interval.reason == "R1"
    assert interval.seconds == 6.0
