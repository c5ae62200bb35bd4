"""Fixtures for tests against the real Asterisk started by scripts/asterisk.sh."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid

import pytest

from sigap_pbx.config import DatabaseConfig
from tests.integration.stack import Stack, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.asterisk)


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
