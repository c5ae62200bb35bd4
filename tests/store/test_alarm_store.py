"""AlarmStore rows, and the AlarmBoard's writer and restore on a real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.store import Database, InvalidFieldValue, UnknownField
from sigap_pbx.store.alarms import AlarmNotFound, AlarmSeverity, AlarmStore

T0 = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


@pytest.fixture
def alarms(db: Database) -> AlarmStore:
    return AlarmStore(db)


async def insert(
    alarms: AlarmStore,
    minutes: float,
    *,
    kind: str = "endpoint_unreachable",
    subject: str = "op1",
    cleared: float | None = None,
) -> int:
    return await alarms.insert(
        kind=kind,
        subject=subject,
        severity="warning",
        message=f"{kind} {subject}",
        raised_at=at(minutes),
        detail={"interface": f"PJSIP/{subject}"},
        cleared_at=None if cleared is None else at(cleared),
    )


async def test_insert_and_get_round_trip(alarms: AlarmStore) -> None:
    alarm_id = await insert(alarms, 0)

    view = await alarms.get(alarm_id)

    assert view is not None
    assert view.kind == "endpoint_unreachable"
    assert view.subject == "op1"
    assert view.severity is AlarmSeverity.WARNING
    assert view.raised_at == at(0)
    assert view.cleared_at is None
    assert view.detail == {"interface": "PJSIP/op1"}
    assert view.to_dict()["active"] is True


async def test_insert_rejects_unknown_severity(alarms: AlarmStore) -> None:
    with pytest.raises(InvalidFieldValue, match="severity"):
        await alarms.insert(
            kind="k", subject="s", severity="urgent", message="m", raised_at=at(0)
        )
    assert await alarms.list_alarms() == []


async def test_insert_rejects_naive_time(alarms: AlarmStore) -> None:
    with pytest.raises(InvalidFieldValue, match="raised_at"):
        await alarms.insert(
            kind="k", subject="s", severity="info", message="m", raised_at=datetime(2026, 1, 1)
        )


async def test_update_sets_only_given_fields(alarms: AlarmStore) -> None:
    alarm_id = await insert(alarms, 0)

    await alarms.update(alarm_id, cleared_at=at(5), message="cleared now")

    view = await alarms.get(alarm_id)
    assert view is not None
    assert view.cleared_at == at(5)
    assert view.message == "cleared now"
    assert view.detail == {"interface": "PJSIP/op1"}


async def test_update_unknown_id_raises(alarms: AlarmStore) -> None:
    with pytest.raises(AlarmNotFound, match="alarm id 999 not found"):
        await alarms.update(999, message="x")


async def test_update_unknown_field_raises(alarms: AlarmStore) -> None:
    alarm_id = await insert(alarms, 0)
    with pytest.raises(UnknownField, match="kind"):
        await alarms.update(alarm_id, kind="other")


async def test_acknowledge_keeps_first(alarms: AlarmStore) -> None:
    alarm_id = await insert(alarms, 0, cleared=3)

    first = await alarms.acknowledge(alarm_id, at(4), "spv1")
    second = await alarms.acknowledge(alarm_id, at(6), "spv2")

    assert first.acknowledged_by == "spv1"
    assert second.acknowledged_by == "spv1"
    assert second.acknowledged_at == at(4)


async def test_acknowledge_unknown_id_raises(alarms: AlarmStore) -> None:
    with pytest.raises(AlarmNotFound):
        await alarms.acknowledge(404, at(0), "spv1")


async def test_list_filters_and_orders(alarms: AlarmStore) -> None:
    old = await insert(alarms, 0, subject="op1", cleared=10)
    active = await insert(alarms, 20, subject="op2")
    recent = await insert(alarms, 30, subject="op3", cleared=35)

    everything = [view.id for view in await alarms.list_alarms()]
    only_active = [view.id for view in await alarms.list_alarms(active=True)]
    only_cleared = [view.id for view in await alarms.list_alarms(active=False)]
    since = [view.id for view in await alarms.list_alarms(since=at(15))]
    limited = [view.id for view in await alarms.list_alarms(limit=1)]

    assert everything == [recent, active, old]
    assert only_active == [active]
    assert only_cleared == [recent, old]
    assert since == [recent, active]
    assert limited == [recent]


async def test_list_since_keeps_alarm_cleared_after(alarms: AlarmStore) -> None:
    spanning = await insert(alarms, 0, cleared=20)

    found = [view.id for view in await alarms.list_alarms(since=at(10))]

    assert found == [spanning]


async def test_list_uncleared_oldest_first(alarms: AlarmStore) -> None:
    second = await insert(alarms, 5, subject="op2")
    await insert(alarms, 1, subject="op9", cleared=2)
    first = await insert(alarms, 0, subject="op1")

    found = [view.id for view in await alarms.list_uncleared()]

    assert found == [first, second]


# The board on a real store ------------------------------------------------------------


async def test_board_writes_raise_and_clear(alarms: AlarmStore) -> None:
    clock = FakeClock()
    board = AlarmBoard(alarms, clock)
    writer = asyncio.create_task(board.run_writer())
    try:
        board.raise_alarm("long_wait", "operators", "1 caller waiting")
        clock.advance(2)
        board.clear("long_wait", "operators", "no_long_wait")
        await board.flush(timeout=10)
    finally:
        writer.cancel()

    (view,) = await alarms.list_alarms()
    assert view.kind == "long_wait"
    assert view.raised_at == at(0)
    assert view.cleared_at == at(2)


async def test_board_restore_takes_over_uncleared(alarms: AlarmStore) -> None:
    kept = await insert(alarms, 0, subject="op1")
    await insert(alarms, 1, subject="op2", cleared=2)
    board = AlarmBoard(alarms, FakeClock())

    restored = await board.restore()

    assert restored == 1
    record = board.get_active("endpoint_unreachable", "op1")
    assert record is not None
    assert record.id == kept
    assert board.get_active("endpoint_unreachable", "op2") is None


async def test_board_restore_clears_older_duplicate(alarms: AlarmStore) -> None:
    older = await insert(alarms, 0, subject="op1")
    newer = await insert(alarms, 3, subject="op1")
    board = AlarmBoard(alarms, FakeClock())
    writer = asyncio.create_task(board.run_writer())
    try:
        await board.restore()
        await board.flush(timeout=10)
    finally:
        writer.cancel()

    record = board.get_active("endpoint_unreachable", "op1")
    assert record is not None
    assert record.id == newer
    older_view = await alarms.get(older)
    assert older_view is not None
    assert older_view.cleared_at == at(3)


async def test_board_acknowledges_row_it_no_longer_holds(alarms: AlarmStore) -> None:
    alarm_id = await insert(alarms, 0, cleared=1)
    audited: list[tuple[str, str, str, dict[str, object]]] = []

    async def audit(actor: str, action: str, subject: str, detail: dict[str, object]) -> None:
        audited.append((actor, action, subject, detail))

    board = AlarmBoard(alarms, FakeClock(), audit=audit)

    result = await board.acknowledge(alarm_id, "spv1")

    assert result["acknowledged_by"] == "spv1"
    assert audited == [
        (
            "spv1",
            "alarm.acknowledge",
            f"alarm:{alarm_id}",
            {"alarm_id": alarm_id, "kind": "endpoint_unreachable", "subject": "op1"},
        )
    ]
