"""`sigap roster ...` and `sigap audit`: import, export, show and check the roster.

Every command reads the database named by the configuration and never creates or
migrates it, like `sigap calls`. Errors are printed as `error: ...` on stderr with
exit code 1. A rejected roster lists each problem on its own line and saves
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sigap_pbx.cli import CommandError, _load, _require_sqlite_file
from sigap_pbx.config import DEFAULT_CONFIG_PATHS, Config
from sigap_pbx.roster.io import (
    NOT_CONFIGURED,
    SECTIONS,
    RosterDocumentError,
    roster_from_csv,
    roster_from_yaml,
    roster_to_csv,
    roster_to_yaml,
)
from sigap_pbx.roster.model import Roster, RosterError
from sigap_pbx.roster.schedule import CoverageProblem, check_coverage
from sigap_pbx.roster.service import (
    NO_ROSTER_HINT,
    RosterService,
    ShiftDuties,
    configured_endpoints,
    date_out_of_range,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import StoreError

EXIT_FAILURE = 1
FORMATS = ("yaml", "csv")
MAX_SHOW_DAYS = 366
MAX_LISTED = 1000
# Coverage problems printed after an import or check; `roster show` lists all.
PRINTED_PROBLEMS = 20

T = TypeVar("T")


class RosterRejected(Exception):
    """A roster file with problems: printed one problem per line, nothing saved.

    `outcome` ends the first line of the message, such as "nothing saved", and
    may be empty.
    """

    def __init__(self, source: str, error: RosterDocumentError, outcome: str) -> None:
        super().__init__(source)
        self.source = source
        self.error = error
        self.outcome = outcome


# --- Arguments ---------------------------------------------------------------


def _date_argument(text: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    problem = date_out_of_range(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def _time_argument(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time with an offset,"
            " such as 2026-12-04T07:00:00+07:00"
        )
    return value


def _range_argument(high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number from 1 to {high}"
            )
        return int(text)

    return parse


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        # getuser() fails in a container whose user id has no passwd entry.
        return "cli:unknown"


def add_parsers(sub: Any) -> None:
    roster = sub.add_parser(
        "roster", help="import, export, show and check the shift roster"
    )
    commands = roster.add_subparsers(dest="roster_command", required=True)

    importing = commands.add_parser(
        "import", help="validate a roster file and save it as the roster in force"
    )
    _file_arguments(importing)
    importing.add_argument(
        "--actor",
        default=_default_actor(),
        help="name recorded in the audit log (default: cli:LOGIN)",
    )
    importing.add_argument("--comment", default="", help="note stored with the version")
    importing.add_argument(
        "--dry-run", action="store_true", help="validate and report, but save nothing"
    )
    importing.set_defaults(handler=_command(cmd_import))

    check = commands.add_parser(
        "check", help="validate a roster file without saving it"
    )
    _file_arguments(check)
    check.set_defaults(handler=_command(cmd_check))

    export = commands.add_parser(
        "export", help="write the roster in force as YAML or CSV"
    )
    export.add_argument(
        "--format", choices=FORMATS, default="yaml", help="default yaml"
    )
    export.add_argument(
        "--section",
        choices=SECTIONS,
        help="the section to write as CSV (needed for csv)",
    )
    export.add_argument("--out", help="file to write (default: standard output)")
    export.set_defaults(handler=_command(cmd_export))

    show = commands.add_parser(
        "show", help="list each shift with its crew and who is on duty"
    )
    show.add_argument(
        "--from", dest="start", type=_date_argument, help="first date (default: today)"
    )
    show.add_argument(
        "--days",
        type=_range_argument(MAX_SHOW_DAYS),
        default=1,
        help=f"number of dates, from 1 to {MAX_SHOW_DAYS} (default 1)",
    )
    show.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    show.set_defaults(handler=_command(cmd_show))

    history = commands.add_parser(
        "history", help="list saved roster versions, newest first"
    )
    history.add_argument(
        "--limit",
        type=_range_argument(MAX_LISTED),
        default=20,
        help=f"how many versions, from 1 to {MAX_LISTED} (default 20)",
    )
    history.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    history.set_defaults(handler=_command(cmd_history))

    audit = sub.add_parser("audit", help="list audit log entries, newest first")
    audit.add_argument("--subject", help="only entries about this subject, e.g. roster")
    audit.add_argument("--action", help="only actions starting with this, e.g. roster.")
    audit.add_argument("--since", type=_time_argument, help="ISO 8601 time with offset")
    audit.add_argument("--until", type=_time_argument, help="ISO 8601 time with offset")
    audit.add_argument(
        "--limit",
        type=_range_argument(MAX_LISTED),
        default=50,
        help=f"how many entries, from 1 to {MAX_LISTED} (default 50)",
    )
    audit.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    audit.set_defaults(handler=_command(cmd_audit))


def _file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", help="roster file: .yaml/.yml, or .csv with one section"
    )
    parser.add_argument(
        "--format", choices=FORMATS, help="file format (default: from the extension)"
    )
    parser.add_argument(
        "--section",
        choices=SECTIONS,
        help="the section a CSV file replaces (default: from the file name,"
        " such as crews.csv)",
    )


def _command(
    run: Callable[[argparse.Namespace, Config], int],
) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so that its expected failures print as `error: ...` lines.

    Roster and store errors become one line, and a rejected roster file lists
    each problem on its own line.
    """

    def handler(args: argparse.Namespace) -> int:
        config = _load(args)
        try:
            return run(args, config)
        except RosterRejected as rejected:
            _print_rejection(rejected)
            if any(NOT_CONFIGURED in problem for problem in rejected.error.problems):
                print(_configuration_note(args, config), file=sys.stderr)
            return EXIT_FAILURE
        except (CommandError, RosterError, StoreError) as error:
            print(f"error: {' '.join(str(error).splitlines())}", file=sys.stderr)
            return EXIT_FAILURE

    return handler


