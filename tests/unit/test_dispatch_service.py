"""DispatchService: acknowledgement, forward-only status changes and the portal list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.agencies.dispatch import (
    UNACKNOWLEDGED_ALARM,
    DispatchService,
    InvalidTransition,
    alarm_subject,
)
from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.store import Database
from sigap_pbx.store.dispatch import DispatchNotFound
from sigap_pbx.store.reports import DispatchStatus
from tests.unit.agency_rows import T0, FakeClock, add_agency, add_dispatch, add_report


@dataclass
class AuditLog:
    entries: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> int:
        self.entries.append((actor, action, subject, detail))
        return len(self.entries)


@dataclass
class Setup:
    db: Database
    service: DispatchService
    clock: FakeClock
    audit: AuditLog
    alarms: AlarmBoard
    agency_id: int


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}")
    clock = FakeClock()
    audit = AuditLog()
    alarms = AlarmBoard(None, clock)
    service = DispatchService(db, audit, clock, alarms=alarms)
    agency_id = await add_agency(db, "damkar")
    yield Setup(db, service, clock, audit, alarms, agency_id)
    await db.close()


async def new_dispatch(setup: Setup, **options: Any) -> tuple[int, int]:
    report_id = await add_report(setup.db)
    dispatch_id = await add_dispatch(setup.db, report_id, setup.agency_id, **options)
    return report_id, dispatch_id


async def test_acknowledge_records_event_and_clears_alarm(setup: Setup) -> None:
    report_id, dispatch_id = await new_dispatch(setup)
    subject = alarm_subject(report_id, "damkar")
    setup.alarms.raise_alarm(UNACKNOWLEDGED_ALARM, subject, "not acknowledged")
    setup.clock.advance(minutes=1)

    view = await setup.service.acknowledge(dispatch_id, "damkar-1")

    assert view.status is DispatchStatus.ACKNOWLEDGED
    assert view.acknowledged_at == T0 + timedelta(minutes=1)
    assert view.acknowledged_by == "damkar-1"
    assert view.status_at == T0 + timedelta(minutes=1)
    events = await setup.service.events(dispatch_id)
    assert [(e.status, e.actor) for e in events] == [
        (DispatchStatus.SENT, "op1"),
        (DispatchStatus.ACKNOWLEDGED, "damkar-1"),
    ]
    assert setup.alarms.get_active(UNACKNOWLEDGED_ALARM, subject) is None
    [(actor, action, audit_subject, detail)] = setup.audit.entries
    assert actor == "damkar-1"
    assert action == "report.dispatch_acknowledged"
    assert audit_subject == f"report:{report_id}"
    assert detail["dispatch_id"] == dispatch_id
    assert detail["from"] == "sent"


async def test_acknowledge_by_report_and_agency(setup: Setup) -> None:
    report_id, dispatch_id = await new_dispatch(setup)

    view = await setup.service.acknowledge((report_id, "damkar"), "ivr")

    assert view.id == dispatch_id
    assert view.status is DispatchStatus.ACKNOWLEDGED
    with pytest.raises(DispatchNotFound):
        await setup.service.acknowledge((report_id, "polisi"), "ivr")


async def test_repeated_acknowledge_changes_nothing(setup: Setup) -> None:
    _, dispatch_id = await new_dispatch(setup)
    await setup.service.acknowledge(dispatch_id, "damkar-1")
    setup.clock.advance(minutes=3)

    view = await setup.service.acknowledge(dispatch_id, "damkar-2")

    assert view.acknowledged_by == "damkar-1"
    assert view.acknowledged_at == T0
    assert len(await setup.service.events(dispatch_id)) == 2
    assert len(setup.audit.entries) == 1


async def test_statuses_move_forward_with_times(setup: Setup) -> None:
    _, dispatch_id = await new_dispatch(setup)
    steps = ["acknowledged", "dispatched", "en_route", "on_scene", "resolved"]

    for minute, status in enumerate(steps, start=1):
        setup.clock.advance(minutes=1)
        await setup.service.update_status(dispatch_id, status, "damkar-1", f"step {minute}")

    view = await setup.service.get(dispatch_id)
    assert view.status is DispatchStatus.RESOLVED
    assert view.final
    events = await setup.service.events(dispatch_id)
    assert [e.status.value for e in events] == ["sent", *steps]
    assert [e.at for e in events] == [T0 + timedelta(minutes=m) for m in range(6)]
    assert events[3].note == "step 3"


async def test_status_from_sent_implies_acknowledgement(setup: Setup) -> None:
    report_id, dispatch_id = await new_dispatch(setup)
    setup.alarms.raise_alarm(UNACKNOWLEDGED_ALARM, alarm_subject(report_id, "damkar"), "x")
    setup.clock.advance(minutes=2)

    view = await setup.service.update_status(dispatch_id, "en_route", "unit-3", "leaving")

    assert view.status is DispatchStatus.EN_ROUTE
    assert view.acknowledged_at == T0 + timedelta(minutes=2)
    assert view.acknowledged_by == "unit-3"
    events = await setup.service.events(dispatch_id)
    assert [e.status.value for e in events] == ["sent", "acknowledged", "en_route"]
    assert events[2].note == "leaving"
    assert setup.alarms.active(UNACKNOWLEDGED_ALARM) == []


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("en_route", "dispatched"),
        ("resolved", "on_scene"),
        ("resolved", "false_alarm"),
        ("false_alarm", "resolved"),
        ("acknowledged", "sent"),
    ],
)
async def test_backward_or_after_final_is_rejected(
    setup: Setup, current: str, target: str
) -> None:
    _, dispatch_id = await new_dispatch(setup)
    await setup.service.update_status(dispatch_id, current, "damkar-1")
    before = await setup.service.events(dispatch_id)

    with pytest.raises(InvalidTransition) as raised:
        await setup.service.update_status(dispatch_id, target, "damkar-1")

    assert f"from {current} to {target}" in str(raised.value)
    assert await setup.service.events(dispatch_id) == before


async def test_acknowledge_after_final_changes_nothing(setup: Setup) -> None:
    _, dispatch_id = await new_dispatch(setup)
    await setup.service.update_status(dispatch_id, "false_alarm", "damkar-1")

    view = await setup.service.acknowledge(dispatch_id, "damkar-2")

    assert view.status is DispatchStatus.FALSE_ALARM
    assert view.acknowledged_by == "damkar-1"


async def test_invalid_input_is_rejected(setup: Setup) -> None:
    _, dispatch_id = await new_dispatch(setup)

    with pytest.raises(ValueError, match="invalid dispatch status 'parked'"):
        await setup.service.update_status(dispatch_id, "parked", "damkar-1")
    with pytest.raises(ValueError, match="invalid actor"):
        await setup.service.update_status(dispatch_id, "dispatched", " ")
    with pytest.raises(DispatchNotFound):
        await setup.service.acknowledge(dispatch_id + 100, "damkar-1")


async def test_list_puts_unacknowledged_first(setup: Setup) -> None:
    police_id = await add_agency(setup.db, "polisi", kind="police")
    report_ids = [await add_report(setup.db) for _ in range(5)]
    old_sent = await add_dispatch(setup.db, report_ids[0], setup.agency_id, sent_at=T0)
    acked_new = await add_dispatch(
        setup.db, report_ids[1], setup.agency_id, sent_at=T0 + timedelta(minutes=9),
        status="acknowledged",
    )
    new_sent = await add_dispatch(
        setup.db, report_ids[2], setup.agency_id, sent_at=T0 + timedelta(minutes=5)
    )
    resolved = await add_dispatch(
        setup.db, report_ids[3], setup.agency_id, sent_at=T0 + timedelta(minutes=7),
        status="resolved",
    )
    await add_dispatch(setup.db, report_ids[4], police_id)

    queue = await setup.service.list_for_agency("damkar")
    everything = await setup.service.list_for_agency("damkar", include_final=True)
    all_agencies = await setup.service.list_for_agency(None)

    assert [view.id for view in queue] == [new_sent, old_sent, acked_new]
    assert [view.id for view in everything] == [new_sent, old_sent, acked_new, resolved]
    assert len(all_agencies) == 4
    assert queue[0].to_dict()["agency_code"] == "damkar"
    assert queue[0].to_dict()["priority"] == 1
