"""The consult routes: who sees a consult in progress, and who may complete it."""

from __future__ import annotations

from types import SimpleNamespace

from sigap_pbx.agencies.forwarding import Forwarder
from tests.unit.test_forwarding import FakeAmi, connected_call, consulting, forwarder
from tests.web_auth import signed_in_client


async def controller_with_consult() -> tuple[SimpleNamespace, Forwarder]:
    """A controller whose op1 consults the fire agency about call 1.0."""
    forward = await forwarder(FakeAmi(connected_call()))
    await forward.consult("1.0", "damkar", actor="op1", report_id=7)
    controller = SimpleNamespace(forwarder=forward)
    return controller, forward


async def test_each_user_sees_the_consults_they_may_complete() -> None:
    controller, _ = await controller_with_consult()
    seen = {}
    for role, endpoint in (("operator", "op1"), ("operator", "op2"), ("supervisor", "spv1")):
        client = await signed_in_client(controller, role, endpoint=endpoint,
                                        username=f"{role}-{endpoint}")
        try:
            response = await client.get("/api/consults")
            assert response.status == 200
            seen[endpoint] = [(c["call"], c["agency"], c["operator"])
                              for c in (await response.json())["consults"]]
        finally:
            await client.close()

    assert seen == {"op1": [("1.0", "damkar", "op1")], "op2": [],
                    "spv1": [("1.0", "damkar", "op1")]}


async def test_another_operator_cannot_complete_the_consult() -> None:
    controller, forward = await controller_with_consult()
    client = await signed_in_client(controller, "operator", endpoint="op2", username="op2")
    try:
        response = await client.post("/api/calls/1.0/consult/join", json={})
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 403
    assert body["error"]["code"] == "forbidden"
    assert "1.0" in forward.consults


async def test_own_operator_reaches_the_agency_check() -> None:
    controller, forward = await controller_with_consult()
    client = await signed_in_client(controller, "operator", endpoint="op1", username="op1")
    try:
        forward.ami.channels = consulting(agency_answered=False)
        response = await client.post("/api/calls/1.0/consult/join", json={})
        body = await response.json()
    finally:
        await client.close()

    assert response.status == 409
    assert body["error"]["code"] == "agency_not_connected"
    assert "1.0" in forward.consults


async def test_consult_without_operator_phone_is_supervisors() -> None:
    controller, forward = await controller_with_consult()
    # The consulting channel is no operator's phone (a Local channel, say).
    forward.consults["1.0"].operator_channel = "Local/s@somewhere-00000001;1"
    forward.ami.channels = consulting(agency_answered=False)
    statuses = {}
    for role, endpoint in (("operator", "op1"), ("supervisor", "spv1")):
        client = await signed_in_client(controller, role, endpoint=endpoint,
                                        username=f"{role}-{endpoint}")
        try:
            listed = await (await client.get("/api/consults")).json()
            response = await client.post("/api/calls/1.0/consult/join", json={})
            statuses[role] = (len(listed["consults"]), response.status)
        finally:
            await client.close()

    # The supervisor gets past the ownership check to the agency check.
    assert statuses == {"operator": (0, 403), "supervisor": (1, 409)}
