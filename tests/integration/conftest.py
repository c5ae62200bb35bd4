"""Fixtures for tests against the real Asterisk started by scripts/asterisk.sh."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest

from sigap_pbx.asterisk.paths import InstancePaths
from sigap_pbx.config import DatabaseConfig
from tests.integration.stack import INSTANCE, Stack, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.asterisk)


# A failed test's report carries the Asterisk log from the test's start. A CI runner
# keeps no files, so this is where a call that took another path can be read. Only
# the lines that tell a call's path are kept.
_LOG_LINES = 150
_LOG_WORDS = (
    "WARNING", "ERROR", "NOTICE", "app_dial", "Dial(", "Queue(", "UserEvent(",
    "contact", "Reachable", "Hangup", "joined", "left", "Asterisk Ready",
)
_log_start = pytest.StashKey[tuple[Path, int]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or _log_start not in item.stash:
        return
    path, start = item.stash[_log_start]
    try:
        with path.open("rb") as log:
            log.seek(start if path.stat().st_size >= start else 0)
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError as exc:
        report.sections.append(("Asterisk log", f"not readable: {exc}"))
        return
    wanted = [line for line in lines if any(word in line for word in _LOG_WORDS)]
    kept = wanted[-_LOG_LINES:]
    skipped = len(lines) - len(kept)
    head = f"[{skipped} of {len(lines)} lines left out]\n" if skipped else ""
    report.sections.append(("Asterisk log during the test", head + "\n".join(kept)))


@pytest.fixture(autouse=True)
def asterisk_log_start(request: pytest.FixtureRequest) -> None:
    """Note where the Asterisk log stood when the test began."""
    if "integration" not in str(request.node.fspath):
        return
    path = InstancePaths.for_instance(INSTANCE).host / "log" / "messages.log"
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    request.node.stash[_log_start] = (path, size)


@pytest.fixture(scope="session")
def stack() -> Stack:
    if os.geteuid() != 0:
        pytest.skip("the real Asterisk runs in a chroot, which needs root; run `make test` as root")
    if shutil.which("sipp") is None:
        pytest.fail("sipp is missing: `make test` installs it (Debian package sip-tester)")
    stack = start_stack()
    yield stack
    stack.asterisk("down")


@pytest.fixture
async def clean_stack(stack: Stack):
    """The stack freshly restarted: empty queues, no registrations, an empty AstDB.

    Asterisk boots in well under a second, so a restart is the surest way to keep one
    test's phones and members out of the next.
    """
    await stack.stop_phones()
    stack.asterisk("down")
    # Registrations live in AstDB and survive a restart, so the test starts without it.
    (stack.paths.host / "lib" / "astdb.sqlite3").unlink(missing_ok=True)
    stack.asterisk("up")
    yield stack
    try:
        await stack.stop_phones()
    finally:
        await stack.stop_controllers()


@pytest.fixture
def config(stack: Stack, tmp_path):
    """The test instance's configuration with a fresh SQLite database."""
    return stack.config.model_copy(
        update={"database": DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path}/sigap.db")}
    )


@pytest.fixture
def caller_number() -> str:
    """A caller number no other test uses, so each test finds its own calls."""
    return "0812" + str(uuid.uuid4().int)[:8]


@pytest.fixture(autouse=True)
async def no_stuck_tasks():
    """Cancel the tasks a test leaves behind, and name any that will not stop.

    pytest-asyncio waits for every task when it closes the loop, so one that
    ignores cancellation would hang the run until the test timeout without saying
    which task it was.
    """
    yield
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in left:
        task.cancel()
    if left:
        _, pending = await asyncio.wait(left, timeout=10)
        assert not pending, f"tasks that ignore cancellation: {[repr(t) for t in pending]}"
