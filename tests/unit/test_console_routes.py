"""The operator console's page and JSON API, for each role: call card data,
diversion flags and callbacks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.calls.diversions import DiversionPublisher
from sigap_pbx.live import LiveView
from sigap_pbx.store import CallStore, Database
from sigap_pbx.store.callbacks import CallbackStore
from sigap_pbx.store.diversions import DiversionStore
from sigap_pbx.store.reports import ReportStore
from sigap_pbx.web.console import CallbackDialer, CallCards
from sigap_pbx.web.feed import Feed
from sigap_pbx.wire.ami import Event
from tests.web_auth import signed_in_client

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


@dataclass
class Completion:
    action_id: str


@dataclass
class FakeAmi:
    """Records the actions a dialer sends; Asterisk accepts each one."""

    connected: bool = True
    actions: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def action(self, name: str, fields: dict[str, str], *,
                     timeout: float | None = None) -> Completion:
        self.actions.append((name, dict(fields)))
        return Completion(f"action-{len(self.actions)}")


class FakeController:
    """The controller attributes the console routes read."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.store = CallStore(db)
        self.clock = lambda: NOW
        self.feed = Feed()
        self.live = LiveView()
        self.call_cards = CallCards(self.feed, clock=self.clock)
        self.ami = FakeAmi()
        self.callback_dialer = CallbackDialer(
            self.ami, CallbackStore(db), self.feed, trunk="carrier",
            presented_number="112", clock=self.clock,
        )
        self.diversions = DiversionPublisher(
            self.ami, DiversionStore(db), country_code="62", clock=self.clock
        )
        self.agencies = None
        self.rosters = None
        self.accounts: Any = None


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[FakeController]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'console.db'}")
    yield FakeController(db)
    await db.close()


async def client_for(controller: FakeController, role: str, **options: Any) -> Any:
    return await signed_in_client(controller, role, db=controller.db, **options)


async def abandoned_call(controller: FakeController, uniqueid: str = "1733390000.1",
                         raw: str = "081234567890") -> int:
    return await controller.store.upsert_call(
        uniqueid, caller_number="+62" + raw[1:] if raw.startswith("0") else raw,
        caller_number_raw=raw, outcome="abandoned_in_queue", arrived_at=NOW,
    )


# Page ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "supervisor", "admin"])
async def test_console_page_for_call_staff(controller: FakeController, role: str) -> None:
    client = await client_for(controller, role, endpoint="op1")
    try:
        response = await client.get("/console")
        html = await response.text()
    finally:
        await client.close()

    assert response.status == 200
    for marker in ('id="call-card"', 'data-state="idle"', 'data-field="caller_number"',
                   'id="caller-history"', 'id="diversions"', 'id="report-form"',
                   'name="category"', 'name="call_type"', 'name="location"',
                   'name="description"', 'name="priority"', 'name="people"',
                   'id="report-save"', 'id="callbacks"', 'id="state-controls"',
                   'name="pause_reason"', 'id="pause"', 'id="unpause"', 'id="login"',
                   'id="logout"', 'data-field="my_state"'):
        assert marker in html, marker
    assert "Kebakaran" in html
    assert "<script>" not in html.split('id="console-data"')[0].split("<main>")[1]


async def test_console_page_in_english(controller: FakeController) -> None:
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        response = await client.get("/console", headers={"Cookie": client.session.headers
                                                         .get("Cookie", "")
                                                         + "; sigap_lang=en"})
        html = await response.text()
    finally:
        await client.close()

    assert "Operator console" in html
    assert "Fire" in html


async def test_console_refused_for_agency(controller: FakeController) -> None:
    client = await client_for(controller, "agency", agency="damkar")
    try:
        page = await client.get("/console", allow_redirects=False)
        callbacks = await client.get("/api/callbacks")
        caller = await client.get("/api/console/caller?number=0812345678")
        callback = await client.post("/api/callbacks/1", json={})
    finally:
        await client.close()

    assert page.status == 403
    assert callbacks.status == 403
    assert caller.status == 403
    assert callback.status == 403


# Card data ----------------------------------------------------------------------------


async def test_state_returns_own_card(controller: FakeController) -> None:
    controller.call_cards.on_event(Event(headers=(
        ("Event", "AgentCalled"), ("Uniqueid", "1733390000.9"),
        ("CallerIDNum", "081234567890"), ("CallerIDName", "Warga"),
        ("Interface", "PJSIP/op1"), ("Queue", "operators"),
    )))
    own = await client_for(controller, "operator", endpoint="op1")
    other = await client_for(controller, "operator", endpoint="op2")
    try:
        mine = await (await own.get("/api/console/state")).json()
        theirs = await (await other.get("/api/console/state")).json()
    finally:
        await own.close()
        await other.close()

    assert mine["card"]["uniqueid"] == "1733390000.9"
    assert mine["card"]["state"] == "ringing"
    assert mine["state"]["state"] == "logged_off"
    assert theirs["card"] is None


