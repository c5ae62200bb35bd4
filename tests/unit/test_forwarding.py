"""Forwarding: the checks before any AMI action, and the recorded attempts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
from sigap_pbx.ami.client import AmiActionFailed
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


AGENCY_LEG = "PJSIP/agency-fire-1-00000003"


def consulting(*, agency_answered: bool) -> list[Event]:
    """Return the channels while the caller is on hold and op1's leg rings the
    agency, or talks to it."""
    channels = [
        event("CoreShowChannel", Channel=CALLER, Uniqueid="1.0", BridgeId="",
              Context="sigap-forward-hold", Application="MusicOnHold"),
        event("CoreShowChannel", Channel=OPERATOR, Uniqueid="1.1",
              BridgeId="b2" if agency_answered else "", Context="sigap-lib-dial-agency",
              Application="Dial"),
    ]
    if agency_answered:
        channels.append(event("CoreShowChannel", Channel=AGENCY_LEG, Uniqueid="1.3",
                              BridgeId="b2", Context="sigap-agency-line"))
    return channels


def redirects(ami: FakeAmi) -> list[dict[str, str]]:
    return [fields for name, fields in ami.actions if name == "Redirect"]


async def started_consult(states: list[tuple[str, str]]) -> tuple[FakeAmi, Forwarder]:
    ami = FakeAmi(connected_call())
    forward = await forwarder(ami, consult_states=states)
    await forward.consult("1.0", "damkar", actor="op1", report_id=7)
    ami.channels = consulting(agency_answered=False)
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


async def test_completion_keeps_caller_out_of_queue() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    ami.channels = consulting(agency_answered=True)
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


# --- Consult races: events that arrive between an action and its reply ------------


class RacingAmi(FakeAmi):
    """A FakeAmi that runs a hook before it answers a chosen action, as an AMI
    event read while the action's reply is on its way would, and can make
    chosen actions fail."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hooks: list[tuple[Callable[[str, dict[str, str]], bool], Callable[[], Any]]] = []
        self.failing: Callable[[str, dict[str, str]], bool] = lambda name, fields: False

    def before(self, match: Callable[[str, dict[str, str]], bool],
               hook: Callable[[], Any]) -> None:
        self.hooks.append((match, hook))

    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> Completion:
        fields = dict(fields or {})
        for match, hook in list(self.hooks):
            if match(name, fields):
                self.hooks.remove((match, hook))
                outcome = hook()
                if asyncio.iscoroutine(outcome):
                    await outcome
        await asyncio.sleep(0)
        result = await super().action(name, fields, timeout=timeout)
        if self.failing(name, fields):
            response = Response(headers=(("Response", "Error"), ("ActionID", "1"),
                                         ("Message", "Channel not found")))
            raise AmiActionFailed(name, Completion(action_id="1", response=response))
        return result


async def racing_consult(states: list[tuple[str, str]]) -> tuple[RacingAmi, Forwarder]:
    ami = RacingAmi(connected_call())
    forward = await forwarder(ami, consult_states=states)
    await forward.consult("1.0", "damkar", actor="op1", report_id=7)
    ami.channels = consulting(agency_answered=True)
    return ami, forward


async def settled(forward: Forwarder) -> None:
    for _ in range(3):
        await asyncio.sleep(0)
    await asyncio.gather(*forward._tasks, return_exceptions=True)


def hold_limit_event() -> Event:
    return event("UserEvent", UserEvent="SigapForward", Stage="requeue", Mode="consult",
                 Call="1.0")


async def test_hold_limit_ends_the_consult() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    forward.on_event(hold_limit_event())
    assert forward.consults == {}
    assert states[-1] == ("ended", "1.0")

    # op2 answers the caller from the queue; then op1's consult leg ends.
    ami.channels = [
        event("CoreShowChannel", Channel=CALLER, Uniqueid="1.0", BridgeId="b9",
              Context="sigap-emergency", Application="Queue"),
        event("CoreShowChannel", Channel="PJSIP/op2-00000009", Uniqueid="1.9", BridgeId="b9"),
    ]
    before = len(redirects(ami))
    forward.on_event(event("Hangup", Channel=OPERATOR, Uniqueid="1.1"))
    await settled(forward)
    assert redirects(ami)[before:] == []


async def test_requeue_skips_caller_no_longer_on_hold() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    # The hold limit's event is still on its way: the caller talks to op2 already.
    ami.channels = [
        event("CoreShowChannel", Channel=CALLER, Uniqueid="1.0", BridgeId="b9",
              Context="sigap-emergency", Application="Queue"),
    ]
    before = len(redirects(ami))
    forward.on_event(event("Hangup", Channel=OPERATOR, Uniqueid="1.1"))
    await settled(forward)
    assert redirects(ami)[before:] == []
    assert states[-1] == ("ended", "1.0")


async def test_complete_after_operator_hangup_is_refused() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await racing_consult(states)
    ami.before(lambda name, _: name == "CoreShowChannels",
               lambda: forward.on_event(event("Hangup", Channel=OPERATOR, Uniqueid="1.1")))
    before = len(redirects(ami))

    with pytest.raises(ForwardError) as caught:
        await forward.consult_complete("1.0", "transfer", actor="op1")
    await settled(forward)

    assert caught.value.code == "no_consult"
    contexts = [r["Context"] for r in redirects(ami)[before:] if r["Channel"] == CALLER]
    assert contexts == ["sigap-forward-hold"]
    assert states == [("started", "1.0"), ("ended", "1.0")]


