"""Insert and merge rules of CallStore.upsert_call, alone and under concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sigap_pbx.store import (
    CallOutcome,
    CallStore,
    Database,
    InvalidFieldValue,
    StoreError,
    UnknownField,
)

ARRIVED = datetime(2026, 12, 4, 8, 30, 0, tzinfo=UTC)


async def count_rows(db: Database, uniqueid: str) -> int:
    query = sa.text("SELECT COUNT(*) FROM calls WHERE uniqueid = :uniqueid")
    async with db.session(write=False) as session:
        return (await session.execute(query, {"uniqueid": uniqueid})).scalar_one()


async def test_insert_stores_fields_and_defaults(store: CallStore) -> None:
    call_id = await store.upsert_call(
        "1700000000.1",
        linkedid="1700000000.1",
        channel="PJSIP/telkom-00000001",
        caller_number="081234567890",
        caller_number_raw="+6281234567890",
        trunk="telkom",
        dialled_number="112",
        arrived_at=ARRIVED,
    )

    call = await store.get_call(call_id)
    assert call is not None
    assert call.uniqueid == "1700000000.1"
    assert call.channel == "PJSIP/telkom-00000001"
    assert call.caller_number == "081234567890"
    assert call.caller_number_raw == "+6281234567890"
    assert call.trunk == "telkom"
    assert call.dialled_number == "112"
    assert call.arrived_at == ARRIVED
    assert call.outcome is CallOutcome.IN_PROGRESS
    assert call.reconciled is False
    assert call.queue is None
    assert call.created_at.tzinfo is UTC
    assert call.updated_at.tzinfo is UTC


async def test_upsert_returns_same_id(store: CallStore) -> None:
    first = await store.upsert_call("1700000000.2")
    second = await store.upsert_call("1700000000.2", trunk="telkom")
    other = await store.upsert_call("1700000000.3")

    assert second == first
    assert other != first


async def test_fill_only_field_keeps_first_value(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", caller_name="First", trunk="telkom")
    await store.upsert_call("1.1", caller_name="Second", trunk="indosat")

    call = await store.get_call(call_id)
    assert call is not None
    assert call.caller_name == "First"
    assert call.trunk == "telkom"


async def test_fill_only_field_filled_when_null(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", trunk="telkom")
    await store.upsert_call("1.1", caller_name="Late", queued_at=ARRIVED)

    call = await store.get_call(call_id)
    assert call is not None
    assert call.caller_name == "Late"
    assert call.queued_at == ARRIVED
    assert call.trunk == "telkom"


async def test_empty_string_counts_as_value(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", caller_number="")
    await store.upsert_call("1.1", caller_number="0811")

    call = await store.get_call(call_id)
    assert call is not None
    assert call.caller_number == ""


async def test_overwritable_fields_replaced(store: CallStore) -> None:
    call_id = await store.upsert_call(
        "1.1",
        queue="112-operators",
        operator="op1",
        operator_interface="PJSIP/op1",
        answered_at=ARRIVED,
        wait_seconds=4.0,
        hangup_cause=16,
        hangup_cause_text="Normal Clearing",
    )
    later = ARRIVED + timedelta(seconds=30)
    await store.upsert_call(
        "1.1",
        queue="112-backup",
        operator="op2",
        operator_interface="PJSIP/op2",
        answered_at=later,
        wait_seconds=6.5,
        talk_seconds=90.25,
        ended_at=later,
        hangup_cause=17,
        hangup_cause_text="User busy",
        overflow_stage="backup",
        answered_by="supervisor1",
    )

    call = await store.get_call(call_id)
    assert call is not None
    assert call.queue == "112-backup"
    assert call.operator == "op2"
    assert call.operator_interface == "PJSIP/op2"
    assert call.answered_at == later
    assert call.wait_seconds == 6.5
    assert call.talk_seconds == 90.25
    assert call.ended_at == later
    assert call.hangup_cause == 17
    assert call.hangup_cause_text == "User busy"
    assert call.overflow_stage == "backup"
    assert call.answered_by == "supervisor1"


async def test_none_never_clears_value(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", operator="op1", caller_name="Ann")
    await store.upsert_call("1.1", operator=None, caller_name=None, outcome=None)

    call = await store.get_call(call_id)
    assert call is not None
    assert call.operator == "op1"
    assert call.caller_name == "Ann"
    assert call.outcome is CallOutcome.IN_PROGRESS


async def test_update_moves_updated_at(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    before = await store.get_call(call_id)
    await asyncio.sleep(0.01)
    await store.upsert_call("1.1", operator="op1")
    after = await store.get_call(call_id)

    assert before is not None and after is not None
    assert after.updated_at > before.updated_at
    assert after.created_at == before.created_at


async def test_upsert_without_fields_changes_nothing(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", trunk="telkom")
    before = await store.get_call(call_id)
    await asyncio.sleep(0.01)

    assert await store.upsert_call("1.1") == call_id
    after = await store.get_call(call_id)
    assert after == before


@pytest.mark.parametrize(
    "final",
    [outcome for outcome in CallOutcome if outcome is not CallOutcome.IN_PROGRESS],
)
async def test_outcome_never_returns_to_in_progress(
    store: CallStore, final: CallOutcome
) -> None:
    call_id = await store.upsert_call("1.1", outcome="in_progress")
    await store.upsert_call("1.1", outcome=final.value)
    await store.upsert_call("1.1", outcome="in_progress")

    call = await store.get_call(call_id)
    assert call is not None
    assert call.outcome is final


async def test_final_outcome_may_change_to_another_final(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", outcome=CallOutcome.ABANDONED_IN_QUEUE)
    await store.upsert_call("1.1", outcome=CallOutcome.OVERFLOWED)

    call = await store.get_call(call_id)
    assert call is not None
    assert call.outcome is CallOutcome.OVERFLOWED


async def test_reconciled_cleared_by_live_path(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", reconciled=True)
    reconciled = await store.get_call(call_id)
    await store.upsert_call("1.1", reconciled=False)
    live = await store.get_call(call_id)

    assert reconciled is not None and live is not None
    assert reconciled.reconciled is True
    assert live.reconciled is False


async def test_reconciled_set_on_completed_live_call(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    await store.upsert_call("1.1", reconciled=True, outcome="answered")

    call = await store.get_call(call_id)
    assert call is not None
    assert call.reconciled is True
    assert call.outcome == "answered"


async def test_unknown_field_raises_type_error(store: CallStore) -> None:
    with pytest.raises(TypeError) as raised:
        await store.upsert_call("1.1", caller_nmuber="0811")

    assert isinstance(raised.value, UnknownField)
    assert "caller_nmuber" in str(raised.value)
    assert "caller_number" in str(raised.value)
    assert await store.count_calls() == 0


@pytest.mark.parametrize("managed", ["id", "created_at", "updated_at", "legs"])
async def test_managed_columns_are_not_fields(store: CallStore, managed: str) -> None:
    with pytest.raises(UnknownField) as raised:
        await store.upsert_call("1.1", **{managed: 1})

    assert repr(managed) in str(raised.value)


NAIVE = datetime(2026, 12, 4, 8, 30)

INVALID_CALL_FIELDS = [
    ("outcome", "done", "answered"),
    ("outcome", 3, "abandoned_in_queue"),
    ("overflow_stage", "boss", "supervisor"),
    ("arrived_at", NAIVE, "timezone-aware"),
    ("ended_at", "2026-12-04T08:30:00Z", "timezone-aware"),
    ("wait_seconds", -1, ">= 0"),
    ("talk_seconds", float("nan"), ">= 0"),
    ("talk_seconds", True, "seconds"),
    ("hangup_cause", "16", "integer"),
    ("hangup_cause", -1, "integer"),
    ("reconciled", "yes", "True or False"),
    ("caller_name", 123, "string"),
    ("caller_name", "nul\x00byte", "NUL"),
    ("caller_name", "lone \udc80 surrogate", "UTF-8"),
]


@pytest.mark.parametrize(("field", "value", "hint"), INVALID_CALL_FIELDS)
async def test_invalid_value_names_field(
    store: CallStore, field: str, value: object, hint: str
) -> None:
    with pytest.raises(ValueError) as raised:
        await store.upsert_call("1.1", trunk="telkom", **{field: value})

    message = str(raised.value)
    assert isinstance(raised.value, InvalidFieldValue)
    assert isinstance(raised.value, StoreError)
    assert raised.value.field == field
    assert repr(field) in message
    assert repr(value) in message
    assert hint in message
    assert await store.count_calls() == 0


async def test_invalid_outcome_lists_allowed_values(store: CallStore) -> None:
    with pytest.raises(InvalidFieldValue) as raised:
        await store.upsert_call("1.1", outcome="lost")

    assert raised.value.allowed == tuple(outcome.value for outcome in CallOutcome)
    for outcome in CallOutcome:
        assert repr(outcome.value) in str(raised.value)


async def test_invalid_update_writes_nothing(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", trunk="telkom")
    with pytest.raises(InvalidFieldValue):
        await store.upsert_call("1.1", queue="112-operators", ended_at=NAIVE)

    call = await store.get_call(call_id)
    assert call is not None
    assert call.queue is None
    assert call.ended_at is None


@pytest.mark.parametrize("uniqueid", ["", None, 17])
async def test_invalid_uniqueid_rejected(store: CallStore, uniqueid: object) -> None:
    with pytest.raises(InvalidFieldValue) as raised:
        await store.upsert_call(uniqueid)  # type: ignore[arg-type]

    assert raised.value.field == "uniqueid"


async def test_concurrent_upserts_make_one_row(store: CallStore, db: Database) -> None:
    uniqueid = "1700000100.7"

    async def upsert(task: int) -> int:
        if task == 25:
            return await store.upsert_call(uniqueid, outcome="answered")
        return await store.upsert_call(
            uniqueid, outcome="in_progress", caller_name=f"task {task}"
        )

    ids = await asyncio.gather(*(upsert(task) for task in range(50)))

    assert len(set(ids)) == 1
    assert await count_rows(db, uniqueid) == 1
    call = await store.get_call(ids[0])
    assert call is not None
    assert call.outcome is CallOutcome.ANSWERED
    assert call.caller_name is not None
    assert call.caller_name.startswith("task ")


async def test_two_databases_upsert_one_row(database_url: str) -> None:
    first = await Database.open(database_url)
    second = await Database.open(database_url)
    stores = [CallStore(first), CallStore(second)]
    uniqueid = "1700000100.8"
    try:
        ids = await asyncio.gather(
            *(
                stores[task % 2].upsert_call(uniqueid, operator=f"op{task}")
                for task in range(50)
            )
        )
        rows = await count_rows(first, uniqueid)
        total = await stores[1].count_calls()
    finally:
        await first.close()
        await second.close()

    assert len(set(ids)) == 1
    assert rows == 1
    assert total == 1
