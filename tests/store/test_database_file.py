"""The SQLite file behind a Database: its permissions, its identity while open,
and error text for failures that carry no message of their own."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sigap_pbx.store import CallStore, Database, DatabaseUnavailable
from sigap_pbx.store import db as db_module
from sigap_pbx.store.db import describe_error


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(sqlite_url(tmp_path / "sigap.db"))
    yield database
    await database.close()


# --- Permissions ----------------------------------------------------------------


async def test_new_file_and_wal_private(tmp_path: Path, usual_umask: None) -> None:
    path = tmp_path / "sigap.db"
    database = await Database.open(sqlite_url(path))
    try:
        await CallStore(database).upsert_call("1796409216.0", caller_number="+62812")
        wal = path.with_name("sigap.db-wal")
        shm = path.with_name("sigap.db-shm")

        assert mode_of(path) == 0o600
        assert wal.exists()
        assert mode_of(wal) == 0o600
        assert shm.exists()
        assert mode_of(shm) == 0o600
    finally:
        await database.close()


async def test_existing_file_mode_kept(tmp_path: Path) -> None:
    path = tmp_path / "sigap.db"
    first = await Database.open(sqlite_url(path))
    await first.close()
    path.chmod(0o640)

    second = await Database.open(sqlite_url(path))
    await second.close()

    assert mode_of(path) == 0o640


async def test_path_with_uri_characters(tmp_path: Path) -> None:
    path = tmp_path / "calls 100% #1.db"

    database = await Database.open(sqlite_url(path))
    try:
        await CallStore(database).upsert_call("1796409216.0")
        count = await CallStore(database).count_calls()
    finally:
        await database.close()

    assert count == 1
    assert path.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == [
        path.name
    ]


# --- File identity ----------------------------------------------------------------


async def test_file_problem_none_while_intact(db: Database) -> None:
    assert db.file_problem() is None


async def test_file_problem_after_delete(
    sqlite_db: Database, tmp_path: Path
) -> None:
    for path in tmp_path.glob("sigap.db*"):
        path.unlink()

    problem = sqlite_db.file_problem()

    assert problem is not None
    assert f"database file {tmp_path / 'sigap.db'} was deleted" in problem
    assert "restart the controller" in problem


async def test_file_problem_after_replace(
    sqlite_db: Database, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    os.replace(other, tmp_path / "sigap.db")

    problem = sqlite_db.file_problem()

    assert problem is not None
    assert f"database file {tmp_path / 'sigap.db'} was replaced" in problem
    assert "restart the controller" in problem


async def test_deleted_file_not_recreated(
    sqlite_db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "sigap.db"
    for file in tmp_path.glob("sigap.db*"):
        file.unlink()
    # Closing empties the pool, so the next session must open a new connection.
    await sqlite_db.close()

    with pytest.raises(DatabaseUnavailable) as raised:
        await CallStore(sqlite_db).count_calls()

    assert "unable to open database file" in str(raised.value)
    assert not path.exists()


# --- Error text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "timeout", "expected"),
    [
        (ValueError("bad port"), None, "ValueError: bad port"),
        (
            TimeoutError(),
            None,
            "TimeoutError: timed out without a response from the server",
        ),
        (
            TimeoutError(),
            10.0,
            "TimeoutError: timed out after 10 s without a response from the server",
        ),
        (
            ConnectionResetError(),
            None,
            "ConnectionResetError (the driver gave no error message)",
        ),
        (RuntimeError("  "), None, "RuntimeError (the driver gave no error message)"),
    ],
    ids=["with-text", "timeout", "timeout-seconds", "no-text", "blank-text"],
)
def test_describe_error_text(
    error: BaseException, timeout: float | None, expected: str
) -> None:
    assert describe_error(error, timeout_seconds=timeout) == expected


async def test_silent_postgres_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # A loopback listener that accepts connections and never sends a byte, like a
    # hung server.
    async def stay_silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(stay_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(db_module, "POSTGRES_CONNECT_TIMEOUT", 0.3)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await Database.open(
                f"postgresql+asyncpg://sigap:hunter2@127.0.0.1:{port}/sigap"
            )
    finally:
        server.close()
        await server.wait_closed()

    message = str(raised.value)
    assert f"postgresql+asyncpg://sigap:***@127.0.0.1:{port}/sigap" in message
    assert "TimeoutError: timed out after 0.3 s without a response" in message
    assert "check that PostgreSQL is running" in message
    assert "hunter2" not in message
