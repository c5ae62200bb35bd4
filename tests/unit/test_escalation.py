"""EscalationWatcher with a fake clock and a fake callout on a SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from sigap_pbx.agencies.dispatch import UNACKNOWLEDGED_ALARM, DispatchService
from sigap_pbx.agencies.escalation import EscalationCall, EscalationWatcher
from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.config import AgenciesConfig
from sigap_pbx.store import Database
from sigap_pbx.store.alarms import AlarmSeverity
from sigap_pbx.store.dispatch import DispatchStore
from tests.unit.agency_rows import (
    T0,
    FakeClock,
    add_agency,
    add_dispatch,
    add_report,
    dispatch_row,
)

CONFIG = AgenciesConfig(acknowledge_minutes=[2, 5, 10, 15])


@dataclass
class FakeCallout:
    calls: list[EscalationCall] = field(default_factory=list)
    fail: bool = False
    hold: asyncio.Event | None = None

    async def __call__(self, call: EscalationCall) -> None:
        self.calls.append(call)
        if self.hold is not None:
            await self.hold.wait()
        if self.fail:
            raise RuntimeError("AMI Originate failed")


@dataclass
class AuditLog:
    entries: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> int:
        self.entries.append((actor, action, subject, detail))
        return len(self.entries)


@dataclass
class Setup:
    db: Database
    clock: FakeClock
    alarms: AlarmBoard
    callout: FakeCallout
    audit: AuditLog
    watcher: EscalationWatcher
    agency_id: int

    async def dispatch(self, priority: int = 1, **options: Any) -> tuple[int, int]:
        report_id = await add_report(self.db, priority=priority, category="fire")
        return report_id, await add_dispatch(self.db, report_id, self.agency_id, **options)

    async def check_at(self, minutes: float) -> list[EscalationCall]:
        self.clock.now = T0 + timedelta(minutes=minutes)
        started = await self.watcher.check()
        # Let the callout tasks run.
        await asyncio.sleep(0)
        return started


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'escalation.db'}")
    clock = FakeClock()
    alarms = AlarmBoard(None, clock)
    callout = FakeCallout()
    audit = AuditLog()
    watcher = EscalationWatcher(
        DispatchStore(db), CONFIG, alarms, callout, clock, audit=audit
    )
    agency_id = await add_agency(db, "damkar")
    yield Setup(db, clock, alarms, callout, audit, watcher, agency_id)
    await watcher.stop()
    await db.close()


async def test_no_escalation_before_deadline(setup: Setup) -> None:
    await setup.dispatch(priority=1)

    started = await setup.check_at(1.99)

    assert started == []
    assert setup.callout.calls == []
    assert setup.alarms.active() == []


async def test_first_escalation_at_deadline(setup: Setup) -> None:
    report_id, dispatch_id = await setup.dispatch(priority=1)

    [call] = await setup.check_at(2)

    assert call == setup.callout.calls[0]
    assert call.dispatch_id == dispatch_id
    assert call.report_id == report_id
    assert call.report_version == 1
    assert call.priority == 1
    assert call.category == "fire"
    assert call.agency_code == "damkar"
    assert call.agency_id == setup.agency_id
    assert call.escalation == 1
    assert call.sent_at == T0
    row = await dispatch_row(setup.db, dispatch_id)
    assert row["escalations"] == 1
    assert row["escalated_at"] == T0 + timedelta(minutes=2)
    alarm = setup.alarms.get_active(UNACKNOWLEDGED_ALARM, f"report:{report_id}:damkar")
    assert alarm is not None
    assert alarm.severity is AlarmSeverity.CRITICAL
    assert alarm.detail["escalations"] == 1
    [(actor, action, subject, detail)] = setup.audit.entries
    assert (actor, action, subject) == ("escalation", "report.escalated", f"report:{report_id}")
    assert detail["escalation"] == 1


async def test_escalation_repeats_each_interval_up_to_cap(setup: Setup) -> None:
    report_id, dispatch_id = await setup.dispatch(priority=1)

    escalations = {}
    for minutes in [2, 2.25, 3.99, 4, 6, 8, 10, 30]:
        escalations[minutes] = [call.escalation for call in await setup.check_at(minutes)]

    assert escalations == {
        2: [1], 2.25: [], 3.99: [], 4: [2], 6: [3], 8: [], 10: [], 30: [],
    }
    assert len(setup.callout.calls) == 3
    assert (await dispatch_row(setup.db, dispatch_id))["escalations"] == 3
    alarm = setup.alarms.get_active(UNACKNOWLEDGED_ALARM, f"report:{report_id}:damkar")
    assert alarm is not None
    assert "called 3 of 3 times" in alarm.message


async def test_deadline_follows_priority(setup: Setup) -> None:
    report_id, _ = await setup.dispatch(priority=3)

    before = await setup.check_at(9.9)
    at_deadline = await setup.check_at(10)

    assert before == []
    assert [call.priority for call in at_deadline] == [3]
    alarm = setup.alarms.get_active(UNACKNOWLEDGED_ALARM, f"report:{report_id}:damkar")
    assert alarm is not None
    assert alarm.severity is AlarmSeverity.WARNING


async def test_acknowledged_dispatch_is_left_alone(setup: Setup) -> None:
    await setup.dispatch(priority=1, status="acknowledged")

    assert await setup.check_at(60) == []
    assert setup.alarms.active() == []


async def test_alarm_clears_after_acknowledgement(setup: Setup) -> None:
    report_id, dispatch_id = await setup.dispatch(priority=2)
    await setup.check_at(5)
    # Acknowledged without the alarm board, as by another controller process.
    await DispatchService(setup.db, clock=setup.clock).acknowledge(dispatch_id, "damkar-1")

    later = await setup.check_at(10)

    assert later == []
    assert setup.alarms.get_active(UNACKNOWLEDGED_ALARM, f"report:{report_id}:damkar") is None
    assert len(setup.callout.calls) == 1


async def test_restart_continues_schedule(setup: Setup) -> None:
    _, dispatch_id = await setup.dispatch(
        priority=1, escalations=2, escalated_at=T0 + timedelta(minutes=4)
    )

    too_soon = await setup.check_at(5)
    due = await setup.check_at(6)

    assert too_soon == []
    assert [call.escalation for call in due] == [3]
    assert (await dispatch_row(setup.db, dispatch_id))["escalations"] == 3


async def test_failed_callout_is_logged(setup: Setup) -> None:
    setup.callout.fail = True
    _, dispatch_id = await setup.dispatch(priority=1)

    with structlog.testing.capture_logs() as entries:
        await setup.check_at(2)
        await asyncio.sleep(0)

    failures = [e for e in entries if e["event"] == "escalation_callout_failed"]
    assert len(failures) == 1
    assert failures[0]["dispatch_id"] == dispatch_id
    assert (await dispatch_row(setup.db, dispatch_id))["escalations"] == 1


async def test_running_callout_delays_next_escalation(setup: Setup) -> None:
    setup.callout.hold = asyncio.Event()
    await setup.dispatch(priority=1)

    first = await setup.check_at(2)
    while_ringing = await setup.check_at(4)
    setup.callout.hold.set()
    await asyncio.sleep(0)
    after_ringing = await setup.check_at(4.1)

    assert [call.escalation for call in first] == [1]
    assert while_ringing == []
    assert [call.escalation for call in after_ringing] == [2]


async def test_without_callout_only_alarm(setup: Setup) -> None:
    watcher = EscalationWatcher(
        DispatchStore(setup.db), CONFIG, setup.alarms, None, setup.clock
    )
    report_id, _ = await setup.dispatch(priority=1)
    setup.clock.now = T0 + timedelta(minutes=2)

    [call] = await watcher.check()

    assert call.escalation == 1
    alarm = setup.alarms.get_active(UNACKNOWLEDGED_ALARM, f"report:{report_id}:damkar")
    assert alarm is not None
    assert "nobody was called" in alarm.message
