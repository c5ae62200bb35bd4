"""Wrap-up and pause intervals against the real Asterisk."""

from __future__ import annotations

import re

from sigap_pbx.store import Database, MemberStore
from tests.integration.stack import Stack, running_controller


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
