"""The incident reports' JSON API over real services on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sigap_pbx.agencies.directory import AgencyService
from sigap_pbx.agencies.reports import ReportService
from sigap_pbx.config import Config
from sigap_pbx.store import Database
from sigap_pbx.store.reports import OUTBOX
from sigap_pbx.store.roster import AuditStore
from tests.web_auth import SignedInClient, signed_in_client

NOW = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
REPORT = {"category": "fire", "call_type": "emergency", "priority": 1}


@dataclass
class FakeController:
    agencies: AgencyService
    reports: ReportService


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'reports.db'}")
    yield db
    await db.close()


@pytest.fixture
async def api(database: Database) -> AsyncIterator[SignedInClient]:
    config = Config()
    agencies = AgencyService(database, config, clock=lambda: NOW)
    await agencies.upsert({"code": "damkar", "name": "Damkar", "kind": "fire"}, "spv")
    await agencies.upsert({"code": "polres", "name": "Polres", "kind": "police"}, "spv")
    controller = FakeController(
        agencies, ReportService(database, config, clock=lambda: NOW)
    )
    client = await signed_in_client(
        controller, "operator", username="op1", endpoint="op1", db=database
    )
    yield client
    await client.close()


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status
    return (await response.json())["error"]  # type: ignore[no-any-return]


async def create(api: SignedInClient, **extra: Any) -> dict[str, Any]:
    response = await api.post("/api/reports", json={**REPORT, **extra})
    assert response.status == 201
    return await response.json()  # type: ignore[no-any-return]


async def test_create_then_get(api: SignedInClient) -> None:
    created = await create(api, call_uniqueid="1733312345.17", actor="op1")

    body = await (await api.get(f"/api/reports/{created['id']}")).json()

    assert body["report"]["version"] == 1
    assert body["report"]["created_by"] == "op1"
    assert [c["call_uniqueid"] for c in body["calls"]] == ["1733312345.17"]


async def test_invalid_category_names_field(api: SignedInClient) -> None:
    error = await error_of(
        await api.post("/api/reports", json={**REPORT, "category": "banjir", "priority": 9}),
        400,
    )

    assert error["code"] == "invalid_report"
    assert error["problems"] == [
        "category: 'banjir' is invalid, use one of fire, traffic_accident,"
        " natural_disaster, security, health, other",
        "priority: 9 is invalid, use 1 (most urgent) to 4",
    ]


async def test_patch_dispatched_report_queues_outbox(
    api: SignedInClient, database: Database
) -> None:
    created = await create(api)
    report_id = created["id"]
    dispatched = await api.post(
        f"/api/reports/{report_id}/dispatch", json={"agencies": ["damkar", "polres"]}
    )
    assert (await dispatched.json())["sent"] == ["damkar", "polres"]

    response = await api.patch(
        f"/api/reports/{report_id}",
        json={"description": "api menjalar", "version": 1},
        headers={"X-Sigap-Actor": "op1"},
    )

    body = await response.json()
    assert body["report"]["version"] == 2
    assert body["outbox_messages"] == 2
    async with database.session(write=False) as session:
        versions = (await session.execute(select(OUTBOX.c.version))).scalars().all()
    assert sorted(versions) == [1, 1, 2, 2]
    entries = await AuditStore(database).list_entries(subject=f"report:{report_id}")
    assert [(e.actor, e.action) for e in entries][0] == ("op1", "report.update")


async def test_patch_stale_version(api: SignedInClient) -> None:
    created = await create(api)
    await api.patch(f"/api/reports/{created['id']}", json={"priority": 2})

    error = await error_of(
        await api.patch(f"/api/reports/{created['id']}", json={"priority": 3, "version": 1}),
        409,
    )

    assert error["code"] == "report_conflict"


async def test_link_call_twice(api: SignedInClient) -> None:
    created = await create(api)
    path = f"/api/reports/{created['id']}/calls"

    first = await api.post(path, json={"call_uniqueid": "1733312399.20"})
    second = await api.post(path, json={"call_uniqueid": "1733312399.20"})
    bad = await api.post(path, json={"call_uniqueid": "1.1&x"})

    assert first.status == 201
    assert second.status == 200
    assert (await second.json())["linked"] is False
    assert (await error_of(bad, 400))["problems"][0].startswith("call_uniqueid: '1.1&x'")


async def test_dispatch_unknown_agency(api: SignedInClient) -> None:
    created = await create(api)

    error = await error_of(
        await api.post(f"/api/reports/{created['id']}/dispatch", json={"agencies": ["nope"]}),
        404,
    )

    assert error["code"] == "agency_not_found"


async def test_list_filters(api: SignedInClient) -> None:
    await create(api)
    prank = await create(api, call_type="prank", category="other", priority=4)

    body = await (await api.get("/api/reports?call_type=prank")).json()
    bad = await api.get("/api/reports?status=done")

    assert body["total"] == 1
    assert [r["id"] for r in body["reports"]] == [prank["id"]]
    assert (await error_of(bad, 400))["code"] == "invalid_parameter"


async def test_missing_report(api: SignedInClient) -> None:
    error = await error_of(await api.get("/api/reports/41"), 404)

    assert error["code"] == "report_not_found"
