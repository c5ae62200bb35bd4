"""`sigap agencies ...` and `sigap reports ...`: the agency directory and incident
reports from the command line.

Every command reads the database named by the configuration and never creates or
migrates it. Errors are printed as `error: ...` on stderr with exit code 1, and a
rejected directory file lists each problem on its own line and saves nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sigap_pbx.agencies.directory import AgencyDocumentError, AgencyService
from sigap_pbx.agencies.reports import (
    CALL_TYPES,
    CATEGORIES,
    LABELS_ID,
    STATUSES,
    ReportDocumentError,
    ReportService,
)
from sigap_pbx.cli import _load, _require_sqlite_file
from sigap_pbx.cli_errors import CommandError
from sigap_pbx.config import Config
from sigap_pbx.roster.cli import _default_actor, _range_argument, _time_argument
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import StoreError
from sigap_pbx.wire.errors import DialStringError

EXIT_FAILURE = 1
FORMATS = ("yaml", "csv")
MAX_LISTED = 500
# reports.id is an INTEGER column, 32 bits on PostgreSQL.
MAX_REPORT_ID = 2**31 - 1

T = TypeVar("T")


class Services:
    """The two services over one open database, for one command."""

    def __init__(self, db: Database, config: Config) -> None:
        self.agencies = AgencyService(db, config)
        self.reports = ReportService(db, config)


def _report_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_REPORT_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not a report id (a whole number)")
    return int(text)


def _actor_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor",
        default=_default_actor(),
        help="name recorded in the audit log (default: cli:LOGIN)",
    )


def add_parsers(sub: Any) -> None:
    _add_agency_parsers(sub)
    _add_report_parsers(sub)


def _add_agency_parsers(sub: Any) -> None:
    agencies = sub.add_parser("agencies", help="list, show, import and export agencies")
    commands = agencies.add_subparsers(dest="agencies_command", required=True)

    listing = commands.add_parser("list", help="list agencies with their dial codes")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_command(cmd_agencies_list))

    show = commands.add_parser("show", help="show one agency with its lines and accounts")
    show.add_argument("code", help="agency code, or its dial code")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=_command(cmd_agencies_show))

    importing = commands.add_parser(
        "import", help="create or replace the agencies in a YAML or CSV file"
    )
    importing.add_argument("file", help="directory file: .yaml/.yml or .csv")
    importing.add_argument(
        "--format", choices=FORMATS, help="file format (default: from the extension)"
    )
    _actor_argument(importing)
    importing.set_defaults(handler=_command(cmd_agencies_import))

    export = commands.add_parser("export", help="write the directory as YAML or CSV")
    export.add_argument("--format", choices=FORMATS, default="yaml", help="default yaml")
    export.add_argument("--out", help="file to write (default: standard output)")
    export.set_defaults(handler=_command(cmd_agencies_export))

    deactivate = commands.add_parser(
        "deactivate", help="stop dispatching reports to an agency"
    )
    deactivate.add_argument("code", help="agency code")
    _actor_argument(deactivate)
    deactivate.set_defaults(handler=_command(cmd_agencies_deactivate))


def _add_report_parsers(sub: Any) -> None:
    reports = sub.add_parser("reports", help="create, update, list and dispatch reports")
    commands = reports.add_subparsers(dest="reports_command", required=True)

    listing = commands.add_parser("list", help="list reports, newest first")
    listing.add_argument("--status", choices=STATUSES, help="only reports with this status")
    listing.add_argument("--category", choices=CATEGORIES, help="only this category")
    listing.add_argument("--call-type", choices=CALL_TYPES, help="only this call type")
    listing.add_argument("--since", type=_time_argument, help="ISO 8601 time with offset")
    listing.add_argument("--until", type=_time_argument, help="ISO 8601 time with offset")
    listing.add_argument("--number", help="only reports with a call from this number")
    listing.add_argument(
        "--limit",
        type=_range_argument(MAX_LISTED),
        default=20,
        help=f"how many reports, from 1 to {MAX_LISTED} (default 20)",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_command(cmd_reports_list))

    show = commands.add_parser("show", help="show a report with its calls and dispatches")
    show.add_argument("id", type=_report_id, help="report id")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=_command(cmd_reports_show))

    create = commands.add_parser("create", help="create a report")
    create.add_argument("--from-json", metavar="FILE", help="read the fields from a JSON file")
    _field_arguments(create)
    create.add_argument("--call", metavar="UNIQUEID", help="link the call with this uniqueid")
    _actor_argument(create)
    create.set_defaults(handler=_command(cmd_reports_create))

    update = commands.add_parser("update", help="change fields of a report")
    update.add_argument("id", type=_report_id, help="report id")
    update.add_argument("--from-json", metavar="FILE", help="read the changes from a JSON file")
    _field_arguments(update)
    update.add_argument("--status", choices=STATUSES, help="open or closed")
    update.add_argument(
        "--expect-version", type=int, help="fail unless the report is at this version"
    )
    _actor_argument(update)
    update.set_defaults(handler=_command(cmd_reports_update))

    link = commands.add_parser("link", help="link another call to a report")
    link.add_argument("id", type=_report_id, help="report id")
    link.add_argument("uniqueid", help="uniqueid of the caller's channel")
    _actor_argument(link)
    link.set_defaults(handler=_command(cmd_reports_link))

    dispatch = commands.add_parser("dispatch", help="send a report to agencies")
    dispatch.add_argument("id", type=_report_id, help="report id")
    dispatch.add_argument("agencies", nargs="+", metavar="AGENCY", help="agency codes")
    _actor_argument(dispatch)
    dispatch.set_defaults(handler=_command(cmd_reports_dispatch))


def _field_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--category", choices=CATEGORIES, help="kind of incident")
    parser.add_argument("--call-type", choices=CALL_TYPES, help="kind of call")
    parser.add_argument(
        "--priority", type=_range_argument(4), help="1 (most urgent) to 4"
    )
    parser.add_argument("--location", dest="location_text", help="address or landmark")
    parser.add_argument("--kelurahan", help="kelurahan (village or urban ward)")
    parser.add_argument("--kecamatan", help="kecamatan (district)")
    parser.add_argument("--latitude", type=float, help="decimal degrees, with --longitude")
    parser.add_argument("--longitude", type=float, help="decimal degrees, with --latitude")
    parser.add_argument("--description", help="what happened")


FIELD_OPTIONS = (
    "category",
    "call_type",
    "priority",
    "location_text",
    "kelurahan",
    "kecamatan",
    "latitude",
    "longitude",
    "description",
    "status",
)


def _command(
    run: Callable[[argparse.Namespace, Config], int],
) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so that its expected failures print as `error: ...` lines."""

    def handler(args: argparse.Namespace) -> int:
        config = _load(args)
        try:
            return run(args, config)
        except AgencyDocumentError as error:
            count = "1 problem" if error.total == 1 else f"{error.total} problems"
            print(f"error: {count}, nothing saved:", file=sys.stderr)
            for problem in error.problems:
                print(f"  {_printable(problem)}", file=sys.stderr)
            if error.total > len(error.problems):
                print(f"  ... and {error.total - len(error.problems)} more", file=sys.stderr)
            return EXIT_FAILURE
        except (
            CommandError,
            ReportDocumentError,
            StoreError,
            DialStringError,
        ) as error:
            print(f"error: {_printable(' '.join(str(error).splitlines()))}", file=sys.stderr)
            return EXIT_FAILURE

    return handler


