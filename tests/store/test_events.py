"""Bulk timeline inserts, as the call tracker's writer uses them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sigap_pbx.store import CallNotFound, CallStore


async def test_add_events_stores_each_once(store: CallStore) -> None:
    call_id = await store.upsert_call("9.1")
    base = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
    events = [
        {"at": base, "source": "ami", "kind": "Newchannel", "dedupe_key": "a", "data": {}},
        {"at": base, "source": "ami", "kind": "Hangup", "dedupe_key": "b", "data": {"x": 1}},
        {"at": base, "source": "ami", "kind": "Hangup", "dedupe_key": "b", "data": {"x": 2}},
    ]

    first = await store.add_events(call_id, events)
    again = await store.add_events(call_id, events)

    call = await store.get_call(call_id)
    assert first == 2
    assert again == 0
    assert call is not None
    assert [e.dedupe_key for e in call.events] == ["a", "b"]
    assert call.events[1].data == {"x": 1}


async def test_add_events_unknown_call(store: CallStore) -> None:
    with pytest.raises(CallNotFound):
        await store.add_events(
            424242,
            [{"at": datetime(2026, 1, 1, tzinfo=UTC), "source": "ami", "kind": "X",
              "dedupe_key": "k", "data": {}}],
        )
