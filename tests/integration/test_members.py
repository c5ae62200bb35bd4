"""Wrap-up and pause intervals against the real Asterisk."""

from __future__ import annotations

import asyncio
import re
import signal

from sigap_pbx.store import Database, MemberStore
from tests.integration.stack import Stack, running_controller
from tests.integration.test_call_path import wait_for_final


def paused_reasons(stack: Stack, queue: str) -> list[str]:
    return re.findall(r"\(paused:([^ )]*)", stack.rx(f"queue show {queue}"))


async def test_wrapup_pauses_operator_in_every_queue(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    config = config.model_copy(
        update={"queue": config.queue.model_copy(update={"wrapup_seconds": 4})}
    )
    async with running_controller(config) as controller:
        await stack.start_phone("op1")
        stack.add_member("op1")
        stack.add_member("op1", queue="operators-backup")
        result = await stack.call(caller_number, hold_ms=2000)
        assert result.ok, result.errors

        # Right after the call, op1 is paused for wrap-up in both queues.
        await Stack.wait_for(
            lambda: paused_reasons(stack, "operators") == ["wrapup"]
            and paused_reasons(stack, "operators-backup") == ["wrapup"],
            5, "op1 paused for wrap-up in both queues",
        )
        # A second caller meanwhile is not offered to op1 (no wrap-up violation).
        second = await stack.call(caller_number, hold_ms=1000)
        assert second.ok, second.errors
        assert controller.wrapup.alerts_total == 0

        await Stack.wait_for(
            lambda: paused_reasons(stack, "operators") == []
            and paused_reasons(stack, "operators-backup") == [],
            10, "op1 unpaused after wrap-up",
        )
        await controller.pauses.flush()

    db = await Database.open(config.database_url)
    try:
        pauses = await MemberStore(db).list_pauses(interface="PJSIP/op1")
    finally:
        await db.close()
    wrapups = [p for p in pauses if p.reason == "wrapup"]
    assert sorted(p.queue for p in wrapups) == ["operators", "operators-backup"]
    for pause in wrapups:
        assert pause.ended_at is not None
        assert 3 <= pause.seconds <= 8, pause


async def test_wrapup_lifted_when_controller_dies(clean_stack: Stack, config, caller_number):
    """The dialplan lifts an expired wrap-up pause that a dead controller left behind."""
    stack = clean_stack
    proc = await stack.start_controller_process(
        config.database_url, {"SIGAP_QUEUE__WRAPUP_SECONDS": "3"}
    )
    await stack.start_phone("op1")
    stack.add_member("op1")
    first = await stack.call(caller_number, hold_ms=2000)
    assert first.ok, first.errors
    await Stack.wait_for(
        lambda: paused_reasons(stack, "operators") == ["wrapup"], 5, "op1 in wrap-up"
    )
    await stack.kill(proc, signal.SIGKILL)
    assert "sigap/wrapup/op1" in stack.rx("database show sigap/wrapup")

    # Past the wrap-up's end, the next caller still reaches op1.
    await asyncio.sleep(4)
    second = await stack.call(caller_number, hold_ms=2000)
    assert second.ok, second.errors
    assert paused_reasons(stack, "operators") == []
    assert "sigap/wrapup/op1" not in stack.rx("database show sigap/wrapup")

    async with running_controller(config):
        calls = await wait_for_final(config, caller_number, count=2)
    assert sorted(call.outcome for call in calls) == ["answered", "answered"]
    assert {call.operator for call in calls} == {"op1"}
