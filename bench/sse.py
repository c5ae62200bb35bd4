"""Reading the web server's event stream (GET /api/events) in the benchmarks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp


async def wallboard_events(
    session: aiohttp.ClientSession, url: str, ready: asyncio.Event
) -> AsyncIterator[dict[str, Any]]:
    """Yield the data of each `wallboard` event from `url`; set `ready` on `hello`."""
    async with session.get(url) as response:
        kind = None
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
                if kind == "hello":
                    ready.set()
            elif line.startswith("data: ") and kind == "wallboard":
                yield json.loads(line[6:])
