"""Retrying a queued store write until the database takes it.

The controller's writers (pauses, alarms, member events) queue their writes so that
the AMI reader never waits for the database. When the database is down, a write is
tried again with a doubling delay, so nothing queued is lost by an outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Seconds before the first retry of a failed store write. Each further failure
# doubles the delay, up to MAX_RETRY_DELAY.
FIRST_RETRY_DELAY = 0.2
MAX_RETRY_DELAY = 5.0
# The errors of a value the store rejects (InvalidFieldValue) or of a row it cannot
# find (a NotFound error): the same write would fail again.
REJECTED = (ValueError, TypeError, LookupError)


async def write_with_retry(
    write: Callable[[], Awaitable[Any]],
    /,
    *,
    retry_event: str,
    rejected_event: str | None = None,
    first_delay: float = FIRST_RETRY_DELAY,
    max_delay: float = MAX_RETRY_DELAY,
    **ids: Any,
) -> Any:
    """Await `write()` until it succeeds and return its result.

    A failure is logged as `retry_event` with `ids` and tried again after a delay
    that doubles from `first_delay` to `max_delay`. With `rejected_event`, a write
    the store rejects is logged as that event and dropped (None is returned),
    because retrying it would fail the same way.
    """
    delay = first_delay
    while True:
        try:
            return await write()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if rejected_event is not None and isinstance(exc, REJECTED):
                log.exception(rejected_event, **ids)
                return None
            log.warning(
                retry_event, **ids, error=f"{type(exc).__name__}: {exc}", retry_in=delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
