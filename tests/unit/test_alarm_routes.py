"""Alarm routes of the JSON API: GET /api/alarms and POST /api/alarms/{id}/ack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.store import Database
from sigap_pbx.store.alarms import AlarmStore
from sigap_pbx.web.app import CONTROLLER
from tests.web_auth import signed_in_client

T0 = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeController:
    """The attribute of the controller that the alarm routes read."""

    def __init__(self, alarms: AlarmBoard | None) -> None:
        self.alarms = alarms


async def start_client(controller: FakeController, username: str = "spv1") -> TestClient:
    """Start the app with a client signed in as supervisor `username`."""
    return await signed_in_client(controller, "supervisor", username=username)


async def second_client(client: TestClient, username: str) -> TestClient:
    """Sign in another supervisor on the controller behind `client`."""
    return await start_client(client.app[CONTROLLER], username)


@pytest.fixture
async def memory_api() -> AsyncIterator[tuple[TestClient, AlarmBoard]]:
    board = AlarmBoard(None, FakeClock())
    client = await start_client(FakeController(board))
    yield client, board
    await client.close()


@pytest.fixture
async def stored_api(tmp_path: Path) -> AsyncIterator[tuple[TestClient, AlarmBoard]]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'alarms.db'}")
    clock = FakeClock()
    board = AlarmBoard(AlarmStore(db), clock)
    writer = asyncio.create_task(board.run_writer())
    client = await start_client(FakeController(board))
    yield client, board
    await client.close()
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    await db.close()


async def test_active_lists_board_alarms(memory_api: tuple[TestClient, AlarmBoard]) -> None:
    client, board = memory_api
    board.raise_alarm("endpoint_unreachable", "op1", "op1 down")
    board.raise_alarm("long_wait", "operators", "waiting")
    board.clear("long_wait", "operators", "no_long_wait")

    response = await client.get("/api/alarms?active=1")

    assert response.status == 200
    body = await response.json()
    assert [alarm["subject"] for alarm in body["alarms"]] == ["op1"]


async def test_history_without_store_uses_memory(
    memory_api: tuple[TestClient, AlarmBoard],
) -> None:
    client, board = memory_api
    board.raise_alarm("long_wait", "operators", "waiting")
    board.clear("long_wait", "operators", "no_long_wait")

    body = await (await client.get("/api/alarms")).json()

    assert [alarm["active"] for alarm in body["alarms"]] == [False]


async def test_history_from_store(stored_api: tuple[TestClient, AlarmBoard]) -> None:
    client, board = stored_api
    clock = board.clock
    assert isinstance(clock, FakeClock)
    board.raise_alarm("long_wait", "operators", "waiting")
    clock.now += timedelta(seconds=30)
    board.clear("long_wait", "operators", "no_long_wait")
    board.raise_alarm("endpoint_unreachable", "op1", "op1 down")
    await board.flush(timeout=10)

    body = await (await client.get("/api/alarms?limit=5")).json()

    assert [alarm["kind"] for alarm in body["alarms"]] == ["endpoint_unreachable", "long_wait"]
    assert body["alarms"][1]["cleared_at"] == (T0 + timedelta(seconds=30)).isoformat()


async def test_ack_with_body_actor(stored_api: tuple[TestClient, AlarmBoard]) -> None:
    client, board = stored_api
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")
    await board.flush(timeout=10)

    response = await client.post(f"/api/alarms/{record.id}/ack", json={"actor": "spv1"})

    assert response.status == 200
    body = await response.json()
    assert body["acknowledged_by"] == "spv1"
    await board.flush(timeout=10)
    assert board.store is not None
    view = await board.store.get(body["id"])
    assert view is not None
    assert view.acknowledged_by == "spv1"


async def test_ack_actor_from_header(memory_api: tuple[TestClient, AlarmBoard]) -> None:
    client, board = memory_api
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")

    response = await client.post(
        f"/api/alarms/{record.id}/ack", headers={"X-Sigap-Actor": "spv1"}
    )

    assert (await response.json())["acknowledged_by"] == "spv1"


@pytest.mark.parametrize(
    "claim",
    [{"json": {"actor": "spv2"}}, {"headers": {"X-Sigap-Actor": "spv2"}}],
    ids=["body", "header"],
)
async def test_ack_other_actor_rejected(
    memory_api: tuple[TestClient, AlarmBoard], claim: dict[str, Any]
) -> None:
    client, board = memory_api
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")

    response = await client.post(f"/api/alarms/{record.id}/ack", **claim)

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "actor_mismatch"
    assert record.acknowledged_by is None


async def test_ack_default_actor(memory_api: tuple[TestClient, AlarmBoard]) -> None:
    client, board = memory_api
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")

    response = await client.post(f"/api/alarms/{record.id}/ack")

    assert (await response.json())["acknowledged_by"] == "spv1"


async def test_ack_unknown_id_is_404(memory_api: tuple[TestClient, AlarmBoard]) -> None:
    client, _ = memory_api

    response = await client.post("/api/alarms/999/ack", json={"actor": "spv1"})

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "alarm_not_found"


@pytest.mark.parametrize("alarm_id", ["abc", "-1", "99999999999"])
async def test_ack_invalid_id_is_400(
    memory_api: tuple[TestClient, AlarmBoard], alarm_id: str
) -> None:
    client, _ = memory_api

    response = await client.post(f"/api/alarms/{alarm_id}/ack")

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize("body", [b"[1, 2]", b"{not json", b'{"actor": "a\\u001b[31m"}'])
async def test_ack_invalid_body_is_400(
    memory_api: tuple[TestClient, AlarmBoard], body: bytes
) -> None:
    client, board = memory_api
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")

    response = await client.post(
        f"/api/alarms/{record.id}/ack",
        data=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status == 400
    assert record.acknowledged_by is None


@pytest.mark.parametrize("query", ["active=yes", "limit=0", "since=yesterday"])
async def test_list_invalid_parameter_is_400(
    memory_api: tuple[TestClient, AlarmBoard], query: str
) -> None:
    client, _ = memory_api

    response = await client.get(f"/api/alarms?{query}")

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_parameter"


async def test_no_board_is_503() -> None:
    client = await start_client(FakeController(None))
    try:
        response = await client.get("/api/alarms?active=1")
    finally:
        await client.close()

    assert response.status == 503


async def test_second_ack_names_first(stored_api: tuple[TestClient, AlarmBoard]) -> None:
    client, board = stored_api
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")
    await board.flush(timeout=10)

    other = await second_client(client, "spv2")
    first = await client.post(f"/api/alarms/{record.id}/ack", json={"actor": "spv1"})
    second = await other.post(f"/api/alarms/{record.id}/ack", json={"actor": "spv2"})
    body = await second.json()
    await other.close()

    assert first.status == 200
    assert (await first.json())["already_acknowledged_by"] is None
    assert second.status == 200
    assert body["acknowledged_by"] == "spv1"
    assert body["already_acknowledged_by"] == "spv1"


async def test_second_ack_of_stored_row(stored_api: tuple[TestClient, AlarmBoard]) -> None:
    client, board = stored_api
    assert board.store is not None
    alarm_id = await board.store.insert(
        kind="long_wait",
        subject="operators",
        raised_at=T0,
        severity="warning",
        message="waiting",
        detail={},
        cleared_at=T0 + timedelta(seconds=30),
        acknowledged_at=T0 + timedelta(seconds=10),
        acknowledged_by="spv1",
    )

    other = await second_client(client, "spv2")
    response = await other.post(f"/api/alarms/{alarm_id}/ack", json={"actor": "spv2"})
    body = await response.json()
    await other.close()

    assert response.status == 200
    assert body["acknowledged_by"] == "spv1"
    assert body["already_acknowledged_by"] == "spv1"


async def test_ack_unknown_key_rejected(memory_api: tuple[TestClient, AlarmBoard]) -> None:
    client, board = memory_api
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")

    response = await client.post(
        f"/api/alarms/{record.id}/ack", json={"actor": "spv1", "note": "on it"}
    )

    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_body"
    assert error["message"].startswith("unknown keys ['note'] in the body")
    assert record.acknowledged_by is None