async def test_caller_info_lists_history_and_flags(controller: FakeController) -> None:
    await controller.store.upsert_call(
        "1733300000.1", caller_number="+6281234567890", caller_number_raw="081234567890",
        outcome="answered", arrived_at=NOW - timedelta(days=1),
    )
    await controller.store.upsert_call(
        "1733390000.9", caller_number="+6281234567890", caller_number_raw="081234567890",
        outcome="in_progress", arrived_at=NOW,
    )
    report = await ReportStore(controller.db).create_report(
        {"category": "fire", "call_type": "prank", "priority": 3, "people": []},
        actor="op1", at=NOW - timedelta(days=1), call_uniqueid="1733300000.1",
    )
    flags = DiversionStore(controller.db)
    flag = await flags.add(number="+6281234567890", action="warning", reason="iseng",
                           set_by="spv1", set_at=NOW - timedelta(hours=1),
                           until=NOW + timedelta(days=1))
    await flags.add(number="+6281234567890", action="warning", reason="old",
                    set_by="spv1", set_at=NOW - timedelta(days=5),
                    until=NOW - timedelta(days=4))
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        response = await client.get(
            "/api/console/caller?number=081234567890&uniqueid=1733390000.9"
        )
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 200
    assert [call["uniqueid"] for call in body["calls"]] == ["1733300000.1"]
    assert body["calls"][0]["call_type"] == "prank"
    assert body["calls"][0]["reports"][0]["id"] == report.id
    assert [item["id"] for item in body["diversions"]] == [flag.id]
    assert body["diversions"][0]["in_force"] is True


async def test_caller_info_needs_number(controller: FakeController) -> None:
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        response = await client.get("/api/console/caller")
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 400
    assert body["error"]["code"] == "missing_parameter"
    assert "?number=" in body["error"]["message"]


# Diversions ---------------------------------------------------------------------------


def diversion(**overrides: Any) -> dict[str, Any]:
    return {"number": "081234567890", "reason": "lima panggilan iseng",
            "until": (NOW + timedelta(days=2)).isoformat(), **overrides}


@pytest.mark.parametrize("role", ["supervisor", "admin"])
async def test_supervisor_sets_and_lifts_flag(controller: FakeController, role: str) -> None:
    client = await client_for(controller, role, username=f"{role}-x")
    try:
        created = await client.post("/api/diversions", json=diversion(action="low_priority"))
        flag = await created.json()
        listed = await (await client.get("/api/diversions?number=%2B6281234567890")).json()
        lifted = await client.post(f"/api/diversions/{flag['id']}/lift", json={})
        after = await lifted.json()
    finally:
        await client.close()

    assert created.status == 201
    assert flag["number"] == "+6281234567890"
    assert flag["set_by"] == f"{role}-x"
    assert flag["action"] == "low_priority"
    assert flag["in_force"] is True
    assert [item["id"] for item in listed["diversions"]] == [flag["id"]]
    assert lifted.status == 200
    assert after["lifted_by"] == f"{role}-x"
    assert after["in_force"] is False
    # The dialplan's copy in AstDB followed: written when set, deleted when lifted.
    until = str(int((NOW + timedelta(days=2)).timestamp()))
    astdb = [(name, fields.get("Family"), fields.get("Key"), fields.get("Val"))
             for name, fields in controller.ami.actions if name.startswith("DB")]
    assert ("DBPut", "sigap/divert/081234567890", "low_priority", until) in astdb
    assert ("DBDel", "sigap/divert/081234567890", "low_priority", None) in astdb
    assert astdb.index(
        ("DBDel", "sigap/divert/081234567890", "low_priority", None)
    ) > astdb.index(("DBPut", "sigap/divert/081234567890", "low_priority", until))


@pytest.mark.parametrize(
    ("overrides", "code", "named"),
    [
        ({"until": (NOW - timedelta(hours=1)).isoformat()}, "invalid_until", "after now"),
        ({"until": (NOW + timedelta(days=31)).isoformat()}, "invalid_until", "30 days"),
        ({"until": "2026-12-06T07:00:00"}, "invalid_until", "offset"),
        ({"until": None}, "invalid_until", "ISO 8601"),
        ({"number": "08-12 abc"}, "invalid_number", "08-12 abc"),
        ({"number": 812}, "invalid_number", "812"),
        ({"number": "0812\n3456"}, "invalid_number", "0812"),
        ({"number": "12"}, "invalid_number", "3 to 20 digits"),
        ({"reason": "  "}, "missing_reason", "reason"),
        ({"action": "block"}, "invalid_action", "block"),
        ({"forever": True}, "invalid_body", "forever"),
    ],
)
async def test_invalid_flag_rejected(
    controller: FakeController, overrides: dict[str, Any], code: str, named: str
) -> None:
    client = await client_for(controller, "supervisor")
    try:
        response = await client.post("/api/diversions", json=diversion(**overrides))
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 400
    assert body["error"]["code"] == code
    assert named in body["error"]["message"]
    assert await DiversionStore(controller.db).list_for(["+6281234567890"]) == []


