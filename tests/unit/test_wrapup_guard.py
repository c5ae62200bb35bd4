"""WrapupGuard: wrap-up pauses in all queues and alerts on early call offers.

Events are AMI bytes as Asterisk 22 writes them, parsed with AmiParser. A fake AMI
records the actions sent, a fake clock dates call ends and offers, and a fake sleep
holds the unpause until the test lets it run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from sigap_pbx.ami.client import AmiActionFailed, AmiError, AmiNotConnected
from sigap_pbx.members.wrapup import ALERT_HISTORY, WRAPUP_REASON, WrapupGuard
from sigap_pbx.wire.ami import AmiParser, Completion, Event, Response
from tests.unit.fake_ami import wait_until

T0 = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)
OP1 = "PJSIP/op1"
CALLER_UNIQUEID = "1796409216.1"
MEMBER_UNIQUEID = "1796409216.2"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeSleep:
    """Records each requested delay and waits until `release()`."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._released = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self._released.wait()

    def release(self) -> None:
        self._released.set()


class FakeAmi:
    """Records every action; raises `error` for each one when it is set."""

    def __init__(self, error: AmiError | None = None) -> None:
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.error = error

    async def action(
        self, name: str, fields: object = (), *, timeout: float | None = None
    ) -> Completion:
        self.actions.append((name, dict(fields)))  # type: ignore[call-overload]
        if self.error is not None:
            raise self.error
        response = Response(headers=(("Response", "Success"), ("ActionID", "1")))
        return Completion(action_id="1", response=response)

    def queue_pauses(self) -> list[dict[str, str]]:
        return [fields for name, fields in self.actions if name == "QueuePause"]

    def unpauses(self) -> list[dict[str, str]]:
        return [fields for fields in self.queue_pauses() if fields["Paused"] == "false"]


def ami_event(name: str, *headers: tuple[str, str]) -> Event:
    lines = [("Event", name), ("Privilege", "agent,all"), *headers]
    data = b"".join(f"{key}: {value}\r\n".encode() for key, value in lines)
    (event,) = AmiParser().feed(data + b"\r\n")
    assert isinstance(event, Event)
    return event


def call_headers(queue: str, member_uniqueid: str) -> list[tuple[str, str]]:
    """Headers of a queue event about the caller's channel and the member's channel."""
    return [
        ("Channel", "PJSIP/carrier-00000001"),
        ("Uniqueid", CALLER_UNIQUEID),
        ("Linkedid", CALLER_UNIQUEID),
        ("DestChannel", "PJSIP/op1-00000002"),
        ("DestUniqueid", member_uniqueid),
        ("DestLinkedid", CALLER_UNIQUEID),
        ("Queue", queue),
        ("Interface", OP1),
        ("MemberName", "op1"),
    ]


def agent_connect(
    queue: str = "operators", member_uniqueid: str = MEMBER_UNIQUEID
) -> Event:
    return ami_event(
        "AgentConnect",
        *call_headers(queue, member_uniqueid),
        ("HoldTime", "4"),
        ("RingTime", "2"),
    )


def agent_complete(
    queue: str = "operators", member_uniqueid: str = MEMBER_UNIQUEID
) -> Event:
    return ami_event(
        "AgentComplete",
        *call_headers(queue, member_uniqueid),
        ("HoldTime", "4"),
        ("TalkTime", "61"),
        ("Reason", "caller"),
    )


def agent_called(queue: str, caller_uniqueid: str = "1796409300.7") -> Event:
    return ami_event(
        "AgentCalled",
        ("Channel", "PJSIP/carrier-00000007"),
        ("Uniqueid", caller_uniqueid),
        ("DestChannel", "PJSIP/op1-00000008"),
        ("DestUniqueid", "1796409300.8"),
        ("Queue", queue),
        ("Interface", OP1),
        ("MemberName", "op1"),
    )


def member_hangup() -> Event:
    return ami_event(
        "Hangup",
        ("Channel", "PJSIP/op1-00000002"),
        ("Uniqueid", MEMBER_UNIQUEID),
        ("Linkedid", CALLER_UNIQUEID),
        ("Cause", "16"),
        ("Cause-txt", "Normal Clearing"),
    )


