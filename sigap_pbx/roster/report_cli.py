"""`sigap shifts`: list, show and build shift reports.

- `sigap shifts reports [--since DATE] [--limit N] [--json]` lists stored reports.
- `sigap shifts report DATE SHIFT [--json]` shows one stored report.
- `sigap shifts build DATE SHIFT` builds one report from the store now and stores
  it, replacing a stored one, e.g. after calls were corrected.

The reading commands open the database with migrate=False, so they never change
the schema of a database that a running controller may be using.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any, TypeVar

from sigap_pbx.roster.model import Roster, RosterError

T = TypeVar("T")

MAX_REPORTS_LISTED = 500
EXIT_FAILURE = 1


Command = Callable[[argparse.Namespace], int]


def _one_line_errors(command: Command) -> Command:
    """Print a command's expected failures as one line on stderr and return 1.

    `cli.main` does this for its own CommandError, but under `python -m
    sigap_pbx.cli` that module runs as `__main__`, and the CommandError imported
    here from `sigap_pbx.cli` is a second class that `main` does not catch.
    """

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from sigap_pbx.cli import CommandError
        from sigap_pbx.roster.reporter import ShiftReportError

        try:
            return command(args)
        except (CommandError, ShiftReportError, RosterError) as error:
            print(f"error: {' '.join(str(error).splitlines())}", file=sys.stderr)
            return EXIT_FAILURE

    return run


def _date_argument(text: str) -> date:
    from sigap_pbx.roster.service import date_out_of_range

    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date as YYYY-MM-DD, e.g. 2026-12-04"
        ) from None
    problem = date_out_of_range(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def _limit_argument(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_REPORTS_LISTED:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number from 1 to {MAX_REPORTS_LISTED}"
        )
    return value


def add_parsers(sub: Any) -> None:
    shifts = sub.add_parser("shifts", help="shift reports: list, show or build them")
    commands = shifts.add_subparsers(dest="shifts_command", required=True)

    reports = commands.add_parser("reports", help="list stored shift reports, newest first")
    reports.add_argument(
        "--since",
        type=_date_argument,
        help="only shifts dated on or after this local date (YYYY-MM-DD)",
    )
    reports.add_argument(
        "--limit",
        type=_limit_argument,
        default=20,
        help=f"how many reports, from 1 to {MAX_REPORTS_LISTED} (default 20)",
    )
    reports.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    reports.set_defaults(handler=cmd_reports)

    report = commands.add_parser("report", help="show one stored shift report")
    report.add_argument("date", type=_date_argument, help="local date the shift starts on")
    report.add_argument("shift", help="shift name from the roster's pattern")
    report.add_argument("--json", action="store_true", help="print JSON instead of tables")
    report.set_defaults(handler=cmd_report)

    build = commands.add_parser(
        "build",
        help="build one shift's report now and store it, replacing a stored one",
    )
    build.add_argument("date", type=_date_argument, help="local date the shift starts on")
    build.add_argument("shift", help="shift name from the roster's pattern")
    build.set_defaults(handler=cmd_build)


# Database access --------------------------------------------------------------------


def _run(args: argparse.Namespace, work: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Open the configured database (migrate=False), run `work(db, config)`, close it."""
    from sigap_pbx.cli import CommandError, _load, _require_sqlite_file
    from sigap_pbx.store import Database, StoreError

    config = _load(args)

    async def main() -> T:
        db = await Database.open(config.database_url, migrate=False)
        try:
            return await work(db, config)
        finally:
            await db.close()

    try:
        _require_sqlite_file(config.database_url)
        return asyncio.run(main())
    except StoreError as error:
        raise CommandError(str(error)) from None


def roster_provider(db: Any, config: Any) -> Callable[[], Awaitable[Roster | None]]:
    """Return a provider of the roster in force, read from the database."""
    from sigap_pbx.roster.service import RosterService

    return RosterService(db, config).current


# Commands -----------------------------------------------------------------------------


@_one_line_errors
def cmd_reports(args: argparse.Namespace) -> int:
    from sigap_pbx.roster.reports import report_summary
    from sigap_pbx.store.shifts import ShiftStore

    async def work(db: Any, config: Any) -> list[dict[str, Any]]:
        views = await ShiftStore(db).list_reports(since=args.since, limit=args.limit)
        return [
            {**report_summary(view.content), "created_at": view.created_at.isoformat()}
            for view in views
        ]

    rows = _run(args, work)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("(no shift reports stored yet)")
        return 0
    print(
        f"{'date':10}  {'shift':10}  {'crew':8}  {'start (local)':16}  {'arrived':>7}  "
        f"{'answered':>8}  {'abandoned':>9}  {'overflow':>8}  "
        f"{'<=10s':>6}  {'<=15s':>6}  {'<=20s':>6}"
    )
    for row in rows:
        print(
            f"{row['date'] or '-':10}  {_clean(row['name'])[:10]:10}  "
            f"{_clean(row['crew'])[:8]:8}  {_local_minute(row['start_local']):16}  "
            f"{_number(row['arrived']):>7}  {_number(row['answered']):>8}  "
            f"{_number(row['abandoned']):>9}  {_number(row['overflowed']):>8}  "
            f"{_percent(row['answered_within_10_percent']):>6}  "
            f"{_percent(row['answered_within_15_percent']):>6}  "
            f"{_percent(row['answered_within_20_percent']):>6}"
        )
    return 0


