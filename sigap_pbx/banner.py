"""Print where each part of a running stack listens (used by `make run`).

The banner also shows how to add the first web account, but only while the
database has no account, so it reads the account count from the database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from sqlalchemy.exc import SQLAlchemyError

from sigap_pbx.cli import mask_password
from sigap_pbx.config import Config, load_config
from sigap_pbx.logs import configure_logging
from sigap_pbx.store.accounts import AccountStore
from sigap_pbx.store.db import POSTGRES_CONNECT_TIMEOUT, Database, parse_url
from sigap_pbx.store.errors import StoreError

log = structlog.get_logger(__name__)

FIRST_ACCOUNT_COMMAND = ".venv/bin/sigap user add NAME --role admin"
# Seconds the account count may take before the banner is printed without it. It
# is longer than the PostgreSQL connect timeout, so that error is the one logged.
ACCOUNT_COUNT_TIMEOUT = POSTGRES_CONNECT_TIMEOUT + 5.0


def count_accounts(config: Config) -> int | None:
    """Count the web accounts, enabled or disabled, in the configured database.

    Returns 0 for a SQLite file that does not exist yet, without creating it,
    because `sigap user add` creates the schema only in a new file. Returns None,
    and logs why, when the database cannot be read or its schema is not the
    current one (the controller upgrades it when it starts).
    """

    async def count() -> int:
        # migrate=False: the controller, not the banner, upgrades the schema.
        db = await Database.open(config.database_url, migrate=False)
        try:
            return await AccountStore(db).count_users()
        finally:
            await db.close()

    try:
        url = parse_url(config.database_url)
        if url.get_backend_name() == "sqlite":
            if not Path(url.database or "").absolute().exists():
                return 0
        return asyncio.run(asyncio.wait_for(count(), ACCOUNT_COUNT_TIMEOUT))
    except TimeoutError:
        log.warning("banner_accounts_not_counted",
                    error=f"no answer from the database in {ACCOUNT_COUNT_TIMEOUT:g} s",
                    url=mask_password(config.database_url))
    except (StoreError, SQLAlchemyError, OSError) as exc:
        log.warning("banner_accounts_not_counted", error=str(exc),
                    url=mask_password(config.database_url))
    return None


def account_hint(accounts: int | None) -> str:
    """Return the banner's line about the first account, or "" when accounts exist."""
    if accounts is None:
        return f"(accounts not counted; if there is none yet: {FIRST_ACCOUNT_COMMAND})"
    if accounts == 0:
        return f"(no account yet, add the first: {FIRST_ACCOUNT_COMMAND})"
    return ""


def render_banner(config: Config, accounts: int | None) -> str:
    """Return the banner for `config`, with `accounts` web accounts in the database."""
    sip = config.sip
    trunk_sources = ", ".join(", ".join(t.match) for t in sip.trunks)
    scheme = "https" if config.web.tls_cert else "http"
    hint = account_hint(accounts)
    hint_line = f"                     {hint}\n" if hint else ""
    return (
        f"""
Sigap 112 is starting (instance '{config.site.instance}', state in {config.state_dir})
  Asterisk trunk     udp {sip.trunk_bind}   (carrier calls from {trunk_sources})
  Asterisk phones    udp {sip.operator_bind}   (operators: {', '.join(o.endpoint for o in sip.operators)};
                     supervisor {sip.supervisor.endpoint}, on-call {sip.oncall.endpoint};
                     passwords in {config.secrets_path})
  Emergency numbers  {', '.join(sip.emergency_numbers)}
  AMI                tcp {config.ami.host}:{config.ami.port}
  FastAGI            tcp {config.agi.host}:{config.agi.port}
  Web pages          {scheme}://{config.web.host}:{config.web.port}/login
{hint_line}  Database           {mask_password(config.database_url)}
Press Ctrl-C to stop everything.
"""
    )


def main() -> None:
    # Log lines (a database that cannot be read) go to stderr, apart from the banner.
    configure_logging("console", "warning")
    config = load_config()
    print(render_banner(config, count_accounts(config)), flush=True)


if __name__ == "__main__":
    main()
