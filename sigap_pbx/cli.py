"""The `sigap` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from sigap_pbx.config import Config, ConfigError, load_config

EXIT_CONFIG = 2
DISPLAY_ZONE = ZoneInfo("Asia/Pontianak")


def mask_password(url: str) -> str:
    """Hide the password of a database URL before printing it."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _load(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config) if args.config else None)


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
        return 1
    return 0


def _local(value: str | None) -> str:
    if not value:
        return "-"
    from datetime import datetime

    return datetime.fromisoformat(value).astimezone(DISPLAY_ZONE).strftime("%Y-%m-%d %H:%M:%S")


def cmd_calls(args: argparse.Namespace) -> int:
    from sigap_pbx.store import CallStore, Database

    config = _load(args)

    async def fetch() -> list[dict[str, object]]:
        db = await Database.open(config.database_url)
        try:
            calls = await CallStore(db).list_calls(
                limit=args.limit, outcome=args.outcome, number=args.number
            )
            return [call.to_dict() for call in calls]
        finally:
            await db.close()

    rows = asyncio.run(fetch())
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
            f"{(row.get('caller_number') or 'withheld')[:16]:16}  {row['outcome']:22}  "
            f"{'' if wait is None else f'{wait:.1f}':>6}  {'' if talk is None else f'{talk:.1f}':>6}  "
            f"{who}{flag}"
        )
    if not rows:
        print("(no calls recorded yet)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sigap", description="Sigap 112 controller")
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
    calls.add_argument("--limit", type=int, default=20, help="how many calls (default 20)")
    calls.add_argument("--outcome", help="only calls with this outcome, e.g. abandoned_in_queue")
    calls.add_argument("--number", help="only calls from this normalised number, e.g. +62812...")
    calls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


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
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
