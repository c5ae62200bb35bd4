"""Measure how fast the controller catches up from CEL after it was down.

The script writes a cel.db the way cel_sqlite3_custom does, with `--calls` answered
112 calls of 12 rows each (the rows this project's cel.conf keeps), then runs one
reconciliation pass into an empty database, as a controller does at start after an
outage. It reports the pass's wall time, calls per second and peak RSS. Run from the
repository root:

    .venv/bin/python bench/reconcile_catchup.py --calls 2000
    .venv/bin/python bench/reconcile_catchup.py --calls 2000 \\
        --database postgresql+asyncpg://postgres@127.0.0.1:5432/sigap_bench

A PostgreSQL database named in `--database` must exist and be empty; the script
creates the schema in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from sigap_pbx.calls.reconcile import Reconciler
from sigap_pbx.store import CallStore, Database

COLUMNS = (
    "eventtype, eventtime, cidname, cidnum, cidani, ciddnid, context, exten, channame, "
    "appname, appdata, uniqueid, linkedid, peer, userdeftype, eventextra"
)


def call_rows(index: int, start: float) -> list[tuple]:
    """Return the 12 CEL rows of one answered call, the `index`-th of the run."""
    t = start + index * 30.0
    linkedid = f"{int(start)}.{index * 2}"
    operator_id = f"{int(start)}.{index * 2 + 1}"
    caller = f"PJSIP/carrier-{index:08x}"
    operator = f"PJSIP/op{index % 8 + 1}-{index:08x}"
    number = f"0812{index:08d}"

    answer_extra = {"hangupcause": 16, "hangupsource": caller, "dialstatus": "ANSWER"}
    bridge = {"bridge_id": f"b{index}"}
    # (event, offset, channel, uniqueid, context, exten, app, data, extra)
    shapes = [
        ("CHAN_START", 0.0, caller, linkedid, "sigap-trunk-inbound", "112", "", "", None),
        ("ANSWER", 0.1, caller, linkedid, "sigap-emergency", "s", "Answer", "", None),
        ("APP_START", 3.0, caller, linkedid, "sigap-emergency", "s", "Queue",
         "operators,,,,30", None),
        ("CHAN_START", 3.1, operator, operator_id, "sigap-operators", "s", "", "", None),
        ("ANSWER", 6.0, operator, operator_id, "sigap-operators", "s", "", "", None),
        ("BRIDGE_ENTER", 6.1, operator, operator_id, "sigap-operators", "s", "", "", bridge),
        ("BRIDGE_ENTER", 6.1, caller, linkedid, "sigap-emergency", "s", "Queue",
         "operators,,,,30", bridge),
        ("HANGUP", 20.0, caller, linkedid, "sigap-emergency", "s", "", "", answer_extra),
        ("CHAN_END", 20.01, caller, linkedid, "sigap-emergency", "s", "", "", None),
        ("HANGUP", 20.02, operator, operator_id, "sigap-operators", "s", "", "",
         {**answer_extra, "dialstatus": ""}),
        ("CHAN_END", 20.03, operator, operator_id, "sigap-operators", "s", "", "", None),
        ("LINKEDID_END", 20.04, caller, linkedid, "sigap-emergency", "s", "", "", None),
    ]

    return [
        (event, t + offset, "Warga", number, number, "112", context, exten, channel, app,
         data, uniqueid, linkedid, "", "", json.dumps(extra) if extra else "")
        for event, offset, channel, uniqueid, context, exten, app, data, extra in shapes
    ]


def write_cel(path: Path, calls: int, start: float) -> int:
    """Write `calls` answered calls and return the number of rows."""
    rows = [row for index in range(calls) for row in call_rows(index, start)]
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "CREATE TABLE cel (AcctId INTEGER PRIMARY KEY, eventtype, eventtime, cidname, "
            "cidnum, cidani, ciddnid, context, exten, channame, appname, appdata, uniqueid, "
            "linkedid, peer, userdeftype, eventextra)"
        )
        connection.executemany(
            f"INSERT INTO cel ({COLUMNS}) VALUES ({', '.join('?' * 16)})", rows
        )
    connection.close()
    return len(rows)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="sigap-bench-reconcile-") as folder:
        work = Path(folder)
        # The calls ended a day ago: long settled, as after an outage.
        row_count = write_cel(work / "cel.db", args.calls, time.time() - 86400 - args.calls * 30)
        url = args.database or f"sqlite+aiosqlite:///{work}/sigap.db"
        db = await Database.open(url)
        try:
            store = CallStore(db)
            reconciler = Reconciler(store, work / "cel.db", country_code="62")
            began = time.perf_counter()
            written = await reconciler.run_pass("bench")
            elapsed = time.perf_counter() - began
            stored = await store.count_calls()
        finally:
            await db.close()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"database: {url.split('://', 1)[0]}")
    print(f"CEL rows: {row_count}, calls written: {written}, calls stored: {stored}")
    print(f"pass: {elapsed:.2f} s, {written / elapsed:.0f} calls/s, peak RSS {rss_mib:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--database", help="a database URL; a new SQLite file by default")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