def member_event(
    name: str, queue: str, *, paused: bool = False, reason: str = ""
) -> Event:
    return ami_event(
        name,
        ("Queue", queue),
        ("MemberName", "op1"),
        ("Interface", OP1),
        ("StateInterface", OP1),
        ("Membership", "dynamic"),
        ("Status", "1"),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", reason),
    )


def queue_member(queue: str, *, paused: bool, reason: str = "") -> Event:
    return ami_event(
        "QueueMember",
        ("Queue", queue),
        ("Name", "op1"),
        ("Location", OP1),
        ("StateInterface", OP1),
        ("Status", "1"),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", reason),
    )


def feed(guard: WrapupGuard, events: Iterable[Event]) -> None:
    for event in events:
        guard.on_event(event)


def member_in_two_queues(guard: WrapupGuard) -> None:
    feed(
        guard,
        [
            member_event("QueueMemberAdded", "operators"),
            member_event("QueueMemberAdded", "operators-backup"),
        ],
    )


def call_answered_and_ended(
    guard: WrapupGuard,
    queue: str = "operators",
    member_uniqueid: str = MEMBER_UNIQUEID,
) -> None:
    feed(
        guard,
        [agent_connect(queue, member_uniqueid), agent_complete(queue, member_uniqueid)],
    )


async def settle() -> None:
    """Let the guard's tasks run until they wait on the fake sleep."""
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def ami() -> FakeAmi:
    return FakeAmi()


@pytest.fixture
async def guard(
    ami: FakeAmi, clock: FakeClock, sleep: FakeSleep
) -> AsyncIterator[WrapupGuard]:
    guard = WrapupGuard(ami, 30, clock, sleep=sleep)
    yield guard
    sleep.release()
    await guard.stop()


# --- Alerts -------------------------------------------------------------------


async def test_early_offer_raises_one_alert(
    guard: WrapupGuard, clock: FakeClock
) -> None:
    member_in_two_queues(guard)
    call_answered_and_ended(guard, "operators")
    clock.advance(3)

    with capture_logs() as logs:
        guard.on_event(agent_called("operators-backup"))

    (alert,) = guard.alerts
    assert alert.interface == OP1
    assert alert.queue == "operators-backup"
    assert alert.seconds_since_last_call == 3.0
    assert alert.at == T0 + timedelta(seconds=3)
    assert alert.uniqueid == "1796409300.7"
    assert guard.alerts_total == 1
    (line,) = [entry for entry in logs if entry["event"] == "wrapup_violation"]
    assert line["interface"] == OP1
    assert line["queue"] == "operators-backup"
    assert line["seconds_since_last_call"] == 3.0
    assert line["log_level"] == "warning"


async def test_offer_after_window_no_alert(
    guard: WrapupGuard, clock: FakeClock
) -> None:
    member_in_two_queues(guard)
    call_answered_and_ended(guard)
    clock.advance(30)

    guard.on_event(agent_called("operators-backup"))

    assert list(guard.alerts) == []
    assert guard.alerts_total == 0


async def test_offer_without_past_call_no_alert(guard: WrapupGuard) -> None:
    guard.on_event(agent_called("operators"))

    assert list(guard.alerts) == []


async def test_last_call_end_shared_by_queues(
    guard: WrapupGuard, clock: FakeClock
) -> None:
    call_answered_and_ended(guard, "operators-backup")

    assert guard.last_call_end == {OP1: T0}


async def test_alerts_bounded(guard: WrapupGuard) -> None:
    call_answered_and_ended(guard)
    for index in range(ALERT_HISTORY + 50):
        guard.on_event(agent_called("operators", f"1796409300.{index}"))

    assert len(guard.alerts) == ALERT_HISTORY
    assert guard.alerts_total == ALERT_HISTORY + 50
    assert guard.alerts[-1].uniqueid == f"1796409300.{ALERT_HISTORY + 49}"
    assert guard.alerts_snapshot()[0]["uniqueid"] == "1796409300.50"


# --- Pause and unpause --------------------------------------------------------


