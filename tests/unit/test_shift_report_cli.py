"""`sigap shifts` run as a separate process against an SQLite file in var/."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sigap_pbx.roster.model import Roster
from sigap_pbx.roster.reporter import ShiftReporter
from sigap_pbx.store import CallStore, Database, MemberStore
from sigap_pbx.store.shifts import ShiftStore
from tests.unit.test_cli import assert_one_line_error, run_sigap
from tests.unit.test_shift_reporter import ZONE, FakeClock, make_roster

EARLY_START = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)


async def create_reports(path: Path) -> None:
    """Create the database with one call and the reports of the last day's shifts."""
    db = await Database.open(f"sqlite+aiosqlite:///{path}")
    try:
        await CallStore(db).upsert_call(
            "1.1",
            arrived_at=EARLY_START + timedelta(minutes=3),
            answered_at=EARLY_START + timedelta(minutes=3, seconds=12),
            outcome="answered",
        )
        await ShiftStore(db).add_member_events(
            [
                {"at": EARLY_START + timedelta(minutes=3), "interface": "PJSIP/a1",
                 "queue": "operators", "kind": "offered", "member_name": "a1"},
                {"at": EARLY_START + timedelta(minutes=3), "interface": "PJSIP/x9",
                 "queue": "operators", "kind": "offered", "member_name": "x9\x1b[2J"},
            ]
        )

        async def provider() -> Roster | None:
            return make_roster()

        reporter = ShiftReporter(
            ShiftStore(db),
            MemberStore(db),
            CallStore(db),
            provider,
            zone=ZONE,
            clock=FakeClock(EARLY_START + timedelta(hours=8, minutes=5)),
            catch_up_days=1,
        )
        await reporter.run_due()
    finally:
        await db.close()


def make_database(tmp_path: Path) -> Path:
    database = tmp_path / "var" / "sigap.db"
    database.parent.mkdir()
    asyncio.run(create_reports(database))
    return database


def test_reports_json(tmp_path: Path) -> None:
    make_database(tmp_path)

    result = run_sigap(tmp_path, "shifts", "reports", "--json")

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(row["date"], row["name"]) for row in rows] == [
        ("2026-12-04", "early"),
        ("2026-12-03", "night"),
        ("2026-12-03", "late"),
    ]
    assert rows[0]["answered_within_15_percent"] == 100.0


def test_reports_table_since(tmp_path: Path) -> None:
    make_database(tmp_path)

    result = run_sigap(tmp_path, "shifts", "reports", "--since", "2026-12-04")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("2026-12-04  early ")
    assert "2026-12-04 07:00" in lines[1]
    assert "100.0%" in lines[1]


def test_report_table_per_operator(tmp_path: Path) -> None:
    make_database(tmp_path)

    result = run_sigap(tmp_path, "shifts", "report", "2026-12-04", "early")

    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "shift early on 2026-12-04, crew A: 2026-12-04 07:00 to 2026-12-04 15:00" in text
    assert "answered within <= 10 s: 0 (0.0%), <= 15 s: 1 (100.0%)" in text
    operator_lines = [line for line in text.splitlines() if line.startswith(("a1 ", "a2 ", "x9"))]
    assert len(operator_lines) == 3
    assert operator_lines[2].endswith("(not rostered)")
    assert "\x1b" not in text


def test_report_json_matches_store(tmp_path: Path) -> None:
    make_database(tmp_path)

    result = run_sigap(tmp_path, "shifts", "report", "2026-12-04", "early", "--json")

    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["shift_date"] == "2026-12-04"
    assert body["content"]["queue"]["arrived"] == 1


def test_report_missing_one_line(tmp_path: Path) -> None:
    make_database(tmp_path)

    result = run_sigap(tmp_path, "shifts", "report", "2026-12-01", "early")

    line = assert_one_line_error(result, 1)
    assert line.startswith("error: no stored report for shift 'early' on 2026-12-01")
    assert "sigap shifts build 2026-12-01 early" in line


def test_report_bad_date_rejected(tmp_path: Path) -> None:
    result = run_sigap(tmp_path, "shifts", "report", "4/12/2026", "early")

    line = assert_one_line_error(result, 2)
    assert "'4/12/2026' is not a date as YYYY-MM-DD" in line


