"""Dispatch and outbox routes of the JSON API, over a SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sigap_pbx.agencies.dispatch import DispatchService
from sigap_pbx.agencies.webhooks import WebhookSender
from sigap_pbx.store import Database
from sigap_pbx.store.outbox import OutboxStore
from tests.unit.agency_rows import (
    T0,
    FakeClock,
    add_agency,
    add_dispatch,
    add_outbox,
    add_report,
)
from tests.web_auth import SignedInClient, signed_in_client

SECRET = "never-shown-secret"


class FakeController:
    """The attributes of the controller that the dispatch routes read."""

    def __init__(
        self, dispatches: DispatchService | None, webhooks: WebhookSender | None
    ) -> None:
        self.dispatches = dispatches
        self.webhooks = webhooks


@dataclass
class Api:
    client: SignedInClient
    db: Database
    report_id: int
    dispatch_id: int
    message_id: int


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'routes.db'}")
    clock = FakeClock()
    agency_id = await add_agency(
        db, "damkar", webhook_url="http://127.0.0.1:9/hook", webhook_secret=SECRET
    )
    report_id = await add_report(db)
    dispatch_id = await add_dispatch(db, report_id, agency_id)
    message_id = await add_outbox(db, report_id, agency_id, status="failed", attempts=3)
    sender = WebhookSender(
        OutboxStore(db), timeout=1, max_attempts=3, backoff_max=10, clock=clock
    )
    controller = FakeController(DispatchService(db, clock=clock), sender)
    client = await signed_in_client(controller, "supervisor", username="spv-1", db=db)
    yield Api(client, db, report_id, dispatch_id, message_id)
    await client.close()
    await db.close()


async def test_queue_lists_agency_dispatches(api: Api) -> None:
    response = await api.client.get("/api/dispatches?agency=damkar")

    assert response.status == 200
    body = await response.json()
    [dispatch] = body["dispatches"]
    assert dispatch["id"] == api.dispatch_id
    assert dispatch["status"] == "sent"
    assert dispatch["sent_at"] == T0.isoformat()
    other = await (await api.client.get("/api/dispatches?agency=polisi")).json()
    assert other["dispatches"] == []


async def test_ack_records_signed_in_user(api: Api) -> None:
    response = await api.client.post(
        f"/api/dispatches/{api.dispatch_id}/ack", headers={"X-Sigap-Actor": "spv-1"}
    )

    assert response.status == 200
    body = await response.json()
    assert body["status"] == "acknowledged"
    assert body["acknowledged_by"] == "spv-1"


async def test_ack_rejects_other_actor(api: Api) -> None:
    response = await api.client.post(
        f"/api/dispatches/{api.dispatch_id}/ack", json={"actor": "damkar-1"}
    )

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "actor_mismatch"


async def test_status_update_and_history(api: Api) -> None:
    response = await api.client.post(
        f"/api/dispatches/{api.dispatch_id}/status",
        json={"status": "en_route", "note": "unit 3", "actor": "spv-1"},
    )
    detail = await (await api.client.get(f"/api/dispatches/{api.dispatch_id}")).json()

    assert response.status == 200
    assert (await response.json())["status"] == "en_route"
    assert [event["status"] for event in detail["events"]] == [
        "sent", "acknowledged", "en_route",
    ]
    assert detail["events"][2]["note"] == "unit 3"
    assert detail["events"][2]["actor"] == "spv-1"


async def test_backward_status_is_conflict(api: Api) -> None:
    await api.client.post(
        f"/api/dispatches/{api.dispatch_id}/status", json={"status": "on_scene"}
    )

    response = await api.client.post(
        f"/api/dispatches/{api.dispatch_id}/status", json={"status": "dispatched"}
    )

    assert response.status == 409
    error = (await response.json())["error"]
    assert error["code"] == "invalid_transition"
    assert "from on_scene to dispatched" in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/dispatches/{id}/status", {"status": "parked"}, 400, "invalid_status"),
        ("/api/dispatches/{id}/status", {"note": "x"}, 400, "invalid_body"),
        ("/api/dispatches/{id}/status", ["en_route"], 400, "invalid_body"),
        ("/api/dispatches/{id}/status", {"status": "en_route", "note": 5}, 400,
         "invalid_note"),
        ("/api/dispatches/{id}/ack", {}, 200, None),
        ("/api/dispatches/{id}/ack", {"actor": "a" * 65}, 400, "actor_mismatch"),
        ("/api/dispatches/999/ack", {}, 404, "dispatch_not_found"),
        ("/api/dispatches/abc/ack", {}, 400, "invalid_parameter"),
    ],
)
async def test_invalid_requests(
    api: Api, path: str, body: object, status: int, code: str | None
) -> None:
    response = await api.client.post(path.replace("{id}", str(api.dispatch_id)), json=body)

    assert response.status == status
    if code is not None:
        assert (await response.json())["error"]["code"] == code


async def test_outbox_lists_state_without_secrets(api: Api) -> None:
    response = await api.client.get("/api/outbox?status=failed")

    assert response.status == 200
    text = await response.text()
    assert SECRET not in text
    assert "127.0.0.1:9" not in text
    body = await response.json()
    [message] = body["messages"]
    assert message["id"] == api.message_id
    assert message["delivery_id"] == f"{api.report_id}:damkar:1"
    assert message["attempts"] == 3
    assert "payload" not in message
    assert body["counts"] == {"pending": 0, "delivered": 0, "failed": 1}


async def test_outbox_rejects_unknown_status(api: Api) -> None:
    response = await api.client.get("/api/outbox?status=sent")

    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_parameter"


async def test_outbox_retry_requeues_failed(api: Api) -> None:
    response = await api.client.post(f"/api/outbox/{api.message_id}/retry")
    missing = await api.client.post("/api/outbox/4242/retry")

    assert response.status == 200
    body = await response.json()
    assert body["status"] == "pending"
    assert body["attempts"] == 0
    assert missing.status == 404


async def test_routes_unavailable_before_start(tmp_path: Path) -> None:
    client = await signed_in_client(FakeController(None, None), "admin")
    try:
        dispatches = await client.get("/api/dispatches")
        outbox = await client.get("/api/outbox")
    finally:
        await client.close()

    assert dispatches.status == 503
    assert outbox.status == 503
