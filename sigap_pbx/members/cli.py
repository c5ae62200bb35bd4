"""Subcommands of `sigap` about queue members: `sigap alarms`."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

# Maximum number of alarms that `sigap alarms` lists, the same cap as the web API.
MAX_ALARMS_LISTED = 500


def add_parsers(sub: Any) -> None:
    alarms = sub.add_parser("alarms", help="list alarms, newest first")
    alarms.add_argument(
        "--active", action="store_true", help="only alarms whose condition still holds"
    )
    alarms.add_argument(
        "--limit",
        type=_limit,
        default=50,
        help=f"how many alarms, from 1 to {MAX_ALARMS_LISTED} (default 50)",
    )
    alarms.add_argument("--json", action="store_true", help="print JSON instead of a table")
    alarms.set_defaults(handler=cmd_alarms)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ALARMS_LISTED:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number from 1 to {MAX_ALARMS_LISTED}"
        )
    return value


async def _fetch_alarms(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from sigap_pbx.store import Database
    from sigap_pbx.store.alarms import AlarmStore

    # migrate=False: a read-only command must not change the schema of a database
    # that a running controller of another version may be using.
    db = await Database.open(url, migrate=False)
    try:
        alarms = await AlarmStore(db).list_alarms(
            active=True if args.active else None, limit=args.limit
        )
        return [alarm.to_dict() for alarm in alarms]
    finally:
        await db.close()


def cmd_alarms(args: argparse.Namespace) -> int:
    from sigap_pbx.cli import CommandError, _load, _local, _require_sqlite_file
    from sigap_pbx.store import StoreError

    config = _load(args)
    try:
        _require_sqlite_file(config.database_url)
        rows = asyncio.run(_fetch_alarms(config.database_url, args))
    except StoreError as error:
        raise CommandError(str(error)) from None
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    print(
        f"{'id':>5}  {'raised (WIB)':19}  {'cleared (WIB)':19}  {'severity':8}  "
        f"{'kind':20}  {'subject':12}  {'acknowledged by':15}  message"
    )
    for row in rows:
        print(
            f"{row['id']:>5}  {_local(row['raised_at']):19}  "
            f"{_local(row['cleared_at']) if row['cleared_at'] else 'active':19}  "
            f"{row['severity']:8}  {_printable(row['kind']):20}  "
            f"{_printable(row['subject']):12}  "
            f"{_printable(row['acknowledged_by'] or '-'):15}  {_printable(row['message'])}"
        )
    if not rows:
        print("(no active alarms)" if args.active else "(no alarms recorded yet)")
    return 0


def _printable(text: str) -> str:
    # Messages quote member names that come from the phones' configuration, so
    # control characters, such as terminal escape sequences, are replaced.
    return "".join(char if char.isprintable() else "?" for char in text)
