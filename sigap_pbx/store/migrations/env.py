"""Alembic environment for the call store.

``Database.open()`` passes an open connection in ``config.attributes["connection"]``
and runs inside its transaction. Run by the ``alembic`` command, this file opens its
own engine, with the same SQLite pragmas, on the URL from ``-x url=...`` or the
``SIGAP_DATABASE_URL`` environment variable.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from sigap_pbx.store.db import build_engine
from sigap_pbx.store.models import Base

config = context.config
target_metadata = Base.metadata


def configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most column properties, so later revisions need
        # Alembic's copy-and-move batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def command_line_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or os.environ.get("SIGAP_DATABASE_URL")
    if not url:
        raise SystemExit(
            "missing database URL: pass -x url=sqlite+aiosqlite:///sigap.db "
            "or set SIGAP_DATABASE_URL"
        )
    return url


async def run_from_command_line(url: str) -> None:
    engine = build_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(configure_and_run)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        configure_and_run(connection)
        return

    # Only the alembic command configures logging from the .ini file, so an
    # application that migrates through Database.open() keeps its own logging.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = command_line_url()
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_from_command_line(url))


main()
