"""Forwarding callers to agency lines against the real Asterisk, with SIPp agency phones."""

from __future__ import annotations

import asyncio
from typing import Any

from sigap_pbx.store.forwarding import ForwardStore
from tests.integration.stack import TRUNK_PORT, Stack, running_controller
from tests.integration.test_shifts import TestClock, controller_at

DIRECTORY = """
agencies:
  - code: damkar
    dial_code: "1"
    name: Damkar
    kind: fire
    lines:
      - {priority: 1, kind: endpoint, target: agency-fire-1}
      - {priority: 2, kind: endpoint, target: agency-fire-2}
"""


async def forwarder_for(controller: Any) -> Any:
    await controller.agencies.import_yaml(DIRECTORY, actor="test")
    await controller.publish_agency_lines()
    return controller.forwarder


async def answered_call(stack: Stack, controller: Any, caller_number: str, hold_ms: int):
    call = asyncio.create_task(stack.call(caller_number, hold_ms=hold_ms, timeout=90))
    await Stack.wait_for(
        lambda: any(c.answered_at for c in controller.tracker.calls.values()), 15,
        "call answered by op1",
    )
    live = next(c for c in controller.tracker.calls.values() if c.answered_at)
    return call, live.uniqueid


async def attempts(controller: Any, uniqueid: str) -> list[tuple[int | None, str]]:
    rows = await ForwardStore(controller.db).list_attempts(call_uniqueid=uniqueid)
    return [(row.line_priority, row.result) for row in rows]