async def test_failed_completion_puts_caller_back_on_hold() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await racing_consult(states)
    # The agency hangs up after the caller has been moved to the room.
    ami.failing = lambda name, fields: name == "Redirect" and fields["Channel"] == AGENCY_LEG
    before = len(redirects(ami))

    with pytest.raises(AmiActionFailed):
        await forward.consult_complete("1.0", "join", actor="op1")
    await settled(forward)

    moves = [(r["Channel"], r["Context"], r["Exten"]) for r in redirects(ami)[before:]]
    assert moves[0] == (CALLER, "sigap-forward-conf", "caller")
    assert moves[-1] == (CALLER, "sigap-forward-hold", "s")
    assert "1.0" in forward.consults
    assert not forward.consults["1.0"].completing
    assert "sigap-1-0" not in forward.conferences


async def test_failed_completion_requeues_caller_without_operator() -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await racing_consult(states)

    def agency_and_operator_gone(name: str, fields: dict[str, str]) -> bool:
        if name == "Redirect" and fields["Channel"] == AGENCY_LEG:
            ami.channels = [c for c in ami.channels if c.get("Channel") == CALLER]
            return True
        return False

    ami.failing = agency_and_operator_gone
    with pytest.raises(AmiActionFailed):
        await forward.consult_complete("1.0", "join", actor="op1")
    await settled(forward)

    last = redirects(ami)[-1]
    assert (last["Channel"], last["Context"], last["Exten"]) == (
        CALLER, "sigap-forward-hold", "requeue")
    assert forward.consults == {}
    assert states[-1] == ("ended", "1.0")


async def test_restore_skips_operator_hung_up_meanwhile() -> None:
    ami = RacingAmi(consulting(agency_answered=False), {
        (CALLER, "SIGAP_CONSULT_OPERATOR"): OPERATOR,
        (CALLER, "SIGAP_CONSULT_AGENCY"): "damkar",
    })
    states: list[tuple[str, str]] = []
    forward = await forwarder(ami, consult_states=states)
    ami.before(lambda name, _: name == "Getvar",
               lambda: forward.on_event(event("Hangup", Channel=OPERATOR, Uniqueid="1.1")))

    await forward.restore()

    assert forward.consults == {}
    assert ("started", "1.0") not in states


async def test_restore_keeps_consult_started_meanwhile() -> None:
    states: list[tuple[str, str]] = []
    ami = RacingAmi(connected_call())
    forward = await forwarder(ami, consult_states=states)
    # The whole consult runs while restore's CoreShowChannels is on its way, and
    # the snapshot then shows the caller still bridged with op1.
    ami.before(lambda name, _: name == "CoreShowChannels",
               lambda: forward.consult("1.0", "damkar", actor="op1"))

    await forward.restore()

    assert "1.0" in forward.consults
    assert states == [("started", "1.0")]


async def test_restore_carries_on_after_a_failed_requeue() -> None:
    ami = RacingAmi([
        event("CoreShowChannel", Channel="PJSIP/carrier-9", Uniqueid="5.0",
              Application="ConfBridge", ApplicationData="sigap-5-0,sigap-bridge,sigap-caller"),
        *consulting(agency_answered=False),
    ], {
        (CALLER, "SIGAP_CONSULT_OPERATOR"): OPERATOR,
        (CALLER, "SIGAP_CONSULT_AGENCY"): "damkar",
    })
    # The lone caller of room sigap-5-0 hangs up before the Redirect.
    ami.failing = lambda name, fields: (
        name == "Redirect" and fields["Channel"] == "PJSIP/carrier-9")
    forward = await forwarder(ami)

    await forward.restore()

    assert "1.0" in forward.consults


async def test_restore_keeps_consult_of_unstaffed_agency() -> None:
    unstaffed = AgencyRoute(1, "damkar", "1", "Damkar", ())

    async def routes() -> list[AgencyRoute]:
        return [unstaffed]

    ami = FakeAmi(consulting(agency_answered=True), {
        (CALLER, "SIGAP_CONSULT_OPERATOR"): OPERATOR,
        (CALLER, "SIGAP_CONSULT_AGENCY"): "damkar",
    })
    forward = Forwarder(ami, routes, None)
    await forward.publish()

    await forward.restore()
    result = await forward.consult_complete("1.0", "transfer", actor="op1")

    assert result["action"] == "transfer"


@pytest.mark.parametrize("mode", ["transfer", "conference", "consult"])
async def test_no_second_forward_during_consult(mode: str) -> None:
    states: list[tuple[str, str]] = []
    ami, forward = await started_consult(states)
    before = len(ami.actions)

    with pytest.raises(ForwardError) as caught:
        await getattr(forward, mode)("1.0", "damkar", actor="op1")

    assert caught.value.code == "consult_in_progress"
    assert caught.value.status == 409
    assert ami.actions[before:] == []
