"""Schema creation and upgrades through the packaged Alembic revisions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib import resources
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from structlog.testing import capture_logs

from sigap_pbx.store import CallStore, Database, MigrationError
from sigap_pbx.store.db import MIGRATIONS_DIR, build_engine, head_revision
from sigap_pbx.store.models import Base

APP_TABLES = {
    "calls",
    "call_legs",
    "call_events",
    "checkpoints",
    "member_pauses",
    "roster_versions",
    "duty_overrides",
    "audit_log",
    "member_events",
    "shift_reports",
    "alarms",
    "agencies",
    "agency_lines",
    "agency_accounts",
    "incident_reports",
    "report_calls",
    "report_dispatches",
    "dispatch_events",
    "outbox",
    "forward_attempts",
    "users",
    "web_sessions",
    "number_diversions",
    "callback_attempts",
}


def read_schema(connection: Connection) -> dict[str, Any]:
    inspector = sa.inspect(connection)
    tables = set(inspector.get_table_names())
    return {
        "tables": tables,
        "columns": {
            table: {column["name"] for column in inspector.get_columns(table)}
            for table in tables
        },
        "revision": MigrationContext.configure(connection).get_current_revision(),
    }


async def schema_of(db: Database) -> dict[str, Any]:
    async with db.engine.connect() as connection:
        return await connection.run_sync(read_schema)


async def test_open_creates_schema_from_empty(database_url: str) -> None:
    db = await Database.open(database_url)
    try:
        schema = await schema_of(db)
    finally:
        await db.close()

    assert schema["tables"] == APP_TABLES | {"alembic_version"}
    assert schema["revision"] == head_revision()
    for table in Base.metadata.sorted_tables:
        assert schema["columns"][table.name] == set(table.columns.keys()), table.name


async def test_second_upgrade_is_noop(database_url: str) -> None:
    first = await Database.open(database_url)
    try:
        call_id = await CallStore(first).upsert_call("1700000000.1", trunk="telkom")
        schema_before = await schema_of(first)
    finally:
        await first.close()

    with capture_logs() as logs:
        second = await Database.open(database_url)
    try:
        schema_after = await schema_of(second)
        call = await CallStore(second).get_call(call_id)
    finally:
        await second.close()

    events = [entry["event"] for entry in logs]
    assert "database_schema_upgraded" not in events
    assert "database_opened" in events
    assert schema_after == schema_before
    assert call is not None
    assert call.trunk == "telkom"


async def test_concurrent_opens_migrate_once(database_url: str) -> None:
    databases = await asyncio.gather(
        *(Database.open(database_url) for _ in range(3))
    )
    try:
        schema = await schema_of(databases[0])
    finally:
        for db in databases:
            await db.close()

    assert schema["tables"] == APP_TABLES | {"alembic_version"}
    assert schema["revision"] == head_revision()


async def test_first_upgrade_is_logged(database_url: str) -> None:
    with capture_logs() as logs:
        db = await Database.open(database_url)
    await db.close()

    upgraded = [entry for entry in logs if entry["event"] == "database_schema_upgraded"]
    assert len(upgraded) == 1
    assert upgraded[0]["start"] is None
    assert upgraded[0]["head"] == head_revision()


async def test_models_match_migrations(db: Database) -> None:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with db.engine.connect() as connection:
        differences = await connection.run_sync(compare)

    assert differences == []


async def test_check_constraint_rejects_unknown_outcome(db: Database) -> None:
    insert = sa.text("INSERT INTO calls (uniqueid, outcome) VALUES ('1.1', 'lost')")
    with pytest.raises(sa.exc.IntegrityError):
        async with db.session() as session:
            await session.execute(insert)


async def test_open_without_migrate_rejects_empty_database(database_url: str) -> None:
    with pytest.raises(MigrationError) as raised:
        await Database.open(database_url, migrate=False)

    message = str(raised.value)
    assert "revision None" in message
    assert head_revision() in message
    assert "migrate=True" in message


async def test_open_without_migrate_accepts_current_schema(database_url: str) -> None:
    migrated = await Database.open(database_url)
    await migrated.close()

    db = await Database.open(database_url, migrate=False)
    try:
        assert await CallStore(db).count_calls() == 0
    finally:
        await db.close()


async def test_open_rejects_tables_not_made_by_alembic(database_url: str) -> None:
    db = await Database.open(database_url)
    async with db.session() as session:
        await session.execute(sa.text("DROP TABLE alembic_version"))
    await db.close()

    with pytest.raises(MigrationError) as raised:
        await Database.open(database_url)

    assert "use a new database" in str(raised.value)


def run_alembic(url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "alembic",
        "-c",
        str(MIGRATIONS_DIR / "alembic.ini"),
        "-x",
        f"url={url}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


async def test_alembic_command_upgrades_and_downgrades(database_url: str) -> None:
    upgraded = run_alembic(database_url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr

    db = await Database.open(database_url, migrate=False)
    try:
        assert (await schema_of(db))["tables"] >= APP_TABLES
    finally:
        await db.close()

    downgraded = run_alembic(database_url, "downgrade", "base")
    assert downgraded.returncode == 0, downgraded.stderr

    engine = build_engine(database_url)
    try:
        async with engine.connect() as connection:
            schema = await connection.run_sync(read_schema)
    finally:
        await engine.dispose()
    assert schema["tables"] & APP_TABLES == set()
    assert schema["revision"] is None


def test_migrations_ship_inside_package() -> None:
    migrations = resources.files("sigap_pbx.store") / "migrations"

    assert (migrations / "alembic.ini").is_file()
    assert (migrations / "env.py").is_file()
    revisions = [
        entry.name
        for entry in (migrations / "versions").iterdir()
        if entry.name.endswith(".py")
    ]
    assert any(name.startswith("0001_") for name in revisions)
