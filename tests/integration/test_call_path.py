"""112 calls through the real Asterisk, with SIPp as the carrier and the phones."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from sigap_pbx.asterisk.prompts import prompt_seconds
from sigap_pbx.store import CallStore, Database
from tests.integration.stack import (
    REPO,
    TRUNK_PORT,
    Stack,
    api_session,
    running_controller,
)


async def calls_from(config, number: str) -> list:
    db = await Database.open(config.database_url)
    try:
        store = CallStore(db)
        views = await store.list_calls(limit=500, number=number)
        return [await store.get_call(view.id) for view in views]
    finally:
        await db.close()


def normalised(raw: str) -> str:
    return "+62" + raw[1:]


async def wait_for_final(config, number: str, count: int = 1, timeout: float = 20) -> list:
    found: list = []

    async def done() -> bool:
        nonlocal found
        found = await calls_from(config, normalised(number))
        # "overflowed" is set when the chain starts, so a call is final only once the
        # caller's channel has ended.
        return len(found) >= count and all(
            c.outcome != "in_progress" and c.ended_at is not None for c in found
        )

    await Stack.wait_for(done, timeout, f"{count} final call record(s) from {number}")
    return found


async def test_call_answered_by_operator(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        await stack.start_phone("op1")
        login = await stack.dial_feature("op1", "*11")
        assert login.ok, login.errors
        assert stack.queue_members() == ["PJSIP/op1"]

        result = await stack.call(caller_number, hold_ms=2000, name="Warga <b>Satu</b>")
        assert result.ok, result.errors
        await controller.tracker.flush()
        [call] = await wait_for_final(config, caller_number)

        assert call.outcome == "answered"
        assert call.operator == "op1"
        assert call.operator_interface == "PJSIP/op1"
        assert call.caller_number_raw == caller_number
        assert call.caller_name == "Warga <b>Satu</b>"
        assert call.trunk == "carrier"
        assert call.dialled_number == "112"
        assert call.queue == "operators"
        assert call.reconciled is False
        times = (call.arrived_at, call.queued_at, call.answered_at, call.ended_at)
        assert None not in times, call
        assert times == tuple(sorted(times)), times
        assert call.wait_seconds == pytest.approx(
            (call.answered_at - call.arrived_at).total_seconds(), abs=0.01
        )
        # The caller stays 2 s after Asterisk answers; the operator answers 1 s into it.
        assert call.talk_seconds == pytest.approx(
            (call.ended_at - call.answered_at).total_seconds(), abs=0.01
        )
        assert call.talk_seconds > 0.5
        assert call.hangup_cause == 16
        assert [leg.outcome for leg in call.legs] == ["answered"]
        kinds = [event.kind for event in call.events]
        for kind in ("Newchannel", "QueueCallerJoin", "AgentCalled", "AgentConnect", "Hangup"):
            assert kinds.count(kind) >= 1, f"{kind} missing from {kinds}"

        async with api_session(controller, "supervisor") as http:
            url = f"http://127.0.0.1:{controller.web_port}/api/calls"
            async with http.get(url, params={"number": normalised(caller_number)}) as resp:
                assert resp.status == 200
                body = await resp.json()
    assert body["total"] == 1
    assert body["calls"][0]["uniqueid"] == call.uniqueid
    assert body["calls"][0]["outcome"] == "answered"

    listing = subprocess.run(
        [sys.executable, "-m", "sigap_pbx.cli", "calls", "--json", "--number",
         normalised(caller_number)],
        capture_output=True, text=True, cwd=REPO,
        env={**stack.environ, "SIGAP_DATABASE__URL": config.database_url, "PATH": "/usr/bin:/bin"},
    )
    assert listing.returncode == 0, listing.stderr
    assert [row["uniqueid"] for row in json.loads(listing.stdout)] == [call.uniqueid]


async def test_caller_abandons_while_queued(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        # A phone that rings but is never picked up keeps the caller in the queue.
        await stack.start_phone("op1", ring_ms=600000)
        stack.add_member("op1")
        result = await stack.call(caller_number, hold_ms=3000)
        assert result.ok, result.errors
        await controller.tracker.flush()
        [call] = await wait_for_final(config, caller_number)

    assert call.outcome == "abandoned_in_queue"
    assert call.answered_at is None
    assert call.operator is None
    assert 2.5 < call.wait_seconds < 6
    assert [leg.outcome for leg in call.legs] == ["cancelled"]
    assert "QueueCallerAbandon" in [event.kind for event in call.events]


# A caller on the overflow chain stays this long after the answer. The chain reaches
# a stage 3 s in (the greeting ends first) and the phone rings 1 s, so this leaves
# several seconds for a loaded CI machine: a caller who hung up first would leave the
# stage unanswered, and the test would fail for the machine's speed.
OVERFLOW_HOLD_MS = 10_000

async def test_backup_group_answers_when_queue_empty(
    clean_stack: Stack, config, caller_number
):
    stack = clean_stack
    async with running_controller(config) as controller:
        # The controller has written the route keys, so the dialplan reads the backup
        # queue's name from AstDB, through its character filter.
        assert "operators-backup" in stack.rx("database get sigap/route backup_queue")
        await stack.start_phone("op2")
        stack.add_member("op2", queue="operators-backup")
        result = await stack.call(caller_number, hold_ms=OVERFLOW_HOLD_MS)
        assert result.ok, result.errors
        await controller.tracker.flush()
        [call] = await wait_for_final(config, caller_number)

    assert call.outcome == "overflowed"
    assert call.overflow_stage == "backup"
    assert call.answered_by == "op2"
    assert call.operator == "op2"
    assert [leg.outcome for leg in call.legs] == ["answered"]
    assert call.legs[0].queue == "operators-backup"


async def test_nobody_logged_in_supervisor_answers(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        await stack.start_phone("spv1")
        result = await stack.call(caller_number, hold_ms=OVERFLOW_HOLD_MS)
        assert result.ok, result.errors
        await controller.tracker.flush()
        [call] = await wait_for_final(config, caller_number)

    assert call.outcome == "overflowed"
    assert call.overflow_stage == "supervisor"
    assert call.answered_by == "spv1"
    assert call.answered_at is not None
    assert call.operator is None


async def test_nobody_answers_oncall_line_takes_call(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        await stack.start_phone("oncall1")
        result = await stack.call(caller_number, hold_ms=OVERFLOW_HOLD_MS)
        assert result.ok, result.errors
        await controller.tracker.flush()
        [call] = await wait_for_final(config, caller_number)

    assert call.outcome == "overflowed", [(e.kind, e.data.get("Stage")) for e in call.events]
    assert call.overflow_stage == "oncall", [(e.kind, e.data.get("Stage")) for e in call.events]
    assert call.answered_by == "oncall1"


async def test_caller_never_dropped_when_chain_empty(clean_stack: Stack, config, caller_number):
    """With no phone anywhere, the caller stays on the line until hanging up."""
    stack = clean_stack
    async with running_controller(config) as controller:
        result = await stack.call(caller_number, hold_ms=8000)
        # The caller hangs up after 8 s; SIPp fails the call if Asterisk hung up first.
        assert result.ok, result.errors
        await controller.tracker.flush()
        [call] = await wait_for_final(config, caller_number)
    assert call.outcome == "overflowed"
    assert call.wait_seconds is not None, call
    assert call.wait_seconds > 7.5


def calls_processed(stack: Stack) -> int:
    text = stack.rx("core show channels count")
    return int(re.search(r"(\d+) calls? processed", text).group(1))


async def test_trunk_call_to_other_number_rejected(clean_stack: Stack, config):
    stack = clean_stack
    before = calls_processed(stack)
    for number in ("0811", "1120", "*11", "11", "113", "s", "h"):
        result = await stack.sipp(
            str(REPO / "scripts/sipp/caller-rejected.xml"), "-s", number, "-i", "127.0.0.2",
            "-m", "1", f"127.0.0.1:{TRUNK_PORT}",
        )
        assert result.ok, f"{number}: {result.errors}"
    # A rejected INVITE never becomes a channel, so no outbound leg can exist.
    assert calls_processed(stack) == before


async def test_unidentified_source_cannot_call(clean_stack: Stack):
    """A request from an address that is not the carrier's is challenged, not routed."""
    before = calls_processed(clean_stack)
    stranger = await clean_stack.sipp(
        str(REPO / "scripts/sipp/caller-rejected.xml"), "-s", "112", "-i", "127.0.0.3",
        "-m", "1", f"127.0.0.1:{TRUNK_PORT}", timeout=20,
    )
    assert not stranger.ok
    assert "401" in stranger.errors, stranger.errors
    assert calls_processed(clean_stack) == before


