"""Shifts against the real Asterisk: the roster drives queue membership.

The controller runs in this process with a clock the test moves, so a shift
boundary comes when the test wants it. Asterisk, SIPp and the database are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sigap_pbx.config import Config
from sigap_pbx.roster.schedule import DEFAULT_TZ
from sigap_pbx.store import CallStore, Database, MemberStore
from tests.integration.stack import Stack, api_session
from tests.integration.test_call_path import wait_for_final

DAY = date(2026, 12, 4)

# Day shift 07-19 and night shift 19-07 (across midnight), three crews. On DAY the
# day shift is crew A and the night shift crew B.
ROSTER: dict[str, Any] = {
    "operators": [
        {"endpoint": "op1", "name": "Operator Satu", "role": "operator"},
        {"endpoint": "op2", "name": "Operator Dua", "role": "operator"},
        {"endpoint": "op3", "name": "Operator Tiga", "role": "backup"},
        {"endpoint": "spv1", "name": "Supervisor", "role": "supervisor"},
    ],
    "crews": [
        {"name": "A", "members": ["op1", "spv1"]},
        {"name": "B", "members": ["op2", "op3"]},
        {"name": "C", "members": []},
    ],
    "pattern": {
        "name": "two-twelves",
        "shifts": [
            {"name": "day", "start": "07:00", "hours": 12, "minimum_operators": 1},
            {"name": "night", "start": "19:00", "hours": 12, "minimum_operators": 1},
        ],
    },
    "rotation": {"anchor": DAY.isoformat(), "crews": ["A", "B", "C"]},
    "exceptions": [],
}


def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=DEFAULT_TZ).astimezone(UTC)


class TestClock:
    __test__ = False

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def paused_reasons(stack: Stack, queue: str = "operators") -> dict[str, str]:
    text = stack.rx(f"queue show {queue}")
    found = re.findall(r"PJSIP/([A-Za-z0-9_.-]+)\).*?\(paused:?([^ )]*)", text)
    return dict(found)


@contextlib.asynccontextmanager
async def controller_at(
    config: Config, clock: TestClock, **queue: Any
) -> AsyncIterator[Any]:
    from sigap_pbx.service import Controller

    if queue:
        config = config.model_copy(update={"queue": config.queue.model_copy(update=queue)})
    controller = Controller(config, clock=clock)
    await controller.start()
    try:
        await controller.ami.wait_connected(10)
        await Stack.wait_for(lambda: controller.live.synced, 10, "live view synced")
        yield controller
    finally:
        await controller.stop()


async def save_roster(controller: Any) -> None:
    await controller.rosters.save(ROSTER, actor="test", comment="integration roster")
    await controller.membership.reconcile("test")


async def test_boundary_adds_and_removes_members(clean_stack: Stack, config):
    stack = clean_stack
    clock = TestClock(local(DAY, 18, 50))
    async with controller_at(config, clock) as controller:
        await save_roster(controller)
        await Stack.wait_for(
            lambda: stack.member_penalties() == {"op1": 0, "spv1": 10}, 5, "day crew in queue"
        )
        assert stack.member_penalties("operators-backup") == {"spv1": 10}

        # Five minutes before 19:00 the night crew joins; the day crew stays.
        clock.now = local(DAY, 18, 56)
        await controller.membership.reconcile("test")
        await Stack.wait_for(
            lambda: stack.member_penalties() == {"op1": 0, "spv1": 10, "op2": 0, "op3": 5},
            5, "both crews during the overlap",
        )

        clock.now = local(DAY, 19, 0, 1)
        await controller.membership.reconcile("test")
        await Stack.wait_for(
            lambda: stack.member_penalties() == {"op2": 0, "op3": 5}, 5, "night crew only"
        )
        assert stack.member_penalties("operators-backup") == {"op3": 0}


async def test_handover_keeps_call_in_progress(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    clock = TestClock(local(DAY, 18, 58))
    async with controller_at(config, clock) as controller:
        await save_roster(controller)
        await stack.start_phone("op1", ring_ms=300)
        call = asyncio.create_task(stack.call(caller_number, hold_ms=9000))
        await Stack.wait_for(
            lambda: "(in call)" in stack.rx("queue show operators"), 15, "op1 on the call"
        )

        clock.now = local(DAY, 19, 0, 1)
        plan = await controller.membership.reconcile("test")
        assert plan is not None
        assert [m.endpoint for m in plan.deferred] == ["op1"]
        assert "PJSIP/op1" in stack.queue_members()
        assert "PJSIP/spv1" not in stack.queue_members()

        result = await call
        assert result.ok, result.errors
        # Once the call has ended, op1 leaves without waiting for the next pass.
        await Stack.wait_for(
            lambda: "PJSIP/op1" not in stack.queue_members(), 5, "op1 left after its call"
        )
        (record,) = await wait_for_final(config, caller_number)
        assert record.outcome == "answered"
        assert record.operator == "op1"
        assert record.talk_seconds >= 8


async def test_membership_restored_after_restarts(clean_stack: Stack, config):
    stack = clean_stack
    clock = TestClock(local(DAY, 10))
    async with controller_at(config, clock) as controller:
        await save_roster(controller)
        await stack.start_phone("op1")
        assert (await stack.dial_feature("op1", "*12")).ok
        await Stack.wait_for(lambda: stack.member_penalties() == {"spv1": 10}, 5, "op1 out")

        # Asterisk restarts with empty queues (persistentmembers = no).
        stack.asterisk("restart")
        await Stack.wait_for(lambda: controller.ami.sessions >= 2, 20, "AMI reconnected")
        await Stack.wait_for(
            lambda: stack.member_penalties() == {"spv1": 10}, 10,
            "rostered members back, op1's log out still held",
        )
        stack.add_member("op2")

    # A new controller mid-shift keeps the member added by hand until the shift ends.
    async with controller_at(config, clock) as controller:
        await controller.membership.reconcile("test")
        assert stack.member_penalties() == {"spv1": 10, "op2": 0}
        clock.now = local(DAY, 19, 0, 1)
        await controller.membership.reconcile("test")
        await Stack.wait_for(
            lambda: stack.member_penalties() == {"op2": 0, "op3": 5}, 5, "night crew"
        )


async def test_feature_codes_login_pause_unpause(clean_stack: Stack, config):
    stack = clean_stack
    clock = TestClock(local(DAY, 10))
    async with controller_at(config, clock) as controller:
        await save_roster(controller)
        await stack.start_phone("op2")
        # op2 is not on the day shift: *11 puts it in the queue for this shift.
        assert (await stack.dial_feature("op2", "*11")).ok
        await Stack.wait_for(lambda: "PJSIP/op2" in stack.queue_members(), 5, "op2 logged in")

        assert (await stack.dial_feature("op2", "*22")).ok
        await Stack.wait_for(
            lambda: paused_reasons(stack).get("op2") == "prayer", 5, "op2 paused for prayer"
        )
        assert (await stack.dial_feature("op2", "*20")).ok
        await Stack.wait_for(lambda: "op2" not in paused_reasons(stack), 5, "op2 unpaused")

        # The next pass keeps op2: its log in holds for the shift.
        await controller.membership.reconcile("test")
        assert "PJSIP/op2" in stack.queue_members()
        await controller.pauses.flush()
        entries = await controller.rosters.audit_entries(subject="op2")

    actions = [(e.action, e.actor, e.detail.get("source")) for e in entries]
    assert ("member.login", "op2", "feature_code") in actions
    assert ("member.pause", "op2", "feature_code") in actions
    assert ("member.unpause", "op2", "feature_code") in actions
    pause = next(e for e in entries if e.action == "member.pause")
    assert pause.detail["reason"] == "prayer"

    db = await Database.open(config.database_url)
    try:
        pauses = await MemberStore(db).list_pauses(interface="PJSIP/op2")
    finally:
        await db.close()
    assert [(p.reason, p.ended_at is not None) for p in pauses] == [("prayer", True)]


async def test_unreachable_phone_paused_then_unpaused(clean_stack: Stack, config):
    stack = clean_stack
    clock = TestClock(local(DAY, 10))
    async with controller_at(config, clock) as controller:
        await save_roster(controller)
        await stack.start_phone("op1")
        await Stack.wait_for(lambda: "op1" not in paused_reasons(stack), 5, "op1 available")

        await stack.unregister_phone("op1")
        await Stack.wait_for(
            lambda: paused_reasons(stack).get("op1") == "unreachable", 5, "op1 paused"
        )
        assert any(
            a["kind"] == "endpoint_unreachable" and a["subject"] == "op1"
            for a in controller.alarms.snapshot()
        )

        await stack.start_phone("op1")
        await Stack.wait_for(lambda: "op1" not in paused_reasons(stack), 5, "op1 unpaused")


async def test_missed_calls_pause_operator(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    clock = TestClock(local(DAY, 10))
    async with controller_at(config, clock, missed_calls_pause=2) as controller:
        await save_roster(controller)
        # op1 rings and never picks up. Each caller overflows after one ring
        # attempt, and the supervisor's line picks up down the chain.
        await stack.start_phone("op1", ring_ms=600_000)
        await stack.start_phone("spv1", ring_ms=300)
        for _ in range(2):
            assert "op1" not in paused_reasons(stack)
            result = await stack.call(caller_number, hold_ms=7000)
            assert result.ok, result.errors
        await Stack.wait_for(
            lambda: paused_reasons(stack).get("op1") == "missed_calls", 10,
            "op1 paused after two missed offers",
        )
        alarms = controller.alarms.snapshot()
        assert any(a["kind"] == "missed_calls" and a["subject"] == "op1" for a in alarms)


async def test_nobody_available_overflow_answers(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    clock = TestClock(local(DAY, 10))
    async with controller_at(config, clock) as controller:
        await save_roster(controller)
        # Nobody's phone is registered: every member is unavailable, and the
        # on-call line answers at the end of the chain.
        await stack.start_phone("oncall1", ring_ms=300)
        call = asyncio.create_task(stack.call(caller_number, hold_ms=20000, timeout=90))
        await Stack.wait_for(
            lambda: any(a["kind"] == "nobody_available"
                        for a in controller.alarms.snapshot()),
            15, "nobody_available alarm",
        )
        result = await call
        assert result.ok, result.errors
    (record,) = await wait_for_final(config, caller_number)
    assert record.outcome == "overflowed"
    assert record.overflow_stage == "oncall", [(e.kind, e.data.get("Stage"), e.data.get("Queue")) for e in record.events]
    assert record.answered_by == "oncall1"


def roster_starting_now(zone: Any) -> tuple[dict[str, Any], date, datetime]:
    """Return a roster whose "a" shift started in the last two minutes, with its date and end.

    Member events and call records carry Asterisk's real timestamps, so the report
    window must contain the real time of the test call.
    """
    start = (datetime.now(zone) - timedelta(minutes=1)).replace(second=0, microsecond=0)
    other = start + timedelta(hours=12)
    roster = {
        **ROSTER,
        "pattern": {
            "name": "two-twelves",
            "shifts": [
                {"name": "a", "start": start.strftime("%H:%M"), "hours": 12,
                 "minimum_operators": 1},
                {"name": "b", "start": other.strftime("%H:%M"), "hours": 12,
                 "minimum_operators": 1},
            ],
        },
        "rotation": {"anchor": start.date().isoformat(), "crews": ["A", "B", "C"]},
    }
    return roster, start.date(), (start + timedelta(hours=12)).astimezone(UTC)


async def test_shift_report_stored_and_readable(clean_stack: Stack, config, caller_number):
    import json
    import subprocess
    import sys


    stack = clean_stack
    roster, shift_date, shift_end = roster_starting_now(config.roster.zone)
    clock = TestClock(datetime.now(UTC))
    async with controller_at(config, clock) as controller:
        await controller.rosters.save(roster, actor="test")
        await controller.membership.reconcile("test")
        await stack.start_phone("op1", ring_ms=300)
        await Stack.wait_for(lambda: "op1" not in paused_reasons(stack), 5, "op1 available")
        result = await stack.call(caller_number, hold_ms=3000)
        assert result.ok, result.errors
        await wait_for_final(config, caller_number)
        await controller.member_events.flush()

        # The shift ends, and the report is stored after its settling time.
        clock.now = shift_end + timedelta(seconds=61)
        stored = await controller.shift_reports.run_due()
        assert (shift_date, "a") in stored

        url = (f"http://127.0.0.1:{controller.web_port}/api/shifts/reports/"
               f"{shift_date.isoformat()}/a")
        async with api_session(controller, "supervisor") as session, \
                session.get(url) as response:
            assert response.status == 200
            from_api = await response.json()

    listing = subprocess.run(
        [sys.executable, "-m", "sigap_pbx.cli", "shifts", "report", shift_date.isoformat(),
         "a", "--json"],
        capture_output=True, text=True, timeout=60,
        env={**stack.environ, "SIGAP_DATABASE__URL": config.database_url, "PATH": "/usr/bin:/bin"},
    )
    assert listing.returncode == 0, listing.stderr
    from_cli = json.loads(listing.stdout)
    # A new database imports every call in Asterisk's CEL, so earlier tests' calls
    # may fall in the window too: count what the store holds there.
    db = await Database.open(config.database_url)
    try:
        calls = await CallStore(db).list_calls(limit=1000)
    finally:
        await db.close()
    window_start = shift_end - timedelta(hours=12)
    in_window = [c for c in calls if window_start <= c.arrived_at < shift_end]
    assert caller_number[1:] in " ".join(c.caller_number for c in in_window)

    for content in (from_api["report"], from_cli["content"]):
        rows = {row["endpoint"]: row for row in content["operators"]}
        assert rows["op1"]["rostered"] is True
        assert rows["op1"]["offered"] == 1
        assert rows["op1"]["answered"] == 1
        assert rows["op1"]["missed"] == 0
        assert rows["op1"]["talk_seconds"] >= 2
        assert content["queue"]["arrived"] == len(in_window)
        assert content["queue"]["answered"] == sum(c.answered_at is not None for c in in_window)
