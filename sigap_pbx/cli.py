"""The `sigap` command."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from sigap_pbx.cli_errors import CommandError
from sigap_pbx.config import DEFAULT_CONFIG_PATHS, Config, ConfigError, load_config
from sigap_pbx.store.models import CallOutcome

EXIT_FAILURE = 1
# argparse exits with 2 on a usage error, and a bad configuration uses the same code.
EXIT_CONFIG = 2
# `serve` could not start: a port in use, or a database it cannot open or upgrade. Any
# other error exits with 1, like a Python crash, so scripts/run.sh tells them apart.
EXIT_STARTUP = 3
DISPLAY_ZONE = ZoneInfo("Asia/Pontianak")
# Maximum number of calls that `sigap calls` lists, the same cap as the web API's
# `limit` parameter.
MAX_CALLS_LISTED = 500


class _ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser that reports a usage error in one line, without the usage text."""

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: error: {message}; see {self.prog} --help\n"
        self.exit(EXIT_CONFIG, line)


def mask_password(url: str) -> str:
    """Hide the password of a database URL before printing it."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _load(args: argparse.Namespace) -> Config:
    """Load the configuration, raising ConfigError when the file cannot be read."""
    try:
        return load_config(Path(args.config) if args.config else None)
    except (OSError, UnicodeDecodeError) as error:
        path = _config_path(args, error)
        if isinstance(error, UnicodeDecodeError):
            reason = (
                f"not valid UTF-8 ({error.reason} at byte {error.start}); "
                "save the file as UTF-8"
            )
        else:
            reason = error.strerror or str(error)
        raise ConfigError(f"cannot read configuration file {path}: {reason}") from None


def _config_path(args: argparse.Namespace, error: Exception) -> str:
    """Name the configuration file that load_config tried to read, for messages."""
    if isinstance(error, OSError) and error.filename:
        return str(error.filename)
    if args.config:
        return str(args.config)
    if os.environ.get("SIGAP_CONFIG"):
        return os.environ["SIGAP_CONFIG"]
    found = next((path for path in DEFAULT_CONFIG_PATHS if path.exists()), None)
    return str(found) if found is not None else "(none found)"


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    print(f"configuration valid: site {config.site.name!r}, instance {config.site.instance!r}")
    print(f"  database   {mask_password(config.database_url)}")
    print(f"  trunk      {config.sip.trunk_bind}  from {', '.join(t.name for t in config.sip.trunks)}")
    print(f"  phones     {config.sip.operator_bind}  operators: "
          f"{', '.join(op.endpoint for op in config.sip.operators)}")
    print(f"  numbers    {', '.join(config.sip.emergency_numbers)}")
    print(f"  AMI        {config.ami.host}:{config.ami.port}")
    print(f"  FastAGI    {config.agi.host}:{config.agi.port}")
    print(f"  web        http://{config.web.host}:{config.web.port}")
    return 0


def cmd_render_config(args: argparse.Namespace) -> int:
    from sigap_pbx.asterisk.render import render_config

    config = _load(args)
    out = render_config(config, Path(args.out) if args.out else None)
    print(out)
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from sigap_pbx.asterisk.prompts import PromptError, generate_prompts

    config = _load(args)
    try:
        out = generate_prompts(
            Path(args.out) if args.out else config.prompts_dir, config.prompts.custom_dir
        )
    except PromptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sigap_pbx.logs import configure_logging
    from sigap_pbx.service import serve

    config = _load(args)
    configure_logging(config.logging.format, config.logging.level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, stop)

    from sigap_pbx.service import StartupError

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return 0


def _local(value: str | None) -> str:
    if not value:
        return "-"
    from datetime import datetime

    return datetime.fromisoformat(value).astimezone(DISPLAY_ZONE).strftime("%Y-%m-%d %H:%M:%S")


def _require_sqlite_file(url: str) -> None:
    """Raise CommandError when the URL names an SQLite file that does not exist.

    Without this check, opening the URL would create an empty database there.
    """
    from sigap_pbx.store.db import parse_url

    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    path = Path(parsed.database or "").absolute()
    if not path.exists():
        raise CommandError(
            f"no database at {path}: start the stack with `make run` first, run "
            "from the directory that holds var/, or set [site] state_dir / "
            "[database] url"
        )


async def _fetch_calls(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from sigap_pbx.store import CallStore, Database

    # migrate=False: a read-only command must not change the schema of a database
    # that a running controller of another version may be using.
    db = await Database.open(url, migrate=False)
    try:
        calls = await CallStore(db).list_calls(
            limit=args.limit, outcome=args.outcome, number=args.number
        )
        return [call.to_dict() for call in calls]
    finally:
        await db.close()


def cmd_calls(args: argparse.Namespace) -> int:
    from sigap_pbx.store import StoreError

    config = _load(args)
    try:
        _require_sqlite_file(config.database_url)
        rows = asyncio.run(_fetch_calls(config.database_url, args))
    except StoreError as error:
        raise CommandError(str(error)) from None
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    header = f"{'id':>5}  {'arrived (WIB)':19}  {'caller':16}  {'outcome':22}  {'wait s':>6}  {'talk s':>6}  operator"
    print(header)
    for row in rows:
        wait = row.get("wait_seconds")
        talk = row.get("talk_seconds")
        who = row.get("operator") or row.get("answered_by") or "-"
        flag = " (reconciled)" if row.get("reconciled") else ""
        print(
            f"{row['id']:>5}  {_local(row.get('arrived_at')):19}  "
            f"{_caller(row)[:16]:16}  {row['outcome']:22}  "
            f"{'' if wait is None else f'{wait:.1f}':>6}  {'' if talk is None else f'{talk:.1f}':>6}  "
            f"{who}{flag}"
        )
    if not rows:
        print("(no calls recorded yet)")
    return 0


def _caller(row: dict[str, Any]) -> str:
    # The raw number is not printed, because the caller's network controls it and
    # it may contain terminal escape sequences.
    if row.get("caller_number"):
        return str(row["caller_number"])
    return "unknown" if row.get("caller_number_raw") else "withheld"


def _calls_limit(text: str) -> int:
    """Parse --limit, which argparse reports in one line when it is out of range."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_CALLS_LISTED:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number from 1 to {MAX_CALLS_LISTED}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="sigap", description="Sigap 112 controller")
    parser.add_argument(
        "--config", help="TOML configuration file (default: $SIGAP_CONFIG, ./sigap.toml, "
        "/etc/sigap/sigap.toml, or built-in defaults)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the controller, its FastAGI server and web API")
    sub.add_parser("check-config", help="validate the configuration and print a summary")
    render = sub.add_parser("render-config", help="write the Asterisk configuration files")
    render.add_argument("--out", help="directory (default: STATE_DIR/asterisk-etc)")
    prompts = sub.add_parser("prompts", help="generate the Indonesian voice prompts")
    prompts.add_argument("--out", help="directory (default: STATE_DIR/prompts)")
    calls = sub.add_parser("calls", help="list recorded calls, newest first")
    calls.add_argument(
        "--limit",
        type=_calls_limit,
        default=20,
        help=f"how many calls, from 1 to {MAX_CALLS_LISTED} (default 20)",
    )
    outcomes = [outcome.value for outcome in CallOutcome]
    calls.add_argument(
        "--outcome",
        choices=outcomes,
        metavar="OUTCOME",
        help=f"only calls with this outcome: {', '.join(outcomes)}",
    )
    calls.add_argument("--number", help="only calls from this normalised number, e.g. +62812...")
    calls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return parser


# Modules with more subcommands. Each has add_parsers(sub), which adds its parsers
# and sets `handler` on each of them to the function that runs it.
COMMAND_MODULES = (
    "sigap_pbx.roster.cli",
    "sigap_pbx.roster.report_cli",
    "sigap_pbx.members.cli",
    "sigap_pbx.agencies.cli",
    "sigap_pbx.user_cli",
)


COMMANDS = {
    "serve": cmd_serve,
    "check-config": cmd_check_config,
    "render-config": cmd_render_config,
    "prompts": cmd_prompts,
    "calls": cmd_calls,
}


def main(argv: list[str] | None = None) -> int:
    from sigap_pbx.logs import configure_logging

    args = build_parser().parse_args(argv)
    # Log lines go to stderr, so `sigap calls --json` prints nothing but JSON; `serve`
    # configures logging again from the site's settings.
    configure_logging("console", "warning")
    try:
        handler = COMMANDS.get(args.command) or args.handler
        return handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CommandError as exc:
        # Store errors can quote a driver message that spans lines.
        print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`sigap shifts reports | head`): stop quietly, and keep
        # Python from reporting the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
