"""MissedCallGuard: pause after N unanswered offers in a row, alarm until unpaused."""

from __future__ import annotations

import asyncio

import pytest

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.ami.client import AmiNotConnected
from sigap_pbx.members.missed import ALARM_KIND, MISSED_CALLS_REASON, MissedCallGuard
from sigap_pbx.wire.ami import Event
from tests.unit.test_endpoint_health import FakeAmi, ami_event, member_event, queue_member

OP1 = "PJSIP/op1"


def offer_event(name: str, queue: str = "operators", interface: str = OP1) -> Event:
    return ami_event(
        name,
        ("Channel", "PJSIP/carrier-00000001"),
        ("Uniqueid", "1796409216.1"),
        ("DestChannel", "PJSIP/op1-00000002"),
        ("DestUniqueid", "1796409216.2"),
        ("Queue", queue),
        ("Interface", interface),
        ("MemberName", "Budi"),
        ("RingTime", "15"),
    )


@pytest.fixture
def ami() -> FakeAmi:
    return FakeAmi()


@pytest.fixture
def board() -> AlarmBoard:
    return AlarmBoard(None)


@pytest.fixture
def guard(ami: FakeAmi, board: AlarmBoard) -> MissedCallGuard:
    guard = MissedCallGuard(ami, board, 3, action_timeout=2)
    guard.on_event(member_event("QueueMemberAdded", "operators"))
    guard.on_event(member_event("QueueMemberAdded", "operators-backup"))
    return guard


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def miss(guard: MissedCallGuard, times: int, queue: str = "operators") -> None:
    for _ in range(times):
        guard.on_event(offer_event("AgentRingNoAnswer", queue))


async def test_below_threshold_does_nothing(
    guard: MissedCallGuard, ami: FakeAmi, board: AlarmBoard
) -> None:
    miss(guard, 2)
    await settle()

    assert guard.missed[OP1] == 2
    assert ami.pauses() == []
    assert board.active() == []


async def test_threshold_pauses_all_queues_and_alarms(
    guard: MissedCallGuard, ami: FakeAmi, board: AlarmBoard
) -> None:
    miss(guard, 2, "operators")
    miss(guard, 1, "operators-backup")
    await settle()

    assert ami.pauses() == [
        {"Interface": OP1, "Paused": "true", "Reason": MISSED_CALLS_REASON}
    ]
    alarm = board.get_active(ALARM_KIND, "op1")
    assert alarm is not None
    assert "Budi" in alarm.message
    assert "3 offered calls" in alarm.message
    assert alarm.detail["missed_in_a_row"] == 3


async def test_more_misses_do_not_pause_again(guard: MissedCallGuard, ami: FakeAmi) -> None:
    miss(guard, 5)
    await settle()

    assert len(ami.pauses()) == 1


async def test_answer_resets_count(guard: MissedCallGuard, ami: FakeAmi) -> None:
    miss(guard, 2)
    guard.on_event(offer_event("AgentConnect"))
    miss(guard, 2)
    await settle()

    assert guard.missed[OP1] == 2
    assert ami.pauses() == []


async def test_unpause_clears_alarm_and_count(
    guard: MissedCallGuard, board: AlarmBoard, ami: FakeAmi
) -> None:
    miss(guard, 3)
    await settle()
    guard.on_event(member_event("QueueMemberPause", paused=True, reason=MISSED_CALLS_REASON))

    guard.on_event(member_event("QueueMemberPause", paused=False))
    miss(guard, 2)
    await settle()

    assert board.get_active(ALARM_KIND, "op1") is None
    assert guard.missed[OP1] == 2
    assert len(ami.pauses()) == 1


async def test_pause_skips_queue_paused_for_other_reason(
    ami: FakeAmi, board: AlarmBoard
) -> None:
    guard = MissedCallGuard(ami, board, 2)
    guard.on_event(member_event("QueueMemberAdded", "operators"))
    guard.on_event(member_event("QueueMemberAdded", "operators-backup", paused=True, reason="break"))

    miss(guard, 2)
    await settle()

    assert ami.pauses() == [
        {
            "Interface": OP1,
            "Paused": "true",
            "Reason": MISSED_CALLS_REASON,
            "Queue": "operators",
        }
    ]


async def test_threshold_zero_is_off(ami: FakeAmi, board: AlarmBoard) -> None:
    guard = MissedCallGuard(ami, board, 0)
    guard.on_event(member_event("QueueMemberAdded"))

    miss(guard, 10)
    await settle()

    assert ami.pauses() == []
    assert board.active() == []


def test_negative_threshold_rejected(ami: FakeAmi, board: AlarmBoard) -> None:
    with pytest.raises(ValueError, match="missed_calls_pause"):
        MissedCallGuard(ami, board, -1)


async def test_unknown_member_paused_everywhere(ami: FakeAmi, board: AlarmBoard) -> None:
    guard = MissedCallGuard(ami, board, 1)

    miss(guard, 1)
    await settle()

    assert ami.pauses() == [
        {"Interface": OP1, "Paused": "true", "Reason": MISSED_CALLS_REASON}
    ]


async def test_failed_pause_retried_at_next_miss(
    guard: MissedCallGuard, ami: FakeAmi, board: AlarmBoard
) -> None:
    ami.error = AmiNotConnected("AMI is not connected")
    miss(guard, 3)
    await settle()
    ami.error = None

    miss(guard, 1)
    await settle()

    assert len(ami.pauses()) == 2
    assert board.get_active(ALARM_KIND, "op1") is not None


async def test_logout_clears_alarm(guard: MissedCallGuard, board: AlarmBoard) -> None:
    miss(guard, 3)
    await settle()

    for queue in ("operators", "operators-backup"):
        guard.on_event(ami_event("QueueMemberRemoved", ("Queue", queue), ("Interface", OP1)))

    assert board.get_active(ALARM_KIND, "op1") is None
    assert OP1 not in guard.missed


async def test_resync_keeps_alarm_of_paused_member(
    ami: FakeAmi, board: AlarmBoard
) -> None:
    guard = MissedCallGuard(ami, board, 3)

    guard.reset_from_status([queue_member("operators", paused=True, reason=MISSED_CALLS_REASON)])

    assert board.get_active(ALARM_KIND, "op1") is not None
    assert OP1 in guard.tripped


async def test_resync_clears_alarm_of_unpaused_member(
    guard: MissedCallGuard, board: AlarmBoard
) -> None:
    miss(guard, 3)
    await settle()

    guard.reset_from_status([queue_member("operators")])

    assert board.get_active(ALARM_KIND, "op1") is None
    assert guard.tripped == set()