def _printable(text: str) -> str:
    """Replace control characters, which could be terminal escape sequences."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", text)


def _with_services(config: Config, work: Callable[[Services], Awaitable[T]]) -> T:
    _require_sqlite_file(config.database_url)

    async def main() -> T:
        # migrate=False: a command must not change the schema of a database that
        # a running controller of another version may be using.
        db = await Database.open(config.database_url, migrate=False)
        try:
            return await work(Services(db, config))
        finally:
            await db.close()

    return asyncio.run(main())


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CommandError(
            f"cannot read {path}: {error.strerror or error}; check the path"
        ) from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# --- agencies ------------------------------------------------------------------


def cmd_agencies_list(args: argparse.Namespace, config: Config) -> int:
    agencies = _with_services(config, lambda s: s.agencies.list_agencies())
    if args.json:
        _print_json([agency.to_dict() for agency in agencies])
        return 0
    if not agencies:
        print("(no agencies yet: import a directory with `sigap agencies import FILE`)")
        return 0
    print(f"{'code':16}  {'dial':4}  {'kind':12}  {'lines':>5}  {'state':8}  name")
    for agency in agencies:
        state = "active" if agency.active else "inactive"
        sample = "  (SAMPLE: placeholder lines)" if agency.sample else ""
        print(
            _printable(
                f"{agency.code:16}  {agency.dial_code or '-':4}  {agency.kind.value:12}"
                f"  {len(agency.lines):>5}  {state:8}  {agency.name}{sample}"
            )
        )
    return 0


def cmd_agencies_show(args: argparse.Namespace, config: Config) -> int:
    async def work(services: Services) -> tuple[Any, list[Any]]:
        agency = await services.agencies.get(args.code)
        return agency, services.agencies.lines_for(agency)

    agency, staffed = _with_services(config, work)
    if args.json:
        _print_json(agency.to_dict())
        return 0
    lines = [
        f"{agency.name} ({agency.code}), {agency.kind.value},"
        f" dial code {agency.dial_code or '-'}, {'active' if agency.active else 'INACTIVE'}",
    ]
    if agency.sample:
        lines.append("SAMPLE agency: its lines are placeholders, replace them before use")
    lines.append(
        f"webhook: {agency.webhook_url or '-'}"
        f" (secret {'set' if agency.webhook_secret else 'not set'})"
    )
    lines.append("lines (priority, kind, target, hours, label):")
    for line in agency.lines:
        mark = "  staffed now" if line in staffed else ""
        role = " backup" if line.backup else ""
        lines.append(
            f"  {line.priority:>2} {line.kind.value:8} {line.target:24}"
            f" {line.hours or 'always':11} {line.label}{role}{mark}"
        )
    lines.append("accounts: " + (", ".join(a.username for a in agency.accounts) or "-"))
    for text in lines:
        print(_printable(text))
    return 0


def cmd_agencies_import(args: argparse.Namespace, config: Config) -> int:
    file_format = args.format
    if file_format is None:
        suffix = Path(args.file).suffix.lower()
        file_format = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}.get(suffix)
    if file_format is None:
        raise CommandError(
            f"cannot tell the format of {args.file} from its extension, give"
            " --format yaml or --format csv"
        )
    data = _read_file(args.file)

    async def work(services: Services) -> list[Any]:
        if file_format == "csv":
            return await services.agencies.import_csv(data, args.actor, args.file)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise CommandError(
                f"{args.file} is not valid UTF-8 (byte {error.start}), save it as UTF-8"
            ) from None
        return await services.agencies.import_yaml(text, args.actor, args.file)

    outcomes = _with_services(config, work)
    for outcome in outcomes:
        changed = f": {', '.join(outcome.changed)}" if outcome.changed else ""
        print(f"{outcome.code}: {outcome.action}{changed}")
    return 0


def cmd_agencies_export(args: argparse.Namespace, config: Config) -> int:
    async def work(services: Services) -> str:
        if args.format == "csv":
            return await services.agencies.export_csv()
        return await services.agencies.export_yaml()

    text = _with_services(config, work)
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


def cmd_agencies_deactivate(args: argparse.Namespace, config: Config) -> int:
    async def work(services: Services) -> tuple[Any, bool]:
        return await services.agencies.deactivate(args.code, args.actor)

    agency, changed = _with_services(config, work)
    print(f"{agency.code}: {'deactivated' if changed else 'was already inactive'}")
    return 0


# --- reports -------------------------------------------------------------------


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.from_json:
        try:
            loaded = json.loads(_read_file(args.from_json).decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CommandError(
                f"{args.from_json} is not valid UTF-8 JSON ({error}), correct the file"
            ) from None
        if not isinstance(loaded, dict):
            raise CommandError(
                f"{args.from_json} must contain a JSON object with the report's fields"
            )
        values.update(loaded)
    for name in FIELD_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return values


def _report_row(report: Any) -> str:
    category = LABELS_ID["category"][report.category.value]
    location = report.location_text or report.kelurahan or "-"
    return _printable(
        f"{report.id:>5}  v{report.version:<3}  {report.created_at:%Y-%m-%d %H:%M}"
        f"  P{report.priority}  {report.status.value:6}  {report.call_type.value:11}"
        f"  {category:24}  {location[:40]}"
    )


def cmd_reports_list(args: argparse.Namespace, config: Config) -> int:
    async def work(services: Services) -> list[Any]:
        return await services.reports.list_reports(
            status=args.status,
            category=args.category,
            call_type=args.call_type,
            since=args.since,
            until=args.until,
            number=args.number,
            limit=args.limit,
        )

    reports = _with_services(config, work)
    if args.json:
        _print_json([report.to_dict() for report in reports])
        return 0
    if not reports:
        print("(no reports match)")
        return 0
    print(
        f"{'id':>5}  {'ver':4}  {'created (UTC)':16}  pri  {'status':6}"
        f"  {'call type':11}  {'category':24}  location"
    )
    for report in reports:
        print(_report_row(report))
    return 0


def cmd_reports_show(args: argparse.Namespace, config: Config) -> int:
    detail = _with_services(config, lambda s: s.reports.get(args.id))
    if args.json:
        _print_json(detail.to_dict())
        return 0
    report = detail.report
    labels = LABELS_ID
    text = [
        f"report {report.id}, version {report.version}, {report.status.value}"
        f" ({labels['status'][report.status.value]})",
        f"category: {report.category.value} ({labels['category'][report.category.value]}),"
        f" call type: {report.call_type.value}"
        f" ({labels['call_type'][report.call_type.value]}), priority {report.priority}",
        f"location: {report.location_text or '-'}; kelurahan {report.kelurahan or '-'};"
        f" kecamatan {report.kecamatan or '-'}",
        f"coordinates: {report.latitude}, {report.longitude}"
        if report.latitude is not None
        else "coordinates: -",
        f"description: {report.description or '-'}",
        f"people: {json.dumps(report.people, ensure_ascii=False)}",
        f"created {report.created_at.isoformat()} by {report.created_by},"
        f" updated {report.updated_at.isoformat()}",
        "calls: " + (", ".join(c.call_uniqueid for c in detail.calls) or "-"),
        "dispatches:",
    ]
    for dispatch in detail.dispatches:
        text.append(
            f"  {dispatch.agency_code}: {dispatch.status.value}"
            f" ({labels['dispatch_status'][dispatch.status.value]}),"
            f" sent {dispatch.sent_at.isoformat()} by {dispatch.sent_by}"
        )
    pending = sum(1 for message in detail.outbox if message.status == "pending")
    text.append(f"webhook messages: {len(detail.outbox)} ({pending} pending)")
    text.append(f"forward attempts: {len(detail.forward_attempts)}")
    for attempt in detail.forward_attempts:
        text.append(
            f"  {attempt.agency_code} {attempt.target} {attempt.mode.value}:"
            f" {attempt.result.value}"
        )
    for line in text:
        print(_printable(line))
    return 0


def cmd_reports_create(args: argparse.Namespace, config: Config) -> int:
    values = _fields(args)

    async def work(services: Services) -> Any:
        return await services.reports.create(values, args.actor, call_uniqueid=args.call)

    report = _with_services(config, work)
    print(f"created report {report.id} (version {report.version})")
    return 0


def cmd_reports_update(args: argparse.Namespace, config: Config) -> int:
    values = _fields(args)
    if not values:
        raise CommandError(
            "nothing to change, give at least one field option or --from-json FILE"
        )

    async def work(services: Services) -> Any:
        return await services.reports.update(
            args.id, values, args.actor, expected_version=args.expect_version
        )

    outcome = _with_services(config, work)
    if not outcome.changed:
        print(f"report {args.id} unchanged, version {outcome.report.version}")
        return 0
    print(
        f"report {args.id} is now version {outcome.report.version}:"
        f" {', '.join(outcome.changed)} changed;"
        f" {outcome.outbox_messages} webhook messages queued"
    )
    return 0


def cmd_reports_link(args: argparse.Namespace, config: Config) -> int:
    async def work(services: Services) -> bool:
        return await services.reports.link_call(args.id, args.uniqueid, args.actor)

    linked = _with_services(config, work)
    state = "linked to" if linked else "was already linked to"
    print(_printable(f"call {args.uniqueid} {state} report {args.id}"))
    return 0


def cmd_reports_dispatch(args: argparse.Namespace, config: Config) -> int:
    async def work(services: Services) -> Any:
        return await services.reports.dispatch(args.id, args.agencies, args.actor)

    outcome = _with_services(config, work)
    if outcome.sent:
        print(
            f"report {outcome.report_id} version {outcome.version} sent to"
            f" {', '.join(outcome.sent)}"
        )
    if outcome.already_sent:
        print(f"already sent before: {', '.join(outcome.already_sent)}")
    return 0
