"""DispatchStore compare-and-set writes and queue order on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sigap_pbx.store import Database
from sigap_pbx.store.dispatch import DispatchNotFound, DispatchStore, StatusChange
from sigap_pbx.store.reports import DispatchStatus
from tests.unit.agency_rows import T0, add_agency, add_dispatch, add_report, dispatch_row


@pytest.fixture
def dispatches(db: Database) -> DispatchStore:
    return DispatchStore(db)


async def test_stale_status_change_writes_nothing(
    db: Database, dispatches: DispatchStore
) -> None:
    agency_id = await add_agency(db, "damkar")
    dispatch_id = await add_dispatch(db, await add_report(db), agency_id)
    acknowledge = [StatusChange(DispatchStatus.ACKNOWLEDGED, T0, "damkar-1")]

    first = await dispatches.change_status(
        dispatch_id, expected=DispatchStatus.SENT, changes=acknowledge
    )
    second = await dispatches.change_status(
        dispatch_id, expected=DispatchStatus.SENT, changes=acknowledge
    )

    assert first is True
    assert second is False
    events = await dispatches.events(dispatch_id)
    assert [event.status for event in events] == [DispatchStatus.SENT, DispatchStatus.ACKNOWLEDGED]
    row = await dispatch_row(db, dispatch_id)
    assert row["acknowledged_by"] == "damkar-1"


async def test_escalation_mark_needs_expected_count(
    db: Database, dispatches: DispatchStore
) -> None:
    agency_id = await add_agency(db, "damkar")
    dispatch_id = await add_dispatch(db, await add_report(db), agency_id)
    at = T0 + timedelta(minutes=2)

    marked = await dispatches.mark_escalated(dispatch_id, at=at, expected_escalations=0)
    repeated = await dispatches.mark_escalated(dispatch_id, at=at, expected_escalations=0)

    assert marked is True
    assert repeated is False
    row = await dispatch_row(db, dispatch_id)
    assert row["escalations"] == 1
    assert row["escalated_at"] == at


async def test_queue_order_and_lookup(db: Database, dispatches: DispatchStore) -> None:
    agency_id = await add_agency(db, "damkar")
    acked = await add_dispatch(
        db, await add_report(db), agency_id, sent_at=T0 + timedelta(minutes=5),
        status="dispatched",
    )
    old = await add_dispatch(db, await add_report(db), agency_id, sent_at=T0)
    report_id = await add_report(db, priority=3)
    new = await add_dispatch(db, report_id, agency_id, sent_at=T0 + timedelta(minutes=1))

    queue = await dispatches.list_dispatches(agency_code="damkar")
    found = await dispatches.find(report_id, "damkar")
    waiting = await dispatches.list_unacknowledged()

    assert [view.id for view in queue] == [new, old, acked]
    assert found.id == new
    assert found.priority == 3
    assert [view.id for view in waiting] == [old, new]
    with pytest.raises(DispatchNotFound):
        await dispatches.find(report_id, "polisi")
