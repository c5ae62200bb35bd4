"""Incident reports, dispatches, the outbox and forward attempts on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sigap_pbx.store import CallStore, Database
from sigap_pbx.store.agencies import (
    AgencyKind,
    AgencyNotFound,
    AgencySpec,
    AgencyStore,
)
from sigap_pbx.store.forwarding import ForwardStore
from sigap_pbx.store.reports import (
    OUTBOX,
    DispatchRejected,
    ForwardMode,
    ForwardResult,
    ReportNotFound,
    ReportStore,
    ReportVersionConflict,
)
from sigap_pbx.store.roster import AuditStore

AT = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
REPORT = {
    "category": "fire",
    "call_type": "emergency",
    "priority": 1,
    "location_text": "Jl. Ahmad Yani 10, dekat pasar",
    "kelurahan": "Benua Melayu Darat",
    "kecamatan": "Pontianak Selatan",
    "latitude": -0.03,
    "longitude": 109.34,
    "description": "Rumah terbakar, asap tebal",
    "people": [{"name": "Ibu Rina", "role": "caller", "age": 40}],
}


async def add_agencies(db: Database) -> None:
    await AgencyStore(db).save_agencies(
        [
            AgencySpec("damkar", "Damkar", AgencyKind.FIRE, dial_code="1"),
            AgencySpec("polres", "Polres", AgencyKind.POLICE, dial_code="2"),
            AgencySpec("bpbd", "BPBD", AgencyKind.DISASTER, active=False),
        ],
        actor="spv",
        at=AT,
    )


async def outbox_rows(db: Database) -> list[dict[str, Any]]:
    query = select(OUTBOX).order_by(OUTBOX.c.id)
    async with db.session(write=False) as session:
        return [dict(row) for row in (await session.execute(query)).mappings()]


async def test_create_linked_to_call(db: Database) -> None:
    store = ReportStore(db)

    report = await store.create_report(
        REPORT, actor="op1", at=AT, call_uniqueid="1733312345.17"
    )

    assert report.version == 1
    assert report.status == "open"
    assert report.created_by == "op1"
    detail = await store.get_report(report.id)
    assert detail is not None
    assert detail.report == report
    assert [c.call_uniqueid for c in detail.calls] == ["1733312345.17"]
    assert detail.calls[0].call_id is None
    entries = await AuditStore(db).list_entries(subject=f"report:{report.id}")
    assert [e.action for e in entries] == ["report.create"]
    assert entries[0].detail["call_uniqueid"] == "1733312345.17"


async def test_create_needs_category(db: Database) -> None:
    values = {k: v for k, v in REPORT.items() if k != "category"}

    with pytest.raises(ValueError, match="category"):
        await ReportStore(db).create_report(values, actor="op1", at=AT)


async def test_second_call_links_same_report(db: Database) -> None:
    store = ReportStore(db)
    calls = CallStore(db)
    await calls.upsert_call("1733312345.17", caller_number="+6281200001111")
    report = await store.create_report(REPORT, actor="op1", at=AT)

    first = await store.link_call(report.id, "1733312345.17", actor="op1", at=AT)
    again = await store.link_call(report.id, "1733312345.17", actor="op1", at=AT)
    second = await store.link_call(report.id, "1733312399.20", actor="op2", at=AT)

    assert (first, again, second) == (True, False, True)
    detail = await store.get_report(report.id)
    assert detail is not None
    assert [c.call_uniqueid for c in detail.calls] == ["1733312345.17", "1733312399.20"]
    assert detail.calls[0].caller_number == "+6281200001111"
    assert detail.report.version == 1
    assert await store.reports_for_call("1733312399.20") == [report.id]
    actions = [e.action for e in await AuditStore(db).list_entries(subject=f"report:{report.id}")]
    assert actions.count("report.link_call") == 2


async def test_dispatch_writes_outbox(db: Database) -> None:
    await add_agencies(db)
    store = ReportStore(db)
    report = await store.create_report(REPORT, actor="op1", at=AT)

    outcome = await store.dispatch(
        report.id, ["damkar", "polres"], actor="op1", at=AT + timedelta(minutes=1)
    )

    assert outcome.sent == ("damkar", "polres")
    assert outcome.already_sent == ()
    rows = await outbox_rows(db)
    assert len(rows) == 2
    payload = rows[0]["payload"]
    assert payload["event"] == "report.dispatched"
    assert payload["agency"] == "damkar"
    assert payload["sent_at"] == "2026-12-04T01:01:00+00:00"
    assert payload["report"]["id"] == report.id
    assert payload["report"]["version"] == 1
    assert payload["report"]["category"] == "fire"
    assert payload["report"]["people"] == REPORT["people"]
    assert "created_by" not in payload["report"]
    assert rows[0]["status"] == "pending"
    detail = await store.get_report(report.id)
    assert detail is not None
    assert [(d.agency_code, d.status) for d in detail.dispatches] == [
        ("damkar", "sent"),
        ("polres", "sent"),
    ]
    assert [e.status for e in detail.dispatches[0].events] == ["sent"]


async def test_dispatch_twice_sends_once(db: Database) -> None:
    await add_agencies(db)
    store = ReportStore(db)
    report = await store.create_report(REPORT, actor="op1", at=AT)
    await store.dispatch(report.id, ["damkar"], actor="op1", at=AT)

    outcome = await store.dispatch(report.id, ["damkar", "polres"], actor="op1", at=AT)

    assert outcome.sent == ("polres",)
    assert outcome.already_sent == ("damkar",)
    assert len(await outbox_rows(db)) == 2


async def test_update_after_dispatch_queues_version(db: Database) -> None:
    await add_agencies(db)
    store = ReportStore(db)
    report = await store.create_report(REPORT, actor="op1", at=AT)
    await store.dispatch(report.id, ["damkar", "polres"], actor="op1", at=AT)

    outcome = await store.update_report(
        report.id, {"priority": 2, "kelurahan": "Parit Tokaya"}, actor="op2", at=AT
    )

    assert outcome.report.version == 2
    assert outcome.changed == ("priority", "kelurahan")
    assert outcome.outbox_messages == 2
    rows = await outbox_rows(db)
    assert [(r["version"], r["payload"]["agency"]) for r in rows[2:]] == [
        (2, "damkar"),
        (2, "polres"),
    ]
    assert rows[2]["payload"]["event"] == "report.updated"
    assert rows[2]["payload"]["report"]["priority"] == 2
    entry = (await AuditStore(db).list_entries(action_prefix="report.update"))[0]
    assert entry.detail["before"] == {"priority": 1, "kelurahan": "Benua Melayu Darat"}
    assert entry.actor == "op2"


async def test_update_without_dispatch_no_outbox(db: Database) -> None:
    store = ReportStore(db)
    report = await store.create_report(REPORT, actor="op1", at=AT)

    outcome = await store.update_report(report.id, {"status": "closed"}, actor="op1", at=AT)

    assert outcome.report.version == 2
    assert outcome.outbox_messages == 0
    assert await outbox_rows(db) == []


async def test_update_same_values_keeps_version(db: Database) -> None:
    await add_agencies(db)
    store = ReportStore(db)
    report = await store.create_report(REPORT, actor="op1", at=AT)
    await store.dispatch(report.id, ["damkar"], actor="op1", at=AT)

    outcome = await store.update_report(
        report.id, {"priority": 1, "latitude": -0.03}, actor="op1", at=AT
    )

    assert outcome.changed == ()
    assert outcome.report.version == 1
    assert len(await outbox_rows(db)) == 1


async def test_update_version_conflict(db: Database) -> None:
    store = ReportStore(db)
    report = await store.create_report(REPORT, actor="op1", at=AT)
    await store.update_report(report.id, {"priority": 2}, actor="op1", at=AT)

    with pytest.raises(ReportVersionConflict, match="at version 2, not 1"):
        await store.update_report(
            report.id, {"priority": 3}, actor="op2", at=AT, expected_version=1
        )


async def test_update_unknown_report(db: Database) -> None:
    with pytest.raises(ReportNotFound, match="report 99 not found"):
        await ReportStore(db).update_report(99, {"priority": 2}, actor="op", at=AT)


async def test_dispatch_rejections_write_nothing(db: Database) -> None:
    await add_agencies(db)
    store = ReportStore(db)
    report = await store.create_report(REPORT, actor="op1", at=AT)

    with pytest.raises(DispatchRejected, match="'bpbd' is inactive"):
        await store.dispatch(report.id, ["damkar", "bpbd"], actor="op1", at=AT)
    with pytest.raises(AgencyNotFound, match="'satpol' not found"):
        await store.dispatch(report.id, ["damkar", "satpol"], actor="op1", at=AT)

    assert await outbox_rows(db) == []
    await store.update_report(report.id, {"status": "closed"}, actor="op1", at=AT)
    with pytest.raises(DispatchRejected, match="closed"):
        await store.dispatch(report.id, ["damkar"], actor="op1", at=AT)


async def test_list_filters(db: Database) -> None:
    store = ReportStore(db)
    calls = CallStore(db)
    await calls.upsert_call(
        "1.1", caller_number="+6281200001111", caller_number_raw="081200001111"
    )
    fire_report = await store.create_report(REPORT, actor="op1", at=AT)
    prank = await store.create_report(
        {"category": "other", "call_type": "prank", "priority": 4},
        actor="op1",
        at=AT + timedelta(hours=1),
    )
    await store.link_call(fire_report.id, "1.1", actor="op1", at=AT)

    newest_first = await store.list_reports()
    by_type = await store.list_reports(call_type="prank")
    by_number = await store.list_reports(number="081200001111")
    since = await store.list_reports(since=AT + timedelta(minutes=30))
    until = await store.list_reports(until=AT + timedelta(minutes=30))

    assert [r.id for r in newest_first] == [prank.id, fire_report.id]
    assert [r.id for r in by_type] == [prank.id]
    assert [r.id for r in by_number] == [fire_report.id]
    assert [r.id for r in since] == [prank.id]
    assert [r.id for r in until] == [fire_report.id]
    assert await store.count_reports(category="fire") == 1
    assert await store.list_reports(status="closed") == []


async def test_forward_attempt_round_trip(db: Database) -> None:
    """An attempt written by the forwarder's store is read back with its report."""
    await add_agencies(db)
    store = ReportStore(db)
    report = await store.create_report(REPORT, actor="op1", at=AT)
    damkar = await AgencyStore(db).get_agency(code="damkar")
    assert damkar is not None
    attempts = ForwardStore(db)

    attempt_id = await attempts.insert_attempt(
        agency_id=damkar.id,
        target="agency-fire-1",
        mode=ForwardMode.CONFERENCE,
        actor="op1",
        started_at=AT,
        call_uniqueid="1.1",
        report_id=report.id,
        line_priority=1,
    )
    await attempts.finish_attempt(
        attempt_id, result=ForwardResult.ANSWERED, answered_at=AT + timedelta(seconds=8),
        ended_at=AT + timedelta(seconds=68), seconds=60.0,
    )

    detail = await store.get_report(report.id)
    assert detail is not None
    [view] = detail.forward_attempts
    assert view.id == attempt_id
    assert view.result == "answered"
    assert view.mode == "conference"
    assert view.seconds == 60.0
    assert view.agency_code == "damkar"
    assert [a.id for a in await attempts.list_attempts(call_uniqueid="1.1")] == [attempt_id]
