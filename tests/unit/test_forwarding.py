"""Forwarding: the checks before any AMI action, and the recorded attempts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from sigap_pbx.agencies.forwarding import (
    AgencyRoute,
    Forwarder,
    ForwardError,
    line_target,
)
from sigap_pbx.wire.ami import AmiParser, Completion, Event, Response
from sigap_pbx.wire.errors import DialStringError

FIRE = AgencyRoute(1, "damkar", "1", "Damkar", ("agency-fire-1", "00000101@carrier"))


def event(name: str, **headers: str) -> Event:
    data = b"".join(
        f"{key}: {value}\r\n".encode() for key, value in [("Event", name), *headers.items()]
    )
    (parsed,) = AmiParser().feed(data + b"\r\n")
    assert isinstance(parsed, Event)
    return parsed


class FakeAmi:
    def __init__(self, channels: list[Event] | None = None) -> None:
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.channels = channels or []

    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> Completion:
        self.actions.append((name, dict(fields or {})))
        response = Response(headers=(("Response", "Success"), ("ActionID", "1")))
        events = self.channels if name == "CoreShowChannels" else []
        return Completion(action_id="1", response=response, events=events)


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    async def insert_attempt(self, **fields: Any) -> int:
        attempt_id = len(self.rows) + 1
        self.rows[attempt_id] = dict(fields)
        return attempt_id

    async def finish_attempt(self, attempt_id: int, **fields: Any) -> None:
        self.rows[attempt_id].update(fields)


async def forwarder(ami: FakeAmi, store: MemoryStore | None = None) -> Forwarder:
    async def routes() -> list[AgencyRoute]:
        return [FIRE]

    result = Forwarder(ami, routes, store, clock=lambda: datetime(2026, 12, 4, tzinfo=UTC))
    await result.publish()
    return result


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("number", "112&PJSIP/x"),
        ("number", "0812\r\nAction: Originate"),
        ("number", "1,2"),
        ("endpoint", "agency-fire-1,x"),
        ("endpoint", "../etc"),
        ("trunk", "agency-fire-1"),
    ],
)
def test_line_target_rejects_injection(kind: str, target: str) -> None:
    with pytest.raises(DialStringError):
        line_target(kind, target, "carrier")


def test_line_target_forms() -> None:
    assert line_target("endpoint", "agency-fire-1", "carrier") == "agency-fire-1"
    assert line_target("number", "00000101", "carrier") == "00000101@carrier"


async def test_publish_writes_lines_in_order() -> None:
    ami = FakeAmi()
    await forwarder(ami)
    puts = [(f["Family"], f["Key"], f["Val"]) for name, f in ami.actions if name == "DBPut"]
    assert puts == [
        ("sigap/agency/1", "count", "2"),
        ("sigap/agency/1", "line1", "agency-fire-1"),
        ("sigap/agency/1", "line2", "00000101@carrier"),
    ]


@pytest.mark.parametrize("uniqueid", ["1796409216", "abc", "1796409216.0,x", "1.2\r\n"])
async def test_bad_uniqueid_sends_nothing(uniqueid: str) -> None:
    ami = FakeAmi()
    forward = await forwarder(ami)
    sent = len(ami.actions)
    with pytest.raises(ForwardError) as caught:
        await forward.transfer(uniqueid, "damkar", actor="op1")
    assert caught.value.code == "invalid_call"
    assert len(ami.actions) == sent


async def test_unknown_agency_is_404() -> None:
    forward = await forwarder(FakeAmi())
    with pytest.raises(ForwardError) as caught:
        await forward.transfer("1796409216.0", "polisi", actor="op1")
    assert caught.value.status == 404
    assert "damkar" in str(caught.value)


async def test_conference_needs_operator() -> None:
    ami = FakeAmi([event("CoreShowChannel", Channel="PJSIP/carrier-1", Uniqueid="1.0",
                         BridgeId="")])
    forward = await forwarder(ami)
    with pytest.raises(ForwardError) as caught:
        await forward.conference("1.0", "damkar", actor="op1")
    assert caught.value.code == "call_not_connected"


async def test_conference_redirects_both_and_originates() -> None:
    ami = FakeAmi([
        event("CoreShowChannel", Channel="PJSIP/carrier-1", Uniqueid="1.0", BridgeId="b1"),
        event("CoreShowChannel", Channel="PJSIP/op1-2", Uniqueid="1.1", BridgeId="b1"),
    ])
    forward = await forwarder(ami)
    await forward.conference("1.0", "1", actor="op1", report_id=7)
    names = [name for name, _ in ami.actions]
    assert names[-2:] == ["Redirect", "Originate"]
    redirect = ami.actions[-2][1]
    assert (redirect["Channel"], redirect["ExtraChannel"]) == ("PJSIP/carrier-1", "PJSIP/op1-2")
    originate = ami.actions[-1][1]
    assert originate["Data"] == "sigap-1-0,sigap-bridge,sigap-staff"
    assert "SIGAP_FWD_CODE=1" in originate["Variable"]
    assert "SIGAP_FWD_REPORT=7" in originate["Variable"]


async def test_attempt_and_result_recorded() -> None:
    store = MemoryStore()
    forward = await forwarder(FakeAmi(), store)
    common = {"UserEvent": "SigapForward", "Agency": "1", "Line": "1", "Mode": "transfer",
              "Call": "1.0", "Report": "", "Target": "agency-fire-1"}
    forward.on_event(event("UserEvent", Stage="attempt", **common))
    forward.on_event(event("UserEvent", Stage="result", DialStatus="ANSWER", Answered="42",
                           **common))
    for _ in range(20):
        await asyncio.sleep(0)
    (row,) = store.rows.values()
    assert row["agency_id"] == 1
    assert row["line_priority"] == 1
    assert row["result"] == "answered"
    assert row["seconds"] == 42.0


async def test_attempt_of_feature_code_gets_report() -> None:
    store = MemoryStore()
    ami = FakeAmi()

    async def routes() -> list[AgencyRoute]:
        return [FIRE]

    async def reports_for_call(uniqueid: str) -> list[int]:
        return [3, 5] if uniqueid == "1.0" else []

    forward = Forwarder(ami, routes, store, reports_for_call=reports_for_call)
    await forward.publish()
    forward.on_event(event("UserEvent", UserEvent="SigapForward", Stage="attempt", Agency="1",
                           Line="1", Mode="conference", Call="1.0", Report="",
                           Target="agency-fire-1"))
    for _ in range(20):
        await asyncio.sleep(0)
    (row,) = store.rows.values()
    assert row["report_id"] == 5
    assert row["call_uniqueid"] == "1.0"
