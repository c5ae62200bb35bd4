"""`make run` (scripts/run.sh) keeps Asterisk, and the call on it, when the controller stops.

The script runs for real on the test instance: it starts the controller under
its restart loop. A SIGTERM to the controller alone, as an administrator sends
to restart it, must not take Asterisk down with it, nor the call in progress.
Neither may a controller that fails to start again after a crash. A SIGTERM to
the script stops both.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path

from tests.integration.stack import REPO, Stack


def asterisk_pid(stack: Stack) -> int:
    return int((stack.paths.host / "asterisk.pid").read_text().strip())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def controller_pid(script_pid: int) -> int | None:
    """Return the pid of the `sigap serve` the script runs now, if one runs."""
    found = subprocess.run(["pgrep", "-P", str(script_pid), "-f", "sigap serve"],
                           capture_output=True, text=True, check=False)
    pids = [int(pid) for pid in found.stdout.split()]
    return pids[0] if pids else None


async def test_controller_stop_leaves_asterisk_and_call(
    clean_stack: Stack, caller_number: str, tmp_path: Path
):
    stack = clean_stack
    log_path = tmp_path / "run.log"
    env = {**os.environ, **stack.environ, "SIGAP_LOGGING__FORMAT": "json",
           "SIGAP_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/sigap.db"}
    with log_path.open("wb") as log:
        script = await asyncio.create_subprocess_exec(
            str(REPO / "scripts" / "run.sh"), cwd=REPO, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def started() -> int:
        return log_path.read_text(errors="replace").count('"controller_started"')

    try:
        await Stack.wait_for(lambda: started() == 1, 120, "the first controller started")
        pid = asterisk_pid(stack)
        first = controller_pid(script.pid)
        assert first is not None

        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        call = asyncio.create_task(stack.call(caller_number, hold_ms=15000, timeout=60))
        await Stack.wait_for(
            lambda: "(in call)" in stack.rx("queue show operators"), 15, "op1 answered"
        )

        os.kill(first, signal.SIGTERM)
        await Stack.wait_for(lambda: started() == 2, 60, "the controller started again")
        assert controller_pid(script.pid) not in (None, first)
        assert "restarting it in 2 s" in log_path.read_text(errors="replace")
        assert asterisk_pid(stack) == pid
        assert alive(pid)
        result = await call
        assert result.ok, result.errors

        # The controller dies, and its port is taken before it starts again: the
        # start fails, and the script keeps Asterisk while it retries.
        blocker = socket.socket()
        second = controller_pid(script.pid)
        assert second is not None
        os.kill(second, signal.SIGKILL)
        await Stack.wait_for(lambda: not alive(second), 10, "the controller killed")
        blocker.bind((stack.config.agi.host, stack.config.agi.port))
        blocker.listen()
        try:
            await Stack.wait_for(
                lambda: "could not start again (exit 3)" in log_path.read_text(errors="replace"),
                30, "the failed start logged",
            )
            assert alive(pid)
        finally:
            blocker.close()
        await Stack.wait_for(lambda: started() == 3, 60, "the controller started at last")
        assert asterisk_pid(stack) == pid
    finally:
        if script.returncode is None:
            script.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(script.wait(), 90)
            except TimeoutError:
                os.killpg(script.pid, signal.SIGKILL)
                await script.wait()
                raise AssertionError(
                    "scripts/run.sh did not stop within 90 s of SIGTERM; its log ends:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                ) from None

    assert script.returncode == 143, log_path.read_text(errors="replace")[-3000:]
    await Stack.wait_for(lambda: not alive(pid), 30, "Asterisk stopped with the script")
