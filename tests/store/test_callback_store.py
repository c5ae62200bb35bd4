"""Callback attempts and the list of abandoned calls still to call back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sigap_pbx.store import CallStore, Database
from sigap_pbx.store.callbacks import CallbackStore

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


async def call(store: CallStore, uniqueid: str, outcome: str, minutes: int,
               number: str | None = "+6281234567890") -> int:
    fields = {"outcome": outcome, "arrived_at": NOW + timedelta(minutes=minutes)}
    if number is not None:
        fields["caller_number"] = number
        fields["caller_number_raw"] = "0" + number.removeprefix("+62")
    return await store.upsert_call(uniqueid, **fields)


async def test_pending_lists_abandoned_newest_first(store: CallStore, db: Database) -> None:
    older = await call(store, "1.1", "abandoned_in_queue", 1)
    newer = await call(store, "1.2", "abandoned_before_queue", 2)
    await call(store, "1.3", "answered", 3)
    await call(store, "1.4", "abandoned_in_queue", 4, number=None)

    pending = await CallbackStore(db).pending_callbacks()

    assert [item.call_id for item in pending] == [newer, older]
    assert pending[0].caller_number_raw == "081234567890"
    assert pending[0].attempts == ()


async def test_caller_answered_later_leaves_list(store: CallStore, db: Database) -> None:
    await call(store, "1.1", "abandoned_in_queue", 1)
    # The same caller called again two minutes later and op1 answered.
    await store.upsert_call(
        "1.3", outcome="answered", arrived_at=NOW + timedelta(minutes=3),
        answered_at=NOW + timedelta(minutes=3, seconds=5), caller_number="+6281234567890",
    )
    after = await call(store, "1.5", "abandoned_before_queue", 5)
    other = await call(store, "1.6", "abandoned_in_queue", 2, number="+6289999")

    pending = await CallbackStore(db).pending_callbacks()

    assert [item.call_id for item in pending] == [after, other]


async def test_answered_callback_leaves_list(store: CallStore, db: Database) -> None:
    call_id = await call(store, "1.1", "abandoned_in_queue", 1)
    callbacks = CallbackStore(db)
    first = await callbacks.insert_attempt(
        call_id=call_id, caller_number="081234567890", username="op-ani",
        endpoint="op1", started_at=NOW, uniqueid="sigap-cb-1",
    )
    await callbacks.update_attempt(first, outcome="no_answer", ended_at=NOW)

    still = await callbacks.pending_callbacks()
    second = await callbacks.insert_attempt(
        call_id=call_id, caller_number="081234567890", username="op-ani",
        endpoint="op1", started_at=NOW + timedelta(minutes=1),
    )
    await callbacks.update_attempt(second, outcome="answered")

    assert [item.call_id for item in still] == [call_id]
    assert [a.outcome for a in still[0].attempts] == ["no_answer"]
    assert await callbacks.pending_callbacks() == []


async def test_update_keeps_final_outcome_and_first_end(
    store: CallStore, db: Database
) -> None:
    call_id = await call(store, "1.1", "abandoned_in_queue", 1)
    callbacks = CallbackStore(db)
    attempt = await callbacks.insert_attempt(
        call_id=call_id, caller_number="081234567890", username="op-ani",
        endpoint="op1", started_at=NOW,
    )

    await callbacks.update_attempt(attempt, outcome="busy", ended_at=NOW, channel="PJSIP/op1-1")
    view = await callbacks.update_attempt(
        attempt, outcome="calling", ended_at=NOW + timedelta(minutes=1), channel="PJSIP/op1-2"
    )

    assert view.outcome == "busy"
    assert view.ended_at == NOW
    assert view.channel == "PJSIP/op1-1"
    assert (await callbacks.list_attempts(call_id)) == [view]
    assert await callbacks.unfinished_attempts() == []
