"""FastAgiServer on a loopback port: probes, garbage, timeouts and routed sessions.

The test plays Asterisk's side of the connection with a plain asyncio stream.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from sigap_pbx.agi.server import AgiSession, FastAgiServer
from sigap_pbx.wire.agi import AgiReply
from tests.unit.fake_ami import wait_until

SCRIPT = "operator/login"


def environment(script: str = SCRIPT, arg: str = "op1") -> bytes:
    """Return an environment block as Asterisk 22 sends it for AGI(agi://...)."""
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:4573/{script}",
        "agi_channel: Local/s@sigap-agi-runner-00000002;2",
        "agi_language: en",
        "agi_type: Local",
        "agi_uniqueid: 1796409568.5",
        "agi_version: 22.10.1",
        "agi_callerid: op1",
        "agi_calleridname: Operator 1",
        "agi_context: sigap-agi-runner",
        "agi_extension: s",
        "agi_priority: 1",
        "agi_accountcode: ",
        f"agi_arg_1: {arg}",
    ]
    return ("\n".join(lines) + "\n\n").encode()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Fail the test if an exception reached the loop's handler, such as a
    connection task that ended with an exception that was never retrieved."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    gc.collect()
    loop.set_exception_handler(previous)
    assert not errors, f"unhandled errors in the event loop: {errors}"


@pytest.fixture
async def server(loop_errors: list[dict[str, Any]]) -> AsyncIterator[FastAgiServer]:
    agi = FastAgiServer(
        "127.0.0.1",
        0,
        environment_timeout=0.2,
        command_timeout=1.0,
        script_timeout=0.3,
    )
    await agi.start()
    yield agi
    await agi.stop()
    await wait_until(lambda: not connection_tasks())


def connection_tasks() -> list[asyncio.Task[Any]]:
    """Return the server's unfinished per-connection tasks."""
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__ == "FastAgiServer._serve" and not task.done()
    ]


async def connect(
    server: FastAgiServer,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Read everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout=5)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- Connections that never become sessions -------------------------------------


async def test_port_probe_logged_once(server: FastAgiServer) -> None:
    calls: list[AgiSession] = []

    async def handler(session: AgiSession) -> None:
        calls.append(session)

    server.route(SCRIPT, handler)

    with capture_logs() as logs:
        _, writer = await connect(server)
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: server.rejected_connections == 1)
        await wait_until(lambda: not connection_tasks())

    assert server.connections == 1
    assert calls == []
    assert [entry["event"] for entry in logs] == ["fastagi_closed_before_environment"]
    assert logs[0]["suppressed_since_last"] == 0


