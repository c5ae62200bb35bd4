"""Agency scoping of the report and dispatch API, with two agencies on SQLite.

Report 1 goes to damkar, report 2 to polisi and report 3 to both. Agency staff of
damkar must see and change only damkar's dispatches and the reports sent to damkar.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.agencies.dispatch import DispatchService
from sigap_pbx.agencies.reports import ReportService
from sigap_pbx.config import Config
from sigap_pbx.store import Database
from tests.unit.agency_rows import FakeClock, add_agency, add_report
from tests.web_auth import SignedInClient, signed_in_client


@dataclass
class FakeController:
    reports: ReportService
    dispatches: DispatchService


@dataclass
class Site:
    controller: FakeController
    db: Database
    # report number (1, 2, 3) -> report id
    reports: dict[int, int]
    # (report number, agency code) -> dispatch id
    dispatches: dict[tuple[int, str], int]
    clients: list[SignedInClient] = field(default_factory=list)

    async def client(self, role: str, **options: Any) -> SignedInClient:
        client = await signed_in_client(self.controller, role, db=self.db, **options)
        self.clients.append(client)
        return client


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'portal.db'}")
    clock = FakeClock()
    await add_agency(db, "damkar")
    await add_agency(db, "polisi", kind="police")
    reports = ReportService(db, Config(), clock=clock)
    controller = FakeController(reports, DispatchService(db, clock=clock))
    report_ids = {number: await add_report(db) for number in (1, 2, 3)}
    await reports.dispatch(report_ids[1], ["damkar"], "op1")
    await reports.dispatch(report_ids[2], ["polisi"], "op1")
    await reports.dispatch(report_ids[3], ["damkar", "polisi"], "op1")
    dispatch_ids = {}
    for number, report_id in report_ids.items():
        detail = await reports.get(report_id)
        for dispatch in detail.dispatches:
            dispatch_ids[(number, dispatch.agency_code)] = dispatch.id
    result = Site(controller, db, report_ids, dispatch_ids)
    yield result
    for client in result.clients:
        await client.close()
    await db.close()


async def error_code(response: Any, status: int) -> str:
    assert response.status == status
    return (await response.json())["error"]["code"]  # type: ignore[no-any-return]


async def dispatch_status(site: Site, dispatch_id: int) -> str:
    return (await site.controller.dispatches.get(dispatch_id)).status.value


async def test_agency_lists_only_own_dispatches(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar")
    polisi = await site.client("agency", agency="polisi")

    damkar_body = await (await damkar.get("/api/dispatches")).json()
    polisi_body = await (await polisi.get("/api/dispatches")).json()

    assert {d["id"] for d in damkar_body["dispatches"]} == {
        site.dispatches[(1, "damkar")], site.dispatches[(3, "damkar")]
    }
    assert {d["agency_code"] for d in polisi_body["dispatches"]} == {"polisi"}
    assert len(polisi_body["dispatches"]) == 2


async def test_agency_cannot_filter_other_agency(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar")

    other = await damkar.get("/api/dispatches?agency=polisi")
    own = await damkar.get("/api/dispatches?agency=damkar")

    assert await error_code(other, 403) == "forbidden"
    assert own.status == 200


async def test_agency_reads_other_dispatch_as_missing(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar")
    foreign = site.dispatches[(2, "polisi")]

    response = await damkar.get(f"/api/dispatches/{foreign}")
    unknown = await damkar.get("/api/dispatches/4242")
    own = await damkar.get(f"/api/dispatches/{site.dispatches[(1, 'damkar')]}")

    assert await error_code(response, 404) == "dispatch_not_found"
    assert await error_code(unknown, 404) == "dispatch_not_found"
    message = (await response.json())["error"]["message"]
    assert "polisi" not in message
    assert own.status == 200


@pytest.mark.parametrize(
    ("action", "body"),
    [("ack", {}), ("status", {"status": "en_route"})],
)
async def test_agency_cannot_change_other_dispatch(
    site: Site, action: str, body: dict[str, Any]
) -> None:
    damkar = await site.client("agency", agency="damkar")
    foreign = site.dispatches[(3, "polisi")]

    response = await damkar.post(f"/api/dispatches/{foreign}/{action}", json=body)

    assert await error_code(response, 404) == "dispatch_not_found"
    assert await dispatch_status(site, foreign) == "sent"


async def test_agency_acknowledges_own_dispatch(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar", username="damkar-1")
    own = site.dispatches[(3, "damkar")]

    ack = await damkar.post(f"/api/dispatches/{own}/ack", json={})
    status = await damkar.post(
        f"/api/dispatches/{own}/status", json={"status": "on_scene", "note": "unit 2"}
    )

    assert ack.status == 200
    assert (await ack.json())["acknowledged_by"] == "damkar-1"
    assert status.status == 200
    assert await dispatch_status(site, own) == "on_scene"
    assert await dispatch_status(site, site.dispatches[(3, "polisi")]) == "sent"


async def test_operator_cannot_acknowledge(site: Site) -> None:
    operator = await site.client("operator", endpoint="op1")
    dispatch_id = site.dispatches[(1, "damkar")]

    ack = await operator.post(f"/api/dispatches/{dispatch_id}/ack", json={})
    status = await operator.post(
        f"/api/dispatches/{dispatch_id}/status", json={"status": "en_route"}
    )
    listed = await operator.get("/api/dispatches")

    assert await error_code(ack, 403) == "forbidden"
    assert await error_code(status, 403) == "forbidden"
    assert await dispatch_status(site, dispatch_id) == "sent"
    assert len((await listed.json())["dispatches"]) == 4


async def test_supervisor_sees_and_filters_every_agency(site: Site) -> None:
    supervisor = await site.client("supervisor")

    every = await (await supervisor.get("/api/dispatches")).json()
    polisi = await (await supervisor.get("/api/dispatches?agency=polisi")).json()
    ack = await supervisor.post(
        f"/api/dispatches/{site.dispatches[(2, 'polisi')]}/ack", json={}
    )

    assert len(every["dispatches"]) == 4
    assert {d["agency_code"] for d in polisi["dispatches"]} == {"polisi"}
    assert ack.status == 200


async def test_agency_lists_only_reports_sent_to_it(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar")
    operator = await site.client("operator", endpoint="op1")

    body = await (await damkar.get("/api/reports")).json()
    fire = await (await damkar.get("/api/reports?category=fire")).json()
    every = await (await operator.get("/api/reports")).json()

    assert body["total"] == 2
    assert {r["id"] for r in body["reports"]} == {site.reports[1], site.reports[3]}
    assert fire["total"] == 2
    assert every["total"] == 3


async def test_report_list_agency_filter(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar")
    supervisor = await site.client("supervisor")

    other = await damkar.get("/api/reports?agency=polisi")
    polisi = await (await supervisor.get("/api/reports?agency=polisi")).json()

    assert await error_code(other, 403) == "forbidden"
    assert {r["id"] for r in polisi["reports"]} == {site.reports[2], site.reports[3]}


async def test_agency_reads_other_report_as_missing(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar")

    response = await damkar.get(f"/api/reports/{site.reports[2]}")

    assert await error_code(response, 404) == "report_not_found"


async def test_agency_report_shows_only_own_dispatch(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar")
    supervisor = await site.client("supervisor")
    path = f"/api/reports/{site.reports[3]}"

    body = await (await damkar.get(path)).json()
    full = await (await supervisor.get(path)).json()

    assert body["report"]["id"] == site.reports[3]
    assert [d["agency_code"] for d in body["dispatches"]] == ["damkar"]
    assert set(body) == {"report", "dispatches"}
    assert sorted(d["agency_code"] for d in full["dispatches"]) == ["damkar", "polisi"]
    assert "outbox" in full


async def test_agency_cannot_write_reports(site: Site) -> None:
    damkar = await site.client("agency", agency="damkar")

    created = await damkar.post(
        "/api/reports", json={"category": "fire", "call_type": "emergency", "priority": 1}
    )
    dispatched = await damkar.post(
        f"/api/reports/{site.reports[1]}/dispatch", json={"agencies": ["polisi"]}
    )

    assert await error_code(created, 403) == "forbidden"
    assert await error_code(dispatched, 403) == "forbidden"