def _configuration_source(args: argparse.Namespace) -> Path | None:
    """Return the configuration file that `load_config` reads, or None without one."""
    if args.config:
        return Path(args.config)
    if os.environ.get("SIGAP_CONFIG"):
        return Path(os.environ["SIGAP_CONFIG"])
    return next((path for path in DEFAULT_CONFIG_PATHS if path.exists()), None)


def _configuration_note(args: argparse.Namespace, config: Config) -> str:
    """Say where the site's SIP endpoints came from, for an endpoint not found."""
    endpoints = ", ".join(sorted(configured_endpoints(config)))
    source = _configuration_source(args)
    if source is None:
        origin = (
            "no configuration file was found (no --config, no SIGAP_CONFIG, no"
            f" {', '.join(str(path) for path in DEFAULT_CONFIG_PATHS)}),"
            f" so only the default endpoints exist: {endpoints}"
        )
    else:
        origin = (
            f"the configuration file {source.resolve()} declares the endpoints"
            f" {endpoints}"
        )
    return (
        f"note: {origin}. If that is the wrong file, run the command from the"
        " directory that contains the site's sigap.toml, or give --config or set"
        " SIGAP_CONFIG."
    )


def _print_rejection(rejected: RosterRejected) -> None:
    error = rejected.error
    count = "1 problem" if error.total == 1 else f"{error.total} problems"
    outcome = f", {rejected.outcome}" if rejected.outcome else ""
    print(f"error: {rejected.source}: {count}{outcome}:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {_printable(problem)}", file=sys.stderr)
    if error.total > len(error.problems):
        print(f"  ... and {error.total - len(error.problems)} more", file=sys.stderr)