async def test_transfer_reaches_first_line(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        forwarder = await forwarder_for(controller)
        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        await stack.start_phone("agency-fire-1", ring_ms=300)
        call, uniqueid = await answered_call(stack, controller, caller_number, 10000)

        await forwarder.transfer(uniqueid, "damkar", actor="op1")
        # The operator's leg ends and the caller talks to the agency line.
        await Stack.wait_for(
            lambda: "(in call)" not in stack.rx("queue show operators"), 10, "op1 free"
        )
        result = await call
        assert result.ok, result.errors
        await Stack.wait_for(
            lambda: attempts(controller, uniqueid), 10, "attempt recorded"
        )
        await Stack.wait_for(
            lambda: _done(attempts(controller, uniqueid), [(1, "answered")]), 10,
            "line 1 answered",
        )
        rows = await ForwardStore(controller.db).list_attempts(call_uniqueid=uniqueid)
        assert rows[0].mode == "transfer"
        assert rows[0].target == "agency-fire-1"
        assert rows[0].seconds is not None and rows[0].seconds > 2


async def _done(pending, expected) -> bool:
    return (await pending) == expected


async def test_backup_line_answers(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        forwarder = await forwarder_for(controller)
        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        await stack.start_phone("agency-fire-1", ring_ms=600_000)
        await stack.start_phone("agency-fire-2", ring_ms=300)
        call, uniqueid = await answered_call(stack, controller, caller_number, 16000)

        await forwarder.transfer(uniqueid, "damkar", actor="op1")
        result = await call
        assert result.ok, result.errors
        await Stack.wait_for(
            lambda: _done(attempts(controller, uniqueid), [(1, "no_answer"), (2, "answered")]),
            10, "line 1 no answer, line 2 answered",
        )


async def test_all_lines_fail_caller_requeued_first(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        forwarder = await forwarder_for(controller)
        joins: list[dict[str, str]] = []
        controller.ami.add_event_listener(
            lambda e: joins.append(e.as_dict()) if e.name == "QueueCallerJoin" else None
        )
        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        # No agency phone is registered: both lines fail at once.
        first, uniqueid = await answered_call(stack, controller, caller_number, 20000)
        # A second caller waits: op1 is busy with the first.
        second = asyncio.create_task(stack.call(caller_number + "9", hold_ms=4000, timeout=90))
        await Stack.wait_for(lambda: len(joins) >= 2, 10, "second caller queued")

        await forwarder.transfer(uniqueid, "damkar", actor="op1")
        await Stack.wait_for(
            lambda: any(j["Uniqueid"] == uniqueid for j in joins[2:]), 15,
            "first caller back in the queue",
        )
        back = next(j for j in joins[2:] if j["Uniqueid"] == uniqueid)
        # Ahead of the caller who was already waiting.
        assert back["Position"] == "1"
        assert (await first).ok
        assert (await second).ok
        assert await attempts(controller, uniqueid) == [(1, "failed"), (2, "failed")]


async def test_conference_operator_leaves(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        forwarder = await forwarder_for(controller)
        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        await stack.start_phone("agency-fire-1", ring_ms=300)
        call, uniqueid = await answered_call(stack, controller, caller_number, 15000)

        result = await forwarder.conference(uniqueid, "damkar", actor="op1")
        room = "sigap-" + uniqueid.replace(".", "-")
        await Stack.wait_for(
            lambda: stack.rx(f"confbridge list {room}").count("sigap-bridge") >= 3, 15,
            "caller, operator and agency in the conference",
        )
        listing = stack.rx(f"confbridge list {room}")
        assert "PJSIP/carrier" in listing
        assert "PJSIP/op1" in listing
        assert "Local/s@sigap-forward-agency" in listing
        assert result["mode"] == "conference"

        # The operator leaves; the caller and the agency stay together.
        stack.rx(f"channel request hangup {_op1(stack)}")
        await Stack.wait_for(
            lambda: "PJSIP/op1" not in stack.rx(f"confbridge list {room}"), 10, "op1 left"
        )
        listing = stack.rx(f"confbridge list {room}")
        assert "PJSIP/carrier" in listing
        assert "Local/s@sigap-forward-agency" in listing
        assert (await call).ok


def _op1(stack: Stack) -> str:
    for line in stack.rx("core show channels concise").splitlines():
        if line.startswith("PJSIP/op1-"):
            return line.split("!")[0]
    raise AssertionError("no op1 channel")


async def test_escalation_callout_acknowledged_by_dtmf(clean_stack: Stack, config):
    from datetime import UTC, datetime, timedelta

    stack = clean_stack
    clock = TestClock(datetime.now(UTC))
    async with controller_at(config, clock) as controller:
        await forwarder_for(controller)
        await stack.start_phone("agency-fire-1", presses_1=True)
        report = await controller.reports.create(
            {"category": "fire", "call_type": "emergency", "priority": 1,
             "location_text": "Jalan Gajah Mada 12", "description": "Asap dari ruko"},
            actor="op1",
        )
        await controller.reports.dispatch(report.id, ["damkar"], actor="op1")

        # Priority 1 must be acknowledged within 2 minutes; it was not.
        clock.now += timedelta(minutes=3)
        await controller.escalation.check()
        alarms = controller.alarms.snapshot()
        assert any(a["kind"] == "report_unacknowledged" for a in alarms)

        async def acknowledged() -> bool:
            dispatch = await controller.dispatches.find(report.id, "damkar")
            return dispatch.status == "acknowledged"

        await Stack.wait_for(acknowledged, 40, "report acknowledged by pressing 1")
        dispatch = await controller.dispatches.find(report.id, "damkar")
        assert dispatch.acknowledged_by == "phone:damkar"
        assert dispatch.escalations == 1
        rows = await ForwardStore(controller.db).list_attempts(report_id=report.id)
        assert [(row.mode, row.line_priority) for row in rows][:1] == [("escalation", 1)]


async def test_feature_code_starts_conference(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        await forwarder_for(controller)
        # op1 answers and presses *61: conference with the agency of dial code 1.
        await stack.start_phone("op1", keys="*61")
        stack.add_member("op1")
        await stack.start_phone("agency-fire-1", ring_ms=300)
        call, uniqueid = await answered_call(stack, controller, caller_number, 12000)
        room = "sigap-" + uniqueid.replace(".", "-")
        await Stack.wait_for(
            lambda: stack.rx(f"confbridge list {room}").count("sigap-bridge") >= 3, 15,
            "caller, operator and agency in the conference",
        )
        assert (await call).ok
        entries = await controller.rosters.audit_entries(subject=uniqueid)
        assert [(e.action, e.actor) for e in entries] == [("forward.conference", "op1")]


async def test_caller_keys_forward_nothing(clean_stack: Stack, config, caller_number):
    """The same keys pressed by the caller are ignored: only operators have them."""
    stack = clean_stack
    async with running_controller(config) as controller:
        await forwarder_for(controller)
        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        await stack.start_phone("agency-fire-1", ring_ms=300)
        requests: list[str] = []
        controller.ami.add_event_listener(
            lambda e: requests.append(e.get("Mode") or "")
            if e.name == "UserEvent" and e.get("UserEvent") == "SigapForwardRequest" else None
        )
        result = await stack.sipp(
            str(stack.caller_keys_scenario("*71")), "-s", "112", "-i", "127.0.0.2",
            "-m", "1", "-key", "caller", caller_number, "-key", "caller_name", "Warga",
            f"127.0.0.1:{TRUNK_PORT}", timeout=60,
        )
        assert result.ok, result.errors
        assert requests == []
        assert "agency-fire-1" not in stack.rx("core show channels")


async def test_consult_then_join(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        forwarder = await forwarder_for(controller)
        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        await stack.start_phone("agency-fire-1", ring_ms=300)
        call, uniqueid = await answered_call(stack, controller, caller_number, 16000)

        await forwarder.consult(uniqueid, "damkar", actor="op1")
        # The caller holds while op1 talks to the agency line.
        await Stack.wait_for(
            lambda: "sigap-forward-hold" in stack.rx("core show channels verbose"), 10,
            "caller on hold",
        )
        await Stack.wait_for(
            lambda: _done(attempts(controller, uniqueid), [(1, "ringing")]), 10,
            "agency line answered the consult",
        )
        await asyncio.sleep(1)
        result = await forwarder.consult_complete(uniqueid, "join", actor="op1")
        room = result["room"]
        await Stack.wait_for(
            lambda: stack.rx(f"confbridge list {room}").count("sigap-bridge") >= 3, 10,
            "caller, operator and agency in the conference",
        )
        listing = stack.rx(f"confbridge list {room}")
        assert "PJSIP/carrier" in listing
        assert "PJSIP/op1" in listing
        assert "PJSIP/agency-fire-1" in listing
        assert (await call).ok


async def test_consult_survives_controller_restart(clean_stack: Stack, config, caller_number):
    """A consult started before a controller restart is completed after it: the
    new controller reads it back from the caller's channel."""
    stack = clean_stack
    await stack.start_phone("op1", ring_ms=300)
    stack.add_member("op1")
    await stack.start_phone("agency-fire-1", ring_ms=300)
    async with running_controller(config) as controller:
        forwarder = await forwarder_for(controller)
        call, uniqueid = await answered_call(stack, controller, caller_number, 25000)
        await forwarder.consult(uniqueid, "damkar", actor="op1", report_id=None)
        await Stack.wait_for(
            lambda: _done(attempts(controller, uniqueid), [(1, "ringing")]), 10,
            "agency line answered the consult",
        )

    async with running_controller(config) as controller:
        forwarder = controller.forwarder
        await Stack.wait_for(lambda: uniqueid in forwarder.consults, 10, "consult restored")
        consult = forwarder.consults[uniqueid]
        assert consult.route.code == "damkar"
        assert consult.operator_endpoint == "op1"
        await Stack.wait_for(
            lambda: forwarder._bridged_peer(consult.operator_channel), 10,
            "agency line talking to op1",
        )
        result = await forwarder.consult_complete(uniqueid, "join", actor="op1")
        room = result["room"]
        await Stack.wait_for(
            lambda: stack.rx(f"confbridge list {room}").count("sigap-bridge") >= 3, 10,
            "caller, operator and agency in the conference",
        )
        assert (await call).ok


async def test_unanswered_consult_sends_caller_back_at_once(
    clean_stack: Stack, config, caller_number
):
    """No agency line is registered: the operator hears that no line answered and
    the consult leg ends. The caller goes back to the queue then, not after the
    120 s hold limit, and op1 answers again."""
    stack = clean_stack
    async with running_controller(config) as controller:
        forwarder = await forwarder_for(controller)
        requeued: list[str] = []
        controller.ami.add_event_listener(
            lambda e: requeued.append(e.get("Call") or "")
            if e.name == "UserEvent" and e.get("UserEvent") == "SigapForward"
            and e.get("Stage") == "requeue" else None
        )
        states: list[str] = []
        forwarder.on_consult = lambda state, consult: states.append(state)
        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        call, uniqueid = await answered_call(stack, controller, caller_number, 20000)
        await forwarder.consult(uniqueid, "damkar", actor="op1")
        await Stack.wait_for(lambda: uniqueid in requeued, 20, "caller sent back to the queue")
        assert states == ["started", "ended"]
        assert forwarder.consults == {}
        # The caller is answered again from the queue while still on the line.
        await Stack.wait_for(
            lambda: "sigap-forward-hold" not in stack.rx("core show channels verbose")
            and "(in call)" in stack.rx("queue show operators"), 20, "op1 answers again",
        )
        assert not call.done()
        assert (await call).ok


async def test_hold_limit_caller_left_with_new_operator(
    clean_stack: Stack, config, caller_number
):
    """The hold limit sends the caller back to the queue while op1's consult leg
    still rings the agency, and op2 answers. When op1's leg ends, the caller stays
    with op2."""
    stack = clean_stack
    # Shorter than the rendered minimum, so the hold limit comes before op1's leg
    # ends (line 1 rings 5 s and never answers, then the "no answer" prompt plays).
    stack.rx("dialplan set global SIGAP_HOLD_LIMIT 3")
    async with running_controller(config) as controller:
        forwarder = await forwarder_for(controller)
        joins: list[str] = []
        controller.ami.add_event_listener(
            lambda e: joins.append(e.get("Uniqueid") or "")
            if e.name == "QueueCallerJoin" else None
        )
        reasons: list[str] = []
        forwarder.on_consult = lambda state, consult: reasons.append(
            f"{state}:{consult.end_reason}")
        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        await stack.start_phone("agency-fire-1", ring_ms=600_000)
        call, uniqueid = await answered_call(stack, controller, caller_number, 25000)
        await stack.start_phone("op2", ring_ms=300)
        stack.add_member("op2")

        await forwarder.consult(uniqueid, "damkar", actor="op1")
        await Stack.wait_for(lambda: joins.count(uniqueid) == 2, 15, "caller back in the queue")
        await Stack.wait_for(lambda: uniqueid not in forwarder.consults, 5, "consult ended")
        assert reasons == ["started:", "ended:requeued"]
        await Stack.wait_for(
            lambda: "PJSIP/op1" not in stack.rx("core show channels concise"), 30,
            "op1's consult leg ended",
        )
        await asyncio.sleep(2)
        assert joins.count(uniqueid) == 2
        assert "PJSIP/op2" in stack.rx("core show channels concise")
        assert (await call).ok
