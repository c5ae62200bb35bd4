"""CoverageGuard: below_minimum, nobody_available and long_wait from the live view."""

from __future__ import annotations

import pytest

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.live import Caller, LiveView, Member, QueueView
from sigap_pbx.members.coverage import (
    BELOW_MINIMUM,
    LONG_WAIT,
    NOBODY_AVAILABLE,
    CoverageGuard,
    ShiftInfo,
)
from sigap_pbx.store.alarms import AlarmSeverity

PRIMARY = "operators"
BACKUP = "operators-backup"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Roster:
    def __init__(self, shift: ShiftInfo | None) -> None:
        self.shift = shift

    def __call__(self) -> ShiftInfo | None:
        return self.shift


def member(name: str, **fields: object) -> Member:
    values: dict[str, object] = {"status": "not_in_use", "penalty": 0, **fields}
    return Member(interface=f"PJSIP/{name}", name=name, **values)  # type: ignore[arg-type]


def live_view(*members: Member) -> LiveView:
    view = LiveView()
    view.queues = {
        PRIMARY: QueueView(PRIMARY, {m.interface: m for m in members}),
        BACKUP: QueueView(BACKUP),
    }
    view.synced = True
    return view


def add_caller(view: LiveView, queue: str, uniqueid: str, joined: float) -> None:
    view.queues[queue].callers[uniqueid] = Caller(
        uniqueid=uniqueid,
        channel="PJSIP/carrier-00000001",
        caller_number="+62812",
        joined_monotonic=joined,
    )


@pytest.fixture
def board() -> AlarmBoard:
    return AlarmBoard(None)


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def roster() -> Roster:
    return Roster(ShiftInfo("pagi", minimum_operators=2))


