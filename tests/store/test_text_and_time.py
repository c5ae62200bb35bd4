"""Caller names and timestamps come back exactly as they were stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sigap_pbx.store import CallStore, InvalidFieldValue

CALLER_NAMES = [
    "Ayşe Yılmaz 😀",
    "O'Brien \"Bob\" `x`",
    "<script>alert('112')</script>",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱 👨‍👩‍👧‍👦",
    "Robert'); DROP TABLE calls;--",
    "e\u0301 (decomposed) vs \u00e9",
    "\u202eRTL override\u202c and \u200b zero width",
    "  leading and trailing spaces  ",
    "line\nbreak\ttab\\backslash",
    "",
]


@pytest.mark.parametrize("name", CALLER_NAMES)
async def test_caller_name_round_trips(store: CallStore, name: str) -> None:
    call_id = await store.upsert_call(
        "1.1", caller_name=name, arrived_at=datetime.now(UTC)
    )

    fetched = await store.get_call(call_id)
    (listed,) = await store.list_calls()

    assert fetched is not None
    assert fetched.caller_name == name
    assert listed.caller_name == name
    assert fetched.to_dict()["caller_name"] == name


async def test_four_byte_utf8_survives_in_event_data(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    data = {"CallerIDName": "𠜎 😀 <b>&amp;", "𝔨𝔢𝔶": "value"}
    await store.add_event(
        call_id,
        at=datetime.now(UTC),
        source="ami",
        kind="Newchannel",
        dedupe_key="n",
        data=data,
    )

    call = await store.get_call(call_id)
    assert call is not None and call.events is not None
    assert call.events[0].data == data


OFFSETS = [
    timezone.utc,
    timezone(timedelta(hours=7)),
    timezone(timedelta(hours=-3, minutes=-30)),
]


@pytest.mark.parametrize("zone", OFFSETS, ids=str)
async def test_aware_datetime_round_trips_as_utc(
    store: CallStore, zone: timezone
) -> None:
    arrived = datetime(2026, 12, 4, 23, 59, 59, 123456, tzinfo=zone)
    call_id = await store.upsert_call("1.1", arrived_at=arrived)
    await store.upsert_leg(call_id, "1.2", called_at=arrived)

    call = await store.get_call(call_id)

    assert call is not None
    assert call.arrived_at == arrived
    assert call.arrived_at.tzinfo is UTC
    assert call.arrived_at.utcoffset() == timedelta(0)
    assert call.arrived_at.microsecond == 123456
    assert call.legs[0].called_at == arrived
    assert call.legs[0].called_at.tzinfo is UTC


async def test_filters_compare_instants_across_zones(store: CallStore) -> None:
    utc_arrival = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    await store.upsert_call("1.1", arrived_at=utc_arrival)
    jakarta = timezone(timedelta(hours=7))

    same_instant = await store.count_calls(since=utc_arrival.astimezone(jakarta))
    just_after = await store.count_calls(
        since=(utc_arrival + timedelta(microseconds=1)).astimezone(jakarta)
    )

    assert same_instant == 1
    assert just_after == 0


async def test_row_timestamps_are_aware(store: CallStore) -> None:
    before = datetime.now(UTC)
    call_id = await store.upsert_call("1.1")
    after = datetime.now(UTC)

    call = await store.get_call(call_id)

    assert call is not None
    assert call.created_at.tzinfo is UTC
    assert before <= call.created_at <= after


async def test_naive_datetime_rejected(store: CallStore) -> None:
    naive = datetime(2026, 12, 4, 8, 0)

    with pytest.raises(InvalidFieldValue) as raised:
        await store.upsert_call("1.1", answered_at=naive)

    assert raised.value.field == "answered_at"
    assert "timezone-aware" in str(raised.value)
    assert await store.get_call(uniqueid="1.1") is None
