"""Measure how fast the live feed reaches open pages, and what it costs.

The web app runs in this process with a real account database (SQLite in a
temporary folder). `--pages` signed-in clients hold GET /api/events open over real
HTTP on loopback, as wallboards and consoles do. Events are published at `--rate`
per second for `--seconds`, each the size of a wallboard snapshot with
`--operators` operators and `--callers` waiting callers. For every event and page
the script records the delay from publish to the client's parsing of the event.

It reports the delay median, p99 and maximum, events lost, CPU time per delivered
event and peak RSS. The clients run in the same process as the server, so the CPU
and memory figures are an upper bound for the server alone. Run from the repository root:

    .venv/bin/python bench/web_feed.py --pages 50 --rate 10 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
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
from sigap_pbx.web.access import SUPERVISORS
from sigap_pbx.web.app import create_app
from sigap_pbx.web.feed import Feed
from sse import wallboard_events


class BenchController:
    """The controller attributes the feed and session routes read."""

    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.feed = Feed()


def snapshot(operators: int, callers: int, sequence: int) -> dict[str, Any]:
    return {
        "sequence": sequence,
        "sent": time.perf_counter(),
        "queues": [{
            "name": "operators",
            "callers": [
                {"uniqueid": f"1733.{i}", "caller_number": f"0812{i:08d}",
                 "waiting_seconds": i * 1.5}
                for i in range(callers)
            ],
            "operators": [
                {"endpoint": f"op{i}", "name": f"Operator {i}", "state": "available",
                 "state_seconds": 12.0, "pause_reason": None}
                for i in range(operators)
            ],
        }],
    }


async def read_stream(
    session: aiohttp.ClientSession, url: str, delays: list[float], seen: set[int],
    ready: asyncio.Event,
) -> None:
    async for data in wallboard_events(session, url, ready):
        delays.append(time.perf_counter() - data["sent"])
        seen.add(data["sequence"])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="sigap-bench-feed-"))
    db = await Database.open(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    accounts = AccountService(db)
    controller = BenchController(accounts)
    runner = web.AppRunner(create_app(controller), access_log=None)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/api/events"

    await accounts.add_user("bench", "bench-password-1", Role.SUPERVISOR, actor="bench")
    sessions = []
    for _ in range(args.pages):
        signed_in = await accounts.sign_in("bench", "bench-password-1", "127.0.0.1")
        sessions.append(aiohttp.ClientSession(
            headers={"Cookie": f"sigap_session={signed_in.token}"}
        ))

    delays: list[list[float]] = [[] for _ in sessions]
    seen: list[set[int]] = [set() for _ in sessions]
    ready = [asyncio.Event() for _ in sessions]
    readers = [
        asyncio.create_task(read_stream(s, url, delays[i], seen[i], ready[i]))
        for i, s in enumerate(sessions)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)

    events = int(args.rate * args.seconds)
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    for sequence in range(events):
        target = start + sequence / args.rate
        await asyncio.sleep(max(0.0, target - time.perf_counter()))
        controller.feed.publish(
            "wallboard", snapshot(args.operators, args.callers, sequence), roles=SUPERVISORS
        )
    await asyncio.sleep(1.0)
    cpu_used = cpu_seconds() - cpu_before

    controller.feed.close()
    await asyncio.gather(*readers, return_exceptions=True)
    for session in sessions:
        await session.close()
    await runner.cleanup()
    await db.close()

    every = sorted(d for page in delays for d in page)
    delivered = len(every)
    lost = sum(events - len(page_seen) for page_seen in seen)
    frame = json.dumps(snapshot(args.operators, args.callers, 0)).encode()
    return {
        "pages": args.pages,
        "rate_per_second": args.rate,
        "events": events,
        "event_bytes": len(frame),
        "delivered": delivered,
        "lost": lost,
        "delay_ms_median": round(statistics.median(every) * 1000, 2) if every else None,
        "delay_ms_p99": round(every[int(len(every) * 0.99) - 1] * 1000, 2) if every else None,
        "delay_ms_max": round(every[-1] * 1000, 2) if every else None,
        "cpu_ms_per_delivery": round(cpu_used * 1000 / delivered, 3) if delivered else None,
        "peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=50, help="open event streams")
    parser.add_argument("--rate", type=float, default=10, help="events per second")
    parser.add_argument("--seconds", type=float, default=20, help="how long to publish")
    parser.add_argument("--operators", type=int, default=20, help="operators per event")
    parser.add_argument("--callers", type=int, default=10, help="waiting callers per event")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python " \
                        f"{platform.python_version()}"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