def make_guard(
    view: LiveView, board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> CoverageGuard:
    return CoverageGuard(view, board, PRIMARY, 20, roster, clock)


def test_enough_operators_raises_nothing(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> None:
    view = live_view(member("op1"), member("op2"))

    make_guard(view, board, clock, roster).evaluate()

    assert board.active() == []


def test_below_minimum_names_shift_count_and_minimum(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> None:
    view = live_view(member("op1"), member("op2", paused=True, paused_reason="prayer"))

    make_guard(view, board, clock, roster).evaluate()

    alarm = board.get_active(BELOW_MINIMUM, PRIMARY)
    assert alarm is not None
    assert "pagi" in alarm.message
    assert "1 operators on post" in alarm.message
    assert "minimum is 2" in alarm.message
    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is None


def test_supervisor_not_counted_towards_minimum(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> None:
    view = live_view(member("op1"), member("spv1", penalty=10))

    make_guard(view, board, clock, roster).evaluate()

    assert board.get_active(BELOW_MINIMUM, PRIMARY) is not None


def test_backup_counted_towards_minimum(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> None:
    view = live_view(member("op1"), member("bk1", penalty=5))

    make_guard(view, board, clock, roster).evaluate()

    assert board.get_active(BELOW_MINIMUM, PRIMARY) is None


def test_unreachable_not_counted(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> None:
    view = live_view(member("op1"), member("op2", status="unavailable"))

    make_guard(view, board, clock, roster).evaluate()

    assert board.get_active(BELOW_MINIMUM, PRIMARY) is not None


def test_in_call_and_wrapup_stay_on_post(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> None:
    view = live_view(
        member("op1", status="in_use", in_call=True),
        member("op2", paused=True, paused_reason="wrapup"),
    )

    make_guard(view, board, clock, roster).evaluate()

    assert board.get_active(BELOW_MINIMUM, PRIMARY) is None
    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is not None


def test_below_minimum_clears(board: AlarmBoard, clock: FakeMonotonic, roster: Roster) -> None:
    view = live_view(member("op1"), member("op2", paused=True, paused_reason="toilet"))
    guard = make_guard(view, board, clock, roster)
    guard.evaluate()

    view.queues[PRIMARY].members["PJSIP/op2"].paused = False
    guard.evaluate()

    assert board.get_active(BELOW_MINIMUM, PRIMARY) is None


def test_no_roster_skips_minimum(board: AlarmBoard, clock: FakeMonotonic) -> None:
    view = live_view(member("op1"))

    make_guard(view, board, clock, Roster(None)).evaluate()

    assert board.get_active(BELOW_MINIMUM, PRIMARY) is None


def test_failing_roster_skips_minimum(board: AlarmBoard, clock: FakeMonotonic) -> None:
    def broken() -> ShiftInfo | None:
        raise LookupError("no shift covers now")

    view = live_view(member("op1"))
    guard = CoverageGuard(view, board, PRIMARY, 20, broken, clock)

    guard.evaluate()

    assert board.get_active(BELOW_MINIMUM, PRIMARY) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"paused": True, "paused_reason": "break"},
        {"status": "unavailable"},
        {"status": "invalid"},
        {"in_call": True},
        {"status": "in_use"},
    ],
)
def test_nobody_available_is_critical(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster, fields: dict[str, object]
) -> None:
    view = live_view(member("op1", **fields))

    make_guard(view, board, clock, roster).evaluate()

    alarm = board.get_active(NOBODY_AVAILABLE, PRIMARY)
    assert alarm is not None
    assert alarm.severity is AlarmSeverity.CRITICAL
    assert "overflow" in alarm.message


def test_supervisor_alone_is_available(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> None:
    view = live_view(member("op1", paused=True, paused_reason="break"), member("spv1", penalty=10))

    make_guard(view, board, clock, roster).evaluate()

    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is None


def test_ringing_member_is_available(
    board: AlarmBoard, clock: FakeMonotonic, roster: Roster
) -> None:
    view = live_view(member("op1", status="ringing"))

    make_guard(view, board, clock, roster).evaluate()

    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is None


def test_empty_queue_is_nobody_available(
    board: AlarmBoard, clock: FakeMonotonic
) -> None:
    view = live_view()

    make_guard(view, board, clock, Roster(None)).evaluate()

    alarm = board.get_active(NOBODY_AVAILABLE, PRIMARY)
    assert alarm is not None
    assert "no members" in alarm.message


def test_nobody_available_clears(board: AlarmBoard, clock: FakeMonotonic, roster: Roster) -> None:
    view = live_view(member("op1", in_call=True))
    guard = make_guard(view, board, clock, roster)
    guard.evaluate()

    view.queues[PRIMARY].members["PJSIP/op1"].in_call = False
    guard.evaluate()

    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is None


def test_unsynced_view_changes_nothing(board: AlarmBoard, clock: FakeMonotonic, roster: Roster) -> None:
    view = live_view()
    view.synced = False

    make_guard(view, board, clock, roster).evaluate()

    assert board.active() == []


def test_long_wait_after_threshold(board: AlarmBoard, clock: FakeMonotonic) -> None:
    view = live_view(member("op1", in_call=True), member("op2", in_call=True))
    add_caller(view, PRIMARY, "1.1", joined=clock.now - 45)
    add_caller(view, PRIMARY, "1.2", joined=clock.now - 5)

    make_guard(view, board, clock, Roster(None)).evaluate()

    alarm = board.get_active(LONG_WAIT, PRIMARY)
    assert alarm is not None
    assert "2 callers are waiting" in alarm.message
    assert "over 40 s" in alarm.message
    assert alarm.detail["over_threshold"] == 1
    assert board.get_active(LONG_WAIT, BACKUP) is None


def test_short_wait_no_alarm(board: AlarmBoard, clock: FakeMonotonic) -> None:
    view = live_view(member("op1"))
    add_caller(view, PRIMARY, "1.1", joined=clock.now - 20)

    make_guard(view, board, clock, Roster(None)).evaluate()

    assert board.get_active(LONG_WAIT, PRIMARY) is None


def test_long_wait_clears_when_answered(board: AlarmBoard, clock: FakeMonotonic) -> None:
    view = live_view(member("op1"))
    add_caller(view, PRIMARY, "1.1", joined=clock.now - 30)
    guard = make_guard(view, board, clock, Roster(None))
    guard.evaluate()

    del view.queues[PRIMARY].callers["1.1"]
    guard.evaluate()

    assert board.get_active(LONG_WAIT, PRIMARY) is None


def test_wait_carries_over_to_backup(board: AlarmBoard, clock: FakeMonotonic) -> None:
    view = live_view(member("op1"))
    add_caller(view, PRIMARY, "1.1", joined=clock.now - 15)
    guard = make_guard(view, board, clock, Roster(None))
    guard.evaluate()

    # The caller overflows: it leaves the primary queue and joins the backup queue,
    # whose live view starts the wait again from zero.
    clock.now += 10
    del view.queues[PRIMARY].callers["1.1"]
    add_caller(view, BACKUP, "1.1", joined=clock.now)
    guard.evaluate()

    alarm = board.get_active(LONG_WAIT, BACKUP)
    assert alarm is not None
    assert alarm.detail["over_threshold"] == 1


def test_long_wait_message_steps(board: AlarmBoard, clock: FakeMonotonic) -> None:
    view = live_view(member("op1"))
    add_caller(view, PRIMARY, "1.1", joined=clock.now - 21)
    guard = make_guard(view, board, clock, Roster(None))
    guard.evaluate()
    messages = []
    board.on_change.append(lambda change, alarm: messages.append(alarm["message"]))

    for _ in range(9):
        clock.now += 1
        guard.evaluate()

    assert len(messages) == 1
    assert "over 30 s" in messages[0]


def test_invalid_threshold_rejected(board: AlarmBoard, clock: FakeMonotonic) -> None:
    with pytest.raises(ValueError, match="long_wait_alarm_seconds"):
        CoverageGuard(live_view(), board, PRIMARY, 0, Roster(None), clock)


def test_hold_delays_nobody_available(board: AlarmBoard, clock: FakeMonotonic) -> None:
    view = live_view(member("op1", in_call=True))
    guard = CoverageGuard(view, board, PRIMARY, 20, Roster(None), clock, hold_seconds=5)
    guard.evaluate()
    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is None

    clock.now += 4.9
    guard.evaluate()
    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is None

    clock.now += 0.2
    guard.evaluate()
    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is not None


def test_hold_restarts_after_break(board: AlarmBoard, clock: FakeMonotonic) -> None:
    view = live_view(member("op1", in_call=True))
    guard = CoverageGuard(view, board, PRIMARY, 20, Roster(None), clock, hold_seconds=5)
    guard.evaluate()
    clock.now += 4
    # op1 is free for a moment: the condition breaks, so the hold starts again.
    view.queues[PRIMARY].members["PJSIP/op1"].in_call = False
    guard.evaluate()
    view.queues[PRIMARY].members["PJSIP/op1"].in_call = True
    clock.now += 4
    guard.evaluate()
    assert board.get_active(NOBODY_AVAILABLE, PRIMARY) is None
    assert board.history(10) == []


def test_hold_delays_below_minimum(board: AlarmBoard, clock: FakeMonotonic, roster: Roster) -> None:
    view = live_view(member("op1"))
    guard = CoverageGuard(view, board, PRIMARY, 20, roster, clock, hold_seconds=5)
    guard.evaluate()
    assert board.get_active(BELOW_MINIMUM, PRIMARY) is None
    clock.now += 5
    guard.evaluate()
    assert board.get_active(BELOW_MINIMUM, PRIMARY) is not None