def _printable(text: str) -> str:
    """Replace control characters, which could be terminal escape sequences."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", text)


def _with_service(config: Config, work: Callable[[RosterService], Awaitable[T]]) -> T:
    _require_sqlite_file(config.database_url)

    async def main() -> T:
        # migrate=False: a command must not change the schema of a database that
        # a running controller of another version may be using.
        db = await Database.open(config.database_url, migrate=False)
        try:
            return await work(RosterService(db, config))
        finally:
            await db.close()

    return asyncio.run(main())


# --- import and check --------------------------------------------------------


def _file_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.file).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".csv":
        return "csv"
    raise CommandError(
        f"cannot tell the format of {args.file} from its extension, give --format yaml"
        " or --format csv"
    )


def _csv_section(args: argparse.Namespace) -> str:
    if args.section:
        return str(args.section)
    words = re.split(r"[^a-z]+", Path(args.file).stem.lower())
    for section in SECTIONS:
        if section in words:
            return section
    raise CommandError(
        f"cannot tell which section {args.file} contains, give --section with one of"
        f" {', '.join(SECTIONS)}"
    )


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CommandError(
            f"cannot read {path}: {error.strerror or error}; check the path"
        ) from None


def _yaml_roster(args: argparse.Namespace, config: Config, outcome: str) -> Roster:
    data = _read_file(args.file)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CommandError(
            f"{args.file} is not valid UTF-8 (byte {error.start}), save it as UTF-8"
        ) from None
    try:
        return roster_from_yaml(
            text, args.file, known_endpoints=configured_endpoints(config)
        )
    except RosterDocumentError as error:
        raise RosterRejected(args.file, error, outcome) from None


async def _csv_roster(
    args: argparse.Namespace, service: RosterService, section: str, outcome: str
) -> Roster:
    current = await service.current()
    if current is None:
        raise CommandError(
            f"no roster saved yet, so there is nothing to replace the {section} of:"
            " import a whole roster as YAML first (docs/examples/roster.yaml is a"
            " sample), then replace sections with CSV"
        )
    try:
        return roster_from_csv(
            current,
            _read_file(args.file),
            section,
            args.file,
            known_endpoints=service.known_endpoints,
        )
    except RosterDocumentError as error:
        raise RosterRejected(args.file, error, outcome) from None


def _print_coverage(problems: list[CoverageProblem], days: int) -> None:
    if not problems:
        print(f"coverage: every shift of the next {days} days has its minimum")
        return
    print(
        f"warning: {len(problems)} shifts below their minimum in the next {days} days:"
    )
    for problem in problems[:PRINTED_PROBLEMS]:
        print(f"  {problem}")
    if len(problems) > PRINTED_PROBLEMS:
        print(
            f"  ... and {len(problems) - PRINTED_PROBLEMS} more;"
            f" `sigap roster show --days {days}` lists every shift"
        )


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    file_format = _file_format(args)
    if args.dry_run:
        return _validate(
            args, config, file_format, "roster valid, not saved (--dry-run)",
            "nothing saved",
        )

    async def work(service: RosterService) -> int:
        outcome = "nothing saved"
        if file_format == "yaml":
            roster = _yaml_roster(args, config, outcome)
        else:
            roster = await _csv_roster(args, service, _csv_section(args), outcome)
        result = await service.save(roster, args.actor, args.comment)
        if result.changed:
            print(
                f"saved roster version {result.version_id}: {result.changes['summary']}"
            )
        else:
            print(
                f"roster unchanged, version {result.version_id} stays in force"
                " (no new version saved)"
            )
        _print_coverage(
            list(result.coverage_problems), config.roster.coverage_check_days
        )
        return 0

    return _with_service(config, work)


def _validate(
    args: argparse.Namespace,
    config: Config,
    file_format: str,
    valid: str,
    outcome: str,
) -> int:
    """Check a roster file and its coverage, and print `valid` when it passes.

    A YAML file is a whole roster, so it needs no database. A CSV file replaces
    one section of the roster in force, which is read from the database.
    """
    days = config.roster.coverage_check_days
    if file_format == "yaml":
        roster = _yaml_roster(args, config, outcome)
        today = datetime.now(UTC).astimezone(config.roster.zone).date()
        problems = check_coverage(
            roster.rotation, roster.operators, roster.exceptions, today, days
        )
    else:

        async def work(service: RosterService) -> list[CoverageProblem]:
            roster = await _csv_roster(args, service, _csv_section(args), outcome)
            return service.coverage(roster)

        problems = _with_service(config, work)
    print(f"{args.file}: {valid}")
    _print_coverage(problems, days)
    return 0


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    return _validate(args, config, _file_format(args), "roster valid", "")


# --- export, show, history, audit ------------------------------------------------


def _no_roster() -> CommandError:
    return CommandError(f"no roster saved yet: {NO_ROSTER_HINT}")


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    if args.format == "csv" and not args.section:
        raise CommandError(
            "a CSV file contains one section, give --section with one of"
            f" {', '.join(SECTIONS)}"
        )

    async def work(service: RosterService) -> str:
        version = await service.current_version()
        roster = await service.current()
        if version is None or roster is None:
            raise _no_roster()
        if args.format == "csv":
            return roster_to_csv(roster, args.section)
        saved = version.saved_at.astimezone(service.zone).strftime("%Y-%m-%d %H:%M %Z")
        header = (
            f"Sigap 112 roster, version {version.id}, saved {saved}"
            f" by {_printable(version.saved_by)}\n"
            f"Shift start times are local time in {service.zone.key}."
        )
        return roster_to_yaml(roster, header)

    text = _with_service(config, work)
    if not args.out:
        sys.stdout.write(text)
        return 0
    # Spreadsheets read a CSV file as UTF-8 only when it starts with a byte order mark.
    prefix = "\ufeff" if args.format == "csv" else ""
    try:
        Path(args.out).write_text(prefix + text, encoding="utf-8", newline="")
    except OSError as error:
        raise CommandError(
            f"cannot write {args.out}: {error.strerror or error}; check the path"
        ) from None
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _window_text(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    days = (local_end.date() - local_start.date()).days
    later = f" (+{days} day)" if days else ""
    return f"{local_start:%H:%M}-{local_end:%H:%M}{later}"


async def _shift_running_at_start(
    service: RosterService, start: date
) -> list[ShiftDuties]:
    """List the shift of the day before `start` that still runs at its midnight.

    That is the shift in force when the listing starts, such as the night shift
    that began at 23:00 the day before. The list is empty when no shift of the
    day before runs past midnight.
    """
    previous = start - timedelta(days=1)
    if date_out_of_range(previous) is not None:
        return []
    midnight = datetime.combine(start, time(0), tzinfo=service.zone)
    return [
        shift for shift in await service.shifts(previous) if shift.end_utc > midnight
    ]


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    zone: ZoneInfo = config.roster.zone

    async def work(service: RosterService) -> tuple[int, list[ShiftDuties]]:
        version_id = await service.current_version_id()
        if version_id is None:
            raise _no_roster()
        start = args.start or service.today()
        shifts = await service.shifts(start, args.days)
        return version_id, await _shift_running_at_start(service, start) + shifts

    version_id, shifts = _with_service(config, work)
    if args.json:
        body = {
            "version_id": version_id,
            "timezone": zone.key,
            "shifts": [shift.to_dict(zone) for shift in shifts],
        }
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    print(f"roster version {version_id}, times in {zone.key}")
    print(f"{'date':10}  {'shift':10}  {'window':20}  {'crew':8}  on duty")
    for shift in shifts:
        duties = (
            ", ".join(f"{d.endpoint} ({d.role.value})" for d in shift.duties)
            or "nobody"
        )
        line = (
            f"{shift.shift_date.isoformat():10}  {shift.shift.name:10}  "
            f"{_window_text(shift.start_utc, shift.end_utc, zone):20}  "
            f"{shift.crew:8}  {duties}"
        )
        if shift.problem is not None:
            line += (
                f"  BELOW MINIMUM: {shift.problem.on_duty} of {shift.problem.minimum}"
            )
        print(_printable(line))
    return 0


def cmd_history(args: argparse.Namespace, config: Config) -> int:
    zone: ZoneInfo = config.roster.zone

    async def work(service: RosterService) -> list[Any]:
        return await service.versions(args.limit)

    versions = _with_service(config, work)
    if args.json:
        rows = [v.to_dict(content=False) for v in versions]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not versions:
        print(f"(no roster saved yet: {NO_ROSTER_HINT})")
        return 0
    print(
        f"{'id':>5}  {'saved (' + zone.key + ')':25}  {'by':20}"
        f"  {'below min':>9}  comment"
    )
    for version in versions:
        saved = version.saved_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        line = (
            f"{version.id:>5}  {saved:25}  {version.saved_by[:20]:20}  "
            f"{len(version.coverage_problems):>9}  {version.comment}"
        )
        print(_printable(line))
    return 0


def cmd_audit(args: argparse.Namespace, config: Config) -> int:
    zone: ZoneInfo = config.roster.zone

    async def work(service: RosterService) -> list[Any]:
        return await service.audit_entries(
            subject=args.subject,
            action_prefix=args.action,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )

    entries = _with_service(config, work)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print("(no audit entries match)")
        return 0
    print(
        f"{'at (' + zone.key + ')':25}  {'actor':20}  {'action':16}"
        f"  {'subject':12}  detail"
    )
    for entry in entries:
        at = entry.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        detail = entry.detail.get("summary") or json.dumps(
            entry.detail, ensure_ascii=False
        )
        line = (
            f"{at:25}  {entry.actor[:20]:20}  {entry.action:16}"
            f"  {entry.subject:12}  {detail}"
        )
        print(_printable(line))
    return 0