async def test_operator_cannot_set_or_lift_flag(controller: FakeController) -> None:
    flag = await DiversionStore(controller.db).add(
        number="+6281234567890", action="warning", reason="iseng", set_by="spv1",
        set_at=NOW, until=NOW + timedelta(days=1),
    )
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        created = await client.post("/api/diversions", json=diversion())
        lifted = await client.post(f"/api/diversions/{flag.id}/lift", json={})
        listed = await client.get("/api/diversions?number=081234567890")
    finally:
        await client.close()

    assert created.status == 403
    assert lifted.status == 403
    assert listed.status == 200
    assert (await DiversionStore(controller.db).get(flag.id)).lifted_at is None


async def test_lift_unknown_flag(controller: FakeController) -> None:
    client = await client_for(controller, "supervisor")
    try:
        response = await client.post("/api/diversions/99/lift", json={})
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 404
    assert body["error"]["code"] == "diversion_not_found"


async def test_flag_needs_csrf(controller: FakeController) -> None:
    client = await client_for(controller, "supervisor", csrf=False)
    try:
        response = await client.post("/api/diversions", json=diversion())
    finally:
        await client.close()

    assert response.status == 403
    assert await DiversionStore(controller.db).list_for(["+6281234567890"]) == []


# Callbacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "supervisor", "admin"])
async def test_call_back_rings_own_phone(controller: FakeController, role: str) -> None:
    call_id = await abandoned_call(controller)
    client = await client_for(controller, role, endpoint="op2", username=f"{role}-y")
    try:
        listed = await (await client.get("/api/callbacks")).json()
        response = await client.post(f"/api/callbacks/{call_id}", json={})
        body = await response.json()
    finally:
        await client.close()

    assert [item["call_id"] for item in listed["callbacks"]] == [call_id]
    assert response.status == 202
    assert body["endpoint"] == "op2"
    ((name, fields),) = controller.ami.actions
    assert name == "Originate"
    assert fields["Channel"] == "PJSIP/op2"
    assert "SIGAP_CALLBACK_NUMBER=081234567890" in fields["Variable"]
    (attempt,) = await CallbackStore(controller.db).list_attempts(call_id)
    assert attempt.username == f"{role}-y"
    assert attempt.endpoint == "op2"
    assert attempt.outcome == "calling"


async def test_call_back_needs_endpoint(controller: FakeController) -> None:
    call_id = await abandoned_call(controller)
    client = await client_for(controller, "supervisor")
    try:
        response = await client.post(f"/api/callbacks/{call_id}", json={})
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 409
    assert body["error"]["code"] == "no_endpoint"
    assert "--endpoint" in body["error"]["message"]
    assert controller.ami.actions == []


async def test_call_back_rejects_invalid_number(controller: FakeController) -> None:
    call_id = await controller.store.upsert_call(
        "1733390000.2", caller_number="", caller_number_raw="0812&PJSIP/op3",
        outcome="abandoned_in_queue", arrived_at=NOW,
    )
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        response = await client.post(f"/api/callbacks/{call_id}", json={})
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 409
    assert body["error"]["code"] == "invalid_number"
    assert "0812&PJSIP/op3" in body["error"]["message"]
    assert controller.ami.actions == []


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [("answered", 409, "not_abandoned"), ("in_progress", 409, "not_abandoned")],
)
async def test_call_back_only_abandoned(
    controller: FakeController, outcome: str, status: int, code: str
) -> None:
    call_id = await controller.store.upsert_call(
        "1733390000.3", caller_number="+6281234567890", caller_number_raw="081234567890",
        outcome=outcome, arrived_at=NOW,
    )
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        response = await client.post(f"/api/callbacks/{call_id}", json={})
        body = await response.json()
    finally:
        await client.close()

    assert response.status == status
    assert body["error"]["code"] == code
    assert controller.ami.actions == []


async def test_call_back_twice_while_calling(controller: FakeController) -> None:
    call_id = await abandoned_call(controller)
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        first = await client.post(f"/api/callbacks/{call_id}", json={})
        second = await client.post(f"/api/callbacks/{call_id}", json={})
        body = await second.json()
    finally:
        await client.close()

    assert first.status == 202
    assert second.status == 409
    assert body["error"]["code"] == "callback_in_progress"
    assert len(controller.ami.actions) == 1


@pytest.mark.parametrize(("path", "status"), [
    ("/api/callbacks/abc", 400), ("/api/callbacks/99999999999", 400),
    ("/api/callbacks/42", 404),
])
async def test_call_back_bad_call_id(controller: FakeController, path: str,
                                     status: int) -> None:
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        response = await client.post(path, json={})
    finally:
        await client.close()

    assert response.status == status
    assert controller.ami.actions == []


async def test_callback_list_caps_caller_name(controller: FakeController) -> None:
    await controller.store.upsert_call(
        "1733390000.4", caller_number="+6281234567890", caller_number_raw="081234567890",
        caller_name="<img src=x>" + "y" * 100, outcome="abandoned_before_queue",
        arrived_at=NOW,
    )
    client = await client_for(controller, "operator", endpoint="op1")
    try:
        body = await (await client.get("/api/callbacks")).json()
    finally:
        await client.close()

    (item,) = body["callbacks"]
    assert item["caller_name"].startswith("<img src=x>")
    assert len(item["caller_name"]) == 64
    assert json.dumps(item)
