"""Diversion flags routing real calls: the dialplan reads what the controller published."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from sigap_pbx.store.diversions import DiversionStore
from tests.integration.stack import Stack, running_controller
from tests.integration.test_call_path import normalised


def caller_channel(stack: Stack, number: str) -> str:
    """Return the name of the trunk channel whose caller ID is `number`, or ''."""
    for line in stack.rx("core show channels concise").splitlines():
        fields = line.split("!")
        if len(fields) > 7 and fields[7] == number and fields[0].startswith("PJSIP/carrier"):
            return fields[0]
    return ""


def waiting_callers(stack: Stack) -> list[tuple[str, int]]:
    """Return (channel, prio) of the callers in the operators' queue, in queue order."""
    text = stack.rx("queue show operators")
    return [(channel, int(prio)) for channel, prio in
            re.findall(r"^\s+\d+\. (\S+) \(wait: [^,]+, prio: (-?\d+)\)", text, re.MULTILINE)]


async def channel_variable(controller, channel: str, name: str) -> str:
    reply = await controller.ami.action("Getvar", {"Channel": channel, "Variable": name})
    return reply.response.get("Value") or ""


async def test_flagged_callers_routed(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    pranked = caller_number
    warned = "0813" + caller_number[4:]
    plain = "0815" + caller_number[4:]
    # op2 rings but never answers, so the callers stay in the queue.
    await stack.start_phone("op2", ring_ms=600_000)
    stack.add_member("op2")

    async with running_controller(config) as controller:
        now = datetime.now(UTC)
        store = DiversionStore(controller.db)
        for number, action in ((pranked, "low_priority"), (warned, "warning")):
            await store.add(number=normalised(number), action=action,
                            reason="lima panggilan iseng", set_by="spv1", set_at=now,
                            until=now + timedelta(hours=1))
        await controller.diversions.publish()
        published = stack.rx("database show sigap/divert")
        assert f"/sigap/divert/{pranked}/low_priority" in published
        assert f"/sigap/divert/{warned}/warning" in published

        calls = [asyncio.ensure_future(stack.call(pranked, hold_ms=8000, timeout=40))]
        await Stack.wait_for(lambda: len(waiting_callers(stack)) == 1, 10, "first caller queued")
        calls.append(asyncio.ensure_future(stack.call(plain, hold_ms=8000, timeout=40)))
        calls.append(asyncio.ensure_future(stack.call(warned, hold_ms=8000, timeout=40)))
        await Stack.wait_for(lambda: len(waiting_callers(stack)) == 3, 10, "three callers queued")

        # The flagged caller came first but waits behind the two who came after.
        order = waiting_callers(stack)
        pranked_channel = caller_channel(stack, pranked)
        assert order[-1] == (pranked_channel, -1)
        assert [prio for _, prio in order[:2]] == [0, 0]

        warned_channel = caller_channel(stack, warned)
        plain_channel = caller_channel(stack, plain)
        assert await channel_variable(
            controller, warned_channel, "CHANNEL(musicclass)") == "sigap-wait-warning"
        assert await channel_variable(
            controller, plain_channel, "CHANNEL(musicclass)") == "sigap-wait"
        assert await channel_variable(
            controller, pranked_channel, "CHANNEL(musicclass)") == "sigap-wait"
        # If the queue returns early, the warned caller hears the warning to its end.
        assert int(await channel_variable(
            controller, warned_channel, "SIGAP_GREETING_SECONDS")) > int(
            await channel_variable(controller, plain_channel, "SIGAP_GREETING_SECONDS"))

        # Once lifted, the number is routed like any other.
        [flag] = await store.list_for([normalised(pranked)], in_force_at=now)
        await store.lift(flag.id, by="spv1", at=datetime.now(UTC))
        await controller.diversions.publish()
        assert f"/sigap/divert/{pranked}/" not in stack.rx("database show sigap/divert")
        for call in calls:
            result = await call
            assert result.ok, result.errors
