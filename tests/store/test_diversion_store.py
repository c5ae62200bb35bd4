"""Diversion flags on caller numbers: limits, lifting and which flags are in force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sigap_pbx.store import Database, InvalidFieldValue
from sigap_pbx.store.diversions import DiversionNotFound, DiversionStore

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


async def add(store: DiversionStore, **overrides):  # type: ignore[no-untyped-def]
    values = {
        "number": "+6281234567890",
        "action": "warning",
        "reason": "three prank calls tonight",
        "set_by": "spv1",
        "set_at": NOW,
        "until": NOW + timedelta(days=1),
    }
    return await store.add(**{**values, **overrides})


async def test_add_records_who_and_until(db: Database) -> None:
    store = DiversionStore(db)

    flag = await add(store)
    stored = await store.get(flag.id)

    assert stored == flag
    assert stored.set_by == "spv1"
    assert stored.until == NOW + timedelta(days=1)
    assert stored.lifted_at is None
    assert stored.in_force(NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("until", NOW),
        ("until", NOW - timedelta(minutes=1)),
        ("until", NOW + timedelta(days=30, seconds=1)),
        ("number", "0812-3456"),
        ("number", "12"),
        ("number", "+62812345678901234567890"),
        ("reason", ""),
        ("reason", "line\nbreak"),
        ("action", "block"),
    ],
)
async def test_add_rejects_invalid_value(db: Database, field: str, value: object) -> None:
    store = DiversionStore(db)

    with pytest.raises(InvalidFieldValue) as raised:
        await add(store, **{field: value})

    assert raised.value.field == field
    assert await store.list_for(["+6281234567890"]) == []


async def test_until_may_be_thirty_days(db: Database) -> None:
    flag = await add(DiversionStore(db), until=NOW + timedelta(days=30))

    assert flag.until == NOW + timedelta(days=30)


async def test_lift_keeps_first_lift(db: Database) -> None:
    store = DiversionStore(db)
    flag = await add(store)

    lifted = await store.lift(flag.id, by="spv2", at=NOW + timedelta(hours=2))
    again = await store.lift(flag.id, by="admin", at=NOW + timedelta(hours=3))

    assert lifted.lifted_by == "spv2"
    assert again.lifted_by == "spv2"
    assert again.lifted_at == NOW + timedelta(hours=2)
    assert not again.in_force(NOW + timedelta(hours=4))


async def test_lift_unknown_id(db: Database) -> None:
    with pytest.raises(DiversionNotFound):
        await DiversionStore(db).lift(99, by="spv1", at=NOW)


async def test_in_force_excludes_lifted_and_expired(db: Database) -> None:
    store = DiversionStore(db)
    current = await add(store, action="low_priority")
    expired = await add(store, set_at=NOW - timedelta(days=3), until=NOW - timedelta(days=1))
    lifted = await add(store)
    await store.lift(lifted.id, by="spv1", at=NOW + timedelta(minutes=5))
    await add(store, number="+6289999999")

    in_force = await store.list_for(
        ["+6281234567890"], in_force_at=NOW + timedelta(minutes=10)
    )
    every = await store.list_for(["+6281234567890"])

    assert [flag.id for flag in in_force] == [current.id]
    assert {flag.id for flag in every} == {current.id, expired.id, lifted.id}


async def test_list_in_force_spans_numbers(db: Database) -> None:
    store = DiversionStore(db)
    first = await add(store)
    other = await add(store, number="+6281200000000", action="low_priority",
                      set_at=NOW + timedelta(minutes=1))
    lifted = await add(store, number="+6281300000000")
    await store.lift(lifted.id, by="spv1", at=NOW + timedelta(minutes=2))
    await add(store, number="+6281400000000", until=NOW + timedelta(minutes=3))
    await add(store, number="+6281500000000", set_at=NOW + timedelta(hours=2),
              until=NOW + timedelta(hours=3))

    in_force = await store.list_in_force(NOW + timedelta(minutes=5))

    assert [flag.id for flag in in_force] == [first.id, other.id]