async def test_fifty_calls_each_recorded_once(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        for endpoint in ("op1", "op2"):
            await stack.start_phone(endpoint, ring_ms=300)
            stack.add_member(endpoint)
        result = await stack.call(caller_number, hold_ms=1000, calls=50, rate=5, timeout=180)
        assert result.ok, result.errors[-2000:]
        await controller.tracker.flush(timeout=30)
        calls = await wait_for_final(config, caller_number, count=50, timeout=60)

    assert len(calls) == 50
    assert len({call.uniqueid for call in calls}) == 50
    outcomes = {call.outcome for call in calls}
    assert outcomes <= {"answered", "abandoned_in_queue", "overflowed"}, outcomes
    for call in calls:
        caller_starts = [
            e for e in call.events
            if e.kind == "Newchannel" and e.data["Uniqueid"] == call.uniqueid
        ]
        assert len(caller_starts) == 1
        assert call.reconciled is False
        answered_legs = [leg for leg in call.legs if leg.outcome == "answered"]
        assert len(answered_legs) == (1 if call.outcome == "answered" else 0)


async def test_operators_ring_during_greeting(clean_stack: Stack, config, caller_number):
    """The queue rings the operator while the greeting still plays, not after it."""
    stack = clean_stack
    async with running_controller(config) as controller:
        await stack.start_phone("op1")
        stack.add_member("op1")
        result = await stack.call(caller_number, hold_ms=1000)
        assert result.ok, result.errors
        await controller.tracker.flush()
        [call] = await wait_for_final(config, caller_number)
    [leg] = call.legs
    greeting = prompt_seconds(config.prompts_dir / "greeting.wav")
    assert (leg.called_at - call.arrived_at).total_seconds() < greeting
