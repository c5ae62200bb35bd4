"""`sigap user ...`: web accounts from the command line.

`sigap user add NAME --role admin` creates the first administrator. It is the one
command that may create the database, so that accounts can exist before the first
`make run`. The password is read from the terminal (twice), from standard input
with --password-stdin, or from a file with --password-file; never from the
command line, where other users could read it in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sigap_pbx.accounts import (
    AccountError,
    AccountService,
    check_new_user,
    check_password,
)
from sigap_pbx.cli import _load
from sigap_pbx.cli_errors import CommandError
from sigap_pbx.config import Config
from sigap_pbx.roster.cli import _default_actor
from sigap_pbx.store.accounts import Role
from sigap_pbx.store.agencies import AgencyStore
from sigap_pbx.store.db import Database, parse_url
from sigap_pbx.store.errors import StoreError

EXIT_FAILURE = 1
T = TypeVar("T")


def add_parsers(sub: Any) -> None:
    user = sub.add_parser("user", help="add, list and change web accounts")
    commands = user.add_subparsers(dest="user_command", required=True)

    add = commands.add_parser("add", help="add a web account")
    add.add_argument("username", help="1 to 64 lowercase letters, digits, '.', '_' or '-'")
    add.add_argument("--role", required=True, choices=[r.value for r in Role],
                     help="what the account may see and do")
    add.add_argument("--name", help="display name (default: the username)")
    add.add_argument("--agency", help="agency code, required for role agency")
    add.add_argument("--endpoint",
                     help="PJSIP endpoint of the user's own phone, one of [[sip.operators]] "
                     "or [sip.supervisor]; required for role operator")
    _password_arguments(add)
    add.set_defaults(handler=_command(cmd_user_add))

    listing = commands.add_parser("list", help="list web accounts")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_command(cmd_user_list))

    passwd = commands.add_parser(
        "passwd", help="set a new password and end the user's open sessions"
    )
    passwd.add_argument("username")
    _password_arguments(passwd)
    passwd.set_defaults(handler=_command(cmd_user_passwd))

    for name, disabled in (("disable", True), ("enable", False)):
        parser = commands.add_parser(
            name,
            help="block sign-in and end open sessions" if disabled else "allow sign-in again",
        )
        parser.add_argument("username")
        parser.set_defaults(handler=_command(cmd_user_disable), disabled=disabled)


def _password_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    source.add_argument("--password-file", type=Path,
                        help="read the password from the first line of this file")


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if args.password_file is not None:
        try:
            return args.password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, UnicodeDecodeError, IndexError) as error:
            raise CommandError(
                f"cannot read a password from {args.password_file}: {error}; "
                "give a UTF-8 file whose first line is the password"
            ) from None
    if not sys.stdin.isatty():
        raise CommandError(
            "no terminal to ask for the password: use --password-stdin or --password-file"
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise CommandError("the two passwords differ; run the command again")
    return first


def _command(
    run: Callable[[argparse.Namespace, Config], int],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        config = _load(args)
        try:
            return run(args, config)
        except (CommandError, AccountError, StoreError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILURE

    return handler


def _missing_sqlite_file(config: Config) -> Path | None:
    """Return the SQLite file of the database URL when it does not exist yet."""
    parsed = parse_url(config.database_url)
    path = Path(parsed.database or "").absolute()
    if parsed.get_backend_name() == "sqlite" and not path.exists():
        return path
    return None


def _with_accounts(
    config: Config, work: Callable[[AccountService], Awaitable[T]], *, create: bool = False
) -> T:
    missing = _missing_sqlite_file(config)
    if missing is not None and not create:
        raise CommandError(
            f"no database at {missing}: add the first "
            "user with `sigap user add`, or start the stack with `make run`"
        )

    async def main() -> T:
        if missing is not None:
            missing.parent.mkdir(parents=True, exist_ok=True)
        # A new file gets the schema; an existing database is used as it is, since a
        # running controller of another version may be using it.
        db = await Database.open(config.database_url, migrate=missing is not None)
        try:
            return await work(AccountService(db))
        finally:
            await db.close()

    return asyncio.run(main())


def _check_endpoint(role: Role, endpoint: str | None, config: Config) -> None:
    """Reject an endpoint that is not an operator or supervisor phone of the config,
    and an operator without one: the console follows the operator's own phone."""
    configured = [op.endpoint for op in config.sip.operators]
    configured.append(config.sip.supervisor.endpoint)
    listed = ", ".join(configured)
    if role is Role.OPERATOR and endpoint is None:
        raise CommandError(
            "role operator needs the endpoint of the operator's own phone: give "
            f"--endpoint NAME, one of the configured endpoints: {listed}"
        )
    if endpoint is not None and endpoint not in configured:
        raise CommandError(
            f"endpoint {endpoint!r} is not configured; configured endpoints are "
            f"{listed}: give one of them, or add the phone to [[sip.operators]] "
            "in the configuration first"
        )


