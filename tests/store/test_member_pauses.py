"""MemberStore: pause intervals written, closed, listed and summed per reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sigap_pbx.store import (
    Database,
    InvalidFieldValue,
    MemberStore,
    PauseNotFound,
    PauseSource,
)
from sigap_pbx.store.db import build_engine
from tests.store.test_migrations import run_alembic

BASE = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


@pytest.fixture
def members(db: Database) -> MemberStore:
    return MemberStore(db)


async def add_pause(
    members: MemberStore,
    start: float,
    end: float | None,
    *,
    interface: str = "PJSIP/op1",
    queue: str = "operators",
    reason: str = "break",
) -> int:
    """Store a pause from minute `start` to minute `end` (open when `end` is None)."""
    pause_id = await members.open_pause(
        interface=interface,
        queue=queue,
        reason=reason,
        started_at=at(start),
        source="pause_event",
        member_name="op1",
    )
    if end is not None:
        await members.close_pause(pause_id, at(end), (end - start) * 60)
    return pause_id


# --- Writes -----------------------------------------------------------------


async def test_open_then_close_round_trip(members: MemberStore) -> None:
    pause_id = await members.open_pause(
        interface="PJSIP/op1",
        queue="operators",
        reason="break",
        started_at=at(0),
        source="pause_event",
        member_name="op1",
    )
    await members.close_pause(pause_id, at(1.5), 90.0)

    (pause,) = await members.list_pauses()
    assert pause.id == pause_id
    assert pause.interface == "PJSIP/op1"
    assert pause.member_name == "op1"
    assert pause.queue == "operators"
    assert pause.reason == "break"
    assert pause.started_at == at(0)
    assert pause.ended_at == at(1.5)
    assert pause.seconds == 90.0
    assert pause.source is PauseSource.PAUSE_EVENT


async def test_open_pause_has_no_end(members: MemberStore) -> None:
    await add_pause(members, 0, None)

    (pause,) = await members.list_pauses()
    assert pause.ended_at is None
    assert pause.seconds is None


async def test_times_come_back_in_utc(members: MemberStore) -> None:
    jakarta = timezone(timedelta(hours=7))
    start = datetime(2026, 12, 4, 15, 0, 0, tzinfo=jakarta)
    pause_id = await members.open_pause(
        interface="PJSIP/op1",
        queue="operators",
        reason="",
        started_at=start,
        source="queue_status",
    )
    await members.close_pause(pause_id, start + timedelta(seconds=5), 5.0)

    (pause,) = await members.list_pauses()
    assert pause.started_at == BASE
    assert pause.started_at.utcoffset() == timedelta(0)
    assert pause.ended_at is not None
    assert pause.ended_at.utcoffset() == timedelta(0)
    assert pause.reason == ""
    assert pause.member_name is None


async def test_close_again_replaces_end(members: MemberStore) -> None:
    pause_id = await add_pause(members, 0, 1)

    await members.close_pause(pause_id, at(2), 120.0)

    (pause,) = await members.list_pauses()
    assert pause.ended_at == at(2)
    assert pause.seconds == 120.0


async def test_close_unknown_id_raises(members: MemberStore) -> None:
    with pytest.raises(PauseNotFound) as raised:
        await members.close_pause(4242, at(1), 60.0)

    assert raised.value.pause_id == 4242
    assert "4242" in str(raised.value)


async def test_close_before_start_rejected(members: MemberStore) -> None:
    pause_id = await add_pause(members, 10, None)

    with pytest.raises(InvalidFieldValue) as raised:
        await members.close_pause(pause_id, at(9), 0.0)

    assert raised.value.field == "ended_at"
    (pause,) = await members.list_pauses()
    assert pause.ended_at is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interface", ""),
        ("queue", ""),
        ("reason", 7),
        ("started_at", datetime(2026, 12, 4, 8, 0, 0)),
        ("source", "guess"),
        ("member_name", "op\x001"),
    ],
)
async def test_open_rejects_bad_field(
    members: MemberStore, field: str, value: object
) -> None:
    fields: dict[str, object] = {
        "interface": "PJSIP/op1",
        "queue": "operators",
        "reason": "break",
        "started_at": at(0),
        "source": "pause_event",
        "member_name": "op1",
    }
    fields[field] = value

    with pytest.raises(InvalidFieldValue) as raised:
        await members.open_pause(**fields)  # type: ignore[arg-type]

    assert raised.value.field == field
    assert await members.list_pauses() == []


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
async def test_close_rejects_bad_seconds(members: MemberStore, seconds: float) -> None:
    pause_id = await add_pause(members, 0, None)

    with pytest.raises(InvalidFieldValue) as raised:
        await members.close_pause(pause_id, at(1), seconds)

    assert raised.value.field == "seconds"


async def test_constraint_rejects_seconds_without_end(db: Database) -> None:
    insert = sa.text(
        "INSERT INTO member_pauses "
        "(interface, queue, reason, started_at, seconds, source) "
        "VALUES ('PJSIP/op1', 'operators', 'break', :start, 5.0, 'pause_event')"
    )
    with pytest.raises(sa.exc.IntegrityError):
        async with db.session() as session:
            await session.execute(insert, {"start": at(0)})


async def test_constraint_rejects_unknown_source(db: Database) -> None:
    insert = sa.text(
        "INSERT INTO member_pauses (interface, queue, reason, started_at, source) "
        "VALUES ('PJSIP/op1', 'operators', 'break', :start, 'guess')"
    )
    with pytest.raises(sa.exc.IntegrityError):
        async with db.session() as session:
            await session.execute(insert, {"start": at(0)})


# --- Reads ------------------------------------------------------------------


async def test_list_filters_by_interface(members: MemberStore) -> None:
    await add_pause(members, 0, 1, interface="PJSIP/op1")
    await add_pause(members, 0, 1, interface="PJSIP/op2")

    pauses = await members.list_pauses(interface="PJSIP/op2")

    assert [pause.interface for pause in pauses] == ["PJSIP/op2"]


async def test_list_returns_overlapping_window(members: MemberStore) -> None:
    ended_before = await add_pause(members, 0, 10)
    crosses_start = await add_pause(members, 5, 15)
    inside = await add_pause(members, 12, 14)
    crosses_end = await add_pause(members, 18, 25)
    still_open = await add_pause(members, 19, None)
    starts_at_until = await add_pause(members, 20, 21)

    pauses = await members.list_pauses(since=at(10), until=at(20))

    ids = [pause.id for pause in pauses]
    assert ids == [crosses_start, inside, crosses_end, still_open]
    assert ended_before not in ids
    assert starts_at_until not in ids


async def test_list_orders_by_start(members: MemberStore) -> None:
    later = await add_pause(members, 5, 6)
    earlier = await add_pause(members, 1, 2)

    pauses = await members.list_pauses()

    assert [pause.id for pause in pauses] == [earlier, later]


async def test_list_open_pauses_only_open(members: MemberStore) -> None:
    await add_pause(members, 0, 1)
    open_id = await add_pause(members, 2, None)

    pauses = await members.list_open_pauses()

    assert [pause.id for pause in pauses] == [open_id]


async def test_seconds_by_reason_clipped(members: MemberStore) -> None:
    await add_pause(members, 0, 10, reason="break")  # 5 min inside
    await add_pause(members, 12, 14, reason="break")  # 2 min inside
    await add_pause(members, 15, 40, reason="briefing")  # 15 min inside
    await add_pause(members, 20, 22, reason="break", interface="PJSIP/op2")

    totals = await members.pause_seconds_by_reason("PJSIP/op1", at(5), at(30))

    assert totals == {"break": 420.0, "briefing": 900.0}


async def test_seconds_by_reason_open_until_now(members: MemberStore) -> None:
    await add_pause(members, 10, None, reason="")

    totals = await members.pause_seconds_by_reason(
        "PJSIP/op1", at(0), at(60), now=at(13)
    )

    assert totals == {"": 180.0}


async def test_seconds_by_reason_empty(members: MemberStore) -> None:
    totals = await members.pause_seconds_by_reason("PJSIP/op1", at(0), at(60))

    assert totals == {}


async def test_seconds_by_reason_rejects_reversed(members: MemberStore) -> None:
    with pytest.raises(InvalidFieldValue) as raised:
        await members.pause_seconds_by_reason("PJSIP/op1", at(10), at(0))

    assert raised.value.field == "until"


# --- Schema -----------------------------------------------------------------


def read_indexes(connection: Connection) -> set[str]:
    inspector = sa.inspect(connection)
    return {index["name"] for index in inspector.get_indexes("member_pauses")}


async def test_migration_creates_indexes(db: Database) -> None:
    async with db.engine.connect() as connection:
        indexes = await connection.run_sync(read_indexes)

    assert "ix_member_pauses_interface_started_at" in indexes
    assert "ix_member_pauses_started_at" in indexes


def read_tables(connection: Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


async def test_downgrade_drops_only_pauses(database_url: str) -> None:
    upgraded = run_alembic(database_url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    downgraded = run_alembic(database_url, "downgrade", "0001")
    assert downgraded.returncode == 0, downgraded.stderr

    engine = build_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(read_tables)
    finally:
        await engine.dispose()
    assert "member_pauses" not in tables
    assert "calls" in tables
