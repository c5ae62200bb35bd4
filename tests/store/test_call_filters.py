"""Call history filters: answering operator, report category and call type.

Calls, in arrival order:
- 2.0 answered by op1 (live path: answered leg, call's interface).
- 2.1 rang op1 without an answer, answered by op2.
- 2.2 answered by op1, found by reconciliation (interface on the call only).
- 2.3 overflowed to the supervisor phone spv1 (answered_by only).
- 2.4 abandoned in the queue, no operator.
Reports: a fire emergency on 2.0, a prank on 2.1, a health emergency on 2.0 too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sigap_pbx.store import CallStore, Database, InvalidFieldValue
from sigap_pbx.store.reports import ReportStore

BASE = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)


async def seed(store: CallStore, db: Database) -> None:
    at = [BASE + timedelta(minutes=minute) for minute in range(5)]
    first = await store.upsert_call(
        "2.0", arrived_at=at[0], outcome="answered", operator="op1",
        operator_interface="PJSIP/op1",
    )
    await store.upsert_leg(first, "2.0-a", interface="PJSIP/op1", outcome="answered")
    await store.upsert_leg(first, "2.0-b", interface="PJSIP/op2", outcome="cancelled")
    second = await store.upsert_call(
        "2.1", arrived_at=at[1], outcome="answered", operator="op2",
        operator_interface="PJSIP/op2",
    )
    await store.upsert_leg(second, "2.1-a", interface="PJSIP/op1", outcome="no_answer")
    await store.upsert_leg(second, "2.1-b", interface="PJSIP/op2", outcome="answered")
    await store.upsert_call(
        "2.2", arrived_at=at[2], outcome="answered", operator="op1",
        operator_interface="PJSIP/op1", reconciled=True,
    )
    await store.upsert_call(
        "2.3", arrived_at=at[3], outcome="overflowed", overflow_stage="supervisor",
        answered_by="spv1",
    )
    await store.upsert_call("2.4", arrived_at=at[4], outcome="abandoned_in_queue")

    reports = ReportStore(db)
    for uniqueid, category, call_type in (
        ("2.0", "fire", "emergency"),
        ("2.1", "other", "prank"),
        ("2.0", "health", "emergency"),
    ):
        await reports.create_report(
            {"category": category, "call_type": call_type, "priority": 2},
            actor="op1",
            at=BASE,
            call_uniqueid=uniqueid,
        )


def uniqueids(calls: list) -> list[str]:
    return [call.uniqueid for call in calls]


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("op1", ["2.2", "2.0"]),
        ("op2", ["2.1"]),
        ("spv1", ["2.3"]),
        ("op9", []),
    ],
)
async def test_operator_filter(
    store: CallStore, db: Database, operator: str, expected: list[str]
) -> None:
    await seed(store, db)

    calls = await store.list_calls(operator=operator)
    total = await store.count_calls(operator=operator)

    assert uniqueids(calls) == expected
    assert total == len(expected)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"category": "fire"}, ["2.0"]),
        ({"category": "health"}, ["2.0"]),
        ({"call_type": "prank"}, ["2.1"]),
        ({"call_type": "emergency"}, ["2.0"]),
        ({"category": "fire", "call_type": "prank"}, []),
        ({"category": "other", "call_type": "prank"}, ["2.1"]),
        ({"category": "security"}, []),
    ],
)
async def test_report_filters(
    store: CallStore, db: Database, filters: dict[str, str], expected: list[str]
) -> None:
    await seed(store, db)

    calls = await store.list_calls(**filters)
    total = await store.count_calls(**filters)

    assert uniqueids(calls) == expected
    assert total == len(expected)


async def test_filters_combine(store: CallStore, db: Database) -> None:
    await seed(store, db)

    both = await store.list_calls(operator="op1", call_type="emergency")
    outside = await store.list_calls(
        operator="op1", since=BASE + timedelta(minutes=1), outcome="answered"
    )

    assert uniqueids(both) == ["2.0"]
    assert uniqueids(outside) == ["2.2"]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"category": "banjir"}, "category"),
        ({"call_type": "urgent"}, "call_type"),
        ({"operator": ""}, "operator"),
        ({"operator": 5}, "operator"),
    ],
)
async def test_invalid_filter_names_field(
    store: CallStore, filters: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidFieldValue) as raised:
        await store.list_calls(**filters)  # type: ignore[arg-type]

    assert field in str(raised.value)


async def test_linked_reports_by_uniqueid(store: CallStore, db: Database) -> None:
    await seed(store, db)

    linked = await store.linked_reports(["2.0", "2.1", "2.4"])

    assert sorted(linked) == ["2.0", "2.1"]
    assert [r["category"] for r in linked["2.0"]] == ["fire", "health"]
    assert linked["2.1"][0]["call_type"] == "prank"


async def test_iter_calls_reads_every_batch(store: CallStore, db: Database) -> None:
    await seed(store, db)

    every = [call async for call in store.iter_calls(batch=2)]
    answered = [call async for call in store.iter_calls(batch=1, operator="op1")]

    assert uniqueids(every) == ["2.4", "2.3", "2.2", "2.1", "2.0"]
    assert uniqueids(answered) == ["2.2", "2.0"]


async def test_iter_calls_skips_later_calls(store: CallStore, db: Database) -> None:
    await seed(store, db)
    seen = []

    async for call in store.iter_calls(batch=2):
        seen.append(call.uniqueid)
        if len(seen) == 1:
            await store.upsert_call("2.9", arrived_at=BASE + timedelta(hours=1))

    assert seen == ["2.4", "2.3", "2.2", "2.1", "2.0"]


async def test_iter_calls_on_empty_store(store: CallStore) -> None:
    calls = [call async for call in store.iter_calls()]

    assert calls == []
