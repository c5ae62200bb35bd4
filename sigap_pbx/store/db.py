"""Database connection, SQLite settings and the schema upgrade run at open."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import re
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event, exc, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sigap_pbx.store.errors import (
    DatabaseUnavailable,
    InvalidDatabaseURL,
    MigrationError,
)

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
URL_EXAMPLES = (
    "sqlite+aiosqlite:///path/to/sigap.db or "
    "postgresql+asyncpg://user@host:5432/dbname"
)

# Milliseconds that an SQLite connection waits for another writer's lock before
# the statement fails with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000
# The busy timeout comes first so that the later pragmas wait for a lock too.
SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)
# Switching a new file to WAL needs the file to itself. When several connections open
# it at once, SQLite can return "database is locked" without waiting for the busy
# timeout, so the switch is retried for up to this many seconds.
SQLITE_WAL_RETRY_SECONDS = 5.0
# Seconds that opening a database retries a schema upgrade that met a lock.
SQLITE_MIGRATION_RETRY_SECONDS = 15.0

# Permissions of a new SQLite file, which contains caller numbers. SQLite gives the
# -wal and -shm files that it creates beside it the same permissions.
SQLITE_FILE_MODE = 0o600

# Seconds that asyncpg waits for a new PostgreSQL connection.
POSTGRES_CONNECT_TIMEOUT = 10.0

# Arbitrary fixed key of the PostgreSQL advisory lock that serialises schema
# upgrades, so that two processes starting together do not both create tables.
MIGRATION_LOCK_KEY = 112_000_001

# Name of the execution option that sets the BEGIN mode (DEFERRED or IMMEDIATE)
# emitted by the SQLite "begin" hook.
SQLITE_BEGIN_OPTION = "sigap_sqlite_begin"


def parse_url(url: str | URL) -> URL:
    """Parse a database URL and raise InvalidDatabaseURL unless its driver is supported."""
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError) as error:
        # make_url raises ValueError for a non-numeric port.
        raise InvalidDatabaseURL(
            f"invalid database URL {_mask_unparsed_password(str(url))!r}: {error}; "
            f"expected {URL_EXAMPLES}"
        ) from None

    masked = parsed.render_as_string(hide_password=True)
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise InvalidDatabaseURL(
            f"unsupported database driver {parsed.drivername!r} in {masked}; "
            f"expected {URL_EXAMPLES}"
        )
    if parsed.drivername.startswith("sqlite") and parsed.database in (
        None,
        "",
        ":memory:",
    ):
        raise InvalidDatabaseURL(
            f"in-memory SQLite is not supported ({masked}) because every "
            "connection would see its own empty database; give a file path, "
            "such as sqlite+aiosqlite:///sigap.db"
        )
    return parsed


def _mask_unparsed_password(url: str) -> str:
    """Replace the password in ``scheme://user:password@host`` with ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def build_engine(url: str | URL) -> AsyncEngine:
    """Create an async engine with the connection settings this store relies on."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed)
        _install_sqlite_hooks(engine)
        return engine
    return create_async_engine(
        parsed,
        connect_args={"timeout": POSTGRES_CONNECT_TIMEOUT},
        pool_pre_ping=True,
    )


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    # The sqlite3 module's own transaction handling starts a transaction only
    # before INSERT/UPDATE/DELETE, so reads would run outside any transaction.
    # Turning it off and emitting BEGIN here follows the SQLAlchemy recipe for
    # pysqlite and aiosqlite, and lets write sessions use BEGIN IMMEDIATE.
    @event.listens_for(engine.sync_engine, "connect")
    def configure_connection(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
            _switch_to_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def begin_transaction(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _switch_to_wal(cursor: Any) -> None:
    """Set WAL journal mode, retrying while another new connection holds the file.

    Runs in aiosqlite's worker thread, so the short sleeps never block the event loop.
    """
    deadline = time.monotonic() + SQLITE_WAL_RETRY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _require_sqlite_directory(url: URL) -> None:
    # NOTE: checked up front because when aiosqlite 0.22 fails to open a file,
    # its worker thread posts the cleanup result to the event loop afterwards. If
    # the loop has closed by then, the thread raises "Event loop is closed".
    # Other open failures, such as a missing permission, still take that path.
    directory = Path(url.database or "").parent
    if not directory.is_dir():
        masked = url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(
            f"database connection failed on {masked}: directory {directory} "
            "does not exist; create it or correct the path in the URL"
        )


def _create_private_file(url: URL, path: Path) -> None:
    """Create an empty SQLite file with SQLITE_FILE_MODE unless the file exists.

    SQLite reads an empty file as an empty database. Creating the file here, not in
    SQLite, means it never exists with wider permissions, whatever the umask.
    """
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        descriptor = os.open(path, flags, SQLITE_FILE_MODE)
    except FileExistsError:
        return
    except OSError as error:
        masked = url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(
            f"database connection failed on {masked}: cannot create {path}: "
            f"{error.strerror}; check that the directory is writable by this user"
        ) from error
    try:
        # The umask may have removed bits from the mode given to os.open.
        os.fchmod(descriptor, SQLITE_FILE_MODE)
    finally:
        os.close(descriptor)
    log.info("database_file_created", path=str(path), mode=oct(SQLITE_FILE_MODE))


def _read_write_url(url: URL, path: Path) -> URL:
    """Return the URL that opens an existing SQLite file and never creates one.

    A connection that the pool opens after the file was deleted then fails, where
    a plain path would create a new database without tables in its place.
    """
    return url.set(
        database="file:" + urllib.parse.quote(str(path)),
        query={**url.query, "mode": "rw", "uri": "true"},
    )


def _file_identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def _alembic_config() -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """Return the newest revision id among the packaged migrations."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade_to_head(connection: Connection) -> str | None:
    """Upgrade the schema on this connection and return the revision it started at."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
    start = _current_revision(connection)
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return start


def _is_connection_error(error: BaseException, *, connecting: bool) -> bool:
    """Tell whether an error means the database is unreachable or unusable.

    While connecting, every error counts, because asyncpg raises its own
    exception types for a failed login or a missing database. During a query only
    operational errors count, which on SQLite include "database is locked" and on
    PostgreSQL a lost connection.
    """
    if connecting:
        return True
    if isinstance(error, (OSError, TimeoutError, exc.TimeoutError)):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    return isinstance(error, (exc.OperationalError, exc.InterfaceError))


def describe_error(
    error: BaseException, *, timeout_seconds: float | None = None
) -> str:
    """Return the driver's error type and text, without SQLAlchemy's help-link suffix.

    Some errors have no text, such as the TimeoutError that asyncpg raises when a
    server accepts the connection but never responds. They get a description
    instead, which names ``timeout_seconds`` when the caller knows the timeout.
    """
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        error = error.orig
    name = type(error).__name__
    text = str(error).strip()
    if text:
        return f"{name}: {text}"
    if isinstance(error, TimeoutError):
        if timeout_seconds is not None:
            return (
                f"{name}: timed out after {timeout_seconds:g} s without a response "
                "from the server"
            )
        return f"{name}: timed out without a response from the server"
    return f"{name} (the driver gave no error message)"


def _connection_advice(dialect: str) -> str:
    if dialect == "sqlite":
        return (
            "check that the file and its directory exist and are writable, and "
            "that no other process holds a write lock for longer than "
            f"{SQLITE_BUSY_TIMEOUT_MS} ms"
        )
    return (
        "check that PostgreSQL is running and that the URL's host, port, user, "
        "password and database name are correct"
    )


class Database:
    """Async engine and session factory for one call-store database.

    Create it with ``await Database.open(url)``, which also brings the schema to
    the newest Alembic revision.
    """

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._url = url
        # SQLite only: the file's absolute path, and its (st_dev, st_ino) once opened.
        self._file_path: Path | None = None
        self._file_identity: tuple[int, int] | None = None
        self._read_sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(
            engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}),
            expire_on_commit=False,
        )

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Connect and, when ``migrate`` is true, upgrade the schema to head.

        With ``migrate=False`` the schema must already be at head. A missing SQLite
        file is created empty with mode 0600 either way, so with ``migrate=False``
        it raises MigrationError. Raises InvalidDatabaseURL, DatabaseUnavailable or
        MigrationError, which name the URL with its password masked.
        """
        parsed = parse_url(url)
        if parsed.get_backend_name() != "sqlite":
            database = cls(build_engine(parsed), parsed)
        else:
            _require_sqlite_directory(parsed)
            path = Path(parsed.database or "").absolute()
            _create_private_file(parsed, path)
            database = cls(build_engine(_read_write_url(parsed, path)), parsed)
            database._file_path = path
        opened = False
        try:
            if migrate:
                await database._upgrade()
            else:
                await database._check_schema_is_current()
            if database._file_path is not None:
                database._file_identity = _file_identity(database._file_path)
            opened = True
        finally:
            if not opened:
                await database._engine.dispose()
        log.info("database_opened", url=database.url, dialect=database.dialect)
        return database

    def file_problem(self) -> str | None:
        """Return why the SQLite file at the path is not the one opened, else None.

        After the file is deleted or replaced, connections already open keep
        writing to the old file, and new connections fail on a missing file. The
        remedy is a restart. Always None on PostgreSQL. Runs one blocking stat().
        """
        path = self._file_path
        if path is None or self._file_identity is None:
            return None
        try:
            identity = _file_identity(path)
        except FileNotFoundError:
            return (
                f"database file {path} was deleted while running: open connections "
                "keep writing to the deleted file, which is lost at exit; restart the "
                "controller, which creates a new empty database unless a backup is "
                "put in place first"
            )
        except OSError as error:
            return (
                f"database file {path} cannot be checked: {error.strerror}; "
                "check the permissions of its directory"
            )
        if identity != self._file_identity:
            return (
                f"database file {path} was replaced while running: open "
                "connections keep writing to the old file; restart the controller "
                "to use the new one"
            )
        return None

    async def close(self) -> None:
        """Close every pooled connection. Sessions opened afterwards reconnect."""
        await self._engine.dispose()
        log.info("database_closed", url=self.url)

    @property
    def url(self) -> str:
        """Database URL with the password replaced by ``***``."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """SQLAlchemy dialect name: ``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """Underlying SQLAlchemy engine, for schema inspection and raw SQL."""
        return self._engine

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """Yield a session inside a transaction that commits on normal exit.

        On SQLite a write session starts with BEGIN IMMEDIATE, which takes the
        write lock up front and waits up to the busy timeout for it. A deferred
        transaction that reads first would instead fail at once with "database
        is locked" if another connection wrote in between. Pass ``write=False``
        for read-only work, so that it runs beside a writer. PostgreSQL ignores
        ``write``. Connection failures are raised as DatabaseUnavailable.
        """
        maker = self._write_sessions if write else self._read_sessions
        async with self._translate_errors("query"):
            async with maker() as session, session.begin():
                yield session

    @asynccontextmanager
    async def _translate_errors(
        self, action: str, *, connecting: bool = False
    ) -> AsyncIterator[None]:
        try:
            yield
        except Exception as error:
            if not _is_connection_error(error, connecting=connecting):
                raise
            timeout = (
                POSTGRES_CONNECT_TIMEOUT
                if connecting and self.dialect == "postgresql"
                else None
            )
            description = describe_error(error, timeout_seconds=timeout)
            raise DatabaseUnavailable(
                f"database {action} failed on {self.url}: {description}; "
                f"{_connection_advice(self.dialect)}"
            ) from error

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        async with self._translate_errors("connection", connecting=True):
            connection = await self._engine.connect()
        try:
            yield await connection.execution_options(
                **{SQLITE_BEGIN_OPTION: "IMMEDIATE"}
            )
        finally:
            await connection.close()

    async def _upgrade(self) -> None:
        head = head_revision()
        deadline = time.monotonic() + SQLITE_MIGRATION_RETRY_SECONDS
        while True:
            try:
                start = await self._upgrade_once()
                break
            except exc.OperationalError as error:
                # Another process opening the same new file can hold it for the WAL
                # switch, and SQLite then fails BEGIN IMMEDIATE with "database is
                # locked" at once, without the busy timeout.
                retry = self.dialect == "sqlite" and "locked" in str(error)
                if not retry or time.monotonic() > deadline:
                    raise self._migration_error(head, error) from error
                await asyncio.sleep(0.05)
            except (CommandError, exc.SQLAlchemyError) as error:
                raise self._migration_error(head, error) from error
        if start != head:
            log.info("database_schema_upgraded", url=self.url, start=start, head=head)

    def _migration_error(self, head: str, error: BaseException) -> MigrationError:
        return MigrationError(
            f"upgrading the schema of {self.url} to revision {head} failed: "
            f"{describe_error(error)}; if the database holds tables "
            "that Alembic did not create, use a new database"
        )

    async def _upgrade_once(self) -> str | None:
        async with self._connect() as connection:
            async with connection.begin():
                return await connection.run_sync(_upgrade_to_head)

    async def _check_schema_is_current(self) -> None:
        head = head_revision()
        async with self._connect() as connection:
            async with self._translate_errors("query"):
                current = await connection.run_sync(_current_revision)
        if current != head:
            raise MigrationError(
                f"database schema of {self.url} is at revision {current}, "
                f"expected {head}; start the controller once (it opens the "
                "database with migrate=True, which upgrades the schema) or run "
                f"'alembic -c {MIGRATIONS_DIR / 'alembic.ini'} upgrade head'"
            )
