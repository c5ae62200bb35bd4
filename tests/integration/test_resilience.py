"""A dead, frozen or disconnected controller never costs a call or a call record."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3

from sigap_pbx.store import CallStore, Database
from tests.integration.stack import REPO, Stack, running_controller
from tests.integration.test_call_path import normalised, wait_for_final


async def records_from(database_url: str, number: str) -> list:
    db = await Database.open(database_url)
    try:
        store = CallStore(db)
        return [await store.get_call(v.id) for v in await store.list_calls(number=number)]
    finally:
        await db.close()


async def test_killed_controller_call_answered_then_reconciled(
    clean_stack: Stack, config, caller_number
):
    stack = clean_stack
    proc = await stack.start_controller_process(config.database_url)
    await stack.start_phone("op1")
    stack.add_member("op1")
    await stack.kill(proc, signal.SIGKILL)

    result = await stack.call(caller_number, hold_ms=2000)
    assert result.ok, result.errors
    assert await records_from(config.database_url, normalised(caller_number)) == []

    async with running_controller(config):
        await wait_for_final(config, caller_number)
        # A call that ended moments ago is taken by a periodic pass, which writes
        # the record first and its timeline right after: wait for both.
        number = normalised(caller_number)

        async def with_timeline() -> bool:
            calls = await records_from(config.database_url, number)
            return len(calls) == 1 and bool(calls[0].events)

        await Stack.wait_for(with_timeline, 20, "the reconciled call's timeline")
    [call] = await records_from(config.database_url, normalised(caller_number))
    assert call.reconciled is True
    assert call.outcome == "answered"
    assert call.operator == "op1"
    assert call.dialled_number == "112"
    assert call.caller_number_raw == caller_number
    assert call.answered_at is not None
    assert call.talk_seconds > 0.5
    assert {event.source for event in call.events} == {"cel"}


async def test_frozen_controller_delays_nothing(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    proc = await stack.start_controller_process(config.database_url)
    await stack.start_phone("op1")
    await stack.start_phone("op2")
    stack.add_member("op1")
    await stack.kill(proc, signal.SIGSTOP)
    try:
        # The caller reaches op1 while the controller cannot run at all.
        result = await stack.call(caller_number, hold_ms=2000)
        assert result.ok, result.errors
        # By now the heartbeat is stale, so op2's log-in skips FastAGI, which a frozen
        # process would otherwise hold forever, and the dialplan adds op2 itself.
        login = await stack.dial_feature("op2", "*11")
        assert login.ok, login.errors
        assert stack.queue_members() == ["PJSIP/op1", "PJSIP/op2"]
    finally:
        await stack.kill(proc, signal.SIGCONT)

    number = normalised(caller_number)

    async def recorded() -> bool:
        calls = await records_from(config.database_url, number)
        return len(calls) == 1 and calls[0].ended_at is not None

    await Stack.wait_for(recorded, 20, "the thawed controller records the call")
    await stack.kill(proc, signal.SIGTERM)
    [call] = await records_from(config.database_url, number)
    assert call.outcome == "answered"
    assert call.operator == "op1"


async def test_feature_code_with_controller_down(clean_stack: Stack):
    stack = clean_stack
    await stack.start_phone("op1")
    login = await stack.dial_feature("op1", "*11")
    assert login.ok, login.errors
    assert stack.queue_members() == ["PJSIP/op1"]
    messages = (stack.paths.host / "log" / "messages.log").read_text(errors="replace")
    assert "controller-down" in messages
    logout = await stack.dial_feature("op1", "*12")
    assert logout.ok, logout.errors
    assert stack.queue_members() == []


async def test_asterisk_restart_reconnects_and_resyncs(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        stack.add_member("op2")
        await Stack.wait_for(
            lambda: _members(controller) == ["PJSIP/op2"], 5, "op2 in the live view"
        )
        sessions = controller.ami.sessions
        stack.asterisk("restart")
        await Stack.wait_for(
            lambda: controller.ami.sessions > sessions and controller.live.synced,
            20, "AMI reconnected and resynced",
        )
        # Asterisk keeps no members across a restart; with no roster saved, the
        # controller adds back the ones it saw before.
        await Stack.wait_for(
            lambda: stack.queue_members() == ["PJSIP/op2"], 10, "op2 added back"
        )
        await Stack.wait_for(
            lambda: _members(controller) == ["PJSIP/op2"], 5, "op2 in the live view again"
        )
        assert stack.rx("database get sigap/route queue").strip().endswith("operators")

        await stack.start_phone("op1")
        stack.add_member("op1")
        stack.rx("queue remove member PJSIP/op2 from operators")
        await Stack.wait_for(
            lambda: _members(controller) == ["PJSIP/op1"], 5, "op1 in the live view"
        )
        result = await stack.call(caller_number, hold_ms=2000)
        assert result.ok, result.errors
        await controller.tracker.flush()
        [call] = await wait_for_final(config, caller_number)
    assert call.outcome == "answered"
    assert call.reconciled is False


def _members(controller) -> list[str]:
    queue = controller.live.queues.get("operators")
    return sorted(queue.members) if queue else []


def test_dialplan_applications_and_functions_loaded(stack: Stack):
    """A missing module makes Asterisk hang up the 112 caller mid-dialplan."""
    text = "\n".join(p.read_text() for p in (REPO / "dialplans").glob("*.conf"))
    text += (stack.config.asterisk_etc_dir / "extensions_site.conf").read_text()
    applications: set[str] = set()
    functions = set(re.findall(r"\$\{([A-Z_]+)\(", text))
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        match = re.match(r"(exten|same)\s*=>\s*(.*)", line)
        if match is None:
            continue
        # exten => EXTEN,PRIORITY,App(...)   same => PRIORITY,App(...)
        skip = 2 if match.group(1) == "exten" else 1
        step = match.group(2).split(",", skip)[skip]
        applications.add(step.split("(", 1)[0])
        applications |= set(re.findall(r"\?\s*([A-Z][A-Za-z]+)\(", step))
    assert {"Queue", "Dial", "AGI", "Answer", "ExecIf"} <= applications
    assert {"DB_EXISTS", "FILTER", "SHARED", "IF"} <= functions
    for app in sorted(applications):
        output = stack.rx(f"core show application {app}")
        assert f"Info about Application '{app}'" in output, f"application {app} not loaded"
    for function in sorted(functions):
        output = stack.rx(f"core show function {function}")
        assert f"Info about Function '{function}'" in output, f"function {function} not loaded"


async def test_call_without_cel_rows_rebuilt_from_cdr(clean_stack: Stack, config, caller_number):
    """When CEL lost a call (cel.db damaged or CEL off), its CDR row still records it."""
    stack = clean_stack
    await stack.start_phone("op1")
    stack.add_member("op1")
    result = await stack.call(caller_number, hold_ms=2000)
    assert result.ok, result.errors
    cel_db = stack.paths.cel_db
    with sqlite3.connect(cel_db) as connection:
        removed = connection.execute(
            "DELETE FROM cel WHERE linkedid IN "
            "(SELECT linkedid FROM cel WHERE cidnum = ?)", (caller_number,)
        ).rowcount
    assert removed > 5

    async with running_controller(config):
        await wait_for_final(config, caller_number)
        # A call that ended moments ago is taken by a periodic pass, which writes
        # the record first and its timeline right after: wait for both.
        number = normalised(caller_number)

        async def with_timeline() -> bool:
            calls = await records_from(config.database_url, number)
            return len(calls) == 1 and bool(calls[0].events)

        await Stack.wait_for(with_timeline, 20, "the reconciled call's timeline")
    [call] = await records_from(config.database_url, normalised(caller_number))
    assert call.reconciled is True
    assert call.outcome == "answered"
    assert call.operator == "op1"
    assert {event.source for event in call.events} == {"cdr"}


async def test_call_cut_by_asterisk_crash_recorded(clean_stack: Stack, config, caller_number):
    """A call Asterisk dies under never gets its LINKEDID_END; it is still recorded,
    and the calls after it are not held back."""
    stack = clean_stack
    # op2 rings but never answers: the caller waits in the queue until Asterisk dies.
    await stack.start_phone("op2", ring_ms=600_000)
    stack.add_member("op2")
    waiting = asyncio.ensure_future(stack.call(caller_number, hold_ms=2000, timeout=20))
    await Stack.wait_for(
        lambda: re.search(r"has [1-9]\d* call", stack.rx("queue show operators")),
        15, "the caller queued",
    )
    pid = int((stack.paths.host / "asterisk.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    await asyncio.wait_for(waiting, 30)
    stack.asterisk("up")

    async with running_controller(config) as controller:
        # Quiet for a second is enough here; production waits ORPHAN_SECONDS.
        controller.reconciler.orphan_seconds = 1
        after = "0812" + caller_number[4:][::-1]
        await stack.start_phone("op1")
        stack.add_member("op1")
        result = await stack.call(after, hold_ms=1000)
        assert result.ok, result.errors

        number = normalised(caller_number)

        async def recorded() -> bool:
            return len(await records_from(config.database_url, number)) == 1

        await Stack.wait_for(recorded, 40, "the cut call recorded")
        await wait_for_final(config, after)
    [call] = await records_from(config.database_url, number)
    assert call.reconciled is True
    assert call.outcome == "abandoned_in_queue"
    assert call.ended_at is not None
    assert call.queued_at is not None and call.ended_at >= call.queued_at


async def test_call_across_controller_restart_stays_answered(
    clean_stack: Stack, config, caller_number
):
    """op1 answers, the controller dies, a new one adopts the call still up. op1's
    console card comes back, and the end of the call must not turn the answered
    call into an abandoned one."""
    stack = clean_stack
    number = normalised(caller_number)
    proc = await stack.start_controller_process(config.database_url)
    await stack.start_phone("op1", ring_ms=300)
    stack.add_member("op1")
    call = asyncio.create_task(stack.call(caller_number, hold_ms=12000, timeout=60))

    async def outcome() -> str | None:
        calls = await records_from(config.database_url, number)
        return calls[0].outcome if calls else None

    await Stack.wait_for(lambda: _is(outcome(), "answered"), 20, "the answer recorded live")
    await stack.kill(proc, signal.SIGKILL)

    async with running_controller(config) as controller:
        await Stack.wait_for(
            lambda: any(c.adopted for c in controller.tracker.calls.values()), 10,
            "the call adopted by the new controller",
        )
        # op1's console gets its card back: the new controller missed AgentConnect.
        [adopted] = controller.tracker.calls.values()
        card = controller.call_cards.card_for("op1")
        assert card is not None
        assert (card.state, card.uniqueid) == ("connected", adopted.uniqueid)
        assert card.caller_number == caller_number
        result = await call
        assert result.ok, result.errors

        async def timed() -> bool:
            calls = await records_from(config.database_url, number)
            return bool(calls) and calls[0].talk_seconds is not None

        await Stack.wait_for(timed, 30, "the call's talk time")

    [record] = await records_from(config.database_url, number)
    assert record.outcome == "answered"
    assert record.operator == "op1"
    assert record.answered_at is not None
    assert record.ended_at is not None
    assert record.talk_seconds > 5


async def _is(pending, expected) -> bool:
    return (await pending) == expected
