"""Fixtures that run every store test on SQLite and on PostgreSQL.

SQLite gets a new file per test. PostgreSQL gets one throwaway database per test
session, created through SIGAP_TEST_POSTGRES_URL, and its public schema is emptied
before each test, so every test starts from an empty database on both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

from sigap_pbx.store import CallStore, Database

POSTGRES_URL_VARIABLE = "SIGAP_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
POSTGRES_CONNECT_TIMEOUT = 5.0

T = TypeVar("T")


def run_in_thread(coroutine_function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run a coroutine to completion on a new event loop in a worker thread.

    Sync fixtures use this so that they never start or replace a loop in the
    thread where pytest-asyncio runs the tests.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine_function(*args)).result()


def asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def execute_admin(url: URL, *statements: str) -> None:
    connection = await asyncpg.connect(
        asyncpg_dsn(url), timeout=POSTGRES_CONNECT_TIMEOUT
    )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@dataclass(frozen=True)
class PostgresTestDatabase:
    url: URL | None
    skip_reason: str | None


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresTestDatabase]:
    """Create a throwaway PostgreSQL database for this test session, then drop it."""
    server_url = make_url(os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL))
    name = f"sigap_test_{secrets.token_hex(6)}"
    try:
        run_in_thread(execute_admin, server_url, f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        masked = server_url.render_as_string(hide_password=True)
        yield PostgresTestDatabase(
            url=None,
            skip_reason=(
                f"PostgreSQL variant skipped: creating database {name} through "
                f"{masked} failed ({type(error).__name__}: {error}). Start "
                f"PostgreSQL there, or set {POSTGRES_URL_VARIABLE} to the URL of "
                "a server where that user may create databases."
            ),
        )
        return

    try:
        yield PostgresTestDatabase(url=server_url.set(database=name), skip_reason=None)
    finally:
        run_in_thread(
            execute_admin, server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )


def empty_postgres_database(url: URL) -> None:
    run_in_thread(
        execute_admin,
        url,
        "DROP SCHEMA public CASCADE",
        "CREATE SCHEMA public",
    )


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """URL of an empty database: a new SQLite file, or the emptied PostgreSQL one."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"

    postgres: PostgresTestDatabase = request.getfixturevalue("postgres_database")
    if postgres.url is None:
        pytest.skip(postgres.skip_reason or "PostgreSQL variant skipped")
    empty_postgres_database(postgres.url)
    return postgres.url.render_as_string(hide_password=False)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.open(database_url)
    yield database
    await database.close()


@pytest.fixture
def store(db: Database) -> CallStore:
    return CallStore(db)
