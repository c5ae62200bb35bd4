"""Reads: get_call, list_calls, count_calls, existence checks and checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sigap_pbx.store import CallOutcome, CallStore, InvalidFieldValue

BASE = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)


async def seed_calls(store: CallStore) -> None:
    """Store five calls one minute apart, plus one whose arrival time is unknown."""
    rows = [
        ("1.0", "0811", "+62811", "answered"),
        ("1.1", "0812", "+62812", "abandoned_in_queue"),
        ("1.2", "0811", "+62811", "answered"),
        ("1.3", "", "anonymous", "overflowed"),
        ("1.4", "0813", "+62813", "in_progress"),
    ]
    for minute, (uniqueid, number, raw, outcome) in enumerate(rows):
        await store.upsert_call(
            uniqueid,
            linkedid=f"L{uniqueid}",
            caller_number=number,
            caller_number_raw=raw,
            arrived_at=BASE + timedelta(minutes=minute),
            outcome=outcome,
        )
    await store.upsert_call("9.9", linkedid="L9.9", outcome="failed")


def uniqueids(calls: list) -> list[str]:
    return [call.uniqueid for call in calls]


async def test_list_newest_first_unknown_last(store: CallStore) -> None:
    await seed_calls(store)

    calls = await store.list_calls()

    assert uniqueids(calls) == ["1.4", "1.3", "1.2", "1.1", "1.0", "9.9"]


async def test_list_limit_and_offset(store: CallStore) -> None:
    await seed_calls(store)

    page = await store.list_calls(limit=2, offset=1)
    empty = await store.list_calls(limit=0)

    assert uniqueids(page) == ["1.3", "1.2"]
    assert empty == []


async def test_since_inclusive_until_exclusive(store: CallStore) -> None:
    await seed_calls(store)
    since = BASE + timedelta(minutes=1)
    until = BASE + timedelta(minutes=3)

    calls = await store.list_calls(since=since, until=until)
    count = await store.count_calls(since=since, until=until)

    assert uniqueids(calls) == ["1.2", "1.1"]
    assert count == 2


async def test_filter_by_outcome(store: CallStore) -> None:
    await seed_calls(store)

    answered = await store.list_calls(outcome="answered")
    count = await store.count_calls(outcome=CallOutcome.ANSWERED)

    assert uniqueids(answered) == ["1.2", "1.0"]
    assert count == 2


async def test_filter_by_number_normalised_or_raw(store: CallStore) -> None:
    await seed_calls(store)

    by_normalised = await store.list_calls(number="0811")
    by_raw = await store.list_calls(number="+62811")
    withheld = await store.list_calls(number="")
    partial = await store.count_calls(number="081")

    assert uniqueids(by_normalised) == ["1.2", "1.0"]
    assert uniqueids(by_raw) == ["1.2", "1.0"]
    assert uniqueids(withheld) == ["1.3"]
    assert partial == 0


async def test_filters_combine(store: CallStore) -> None:
    await seed_calls(store)

    count = await store.count_calls(
        number="0811", outcome="answered", since=BASE + timedelta(seconds=1)
    )
    total = await store.count_calls()

    assert count == 1
    assert total == 6


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"since": datetime(2026, 12, 4)}, "since"),
        ({"until": "2026-12-04"}, "until"),
        ({"outcome": "lost"}, "outcome"),
        ({"number": 811}, "number"),
        ({"limit": -1}, "limit"),
        ({"offset": 1.5}, "offset"),
    ],
)
async def test_invalid_filter_names_field(
    store: CallStore, arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidFieldValue) as raised:
        await store.list_calls(**arguments)  # type: ignore[arg-type]

    assert raised.value.field == field
    assert repr(field) in str(raised.value)


async def test_list_includes_legs_not_events(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1", arrived_at=BASE)
    await store.upsert_leg(call_id, "1.2", member_name="Operator 1")
    await store.add_event(
        call_id, at=BASE, source="ami", kind="Newchannel", dedupe_key="k", data={}
    )

    (listed,) = await store.list_calls()
    detailed = await store.get_call(call_id)

    assert [leg.member_name for leg in listed.legs] == ["Operator 1"]
    assert listed.events is None
    assert detailed is not None and detailed.events is not None
    assert len(detailed.events) == 1


async def test_get_call_by_uniqueid(store: CallStore) -> None:
    call_id = await store.upsert_call("1700000000.42", trunk="telkom")

    by_uniqueid = await store.get_call(uniqueid="1700000000.42")
    by_id = await store.get_call(call_id)

    assert by_uniqueid is not None
    assert by_uniqueid.id == call_id
    assert by_uniqueid == by_id


async def test_get_missing_call_returns_none(store: CallStore) -> None:
    assert await store.get_call(12345) is None
    assert await store.get_call(uniqueid="no.such") is None


async def test_get_call_needs_one_key(store: CallStore) -> None:
    with pytest.raises(TypeError):
        await store.get_call()
    with pytest.raises(TypeError):
        await store.get_call(1, uniqueid="1.1")


async def test_to_dict_is_json_ready(store: CallStore) -> None:
    call_id = await store.upsert_call(
        "1.1", arrived_at=BASE, outcome="overflowed", overflow_stage="supervisor"
    )
    await store.upsert_leg(call_id, "1.2", called_at=BASE, outcome="no_answer")
    await store.add_event(
        call_id, at=BASE, source="controller", kind="Overflow", dedupe_key="o", data={}
    )
    call = await store.get_call(call_id)
    assert call is not None

    result = call.to_dict()

    assert json.loads(json.dumps(result)) == result
    assert result["arrived_at"] == "2026-12-04T08:00:00+00:00"
    assert result["outcome"] == "overflowed"
    assert type(result["outcome"]) is str
    assert result["overflow_stage"] == "supervisor"
    assert result["legs"][0]["called_at"] == "2026-12-04T08:00:00+00:00"
    assert result["legs"][0]["outcome"] == "no_answer"
    assert result["events"][0]["source"] == "controller"
    assert result["events"][0]["at"] == "2026-12-04T08:00:00+00:00"


async def test_to_dict_copies_event_data(store: CallStore) -> None:
    call_id = await store.upsert_call("1.1")
    await store.add_event(
        call_id,
        at=BASE,
        source="ami",
        kind="VarSet",
        dedupe_key="v",
        data={"vars": {"A": "1"}},
    )
    call = await store.get_call(call_id)
    assert call is not None and call.events is not None

    call.to_dict()["events"][0]["data"]["vars"]["A"] = "changed"

    assert call.events[0].data == {"vars": {"A": "1"}}


async def test_existing_uniqueids_and_linkedids(store: CallStore) -> None:
    await seed_calls(store)

    uniqueids_found = await store.existing_uniqueids(["1.0", "1.3", "7.7", "1.0"])
    linkedids_found = await store.existing_linkedids(iter(["L1.1", "L9.9", "L0"]))
    nothing = await store.existing_uniqueids([])

    assert uniqueids_found == {"1.0", "1.3"}
    assert linkedids_found == {"L1.1", "L9.9"}
    assert nothing == set()


async def test_existing_uniqueids_beyond_one_chunk(store: CallStore) -> None:
    await store.upsert_call("1.0")
    await store.upsert_call("1.1199")
    candidates = [f"1.{n}" for n in range(1200)]

    found = await store.existing_uniqueids(candidates)

    assert found == {"1.0", "1.1199"}


async def test_checkpoint_missing_set_and_replaced(store: CallStore) -> None:
    missing = await store.get_checkpoint("cel")
    await store.set_checkpoint("cel", "1041")
    first = await store.get_checkpoint("cel")
    await store.set_checkpoint("cel", "2088")
    await store.set_checkpoint("cdr", "2026-12-04T08:00:00+00:00")

    assert missing is None
    assert first == "1041"
    assert await store.get_checkpoint("cel") == "2088"
    assert await store.get_checkpoint("cdr") == "2026-12-04T08:00:00+00:00"


async def test_checkpoint_rejects_empty_name(store: CallStore) -> None:
    with pytest.raises(InvalidFieldValue) as raised:
        await store.set_checkpoint("", "1")

    assert raised.value.field == "name"
