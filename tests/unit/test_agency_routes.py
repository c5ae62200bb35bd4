"""The agency directory's JSON API over a real AgencyService on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sigap_pbx.agencies.directory import AgencyService
from sigap_pbx.config import Config
from sigap_pbx.store import Database
from sigap_pbx.store.roster import AuditStore
from sigap_pbx.web.agency_routes import add_routes
from sigap_pbx.web.app import CONTROLLER, errors_as_json
from tests.web_auth import signed_in_client

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "agencies.yaml"
# 2026-12-04 23:00 in Asia/Pontianak (UTC+7): night lines are staffed.
NIGHT = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


@dataclass
class FakeController:
    agencies: AgencyService | None


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'agencies.db'}")
    yield db
    await db.close()


@pytest.fixture
async def api(database: Database) -> AsyncIterator[TestClient]:
    controller = FakeController(AgencyService(database, Config(), clock=lambda: NIGHT))
    client = await signed_in_client(controller, "admin", username="sari", db=database)
    yield client
    await client.close()


def fire_body() -> dict[str, Any]:
    return {
        "name": "Damkar",
        "kind": "fire",
        "dial_code": "1",
        "webhook_url": "https://damkar.example.org/hook",
        "webhook_secret": "0123456789abcdef",
        "lines": [
            {"priority": 1, "kind": "endpoint", "target": "agency-fire-1", "hours": "07:00-19:00"},
            {"priority": 2, "kind": "number", "target": "00000101", "backup": True},
        ],
    }


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status
    return (await response.json())["error"]  # type: ignore[no-any-return]


async def test_put_then_get(api: TestClient, database: Database) -> None:
    response = await api.put(
        "/api/agencies/damkar", json=fire_body(), headers={"X-Sigap-Actor": "sari"}
    )
    assert response.status == 201

    got = await api.get("/api/agencies/damkar")
    body = await got.json()
    assert body["dial_code"] == "1"
    assert body["webhook_secret_set"] is True
    assert "webhook_secret" not in body
    assert [line["target"] for line in body["staffed_lines"]] == ["00000101"]
    by_dial = await (await api.get("/api/agencies/1")).json()
    assert by_dial["code"] == "damkar"
    entries = await AuditStore(database).list_entries(subject="agency:damkar")
    assert [(e.actor, e.action) for e in entries] == [("sari", "agency.create")]


@pytest.mark.parametrize(
    "target", ["112&PJSIP/x", "0812\r\nAction: Originate", "1,2"]
)
async def test_injected_number_rejected(api: TestClient, target: str) -> None:
    body = fire_body()
    body["lines"][1]["target"] = target

    error = await error_of(await api.put("/api/agencies/damkar", json=body), 400)

    assert error["code"] == "invalid_agency"
    [problem] = error["problems"]
    assert problem.startswith("agency.lines[1].target: invalid target ")
    assert repr(target) in problem
    assert "Allowed: '+' and 1 to 20 digits" in problem
    assert (await api.get("/api/agencies/damkar")).status == 404


async def test_code_mismatch(api: TestClient) -> None:
    body = {**fire_body(), "code": "polres"}

    error = await error_of(await api.put("/api/agencies/damkar", json=body), 400)

    assert "differs from 'damkar'" in error["problems"][0]


async def test_dial_code_conflict(api: TestClient) -> None:
    await api.put("/api/agencies/damkar", json=fire_body())
    police = {"name": "Polres", "kind": "police", "dial_code": "1"}

    error = await error_of(await api.put("/api/agencies/polres", json=police), 409)

    assert error["code"] == "agency_conflict"


async def test_delete_deactivates(api: TestClient) -> None:
    await api.put("/api/agencies/damkar", json=fire_body())

    body = await (await api.delete("/api/agencies/damkar")).json()
    listed = await (await api.get("/api/agencies?active=true")).json()

    assert body["changed"] is True
    assert body["agency"]["active"] is False
    assert listed["agencies"] == []


async def test_put_directory_from_example(api: TestClient) -> None:
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

    response = await api.put("/api/agencies", json=document)

    outcomes = (await response.json())["outcomes"]
    assert [o["code"] for o in outcomes] == ["damkar", "polres", "psc119", "bpbd", "satpolpp"]
    listed = (await (await api.get("/api/agencies")).json())["agencies"]
    assert all(agency["sample"] for agency in listed)


async def test_unknown_agency(api: TestClient) -> None:
    error = await error_of(await api.get("/api/agencies/nope"), 404)

    assert error["code"] == "agency_not_found"


async def test_unavailable_before_start() -> None:
    app = web.Application(middlewares=[errors_as_json])
    app[CONTROLLER] = FakeController(None)
    add_routes(app)
    async with TestClient(TestServer(app)) as client:
        error = await error_of(await client.get("/api/agencies"), 503)
    assert error["code"] == "agencies_unavailable"
