"""The roster's JSON API, served by an aiohttp test server over a real RosterService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sigap_pbx.roster.service import RosterService
from sigap_pbx.store import Database
from tests.unit.test_roster_io import sample_config, sample_document
from tests.web_auth import signed_in_client

# 2026-12-01 08:00 in Asia/Pontianak (UTC+7).
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


@dataclass
class FakeController:
    rosters: RosterService | None


@pytest.fixture
async def rosters(tmp_path: Path) -> AsyncIterator[RosterService]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'roster.db'}")
    yield RosterService(db, sample_config(), clock=lambda: NOW)
    await db.close()


async def start_client(controller: FakeController) -> TestClient:
    """Start the app with a client signed in as supervisor "sari"."""
    return await signed_in_client(controller, "supervisor", username="sari")


@pytest.fixture
async def api(rosters: RosterService) -> AsyncIterator[TestClient]:
    client = await start_client(FakeController(rosters))
    yield client
    await client.close()


@pytest.fixture
async def saved(api: TestClient) -> dict[str, Any]:
    response = await api.put(
        "/api/roster", json={"roster": sample_document(), "actor": "sari"}
    )
    assert response.status == 200
    return await response.json()  # type: ignore[no-any-return]


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status
    body = await response.json()
    return body["error"]  # type: ignore[no-any-return]


async def test_get_without_roster(api: TestClient) -> None:
    error = await error_of(await api.get("/api/roster"), 404)

    assert error["code"] == "roster_not_found"
    assert "sigap roster import" in error["message"]


async def test_put_then_get(api: TestClient, saved: dict[str, Any]) -> None:
    assert saved["version_id"] == 1
    assert saved["changed"] is True
    assert {"date": "2026-12-02", "shift": "early", "on_duty": 1, "minimum": 2} in (
        saved["coverage_problems"]
    )

    response = await api.get("/api/roster")

    body = await response.json()
    assert body["roster"]["crews"][0] == {"name": "A", "members": ["op1", "op2"]}
    assert body["version"]["id"] == 1
    assert body["version"]["saved_by"] == "sari"
    assert "content" not in body["version"]


async def test_put_same_roster_unchanged(
    api: TestClient, saved: dict[str, Any]
) -> None:
    response = await api.put("/api/roster", json={"roster": sample_document()})

    body = await response.json()
    assert body["version_id"] == saved["version_id"]
    assert body["changed"] is False


async def test_put_invalid_lists_problems(api: TestClient) -> None:
    document = sample_document()
    document["crews"][2]["members"][0] = "op9"
    document["pattern"]["shifts"][0]["hours"] = 0

    error = await error_of(await api.put("/api/roster", json={"roster": document}), 400)

    assert error["code"] == "invalid_roster"
    assert error["problems"] == [
        "pattern.shifts[0].hours: 0 is out of range, use more than 0 and at most 24",
        "crews[2].members[0]: 'op9' not found among the operators, add it under"
        " operators or remove it from the crew",
    ]
    assert error["message"].startswith("invalid roster, 2 problems:")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"roster": {}, "author": "x"}, "unknown keys ['author']"),
        ({"actor": "x"}, "'roster' is missing"),
        ({"roster": {}, "comment": 5}, "comment 5 must be a string"),
        ([1], "must be a JSON object"),
    ],
)
async def test_put_bad_request(api: TestClient, body: Any, message: str) -> None:
    error = await error_of(await api.put("/api/roster", json=body), 400)

    assert error["code"] == "invalid_request"
    assert message in error["message"]


async def test_put_other_actor_rejected(api: TestClient) -> None:
    body = {"roster": sample_document(), "actor": "a\nb"}

    error = await error_of(await api.put("/api/roster", json=body), 400)

    assert error["code"] == "actor_mismatch"
    assert "actor 'a\\nb' is not the signed-in user 'sari'" in error["message"]
    assert (await api.get("/api/roster")).status == 404


async def test_put_invalid_json(api: TestClient) -> None:
    response = await api.put(
        "/api/roster", data=b"{roster:", headers={"Content-Type": "application/json"}
    )

    assert (await error_of(response, 400))["code"] == "invalid_json"


async def test_versions_listed(api: TestClient, saved: dict[str, Any]) -> None:
    document = sample_document()
    document["exceptions"] = []
    await api.put("/api/roster", json={"roster": document, "comment": "no exceptions"})

    body = await (await api.get("/api/roster/versions")).json()
    [newest, oldest] = body["versions"]
    assert newest["id"] == 2
    assert newest["comment"] == "no exceptions"
    assert newest["saved_by"] == "sari"
    assert oldest["id"] == 1

    old = await (await api.get("/api/roster/versions/1")).json()
    assert len(old["roster"]["exceptions"]) == 3


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/roster/versions/7", 404, "roster_version_not_found"),
        ("/api/roster/versions/99999999999", 404, "roster_version_not_found"),
        ("/api/roster/versions/x1", 400, "invalid_parameter"),
        ("/api/roster/versions?limit=0", 400, "invalid_parameter"),
    ],
)
async def test_version_lookup_errors(
    api: TestClient, saved: dict[str, Any], path: str, status: int, code: str
) -> None:
    assert (await error_of(await api.get(path), status))["code"] == code


async def test_duty_of_date(
    api: TestClient, saved: dict[str, Any], rosters: RosterService
) -> None:
    await rosters.add_duty_override(
        shift_date=datetime(2026, 12, 1).date(),
        shift_name="early",
        endpoint="op1",
        action="logout",
        actor="op1",
        source="feature_code",
    )

    body = await (
        await api.get("/api/roster/duty", params={"date": "2026-12-01"})
    ).json()

    assert body["timezone"] == "Asia/Pontianak"
    assert body["version_id"] == 1
    early, late, night = body["shifts"]
    assert early["start"] == "2026-12-01T07:00:00+07:00"
    assert early["end"] == "2026-12-01T15:00:00+07:00"
    assert early["crew"] == "A"
    assert [d["endpoint"] for d in early["duties"]] == ["op1", "op7"]
    assert early["overrides"][0]["action"] == "logout"
    assert late["overrides"] == []
    # Extra cover by op5 on the late shift of the anchor day.
    assert [d["endpoint"] for d in late["duties"]] == ["op3", "op4", "op5"]
    assert night["end"] == "2026-12-02T07:00:00+07:00"
    assert [(d["endpoint"], d["penalty"]) for d in night["duties"]] == [
        ("op5", 0),
        ("op6", 0),
        ("spv1", 10),
    ]


async def test_duty_defaults_to_today(api: TestClient, saved: dict[str, Any]) -> None:
    body = await (await api.get("/api/roster/duty")).json()

    assert body["date"] == "2026-12-01"


async def test_duty_bad_date(api: TestClient, saved: dict[str, Any]) -> None:
    response = await api.get("/api/roster/duty", params={"date": "2026-13-01"})

    assert (await error_of(response, 400))["code"] == "invalid_parameter"


async def test_operator_put_and_delete(api: TestClient, saved: dict[str, Any]) -> None:
    response = await api.put(
        "/api/roster/operators/oncall1",
        json={"name": "Eko", "role": "backup"},
        headers={"X-Sigap-Actor": "sari"},
    )
    body = await response.json()
    assert body["changes"]["operators_added"] == ["oncall1"]

    response = await api.delete("/api/roster/operators/oncall1")

    body = await response.json()
    assert body["changes"]["operators_removed"] == ["oncall1"]
    audit = await (await api.get("/api/audit", params={"subject": "roster"})).json()
    assert [e["actor"] for e in audit["entries"]] == ["sari", "sari", "sari"]


async def test_operator_in_crew_conflict(
    api: TestClient, saved: dict[str, Any]
) -> None:
    error = await error_of(await api.delete("/api/roster/operators/op4"), 409)

    assert error["code"] == "operator_in_crew"
    assert "crew 'B'" in error["message"]


async def test_operator_errors(api: TestClient, saved: dict[str, Any]) -> None:
    missing = await error_of(await api.delete("/api/roster/operators/op99"), 404)
    unconfigured = await error_of(
        await api.put("/api/roster/operators/op99", json={"name": "X"}), 400
    )
    mismatch = await error_of(
        await api.put(
            "/api/roster/operators/op1", json={"endpoint": "op2", "name": "X"}
        ),
        400,
    )
    bad_field = await error_of(
        await api.put("/api/roster/operators/op1", json={"name": "X", "role": "boss"}),
        400,
    )

    assert missing["code"] == "operator_not_found"
    assert unconfigured["code"] == "invalid_roster"
    assert "'op99' is not a SIP endpoint" in unconfigured["message"]
    assert "differs from 'op1' in the path" in mismatch["message"]
    assert bad_field["problems"] == [
        "operator.role: 'boss' is not a role, use one of operator, backup, supervisor"
    ]


async def test_exception_add_and_remove(api: TestClient, saved: dict[str, Any]) -> None:
    leave = {
        "type": "leave",
        "endpoint": "op5",
        "start": "2026-12-24",
        "end": "2026-12-25",
    }

    added = await api.post("/api/roster/exceptions", json=leave)
    removed = await api.delete("/api/roster/exceptions", json=leave)
    again = await api.delete("/api/roster/exceptions", json=leave)

    assert added.status == 201
    assert (await added.json())["changes"]["exceptions_added"] == [leave]
    assert (await removed.json())["changes"]["exceptions_removed"] == [leave]
    assert (await error_of(again, 404))["code"] == "exception_not_found"


async def test_exception_invalid(api: TestClient, saved: dict[str, Any]) -> None:
    response = await api.post(
        "/api/roster/exceptions",
        json={"type": "holiday", "endpoint": "op5"},
    )

    error = await error_of(response, 400)
    assert error["problems"] == [
        "exception.type: 'holiday' is not an exception type, use one of leave,"
        " swap, extra_cover"
    ]


async def test_audit_filters(
    api: TestClient, saved: dict[str, Any], rosters: RosterService
) -> None:
    await rosters.audit("op1", "duty.logout", "op1", {})

    body = await (await api.get("/api/audit", params={"action": "duty."})).json()
    bad = await api.get("/api/audit", params={"since": "yesterday"})

    assert [e["subject"] for e in body["entries"]] == ["op1"]
    assert (await error_of(bad, 400))["code"] == "invalid_parameter"


async def test_service_not_started() -> None:
    client = await start_client(FakeController(None))
    try:
        error = await error_of(await client.get("/api/roster"), 503)
    finally:
        await client.close()

    assert error["code"] == "roster_unavailable"


async def test_operator_unknown_key_rejected(
    api: TestClient, saved: dict[str, Any]
) -> None:
    response = await api.put("/api/roster/operators/op8", json={"actve": False})

    error = await error_of(response, 400)
    assert error["code"] == "invalid_roster"
    assert error["problems"] == [
        "operator.actve: unknown key 'actve' in an operator, did you mean 'active'?"
        " (known keys: endpoint, name, role, languages, skills, active)",
        "operator: 'name' is missing from an operator, add it",
    ]
    versions = await (await api.get("/api/roster/versions")).json()
    assert len(versions["versions"]) == 1


@pytest.mark.parametrize("method", ["post", "delete"])
async def test_exception_unknown_key_rejected(
    api: TestClient, saved: dict[str, Any], method: str
) -> None:
    change = {
        "type": "extra_cover",
        "date": "2026-12-12",
        "shfit": "early",
        "endpoint": "op8",
    }

    response = await getattr(api, method)("/api/roster/exceptions", json=change)

    error = await error_of(response, 400)
    assert error["code"] == "invalid_roster"
    assert error["problems"][0].startswith(
        "exception.shfit: unknown key 'shfit' in an extra_cover, did you mean 'shift'?"
    )
    versions = await (await api.get("/api/roster/versions")).json()
    assert len(versions["versions"]) == 1


async def test_edit_actor_must_be_user(
    api: TestClient, saved: dict[str, Any]
) -> None:
    leave = {"type": "leave", "endpoint": "op5", "start": "2026-12-24"}
    leave |= {"end": "2026-12-25"}

    added = await api.post(
        "/api/roster/exceptions",
        json={**leave, "actor": "sari"},
        headers={"X-Sigap-Actor": "sari"},
    )
    removed = await api.delete(
        "/api/roster/exceptions", json=leave, headers={"X-Sigap-Actor": "sari"}
    )
    other_in_body = await api.put(
        "/api/roster/operators/op8", json={"name": "Dian", "actor": "eko"}
    )
    other_in_header = await api.post(
        "/api/roster/exceptions", json=leave, headers={"X-Sigap-Actor": "dewi"}
    )
    bad_actor = await api.post(
        "/api/roster/exceptions", json={**leave, "actor": "x\x00"}
    )

    assert added.status == 201
    assert (await added.json())["changes"]["exceptions_added"] == [leave]
    assert removed.status == 200
    assert (await error_of(other_in_body, 400))["code"] == "actor_mismatch"
    assert (await error_of(other_in_header, 400))["code"] == "actor_mismatch"
    assert (await error_of(bad_actor, 400))["code"] == "actor_mismatch"
    audit = await (await api.get("/api/audit", params={"subject": "roster"})).json()
    assert [e["actor"] for e in audit["entries"]] == ["sari", "sari", "sari"]


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "1999-12-31"])
async def test_duty_date_out_of_range(
    api: TestClient, saved: dict[str, Any], value: str
) -> None:
    response = await api.get("/api/roster/duty", params={"date": value})

    error = await error_of(response, 400)
    assert error["code"] == "invalid_parameter"
    assert error["message"] == (
        f"date={value} is out of range, give a date from 2000-01-01 to 2200-12-31"
    )


async def test_duty_date_at_range_ends(api: TestClient, saved: dict[str, Any]) -> None:
    for value in ("2000-01-01", "2200-12-31"):
        response = await api.get("/api/roster/duty", params={"date": value})

        assert response.status == 200
        assert (await response.json())["date"] == value