@_one_line_errors
def cmd_report(args: argparse.Namespace) -> int:
    from sigap_pbx.cli import CommandError
    from sigap_pbx.store.shifts import ShiftStore

    async def work(db: Any, config: Any) -> Any:
        return await ShiftStore(db).get_report(args.date, args.shift)

    view = _run(args, work)
    if view is None:
        raise CommandError(
            f"no stored report for shift {args.shift!r} on {args.date}: reports are "
            "stored when a shift ends; list them with `sigap shifts reports`, or "
            f"build this one with `sigap shifts build {args.date} {args.shift}`"
        )
    if args.json:
        print(json.dumps(view.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print_report(view.content)
    return 0


@_one_line_errors
def cmd_build(args: argparse.Namespace) -> int:
    from sigap_pbx.roster.reporter import ShiftReporter
    from sigap_pbx.store import CallStore, MemberStore
    from sigap_pbx.store.shifts import ShiftStore

    async def work(db: Any, config: Any) -> tuple[dict[str, Any], bool]:
        shift_store = ShiftStore(db)
        reporter = ShiftReporter(
            shift_store,
            MemberStore(db),
            CallStore(db),
            roster_provider(db, config),
            zone=config.roster.zone,
        )
        existed = await shift_store.get_report(args.date, args.shift) is not None
        content, _ = await reporter.store_report(args.date, args.shift, replace=True)
        return content, existed

    content, replaced = _run(args, work)
    shift = content["shift"]
    action = "replaced the stored report" if replaced else "stored a new report"
    print(
        f"{action} of shift {_clean(shift['name'])!r} on {shift['date']} "
        f"({_local_minute(shift['start_local'])} to {_local_minute(shift['end_local'])})"
    )
    if not content["complete"]:
        print("note: the shift has not ended, so the figures stop at the current time")
    print_report(content)
    return 0


# Output -------------------------------------------------------------------------------


def _clean(text: Any) -> str:
    """Return text without control characters, which could drive the terminal."""
    if text is None:
        return "-"
    return "".join(char if char.isprintable() else "?" for char in str(text))


def _local_minute(value: str | None) -> str:
    """Return an ISO time as written, in its own offset, to the minute."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")


def _number(value: Any) -> str:
    return "-" if value is None else str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def print_report(content: dict[str, Any]) -> None:
    """Print a report as readable text: the shift, the queue, then one line per operator."""
    _print_shift(content["shift"])
    _print_queue(content["queue"])
    print()
    _print_operators(content["operators"])


def _print_shift(shift: dict[str, Any]) -> None:
    print(
        f"shift {_clean(shift['name'])} on {shift['date']}, crew {_clean(shift['crew'])}: "
        f"{_local_minute(shift['start_local'])} to {_local_minute(shift['end_local'])} "
        f"({_clean(shift['zone'])})"
    )
    print(
        f"  rostered {shift['rostered']} ({shift['rostered_counted']} operators and "
        f"backups, minimum {shift['minimum_operators']})"
        + ("  BELOW MINIMUM" if shift["below_minimum"] else "")
    )


def _print_queue(queue: dict[str, Any]) -> None:
    print(
        f"  calls arrived {queue['arrived']}, answered {queue['answered']}, "
        f"abandoned before queue {queue['abandoned_before_queue']}, in queue "
        f"{queue['abandoned_in_queue']}, overflowed {queue['overflowed']} "
        f"({queue['overflowed_answered']} answered there), failed {queue['failed']}, "
        f"in progress {queue['in_progress']}"
    )
    within = ", ".join(
        f"<= {item['seconds']} s: {item['count']} ({_percent(item['percent'])})"
        for item in queue["answered_within"]
    )
    print(f"  answered within {within} of all arrived calls")
    print(
        f"  wait of answered calls: max {_seconds(queue['max_wait_seconds'])}, "
        f"mean {_seconds(queue['mean_wait_seconds'])}"
    )
    for target in queue["targets"]:
        verdict = {True: "met", False: "NOT MET", None: "no calls"}[target["met"]]
        print(
            f"  {target['standard']}: {target['target_percent']:g}% within "
            f"{target['seconds']} s -> {_percent(target['percent'])} {verdict}"
        )


def _print_operators(operators: list[dict[str, Any]]) -> None:
    print(
        f"{'endpoint':12}  {'name':18}  {'role':10}  {'offered':>7}  {'answered':>8}  "
        f"{'missed':>6}  {'ratio':>5}  {'talk':>8}  {'wrap-up':>8}  {'paused':>8}  reasons"
    )
    for row in operators:
        ratio = "-" if row["answer_ratio"] is None else f"{row['answer_ratio']:.2f}"
        reasons = ", ".join(
            f"{_clean(reason) or '(none)'} {_seconds(seconds)}"
            for reason, seconds in row["pause_seconds"].items()
        )
        flag = "" if row["rostered"] else "  (not rostered)"
        print(
            f"{_clean(row['endpoint'])[:12]:12}  {_clean(row['name'])[:18]:18}  "
            f"{_clean(row['role'])[:10]:10}  {row['offered']:>7}  {row['answered']:>8}  "
            f"{row['missed']:>6}  {ratio:>5}  {_seconds(row['talk_seconds']):>8}  "
            f"{_seconds(row['wrapup_seconds']):>8}  {_seconds(row['paused_seconds']):>8}  "
            f"{reasons or '-'}{flag}"
        )
    if not operators:
        print("(nobody rostered and no member events)")
