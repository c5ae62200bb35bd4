"""Operator actions through the API: validation, QueuePause and the audit log."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sigap_pbx.ami.client import AmiActionFailed, AmiError
from sigap_pbx.live import LiveView
from sigap_pbx.members.actions import OperatorActionError, OperatorActions
from sigap_pbx.web.app import errors_as_json
from sigap_pbx.wire.ami import AmiParser, Completion, Event, Response
from tests.web_auth import signed_in_client


def completion(message: str, ok: bool = True) -> Completion:
    response = Response(
        headers=(("Response", "Success" if ok else "Error"), ("ActionID", "1"),
                 ("Message", message))
    )
    return Completion(action_id="1", response=response)


def user_event(**headers: str) -> Event:
    lines = [("Event", "UserEvent"), *headers.items()]
    data = b"".join(f"{key}: {value}\r\n".encode() for key, value in lines)
    (event,) = AmiParser().feed(data + b"\r\n")
    assert isinstance(event, Event)
    return event


class FakeAmi:
    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.error: Exception | None = None

    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> Completion:
        self.actions.append((name, dict(fields or {})))
        if self.error is not None:
            raise self.error
        return completion("ok")


class FakeMembership:
    def __init__(self, result: str = "ok") -> None:
        self.calls: list[tuple[str, str, str, str]] = []
        self.result = result

    async def operator_action(self, endpoint: str, action: str, *, actor: str, source: str) -> str:
        self.calls.append((endpoint, action, actor, source))
        return self.result

    def desired_slots(self) -> set[tuple[str, str]]:
        return {("operators", "op1")}

    def snapshot(self) -> dict[str, Any]:
        return {"applied_shift": "2026-12-04/day"}


class Recorder:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str, dict[str, Any]]] = []

    async def __call__(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        self.entries.append((actor, action, subject, detail))


@pytest.fixture
def parts() -> tuple[FakeAmi, FakeMembership, Recorder, OperatorActions]:
    ami = FakeAmi()
    membership = FakeMembership()
    audit = Recorder()
    actions = OperatorActions(ami, membership, {"op1", "op2"}, audit=audit)
    return ami, membership, audit, actions


async def test_pause_sends_queuepause_all_queues(parts) -> None:
    ami, _, audit, actions = parts
    await actions.pause("op1", "prayer", "spv-budi")
    assert ami.actions == [
        ("QueuePause", {"Interface": "PJSIP/op1", "Paused": "true", "Reason": "prayer"})
    ]
    assert audit.entries == [
        ("spv-budi", "member.pause", "op1", {"source": "api", "reason": "prayer"})
    ]


async def test_unpause_sends_queuepause_false(parts) -> None:
    ami, _, audit, actions = parts
    await actions.unpause("op2", "api")
    assert ami.actions == [("QueuePause", {"Interface": "PJSIP/op2", "Paused": "false"})]
    assert audit.entries[0][1] == "member.unpause"


async def test_pause_rejects_unknown_reason(parts) -> None:
    ami, _, audit, actions = parts
    with pytest.raises(OperatorActionError, match="'nap' is invalid.*break") as caught:
        await actions.pause("op1", "nap", "api")
    assert caught.value.code == "invalid_reason"
    assert ami.actions == []
    assert audit.entries == []


async def test_unknown_endpoint_rejected(parts) -> None:
    _, membership, _, actions = parts
    with pytest.raises(OperatorActionError, match="'op9' is not an operator") as caught:
        await actions.login("op9", "api")
    assert caught.value.status == 404
    assert membership.calls == []


async def test_injection_in_endpoint_rejected(parts) -> None:
    ami, _, _, actions = parts
    with pytest.raises(OperatorActionError) as caught:
        await actions.pause("op1\r\nAction: Originate", "break", "api")
    assert caught.value.code == "invalid_endpoint"
    assert ami.actions == []


async def test_pause_of_non_member_is_409(parts) -> None:
    ami, _, _, actions = parts
    ami.error = AmiActionFailed("QueuePause", completion("Interface not found", ok=False))
    with pytest.raises(OperatorActionError, match="log it in first") as caught:
        await actions.pause("op1", "break", "api")
    assert caught.value.status == 409


async def test_pause_when_ami_down_is_503(parts) -> None:
    ami, _, _, actions = parts
    ami.error = AmiError("not connected")
    with pytest.raises(OperatorActionError) as caught:
        await actions.unpause("op1", "api")
    assert caught.value.status == 503


async def test_login_goes_through_membership(parts) -> None:
    _, membership, _, actions = parts
    await actions.login("op1", "spv-budi")
    await actions.logout("op2", "api")
    assert membership.calls == [
        ("op1", "login", "spv-budi", "api"),
        ("op2", "logout", "api", "api"),
    ]


async def test_failed_login_raises_503(parts) -> None:
    _, membership, _, actions = parts
    membership.result = "error"
    with pytest.raises(OperatorActionError) as caught:
        await actions.login("op1", "api")
    assert caught.value.status == 503


async def test_feature_code_pause_audited(parts) -> None:
    _, _, audit, actions = parts
    actions.on_event(user_event(UserEvent="SigapOperatorAction", Action="pause",
                                Endpoint="op1", Reason="toilet"))
    actions.on_event(user_event(UserEvent="SigapOperatorAction", Action="unpause",
                                Endpoint="op1"))
    actions.on_event(user_event(UserEvent="SomethingElse", Action="pause", Endpoint="op1"))
    await asyncio.sleep(0)
    assert audit.entries == [
        ("op1", "member.pause", "op1", {"source": "feature_code", "reason": "toilet"}),
        ("op1", "member.unpause", "op1", {"source": "feature_code"}),
    ]


@pytest.fixture
async def client(parts) -> TestClient:
    ami, membership, _, actions = parts
    live = LiveView()
    live.reset_from_status([])
    controller = SimpleNamespace(
        live=live,
        membership=membership,
        operator_actions=actions,
        config=SimpleNamespace(sip=SimpleNamespace(operators=[
            SimpleNamespace(endpoint="op1", name="Operator 1"),
            SimpleNamespace(endpoint="op2", name="Operator 2"),
        ])),
    )
    test_client = await signed_in_client(controller, "supervisor", username="spv-budi")
    yield test_client
    await test_client.close()


async def test_api_pause_with_reason(client, parts) -> None:
    ami, _, audit, _ = parts
    response = await client.post("/api/operators/op1/pause",
                                 json={"reason": "briefing", "actor": "spv-budi"})
    assert response.status == 200
    assert ami.actions[0][1]["Reason"] == "briefing"
    assert audit.entries[0][0] == "spv-budi"


async def test_api_pause_without_reason(client) -> None:
    response = await client.post("/api/operators/op1/pause", json={})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "missing_reason"


async def test_api_unknown_action(client) -> None:
    response = await client.post("/api/operators/op1/dance")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "unknown_action"


async def test_api_actor_header(client, parts) -> None:
    _, membership, _, _ = parts
    response = await client.post("/api/operators/op2/login",
                                 headers={"X-Sigap-Actor": "spv-budi"})
    assert response.status == 200
    assert membership.calls == [("op2", "login", "spv-budi", "api")]


async def test_api_actor_defaults_to_user(client, parts) -> None:
    _, membership, _, _ = parts
    response = await client.post("/api/operators/op2/logout")
    assert response.status == 200
    assert (await response.json())["actor"] == "spv-budi"
    assert membership.calls == [("op2", "logout", "spv-budi", "api")]


@pytest.mark.parametrize("claim", [
    {"json": {"actor": "x\ny"}},
    {"json": {"actor": "spv-ani"}},
    {"headers": {"X-Sigap-Actor": "spv-ani"}},
])
async def test_api_rejects_other_actor(client, parts, claim) -> None:
    _, membership, _, _ = parts
    response = await client.post("/api/operators/op2/login", **claim)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "actor_mismatch"
    assert membership.calls == []


async def test_api_operator_only_own_endpoint(parts) -> None:
    ami, _, audit, actions = parts
    controller = SimpleNamespace(operator_actions=actions)
    operator = await signed_in_client(controller, "operator", username="op1", endpoint="op1")
    try:
        own = await operator.post("/api/operators/op1/pause", json={"reason": "briefing"})
        other = await operator.post("/api/operators/op2/pause", json={"reason": "briefing"})
        other_error = (await other.json())["error"]
    finally:
        await operator.close()

    assert own.status == 200
    assert other.status == 403
    assert other_error["code"] == "forbidden"
    assert "'op2'" in other_error["message"]
    assert [fields["Interface"] for _, fields in ami.actions] == ["PJSIP/op1"]
    assert [entry[0] for entry in audit.entries] == ["op1"]


async def test_api_lists_operators(client) -> None:
    response = await client.get("/api/operators")
    body = await response.json()
    assert [o["endpoint"] for o in body["operators"]] == ["op1", "op2"]
    assert body["operators"][0]["rostered_queues"] == ["operators"]
    assert body["operators"][1]["rostered_queues"] == []
    assert body["pause_reasons"]["prayer"] == "sholat"


async def test_api_membership_snapshot(client) -> None:
    response = await client.get("/api/membership")
    assert (await response.json())["applied_shift"] == "2026-12-04/day"


async def test_api_errors_are_json() -> None:
    from sigap_pbx.web.app import ApiError

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    async def deep(request: web.Request) -> web.Response:
        await request.json()
        raise ApiError(400, "unexpected", "parsed")

    app = web.Application(middlewares=[errors_as_json])
    app.router.add_get("/crash", crash)
    app.router.add_post("/deep", deep)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/crash")
        assert response.status == 500
        assert (await response.json())["error"]["code"] == "internal_error"

        response = await client.post("/deep", data="[" * 100_000 + "]" * 100_000)
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_json"

        response = await client.post("/deep", data="x" * (2 * 1024 * 1024))
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "body_too_large"
