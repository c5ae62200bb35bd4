"""The shift report routes, served by aiohttp's test server over a real ShiftReporter
and SQLite store, with a controller that has nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sigap_pbx.roster.model import Roster
from sigap_pbx.roster.reporter import ShiftReporter
from sigap_pbx.store import CallStore, Database, MemberStore
from sigap_pbx.store.shifts import ShiftStore
from tests.unit.test_shift_reporter import ZONE, FakeClock, make_roster
from tests.web_auth import signed_in_client

EARLY_START = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)


@dataclass
class FakeController:
    shift_reports: ShiftReporter | None


@pytest.fixture
async def reporter(tmp_path: Path) -> AsyncIterator[tuple[ShiftReporter, list[Roster | None]]]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/routes.db")
    holder: list[Roster | None] = [make_roster()]

    async def provider() -> Roster | None:
        return holder[0]

    shift_reporter = ShiftReporter(
        ShiftStore(db),
        MemberStore(db),
        CallStore(db),
        provider,
        zone=ZONE,
        clock=FakeClock(EARLY_START + timedelta(hours=8, minutes=5)),
        catch_up_days=1,
    )
    await CallStore(db).upsert_call(
        "1.1",
        arrived_at=EARLY_START + timedelta(minutes=3),
        answered_at=EARLY_START + timedelta(minutes=3, seconds=9),
        outcome="answered",
    )
    yield shift_reporter, holder
    await db.close()


async def client_for(controller: FakeController) -> TestClient:
    return await signed_in_client(controller, "supervisor")


@pytest.fixture
async def api(
    reporter: tuple[ShiftReporter, list[Roster | None]],
) -> AsyncIterator[TestClient]:
    client = await client_for(FakeController(reporter[0]))
    yield client
    await client.close()


async def get_json(
    api: TestClient, path: str, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    response = await api.get(path, params=params)
    assert response.content_type == "application/json"
    return response.status, await response.json()


async def test_reports_listed_newest_first(
    api: TestClient, reporter: tuple[ShiftReporter, list[Roster | None]]
) -> None:
    await reporter[0].run_due()

    status, body = await get_json(api, "/api/shifts/reports")

    assert status == 200
    assert body["limit"] == 50
    names = [(item["date"], item["name"]) for item in body["reports"]]
    assert names == [
        ("2026-12-04", "early"),
        ("2026-12-03", "night"),
        ("2026-12-03", "late"),
    ]
    assert body["reports"][0]["arrived"] == 1
    assert body["reports"][0]["answered_within_10_percent"] == 100.0
    assert body["reports"][0]["crew"] == "A"


async def test_reports_since_and_limit(
    api: TestClient, reporter: tuple[ShiftReporter, list[Roster | None]]
) -> None:
    await reporter[0].run_due()

    status, body = await get_json(
        api, "/api/shifts/reports", {"since": "2026-12-03", "limit": "2"}
    )

    assert status == 200
    assert len(body["reports"]) == 2
    status, body = await get_json(api, "/api/shifts/reports", {"since": "2026-12-04"})
    assert [item["name"] for item in body["reports"]] == ["early"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"since": "04-12-2026"}, "since='04-12-2026' must be a date as YYYY-MM-DD"),
        ({"limit": "0"}, "limit='0' must be a whole number from 1 to 500"),
    ],
)
async def test_reports_bad_parameter(
    api: TestClient, params: dict[str, str], fragment: str
) -> None:
    status, body = await get_json(api, "/api/shifts/reports", params)

    assert status == 400
    assert body["error"]["code"] == "invalid_parameter"
    assert fragment in body["error"]["message"]


async def test_one_report_in_full(
    api: TestClient, reporter: tuple[ShiftReporter, list[Roster | None]]
) -> None:
    await reporter[0].run_due()

    status, body = await get_json(api, "/api/shifts/reports/2026-12-04/early")

    assert status == 200
    report = body["report"]
    assert report["shift"]["start_local"] == "2026-12-04T07:00:00+07:00"
    assert [row["endpoint"] for row in report["operators"]] == ["a1", "a2"]
    assert report["queue"]["answered"] == 1
    assert body["created_at"] == "2026-12-04T08:05:00+00:00"


async def test_missing_report_not_found(api: TestClient) -> None:
    status, body = await get_json(api, "/api/shifts/reports/2026-12-04/early")

    assert status == 404
    assert body["error"]["code"] == "report_not_found"
    assert "/api/shifts/current" in body["error"]["message"]


async def test_report_bad_date(api: TestClient) -> None:
    status, body = await get_json(api, "/api/shifts/reports/yesterday/early")

    assert status == 400
    assert body["error"]["code"] == "invalid_parameter"


async def test_current_shift_figures(api: TestClient) -> None:
    status, body = await get_json(api, "/api/shifts/current")

    assert status == 200
    assert body["report"]["shift"]["name"] == "late"
    assert body["report"]["complete"] is False


async def test_current_without_roster(
    api: TestClient, reporter: tuple[ShiftReporter, list[Roster | None]]
) -> None:
    reporter[1][0] = None

    status, body = await get_json(api, "/api/shifts/current")

    assert status == 503
    assert body["error"]["code"] == "roster_missing"


async def test_reporter_not_running() -> None:
    client = await client_for(FakeController(None))
    try:
        status, body = await get_json(client, "/api/shifts/current")
    finally:
        await client.close()

    assert status == 503
    assert body["error"]["code"] == "shift_reports_unavailable"


async def test_stored_report_is_not_rebuilt(
    api: TestClient, reporter: tuple[ShiftReporter, list[Roster | None]]
) -> None:
    await reporter[0].run_due()
    reporter[1][0] = None

    status, body = await get_json(api, "/api/shifts/reports/2026-12-04/early")

    assert status == 200
    assert body["report"]["shift"]["date"] == date(2026, 12, 4).isoformat()
