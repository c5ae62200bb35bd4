"""Suite-wide checks and isolation.

An unhandled exception inside the event loop fails the test. Logging set up by
a test (the CLI's commands run in-process configure it) is undone after that test,
so a later test's `capture_logs()` still sees every event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import structlog


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


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    original_configure = structlog.configure

    def configure_uncached(**settings: object) -> None:
        # A module's logger caches the configuration it first used, and a cached
        # one would ignore the restore below and every later capture_logs().
        settings["cache_logger_on_first_use"] = False
        original_configure(**settings)

    monkeypatch.setattr(structlog, "configure", configure_uncached)
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers = list(root.handlers)
    # configure_logging sets the root level and quietens these two.
    loggers = [root, logging.getLogger("aiohttp.access"), logging.getLogger("alembic")]
    levels = [logger.level for logger in loggers]
    yield
    original_configure(**saved)
    root.handlers[:] = handlers
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
