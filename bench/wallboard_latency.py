"""Measure the delay from an AMI event to the wallboards that show it.

The wallboard component runs on the controller's real in-memory parts (live view,
call tracker, pause tracker, wrap-up and health guards) with the test suite's fake
AMI source, so each event enters exactly where the AMI client would deliver it.
The web app serves `--pages` signed-in supervisor pages that hold GET /api/events
open over real HTTP on loopback. `--operators` queue members are present.

For each of `--events` callers the script emits QueueCallerJoin and records when
each page first receives a snapshot listing that caller, then the caller leaves.
Callers start at random moments, so they fall at every point of the debounce and
tick cycle. The delay includes the debounce (250 ms), the snapshot, the feed and
the HTTP stream, but not the AMI socket, whose parsing bench/call_setup.py covers
with the rest of the controller. Run from the repository root:

    .venv/bin/python bench/wallboard_latency.py --pages 20 --events 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sigap_pbx.accounts import AccountService  # noqa: E402
from sse import wallboard_events  # noqa: E402
from sigap_pbx.store import Database  # noqa: E402
from sigap_pbx.store.accounts import Role  # noqa: E402
from sigap_pbx.web.app import create_app  # noqa: E402
from sigap_pbx.web.wallboard import Wallboard, attach  # noqa: E402
from tests.unit.test_wallboard import sample_report, synced  # noqa: E402
from tests.unit.wallboard_fakes import (  # noqa: E402
    FakeController,
    FakeReporter,
    event,
    member_event,
)


async def read_stream(
    session: aiohttp.ClientSession, url: str, first_seen: dict[str, float],
    ready: asyncio.Event,
) -> None:
    async for data in wallboard_events(session, url, ready):
        now = time.perf_counter()
        for queue in data["queues"]:
            for caller in queue["callers"]:
                first_seen.setdefault(caller["uniqueid"], now)


def caller_join(uniqueid: str) -> Any:
    return event(
        "QueueCallerJoin", ("Queue", "operators"), ("Uniqueid", uniqueid),
        ("Linkedid", uniqueid), ("Channel", f"PJSIP/carrier-{uniqueid}"),
        ("CallerIDNum", "081234567890"), ("CallerIDName", "Warga"), ("Position", "1"),
    )


def caller_leave(uniqueid: str) -> Any:
    return event(
        "QueueCallerLeave", ("Queue", "operators"), ("Uniqueid", uniqueid),
        ("Channel", f"PJSIP/carrier-{uniqueid}"), ("Position", "1"),
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="sigap-bench-wallboard-"))
    db = await Database.open(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    controller = FakeController(FakeReporter(sample_report()))
    controller.accounts = AccountService(db)
    synced(controller)
    controller.wallboard = Wallboard(controller)
    attach(controller)
    for index in range(args.operators):
        controller.ami.emit(member_event("QueueMemberAdded", f"op{index + 1}"))

    runner = web.AppRunner(create_app(controller), access_log=None)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/api/events"

    password = "bench-password-1"
    await controller.accounts.add_user("bench", password, Role.SUPERVISOR, actor="bench")
    sessions = []
    for _ in range(args.pages):
        signed_in = await controller.accounts.sign_in("bench", password, "127.0.0.1")
        sessions.append(aiohttp.ClientSession(
            headers={"Cookie": f"sigap_session={signed_in.token}"}
        ))
    seen: list[dict[str, float]] = [{} for _ in sessions]
    ready = [asyncio.Event() for _ in sessions]
    readers = [
        asyncio.create_task(read_stream(session, url, seen[i], ready[i]))
        for i, session in enumerate(sessions)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)

    rng = random.Random(args.seed)
    emitted: dict[str, float] = {}
    missed = 0
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    for index in range(args.events):
        await asyncio.sleep(rng.uniform(0.05, 1.3))
        uniqueid = f"1796409216.{index}"
        emitted[uniqueid] = time.perf_counter()
        controller.ami.emit(caller_join(uniqueid))
        deadline = time.monotonic() + 5
        while any(uniqueid not in page for page in seen) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        missed += sum(uniqueid not in page for page in seen)
        controller.ami.emit(caller_leave(uniqueid))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)

    controller.feed.close()
    await asyncio.gather(*readers, return_exceptions=True)
    for session in sessions:
        await session.close()
    await runner.cleanup()
    await controller.close()
    await db.close()

    delays = sorted(
        page[uniqueid] - at for uniqueid, at in emitted.items() for page in seen
        if uniqueid in page
    )
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        "pages": args.pages,
        "operators": args.operators,
        "events": args.events,
        "delivered": len(delays),
        "missed_after_5_s": missed,
        "delay_ms_median": round(statistics.median(delays) * 1000, 1),
        "delay_ms_p99": round(delays[max(0, int(len(delays) * 0.99) - 1)] * 1000, 1),
        "delay_ms_max": round(delays[-1] * 1000, 1),
        "cpu_seconds_total": round(cpu, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20, help="open supervisor pages")
    parser.add_argument("--events", type=int, default=100, help="callers to follow")
    parser.add_argument("--operators", type=int, default=20, help="queue members")
    parser.add_argument("--seed", type=int, default=112, help="seed of the start times")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    result["machine"] = (f"{platform.machine()}, {os.cpu_count()} CPUs, "
                         f"Python {platform.python_version()}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
