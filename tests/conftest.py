"""Suite-wide checks: an exception nobody handled inside the event loop fails the test."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(autouse=True)
async def fail_on_unhandled_loop_exceptions():
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    # Let callbacks scheduled by the test's last steps run before checking.
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    assert not errors, f"unhandled exceptions in the event loop: {errors}"