async def test_garbage_closes_connection(server: FastAgiServer) -> None:
    with capture_logs() as logs:
        reader, writer = await connect(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = await read_until_closed(reader)
        writer.close()

    assert received == b""
    assert server.rejected_connections == 1
    (invalid,) = events(logs, "fastagi_environment_invalid")
    assert "invalid AGI environment line 'GET / HTTP/1.1'" in invalid["error"]


async def test_unfinished_environment_times_out(server: FastAgiServer) -> None:
    with capture_logs() as logs:
        reader, writer = await connect(server)
        writer.write(b"agi_network: yes\nagi_network_script: operator/login\n")
        received = await read_until_closed(reader)
        writer.close()

    assert received == b""
    assert server.rejected_connections == 1
    (timeout,) = events(logs, "fastagi_environment_timeout")
    assert timeout["timeout"] == 0.2


async def test_probe_flood_rate_limited(server: FastAgiServer) -> None:
    with capture_logs() as logs:
        for _ in range(100):
            _, writer = await connect(server)
            writer.close()
            await writer.wait_closed()
        await wait_until(lambda: server.rejected_connections == 100)
        await wait_until(lambda: not connection_tasks())

    assert server.connections == 100
    lines = events(logs, "fastagi_closed_before_environment")
    assert 1 <= len(lines) <= 2
    assert len(logs) == len(lines)


# --- Sessions ---------------------------------------------------------------------


async def test_session_runs_handler(server: FastAgiServer) -> None:
    replies: list[AgiReply] = []
    arguments: list[str] = []

    async def handler(session: AgiSession) -> None:
        arguments.append(session.arg(1))
        replies.append(await session.command("SET", "VARIABLE", "SIGAP_RESULT", "ok"))

    server.route(SCRIPT, handler)

    with capture_logs() as logs:
        reader, writer = await connect(server)
        writer.write(environment(arg="op1"))
        command = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.write(b"200 result=1\n")
        rest = await read_until_closed(reader)
        writer.close()

    assert command == b"SET VARIABLE SIGAP_RESULT ok\n"
    assert rest == b""
    assert arguments == ["op1"]
    assert [(reply.code, reply.result) for reply in replies] == [(200, "1")]
    assert len(events(logs, "fastagi_script_done")) == 1
    assert server.rejected_connections == 0


async def test_hangup_before_reply(server: FastAgiServer) -> None:
    results: dict[str, Any] = {}

    async def handler(session: AgiSession) -> None:
        results["stream"] = await session.command(
            "STREAM", "FILE", "sigap/greeting", ""
        )
        results["hung_up"] = session.hung_up
        results["set"] = await session.command("SET", "VARIABLE", "SIGAP_RESULT", "ok")

    server.route(SCRIPT, handler)

    reader, writer = await connect(server)
    writer.write(environment())
    stream = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.write(b"HANGUP\n")
    await writer.drain()
    writer.write(b"200 result=-1 endpos=11360\n")
    set_variable = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.write(b"200 result=1\n")
    await read_until_closed(reader)
    writer.close()

    assert stream == b'STREAM FILE sigap/greeting ""\n'
    assert set_variable == b"SET VARIABLE SIGAP_RESULT ok\n"
    assert results["stream"].result == "-1"
    assert results["stream"].fields == {"endpos": "11360"}
    assert results["hung_up"] is True
    assert results["set"].result == "1"


async def test_hangup_with_environment(server: FastAgiServer) -> None:
    hung_up_at_start: list[bool] = []

    async def handler(session: AgiSession) -> None:
        hung_up_at_start.append(session.hung_up)
        await session.set_variable("SIGAP_RESULT", "ok")

    server.route(SCRIPT, handler)

    reader, writer = await connect(server)
    writer.write(environment() + b"HANGUP\n")
    command = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.write(b"200 result=1\n")
    await read_until_closed(reader)
    writer.close()

    assert command == b"SET VARIABLE SIGAP_RESULT ok\n"
    assert hung_up_at_start == [True]


async def test_garbage_after_environment(server: FastAgiServer) -> None:
    calls: list[AgiSession] = []

    async def handler(session: AgiSession) -> None:
        calls.append(session)

    server.route(SCRIPT, handler)

    with capture_logs() as logs:
        reader, writer = await connect(server)
        writer.write(environment() + b"this is not AGI\n")
        received = await read_until_closed(reader)
        writer.close()
        await wait_until(lambda: not connection_tasks())

    assert received == b""
    assert calls == []
    (invalid,) = events(logs, "fastagi_reply_invalid")
    assert "invalid AGI reply line 'this is not AGI'" in invalid["error"]


async def test_unknown_script_logged(server: FastAgiServer) -> None:
    calls: list[AgiSession] = []

    async def handler(session: AgiSession) -> None:
        calls.append(session)

    server.route(SCRIPT, handler)

    with capture_logs() as logs:
        reader, writer = await connect(server)
        writer.write(environment(script="operator/reboot"))
        received = await read_until_closed(reader)
        writer.close()

    assert received == b""
    assert calls == []
    (unknown,) = events(logs, "fastagi_unknown_script")
    assert unknown["known"] == [SCRIPT]


async def test_hanging_handler_cut(server: FastAgiServer) -> None:
    cancelled: list[bool] = []

    async def handler(session: AgiSession) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    server.route(SCRIPT, handler)

    with capture_logs() as logs:
        reader, writer = await connect(server)
        writer.write(environment())
        received = await read_until_closed(reader)
        writer.close()

    assert received == b""
    assert cancelled == [True]
    (timeout,) = events(logs, "fastagi_script_timeout")
    assert timeout["timeout"] == 0.3
    assert timeout["log_level"] == "error"


async def test_command_timeout_reported(server: FastAgiServer) -> None:
    server.command_timeout = 0.1
    server.script_timeout = 5.0

    async def handler(session: AgiSession) -> None:
        await session.set_variable("SIGAP_RESULT", "ok")

    server.route(SCRIPT, handler)

    with capture_logs() as logs:
        reader, writer = await connect(server)
        writer.write(environment())
        command = await asyncio.wait_for(reader.readline(), timeout=5)
        received = await read_until_closed(reader)
        writer.close()

    assert command == b"SET VARIABLE SIGAP_RESULT ok\n"
    assert received == b""
    assert events(logs, "fastagi_script_timeout") == []
    (failed,) = events(logs, "fastagi_command_failed")
    assert "SET VARIABLE" in failed["error"]
    assert "0.1 s" in failed["error"]


async def test_handler_error_logged(server: FastAgiServer) -> None:
    async def handler(session: AgiSession) -> None:
        raise RuntimeError("handler bug")

    server.route(SCRIPT, handler)

    with capture_logs() as logs:
        reader, writer = await connect(server)
        writer.write(environment())
        received = await read_until_closed(reader)
        writer.close()
        await wait_until(lambda: not connection_tasks())

    assert received == b""
    (failed,) = events(logs, "fastagi_script_failed")
    assert failed["log_level"] == "error"
    assert failed["exc_info"] is True
