"""Forwarding: the checks before any AMI action, and the recorded attempts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from sigap_pbx.agencies.forwarding import (
    AgencyRoute,
    Consult,
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
    def __init__(
        self, channels: list[Event] | None = None,
        variables: dict[tuple[str, str], str] | None = None,
    ) -> None:
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.channels = channels or []
        # (channel, variable) -> value, for Getvar.
        self.variables = variables or {}

    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> Completion:
        fields = dict(fields or {})
        self.actions.append((name, fields))
        headers: tuple[tuple[str, str], ...] = (("Response", "Success"), ("ActionID", "1"))
        if name == "Getvar":
            value = self.variables.get((fields["Channel"], fields["Variable"]), "")
            headers += (("Variable", fields["Variable"]), ("Value", value))
        response = Response(headers=headers)
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


async def forwarder(
    ami: FakeAmi, store: MemoryStore | None = None,
    consult_states: list[tuple[str, str]] | None = None,
) -> Forwarder:
    async def routes() -> list[AgencyRoute]:
        return [FIRE]

    def on_consult(state: str, consult: Consult) -> None:
        if consult_states is not None:
            consult_states.append((state, consult.call_uniqueid))

    result = Forwarder(ami, routes, store, clock=lambda: datetime(2026, 12, 4, tzinfo=UTC),
                       on_consult=on_consult)
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


# --- Consults ---------------------------------------------------------------------

CALLER = "PJSIP/carrier-00000001"
OPERATOR = "PJSIP/op1-00000002"


def connected_call() -> list[Event]:
    return [
        event("CoreShowChannel", Channel=CALLER, Uniqueid="1.0", BridgeId="b1",
              CallerIDNum="0812 3456<b>"),
        event("CoreShowChannel", Channel=OPERATOR, Uniqueid="1.1", BridgeId="b1"),
    ]


def redirects(ami: FakeAmi) -> list[dict[str, str]]:
    return [fields for name, fields in ami.actions if name == "Redirect"]


async def started_consult(states: list[tuple[str, str]]) -> tuple[FakeAmi, Forwarder]:
    ami = FakeAmi(connected_call())
    forward = await forwarder(ami, consult_states=states)
    await forward.consult("1.0", "damkar", actor="op1", report_id=7)
    return ami, forward


async def test_consult_marks_the_caller_and_tells_the_console() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    setvars = {(f["Channel"], f["Variable"]): f["Value"]
               for name, f in ami.actions if name == "Setvar"}
    assert setvars[(CALLER, "SIGAP_CONSULT_OPERATOR")] == OPERATOR
    assert setvars[(CALLER, "SIGAP_CONSULT_AGENCY")] == "damkar"
    assert setvars[(CALLER, "SIGAP_CONSULT_REPORT")] == "7"
    assert states == [("started", "1.0")]
    assert [c.call_uniqueid for c in forward.consults_for("op1")] == ["1.0"]
    assert forward.consults_for("op2") == []
    assert forward.consults_for(None)[0].to_dict() == {
        "call": "1.0", "agency": "damkar", "agency_name": "Damkar", "operator": "op1",
        "report_id": 7, "caller_number": "08123456",
    }


async def test_operator_leg_ending_requeues_the_caller_at_once() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    before = len(redirects(ami))
    forward.on_event(event("Hangup", Channel=OPERATOR, Uniqueid="1.1"))
    await asyncio.sleep(0)
    await asyncio.gather(*forward._tasks)
    [requeue] = redirects(ami)[before:]
    assert requeue == {"Channel": CALLER, "Context": "sigap-forward-hold",
                       "Exten": "requeue", "Priority": "1"}
    assert forward.consults == {}
    assert states[-1] == ("ended", "1.0")


async def test_caller_leaving_ends_the_consult_without_redirect() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    before = len(redirects(ami))
    forward.on_event(event("Hangup", Channel=CALLER, Uniqueid="1.0"))
    await asyncio.sleep(0)
    assert redirects(ami)[before:] == []
    assert forward.consults == {}
    assert states[-1] == ("ended", "1.0")


async def test_completing_consult_keeps_the_caller_when_operator_leg_ends() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    # The agency line answered: it is bridged with the operator's consult leg.
    ami.channels = [
        event("CoreShowChannel", Channel=CALLER, Uniqueid="1.0", BridgeId=""),
        event("CoreShowChannel", Channel=OPERATOR, Uniqueid="1.1", BridgeId="b2"),
        event("CoreShowChannel", Channel="PJSIP/agency-fire-1-3", Uniqueid="1.3",
              BridgeId="b2"),
    ]
    result = await forward.consult_complete("1.0", "transfer", actor="op1")
    assert result["action"] == "transfer"
    forward.on_event(event("Hangup", Channel=OPERATOR, Uniqueid="1.1"))
    await asyncio.sleep(0)
    targets = [(r["Channel"], r["Context"]) for r in redirects(ami)]
    assert (CALLER, "sigap-forward-hold") not in targets[1:]
    assert (CALLER, "sigap-forward-conf") in targets
    assert states == [("started", "1.0"), ("completed", "1.0")]
    with pytest.raises(ForwardError) as caught:
        await forward.consult_complete("1.0", "join", actor="op1")
    assert caught.value.code == "no_consult"


async def test_consult_of_another_operator_call_is_not_listed() -> None:
    states: list[tuple[str, str]] = []
    _, forward = await started_consult(states)
    assert forward.consults_for("op9") == []


async def test_restore_rebuilds_consult_from_the_held_caller() -> None:
    held = event("CoreShowChannel", Channel=CALLER, Uniqueid="1.0",
                 Context="sigap-forward-hold", Application="MusicOnHold",
                 CallerIDNum="+6281234")
    leg = event("CoreShowChannel", Channel=OPERATOR, Uniqueid="1.1",
                Context="sigap-lib-dial-agency", Application="Dial")
    ami = FakeAmi([held, leg], {
        (CALLER, "SIGAP_CONSULT_OPERATOR"): OPERATOR,
        (CALLER, "SIGAP_CONSULT_AGENCY"): "damkar",
        (CALLER, "SIGAP_CONSULT_REPORT"): "7",
    })
    states: list[tuple[str, str]] = []
    forward = await forwarder(ami, consult_states=states)
    await forward.restore()
    consult = forward.consults["1.0"]
    assert (consult.caller_channel, consult.operator_channel) == (CALLER, OPERATOR)
    assert (consult.route.code, consult.report_id) == ("damkar", 7)
    assert consult.caller_number == "+6281234"
    assert states == [("started", "1.0")]
    assert redirects(ami) == []


async def test_restore_requeues_caller_whose_operator_leg_is_gone() -> None:
    held = event("CoreShowChannel", Channel=CALLER, Uniqueid="1.0",
                 Context="sigap-forward-hold", Application="MusicOnHold")
    ami = FakeAmi([held], {
        (CALLER, "SIGAP_CONSULT_OPERATOR"): OPERATOR,
        (CALLER, "SIGAP_CONSULT_AGENCY"): "damkar",
    })
    forward = await forwarder(ami)
    await forward.restore()
    assert forward.consults == {}
    assert redirects(ami) == [{"Channel": CALLER, "Context": "sigap-forward-hold",
                               "Exten": "requeue", "Priority": "1"}]


async def test_restore_drops_consults_asterisk_no_longer_has() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    ami.channels = []
    await forward.restore()
    assert forward.consults == {}
    assert states[-1] == ("ended", "1.0")


async def test_restore_rebuilds_conference_and_requeues_a_lone_caller() -> None:
    ami = FakeAmi([
        event("CoreShowChannel", Channel=CALLER, Uniqueid="1.0", Application="ConfBridge",
              ApplicationData="sigap-1-0,sigap-bridge,sigap-caller"),
        event("CoreShowChannel", Channel="PJSIP/carrier-9", Uniqueid="5.0",
              Application="ConfBridge", ApplicationData="sigap-5-0,sigap-bridge,sigap-caller"),
        event("CoreShowChannel", Channel="Local/s@sigap-forward-agency-1;1", Uniqueid="5.2",
              Application="ConfBridge", ApplicationData="sigap-5-0,sigap-bridge,sigap-staff"),
        # Not a Sigap room: left alone.
        event("CoreShowChannel", Channel="PJSIP/op2-4", Uniqueid="6.0",
              Application="ConfBridge", ApplicationData="other,default_bridge"),
    ])
    forward = await forwarder(ami)
    await forward.restore()
    assert redirects(ami) == [{"Channel": CALLER, "Context": "sigap-forward-conf",
                               "Exten": "requeue", "Priority": "1"}]
    room = forward.conferences["sigap-5-0"]
    assert (room.call_uniqueid, room.members, room.agency_joined) == (
        "5.0", {"5.0", "5.2"}, True)
    assert "sigap-1-0" not in forward.conferences
