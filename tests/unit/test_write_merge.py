"""Merging a batch of queued writes gives what applying them one by one gives."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sigap_pbx.calls.tracker import StoreOp, merge_ops
from sigap_pbx.store import CallStore, Database

T = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def event(key: str) -> dict:
    return {"at": T, "source": "ami", "kind": "X", "dedupe_key": key, "data": {"k": key}}


BATCH = [
    StoreOp("call", "1.1", {"arrived_at": T, "caller_number": "+62811", "outcome": "in_progress"}),
    StoreOp("event", "1.1", event("a")),
    StoreOp("leg", "1.1", {"uniqueid": "1.2", "member_name": "op1", "outcome": "ringing"}),
    StoreOp("call", "2.1", {"arrived_at": T}),
    StoreOp("leg", "1.1", {"uniqueid": "1.2", "outcome": "answered"}),
    StoreOp("call", "1.1", {"outcome": "answered", "operator": "op1", "caller_number": "x"}),
    StoreOp("leg", "1.1", {"uniqueid": "1.2", "outcome": "ringing"}),
    StoreOp("event", "1.1", event("b")),
    StoreOp("call", "1.1", {"outcome": "in_progress"}),
]


def test_merge_keeps_call_order_and_rules():
    merged = merge_ops(BATCH)

    assert [(op.kind, op.call_uniqueid) for op in merged] == [
        ("call", "1.1"), ("leg", "1.1"), ("events", "1.1"), ("call", "2.1"),
    ]
    call = merged[0].payload
    assert call["outcome"] == "answered"
    assert call["operator"] == "op1"
    # A field the store only fills once keeps its first value.
    assert call["caller_number"] == "+62811"
    assert merged[1].payload["outcome"] == "answered"
    assert [e["dedupe_key"] for e in merged[2].payload["events"]] == ["a", "b"]


async def test_merged_equals_one_by_one(tmp_path: Path):
    async def apply(ops: list[StoreOp], path: Path) -> dict:
        db = await Database.open(f"sqlite+aiosqlite:///{path}")
        store = CallStore(db)
        ids: dict[str, int] = {}
        try:
            for op in ops:
                if op.kind == "call":
                    ids[op.call_uniqueid] = await store.upsert_call(op.call_uniqueid, **op.payload)
                    continue
                call_id = ids.get(op.call_uniqueid) or await store.upsert_call(op.call_uniqueid)
                ids[op.call_uniqueid] = call_id
                if op.kind == "leg":
                    payload = dict(op.payload)
                    await store.upsert_leg(call_id, payload.pop("uniqueid"), **payload)
                elif op.kind == "events":
                    await store.add_events(call_id, op.payload["events"])
                else:
                    await store.add_event(call_id, **op.payload)
            view = await store.get_call(uniqueid="1.1")
            assert view is not None
            return {
                "outcome": view.outcome,
                "operator": view.operator,
                "caller_number": view.caller_number,
                "legs": [(leg.uniqueid, leg.member_name, leg.outcome) for leg in view.legs],
                "events": [e.dedupe_key for e in view.events],
            }
        finally:
            await db.close()

    one_by_one = await apply(BATCH, tmp_path / "a.db")
    merged = await apply(merge_ops(BATCH), tmp_path / "b.db")

    assert merged == one_by_one
    assert one_by_one["outcome"] == "answered"
