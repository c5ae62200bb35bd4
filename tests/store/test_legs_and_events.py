"""Operator legs and the append-only event timeline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sigap_pbx.store import (
    CallNotFound,
    CallStore,
    EventSource,
    InvalidFieldValue,
    LegOutcome,
    UnknownField,
)

START = datetime(2026, 12, 4, 8, 30, 0, tzinfo=UTC)


async def test_ring_all_legs_stored_in_order(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    for number in range(1, 4):
        await store.upsert_leg(
            call_id,
            f"1.{number + 1}",
            channel=f"PJSIP/op{number}-0000000{number}",
            interface=f"PJSIP/op{number}",
            member_name=f"Operator {number}",
            queue="112-operators",
            called_at=START,
        )

    call = await store.get_call(call_id)
    assert call is not None
    assert [leg.uniqueid for leg in call.legs] == ["1.2", "1.3", "1.4"]
    assert [leg.member_name for leg in call.legs] == [
        "Operator 1",
        "Operator 2",
        "Operator 3",
    ]
    assert all(leg.outcome is LegOutcome.RINGING for leg in call.legs)
    assert all(leg.call_id == call_id for leg in call.legs)


async def test_leg_outcome_moves_to_final(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    leg_id = await store.upsert_leg(call_id, "1.2", called_at=START)
    connected = START + timedelta(seconds=5)
    same_id = await store.upsert_leg(
        call_id, "1.2", outcome="answered", connected_at=connected, ring_seconds=5.0
    )

    call = await store.get_call(call_id)
    assert call is not None
    assert same_id == leg_id
    (leg,) = call.legs
    assert leg.outcome is LegOutcome.ANSWERED
    assert leg.connected_at == connected
    assert leg.ring_seconds == 5.0


@pytest.mark.parametrize(
    "final", [outcome for outcome in LegOutcome if outcome is not LegOutcome.RINGING]
)
async def test_leg_outcome_never_returns_to_ringing(
    store: CallStore, final: LegOutcome
) -> None:
    call_id = await store.upsert_call("1.1")
    await store.upsert_leg(call_id, "1.2", outcome=final)
    await store.upsert_leg(call_id, "1.2", outcome="ringing")

    call = await store.get_call(call_id)
    assert call is not None
    assert call.legs[0].outcome is final


async def test_leg_fill_only_and_overwritable_fields(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    first_end = START + timedelta(seconds=10)
    await store.upsert_leg(
        call_id, "1.2", member_name="Operator 1", ended_at=first_end, ring_seconds=1.0
    )
    second_end = START + timedelta(seconds=12)
    await store.upsert_leg(
        call_id, "1.2", member_name="Renamed", ended_at=second_end, ring_seconds=2.0
    )

    call = await store.get_call(call_id)
    assert call is not None
    (leg,) = call.legs
    assert leg.member_name == "Operator 1"
    assert leg.ended_at == second_end
    assert leg.ring_seconds == 2.0


async def test_leg_keeps_its_first_call(store: CallStore) -> None:
    first_call = await store.upsert_call("1.1")
    second_call = await store.upsert_call("2.1")
    await store.upsert_leg(first_call, "1.2")
    await store.upsert_leg(second_call, "1.2", outcome="cancelled")

    first = await store.get_call(first_call)
    second = await store.get_call(second_call)
    assert first is not None and second is not None
    assert [leg.uniqueid for leg in first.legs] == ["1.2"]
    assert first.legs[0].outcome is LegOutcome.CANCELLED
    assert second.legs == ()


async def test_leg_for_missing_call_raises(store: CallStore) -> None:
    with pytest.raises(CallNotFound) as raised:
        await store.upsert_leg(9999, "1.2")

    assert raised.value.call_id == 9999
    assert "9999" in str(raised.value)


async def test_leg_rejects_unknown_field_and_value(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    with pytest.raises(UnknownField) as unknown:
        await store.upsert_leg(call_id, "1.2", operator="op1")
    with pytest.raises(InvalidFieldValue) as invalid:
        await store.upsert_leg(call_id, "1.2", outcome="busy")

    assert unknown.value.field == "operator"
    assert invalid.value.field == "outcome"
    assert "no_answer" in str(invalid.value)
    call = await store.get_call(call_id)
    assert call is not None
    assert call.legs == ()


async def add(
    store: CallStore, call_id: int, key: str, at: datetime, **data: object
) -> bool:
    return await store.add_event(
        call_id, at=at, source="ami", kind="Newstate", dedupe_key=key, data=dict(data)
    )


async def test_duplicate_event_stored_once(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")

    first = await add(store, call_id, "ami:Newstate:1", START, state="Ring")
    again = await add(store, call_id, "ami:Newstate:1", START, state="Changed")

    call = await store.get_call(call_id)
    assert call is not None and call.events is not None
    assert first is True
    assert again is False
    assert len(call.events) == 1
    assert call.events[0].data == {"state": "Ring"}


async def test_same_key_on_two_calls_stored_twice(store: CallStore) -> None:
    first_call = await store.upsert_call("1.1")
    second_call = await store.upsert_call("2.1")

    assert await add(store, first_call, "cel:17", START) is True
    assert await add(store, second_call, "cel:17", START) is True


async def test_concurrent_duplicates_stored_once(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")

    stored = await asyncio.gather(
        *(add(store, call_id, "ami:Hangup:1.1", START, copy=n) for n in range(20))
    )

    call = await store.get_call(call_id)
    assert call is not None and call.events is not None
    assert stored.count(True) == 1
    assert len(call.events) == 1


async def test_timeline_ordered_by_time_then_id(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    await add(store, call_id, "c", START + timedelta(seconds=2))
    await add(store, call_id, "a", START)
    await add(store, call_id, "b2", START + timedelta(seconds=1))
    await add(store, call_id, "b1", START + timedelta(seconds=1))
    # One microsecond before START, given in Jakarta time, so its wall-clock time
    # (15:29:59) sorts after the others unless the store compares instants.
    jakarta = START.astimezone(timezone(timedelta(hours=7)))
    await add(store, call_id, "a-east", jakarta - timedelta(microseconds=1))

    call = await store.get_call(call_id)
    assert call is not None and call.events is not None
    keys = [event.dedupe_key for event in call.events]
    assert keys == ["a-east", "a", "b2", "b1", "c"]


async def test_event_fields_round_trip(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    data = {
        "Channel": "PJSIP/telkom-00000001",
        "CallerIDName": "Ayşe \"Ay\" 😀",
        "nested": {"list": [1, 2.5, None, True], "empty": {}},
    }
    await store.add_event(
        call_id,
        at=START,
        source=EventSource.CEL,
        kind="CHAN_START",
        dedupe_key="cel:1",
        data=data,
    )

    call = await store.get_call(call_id)
    assert call is not None and call.events is not None
    (event,) = call.events
    assert event.call_id == call_id
    assert event.at == START
    assert event.source is EventSource.CEL
    assert event.kind == "CHAN_START"
    assert event.dedupe_key == "cel:1"
    assert event.data == data


async def test_event_for_missing_call_raises(store: CallStore) -> None:
    with pytest.raises(CallNotFound):
        await add(store, 4242, "ami:1", START)


INVALID_EVENTS = [
    ("at", {"at": datetime(2026, 12, 4, 8, 30)}),
    ("source", {"source": "syslog"}),
    ("kind", {"kind": ""}),
    ("dedupe_key", {"dedupe_key": ""}),
    ("data", {"data": ["not", "a", "dict"]}),
    ("data", {"data": {"when": START}}),
    ("data", {"data": {"ratio": float("inf")}}),
    ("call_id", {"call_id": "1"}),
]


@pytest.mark.parametrize(("field", "override"), INVALID_EVENTS)
async def test_invalid_event_names_field(
    store: CallStore, field: str, override: dict[str, object]
) -> None:
    call_id = await store.upsert_call("1.1")
    arguments: dict[str, object] = {
        "call_id": call_id,
        "at": START,
        "source": "ami",
        "kind": "Hangup",
        "dedupe_key": "ami:Hangup:1.1",
        "data": {},
    }
    arguments.update(override)

    with pytest.raises(InvalidFieldValue) as raised:
        await store.add_event(**arguments)  # type: ignore[arg-type]

    assert raised.value.field == field
    assert repr(field) in str(raised.value)
    call = await store.get_call(call_id)
    assert call is not None
    assert call.events == ()