async def test_pause_sent_for_all_queues(guard: WrapupGuard, ami: FakeAmi) -> None:
    member_in_two_queues(guard)
    call_answered_and_ended(guard)
    await settle()

    (pause,) = ami.queue_pauses()
    assert pause == {"Interface": OP1, "Paused": "true", "Reason": WRAPUP_REASON}
    assert "Queue" not in pause


async def test_unpause_after_window(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    member_in_two_queues(guard)
    call_answered_and_ended(guard)
    await settle()

    assert sleep.delays == [30.0]
    assert ami.unpauses() == []
    assert OP1 in guard.wrapups

    sleep.release()
    await settle()

    assert ami.unpauses() == [{"Interface": OP1, "Paused": "false"}]
    assert guard.wrapups == {}


async def test_unpause_with_real_sleep() -> None:
    ami = FakeAmi()
    guard = WrapupGuard(ami, 0.05)
    call_answered_and_ended(guard)

    await wait_until(lambda: len(ami.unpauses()) == 1, timeout=5)

    assert [fields["Paused"] for fields in ami.queue_pauses()] == ["true", "false"]
    await guard.stop()


async def test_member_hangup_ends_call_once(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    feed(guard, [agent_connect(), member_hangup()])
    await settle()
    guard.on_event(agent_complete())
    await settle()

    assert len(ami.queue_pauses()) == 1
    assert sleep.delays == [30.0]


async def test_unanswered_leg_hangup_ignored(guard: WrapupGuard, ami: FakeAmi) -> None:
    guard.on_event(member_hangup())
    await settle()

    assert ami.actions == []
    assert guard.last_call_end == {}


async def test_zero_seconds_disables(ami: FakeAmi, clock: FakeClock) -> None:
    guard = WrapupGuard(ami, 0, clock)
    member_in_two_queues(guard)
    call_answered_and_ended(guard)
    clock.advance(1)
    guard.on_event(agent_called("operators-backup"))
    await settle()

    assert ami.actions == []
    assert list(guard.alerts) == []
    assert guard.wrapups == {}


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_invalid_seconds_rejected(seconds: float) -> None:
    with pytest.raises(ValueError, match="wrapup_seconds"):
        WrapupGuard(FakeAmi(), seconds)


# --- Cancellation -------------------------------------------------------------


async def test_logout_cancels_unpause(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    guard.on_event(member_event("QueueMemberAdded", "operators"))
    call_answered_and_ended(guard)
    await settle()

    guard.on_event(member_event("QueueMemberRemoved", "operators"))
    sleep.release()
    await settle()

    assert ami.unpauses() == []
    assert guard.wrapups == {}


async def test_leaving_one_queue_keeps_unpause(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    member_in_two_queues(guard)
    call_answered_and_ended(guard)
    await settle()

    guard.on_event(member_event("QueueMemberRemoved", "operators-backup"))
    sleep.release()
    await settle()

    assert ami.unpauses() == [{"Interface": OP1, "Paused": "false"}]


async def test_other_reason_cancels_unpause(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    guard.on_event(member_event("QueueMemberAdded", "operators"))
    call_answered_and_ended(guard)
    await settle()

    guard.on_event(
        member_event("QueueMemberPause", "operators", paused=True, reason="break")
    )

    assert guard.wrapups == {}
    sleep.release()
    await settle()
    assert ami.unpauses() == []


async def test_own_pause_event_keeps_unpause(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    guard.on_event(member_event("QueueMemberAdded", "operators"))
    call_answered_and_ended(guard)
    await settle()

    guard.on_event(
        member_event("QueueMemberPause", "operators", paused=True, reason=WRAPUP_REASON)
    )
    sleep.release()
    await settle()

    assert ami.unpauses() == [{"Interface": OP1, "Paused": "false"}]


async def test_other_reason_in_one_queue(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    member_in_two_queues(guard)
    call_answered_and_ended(guard)
    await settle()

    guard.on_event(
        member_event("QueueMemberPause", "operators", paused=True, reason="break")
    )
    sleep.release()
    await settle()

    assert ami.unpauses() == [
        {"Interface": OP1, "Paused": "false", "Queue": "operators-backup"}
    ]


async def test_member_already_paused_skipped(guard: WrapupGuard, ami: FakeAmi) -> None:
    guard.on_event(
        member_event("QueueMemberAdded", "operators", paused=True, reason="break")
    )
    call_answered_and_ended(guard)
    await settle()

    assert ami.actions == []
    assert guard.last_call_end == {OP1: T0}
    assert guard.wrapups == {}


async def test_new_call_end_restarts_window(
    guard: WrapupGuard, ami: FakeAmi, clock: FakeClock, sleep: FakeSleep
) -> None:
    call_answered_and_ended(guard)
    await settle()
    clock.advance(10)
    call_answered_and_ended(guard, member_uniqueid="1796409400.2")
    await settle()

    assert guard.last_call_end == {OP1: T0 + timedelta(seconds=10)}
    assert sleep.delays == [30.0, 30.0]
    assert guard.wrapups[OP1].deadline == T0 + timedelta(seconds=40)


# --- AMI failures, resync and stop -------------------------------------------


async def test_ami_failure_logged(clock: FakeClock, sleep: FakeSleep) -> None:
    ami = FakeAmi(error=AmiNotConnected("no AMI session is logged in"))
    guard = WrapupGuard(ami, 30, clock, sleep=sleep)

    with capture_logs() as logs:
        call_answered_and_ended(guard)
        await settle()

    failures = [
        entry for entry in logs if entry["event"] == "wrapup_queue_pause_failed"
    ]
    assert len(failures) == 1
    assert failures[0]["interface"] == OP1
    assert "AmiNotConnected" in failures[0]["error"]
    assert sleep.delays == [30.0]
    sleep.release()
    await guard.stop()


async def test_rejected_unpause_logged(clock: FakeClock, sleep: FakeSleep) -> None:
    ami = FakeAmi()
    guard = WrapupGuard(ami, 30, clock, sleep=sleep)
    call_answered_and_ended(guard)
    await settle()
    rejection = Response(
        headers=(("Response", "Error"), ("Message", "Interface not found"))
    )
    ami.error = AmiActionFailed("QueuePause", Completion("2", rejection))

    with capture_logs() as logs:
        sleep.release()
        await settle()

    (failure,) = [
        entry for entry in logs if entry["event"] == "wrapup_queue_pause_failed"
    ]
    assert failure["paused"] is False
    assert "Interface not found" in failure["error"]
    assert guard.wrapups == {}


async def test_resync_releases_leftover_pause(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    guard.reset_from_status(
        [
            queue_member("operators", paused=True, reason=WRAPUP_REASON),
            queue_member("operators-backup", paused=True, reason=WRAPUP_REASON),
        ]
    )
    await settle()

    assert sleep.delays == []
    assert ami.unpauses() == [{"Interface": OP1, "Paused": "false"}]


async def test_resync_keeps_remaining_window(
    guard: WrapupGuard, ami: FakeAmi, clock: FakeClock, sleep: FakeSleep
) -> None:
    call_answered_and_ended(guard)
    await settle()
    guard.wrapups[OP1].task.cancel()  # type: ignore[union-attr]
    guard.wrapups.clear()
    await settle()
    clock.advance(12)

    guard.reset_from_status(
        [queue_member("operators", paused=True, reason=WRAPUP_REASON)]
    )
    await settle()

    assert sleep.delays == [30.0, 18.0]
    assert ami.unpauses() == []


async def test_resync_leaves_other_reasons(guard: WrapupGuard, ami: FakeAmi) -> None:
    guard.reset_from_status([queue_member("operators", paused=True, reason="break")])
    await settle()

    assert ami.actions == []


async def test_resync_releases_when_disabled(ami: FakeAmi) -> None:
    guard = WrapupGuard(ami, 0)

    guard.reset_from_status(
        [queue_member("operators", paused=True, reason=WRAPUP_REASON)]
    )
    await wait_until(lambda: len(ami.unpauses()) == 1)

    assert ami.unpauses() == [{"Interface": OP1, "Paused": "false"}]


async def test_stop_unpauses_pending(
    guard: WrapupGuard, ami: FakeAmi, sleep: FakeSleep
) -> None:
    call_answered_and_ended(guard)
    await settle()

    await guard.stop()

    assert ami.unpauses() == [{"Interface": OP1, "Paused": "false"}]
    assert guard.wrapups == {}
    assert sleep.delays == [30.0]