def test_reports_without_database(tmp_path: Path) -> None:
    result = run_sigap(tmp_path, "shifts", "reports")

    line = assert_one_line_error(result, 1)
    assert line.startswith("error: no database at ")
    assert not (tmp_path / "var").exists()


def test_build_without_saved_roster(tmp_path: Path) -> None:
    make_database(tmp_path)

    result = run_sigap(tmp_path, "shifts", "build", "2026-12-04", "early")

    line = assert_one_line_error(result, 1)
    assert "no roster is saved" in line


def test_reports_database_unchanged(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    before = database.stat().st_mtime_ns

    result = run_sigap(tmp_path, "shifts", "reports")

    assert result.returncode == 0, result.stderr
    assert database.stat().st_mtime_ns == before
    assert date(2026, 12, 4).isoformat() in result.stdout


async def save_roster(path: Path) -> None:
    """Save a roster of the default configuration's endpoints, anchored on 1 January."""
    from datetime import time

    from sigap_pbx.config import Config
    from sigap_pbx.roster.model import (
        Crew,
        Operator,
        Role,
        Rotation,
        ShiftDef,
        ShiftPattern,
    )
    from sigap_pbx.roster.service import RosterService

    pattern = ShiftPattern(
        "three",
        (
            ShiftDef("early", time(7), 8, 1),
            ShiftDef("late", time(15), 8, 1),
            ShiftDef("night", time(23), 8, 1),
        ),
    )
    operators = (
        Operator("op1", "Ayu"),
        Operator("op2", "Budi"),
        Operator("spv1", "Citra", role=Role.SUPERVISOR),
        Operator("oncall1", "Dewi", role=Role.BACKUP),
    )
    crews = tuple(
        Crew(name, (operator.endpoint,)) for name, operator in zip("ABCD", operators)
    )
    roster = Roster(operators, Rotation(pattern, crews, date(2026, 1, 1)))
    db = await Database.open(f"sqlite+aiosqlite:///{path}")
    try:
        await RosterService(db, Config()).save(roster, actor="test")
        await CallStore(db).upsert_call(
            "9.1",
            arrived_at=datetime(2026, 1, 5, 0, 10, tzinfo=UTC),
            answered_at=datetime(2026, 1, 5, 0, 10, 25, tzinfo=UTC),
            outcome="answered",
        )
    finally:
        await db.close()


def test_build_stores_then_replaces(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    asyncio.run(save_roster(database))

    first = run_sigap(tmp_path, "shifts", "build", "2026-01-05", "early")
    second = run_sigap(tmp_path, "shifts", "build", "2026-01-05", "early")

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("stored a new report of shift 'early' on 2026-01-05")
    assert "(2026-01-05 07:00 to 2026-01-05 15:00)" in first.stdout
    # Four crews rotate once every four days, so crew A is on early again on 5 January.
    assert "crew A" in first.stdout
    assert "\nop1 " in first.stdout
    assert "answered within <= 10 s: 0 (0.0%), <= 15 s: 0 (0.0%), <= 20 s: 0" in first.stdout
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("replaced the stored report of shift 'early'")
    listed = run_sigap(tmp_path, "shifts", "reports", "--json", "--since", "2026-01-05")
    rows = json.loads(listed.stdout)
    assert [(row["date"], row["name"]) for row in rows if row["date"] == "2026-01-05"] == [
        ("2026-01-05", "early")
    ]


def test_build_unknown_shift_one_line(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    asyncio.run(save_roster(database))

    result = run_sigap(tmp_path, "shifts", "build", "2026-01-05", "noon")

    line = assert_one_line_error(result, 1)
    assert "shift 'noon' not found" in line


def test_build_date_out_of_range(tmp_path: Path) -> None:
    database = make_database(tmp_path)
    asyncio.run(save_roster(database))

    result = run_sigap(tmp_path, "shifts", "build", "9999-12-31", "night")

    line = assert_one_line_error(result, 2)
    assert "9999-12-31 is out of range, give a date from 2000-01-01 to 2200-12-31" in line
