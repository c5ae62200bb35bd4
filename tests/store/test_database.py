"""Opening, configuring and failing Database connections."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sigap_pbx.store import (
    CallStore,
    Database,
    DatabaseUnavailable,
    InvalidDatabaseURL,
    StoreError,
)
from sigap_pbx.store import db as db_module

from .conftest import asyncpg_dsn


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "invalid database URL"),
        ("postgresql+asyncpg://sigap:hunter2@127.0.0.1:port/db", "invalid database URL"),
        ("mysql+aiomysql://root@127.0.0.1/sigap", "unsupported database driver"),
        ("sqlite:///sigap.db", "unsupported database driver 'sqlite'"),
        ("postgresql://postgres@127.0.0.1/sigap", "unsupported database driver"),
        ("sqlite+aiosqlite://", "in-memory SQLite is not supported"),
        ("sqlite+aiosqlite:///:memory:", "in-memory SQLite is not supported"),
    ],
)
async def test_bad_url_raises_store_error(url: str, expected: str) -> None:
    with pytest.raises(StoreError) as raised:
        await Database.open(url)

    message = str(raised.value)
    assert isinstance(raised.value, InvalidDatabaseURL)
    assert expected in message
    assert "sqlite+aiosqlite:///" in message
    assert "hunter2" not in message


async def test_unreachable_postgres_raises_with_masked_url() -> None:
    # Port 1 on loopback has no listener, so the connection is refused at once.
    url = "postgresql+asyncpg://sigap:hunter2@127.0.0.1:1/sigap"

    with pytest.raises(DatabaseUnavailable) as raised:
        await Database.open(url)

    message = str(raised.value)
    assert "postgresql+asyncpg://sigap:***@127.0.0.1:1/sigap" in message
    assert "hunter2" not in message
    assert "check that PostgreSQL is running" in message


async def test_missing_sqlite_directory_raises(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'calls.db'}"

    with pytest.raises(DatabaseUnavailable) as raised:
        await Database.open(url)

    message = str(raised.value)
    assert str(tmp_path / "missing" / "calls.db") in message
    assert f"directory {tmp_path / 'missing'} does not exist" in message


async def test_url_and_dialect_properties(db: Database, database_url: str) -> None:
    expected_dialect = make_url(database_url).get_backend_name()

    assert db.dialect == expected_dialect
    assert db.url == make_url(database_url).render_as_string(hide_password=True)
    assert db.url in repr(db)


postgres_only = pytest.mark.parametrize(
    "database_url", ["postgresql"], indirect=True
)


@pytest.mark.postgres
@postgres_only
async def test_postgres_password_masked(database_url: str) -> None:
    # The local test server uses trust authentication and ignores the password.
    with_password = make_url(database_url).set(password="hunter2")
    url = with_password.render_as_string(hide_password=False)

    db = await Database.open(url)
    try:
        assert "hunter2" not in db.url
        assert ":***@" in db.url
        assert "hunter2" not in repr(db)
    finally:
        await db.close()


async def test_session_commits_on_exit(db: Database) -> None:
    async with db.session() as session:
        await session.execute(
            sa.text("INSERT INTO checkpoints (name, value) VALUES ('a', '1')")
        )

    assert await CallStore(db).get_checkpoint("a") == "1"


async def test_session_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            await session.execute(
                sa.text("INSERT INTO checkpoints (name, value) VALUES ('a', '1')")
            )
            raise RuntimeError("abort the transaction")

    assert await CallStore(db).get_checkpoint("a") is None


async def test_sqlite_pragmas_on_every_connection(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    pragmas = {}
    try:
        async with db.session(write=False) as session:
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
                result = await session.execute(sa.text(f"PRAGMA {name}"))
                pragmas[name] = result.scalar_one()
    finally:
        await db.close()

    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == 1  # NORMAL
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] == db_module.SQLITE_BUSY_TIMEOUT_MS


async def test_sqlite_lock_timeout_raises_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "calls.db"
    shorter = tuple(
        "PRAGMA busy_timeout=100" if pragma.startswith("PRAGMA busy_timeout") else pragma
        for pragma in db_module.SQLITE_PRAGMAS
    )
    monkeypatch.setattr(db_module, "SQLITE_PRAGMAS", shorter)
    db = await Database.open(f"sqlite+aiosqlite:///{path}")
    store = CallStore(db)
    # Stands in for another process that holds the write lock and never commits.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await store.upsert_call("1.1")
        blocker.execute("ROLLBACK")
        call_id = await store.upsert_call("1.1")
    finally:
        blocker.close()
        await db.close()

    message = str(raised.value)
    assert "database is locked" in message
    assert str(path) in message
    assert call_id > 0


@pytest.mark.postgres
@postgres_only
async def test_postgres_survives_dropped_connections(
    store: CallStore, database_url: str
) -> None:
    await store.upsert_call("1.1")
    database_name = make_url(database_url).database

    admin = await asyncpg.connect(asyncpg_dsn(make_url(database_url)))
    try:
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database_name,
        )
    finally:
        await admin.close()

    assert terminated >= 1
    assert await store.upsert_call("1.2") > 0
    assert await store.count_calls() == 2
