"""Measure how a burst of sign-ins affects the rest of the controller's event loop.

The web app runs in this process with a real account database (SQLite) and the
production argon2 settings. `--burst` sign-ins with wrong passwords for one user
(from one address, as an attacker would; with --names, a new name each) are sent
at once over real HTTP, while a
probe requests GET /api/health every 20 ms. Each probe's reply time shows how long
the event loop, which in the controller also follows AMI and serves FastAGI, was
held up. It also reports how the sign-ins ended (401, 429, other).

    .venv/bin/python bench/signin_burst.py --burst 100
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sigap_pbx.accounts import AccountService
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import Role
from sigap_pbx.web.app import create_app
from sigap_pbx.web.feed import Feed


class BenchController:
    """The controller attributes the session and health routes read."""

    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.feed = Feed()

    def health(self) -> dict[str, Any]:
        return {"ami_connected": True}


async def probe(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                times: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
        times.append(time.perf_counter() - start)
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="sigap-bench-signin-"))
    db = await Database.open(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    accounts = AccountService(db)
    await accounts.add_user("budi", "right-password-1", Role.SUPERVISOR, actor="bench")
    runner = web.AppRunner(create_app(BenchController(accounts)), access_log=None)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"

    async with aiohttp.ClientSession() as session:
        idle: list[float] = []
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(session, f"{base}/api/health", stop, idle))
        await asyncio.sleep(1.0)
        stop.set()
        await prober

        during: list[float] = []
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(session, f"{base}/api/health", stop, during))

        async def attempt(index: int) -> int:
            name = f"guess{index}" if args.names else "budi"
            async with session.post(f"{base}/api/session", json={
                "username": name, "password": "wrong-password",
            }) as response:
                return response.status

        start = time.perf_counter()
        statuses = await asyncio.gather(*(attempt(i) for i in range(args.burst)))
        burst_seconds = time.perf_counter() - start
        await asyncio.sleep(0.2)
        stop.set()
        await prober

    await runner.cleanup()
    await db.close()
    return {
        "burst": args.burst,
        "usernames": args.burst if args.names else 1,
        "statuses": dict(sorted(collections.Counter(statuses).items())),
        "burst_seconds": round(burst_seconds, 2),
        "health_ms_idle_median": round(statistics.median(idle) * 1000, 1),
        "health_ms_during_median": round(statistics.median(during) * 1000, 1),
        "health_ms_during_max": round(max(during) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=100, help="parallel sign-ins")
    parser.add_argument("--names", action="store_true",
                        help="a different username in each sign-in, not one user's")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    result["machine"] = (f"{platform.machine()}, {os.cpu_count()} CPUs, "
                         f"Python {platform.python_version()}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