def _check_agency(code: str, config: Config) -> None:
    """Reject an agency code that is not in the agency directory of the database."""
    missing = _missing_sqlite_file(config)
    if missing is not None:
        raise CommandError(
            f"agency {code!r} not found: there is no database at {missing} yet, so "
            "no agency directory; add an administrator first, then import the "
            "directory with `sigap agencies import FILE`"
        )

    async def main() -> list[str]:
        # migrate=False: a running controller of another version may use the database.
        db = await Database.open(config.database_url, migrate=False)
        try:
            return [agency.code for agency in await AgencyStore(db).list_agencies()]
        finally:
            await db.close()

    codes = asyncio.run(main())
    if code not in codes:
        known = ", ".join(codes) if codes else "none, the directory is empty"
        raise CommandError(
            f"agency {code!r} not found in the agency directory (agencies: {known}); "
            "check the code with `sigap agencies list`, or import the directory "
            "first with `sigap agencies import FILE`"
        )


def cmd_user_add(args: argparse.Namespace, config: Config) -> int:
    role = check_new_user(
        args.username, args.role, agency_code=args.agency, endpoint=args.endpoint,
        display_name=args.name,
    )
    _check_endpoint(role, args.endpoint, config)
    if role is Role.AGENCY:
        _check_agency(args.agency, config)
    password = _read_password(args)
    check_password(password)

    async def work(accounts: AccountService) -> int:
        user = await accounts.add_user(
            args.username, password, args.role, display_name=args.name,
            agency_code=args.agency, endpoint=args.endpoint, actor=_default_actor(),
        )
        print(f"added user {user.username} with role {user.role.value}")
        return 0

    return _with_accounts(config, work, create=True)


def cmd_user_list(args: argparse.Namespace, config: Config) -> int:
    async def work(accounts: AccountService) -> int:
        users = await accounts.store.list_users()
        if args.json:
            print(json.dumps([user.to_dict() for user in users], indent=2))
            return 0
        print(f"{'USERNAME':<20} {'ROLE':<11} {'AGENCY':<10} {'ENDPOINT':<12} STATE")
        for user in users:
            print(f"{user.username:<20} {user.role.value:<11} {user.agency_code or '-':<10} "
                  f"{user.endpoint or '-':<12} {'disabled' if user.disabled else 'active'}")
        return 0

    return _with_accounts(config, work)


def cmd_user_passwd(args: argparse.Namespace, config: Config) -> int:
    password = _read_password(args)
    check_password(password)

    async def work(accounts: AccountService) -> int:
        await accounts.set_password(args.username, password, actor=_default_actor())
        print(f"password of {args.username} changed; its open sessions are ended")
        return 0

    return _with_accounts(config, work)


def cmd_user_disable(args: argparse.Namespace, config: Config) -> int:
    async def work(accounts: AccountService) -> int:
        await accounts.set_disabled(args.username, args.disabled, actor=_default_actor())
        print(f"user {args.username} {'disabled' if args.disabled else 'enabled'}")
        return 0

    return _with_accounts(config, work)
