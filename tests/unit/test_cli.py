"""The `sigap` command run as a separate process: every error is one line on stderr
with exit code 1 or 2 and no traceback, and `sigap calls` never creates or migrates
a database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sigap_pbx.store import CallStore, Database

# Port 1 on loopback has no listener, so a connection to it is refused at once.
UNREACHABLE_POSTGRES = "postgresql+asyncpg://sigap:hunter2@127.0.0.1:1/sigap"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_sigap(
    cwd: Path, *arguments: str, environ: dict[str, str] | None = None
) -> Result:
    """Run `python -m sigap_pbx.cli` in `cwd`, with `environ` as the only SIGAP_*
    variables."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("SIGAP_")
    }
    env.update(environ or {})
    completed = subprocess.run(
        [sys.executable, "-m", "sigap_pbx.cli", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def assert_one_line_error(result: Result, expected_code: int) -> str:
    """Check the shape of a failed run and return its error line."""
    assert result.returncode == expected_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_config(directory: Path, text: str) -> Path:
    path = directory / "sigap.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def create_database(path: Path, *uniqueids_and_numbers: tuple[str, str]) -> None:
    database = await Database.open(f"sqlite+aiosqlite:///{path}")
    try:
        store = CallStore(database)
        for uniqueid, raw_number in uniqueids_and_numbers:
            await store.upsert_call(
                uniqueid,
                caller_number="+6281234567890" if raw_number.isdigit() else "",
                caller_number_raw=raw_number,
            )
    finally:
        await database.close()


# --- Arguments ----------------------------------------------------------------------


def test_unknown_outcome_rejected(tmp_path: Path) -> None:
    result = run_sigap(tmp_path, "calls", "--outcome", "foo")

    line = assert_one_line_error(result, 2)
    assert "argument --outcome: invalid choice: 'foo'" in line
    assert "'abandoned_in_queue'" in line


@pytest.mark.parametrize("limit", ["-1", "0", "501", "ten"])
def test_limit_out_of_range_rejected(tmp_path: Path, limit: str) -> None:
    result = run_sigap(tmp_path, "calls", "--limit", limit)

    line = assert_one_line_error(result, 2)
    assert f"argument --limit: {limit!r} is not a whole number from 1 to 500" in line


def test_missing_command_one_line(tmp_path: Path) -> None:
    result = run_sigap(tmp_path)

    line = assert_one_line_error(result, 2)
    assert "required: command" in line


# --- Configuration file -----------------------------------------------------------


def test_config_directory_rejected(tmp_path: Path) -> None:
    result = run_sigap(tmp_path, "calls", environ={"SIGAP_CONFIG": str(tmp_path)})

    line = assert_one_line_error(result, 2)
    assert line == f"error: cannot read configuration file {tmp_path}: Is a directory"


def test_config_not_utf8_rejected(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[site]\nname = "Sigap Pontianak \u00e9"\n'.encode("latin-1"))

    result = run_sigap(tmp_path, "--config", str(path), "check-config")

    line = assert_one_line_error(result, 2)
    assert line.startswith(f"error: cannot read configuration file {path}: ")
    assert "not valid UTF-8" in line


# --- sigap calls and the database ---------------------------------------------------


def test_calls_without_database_file(tmp_path: Path) -> None:
    result = run_sigap(tmp_path, "calls")

    line = assert_one_line_error(result, 1)
    database = tmp_path / "var" / "sigap.db"
    assert line.startswith(f"error: no database at {database}: ")
    assert "`make run`" in line
    assert "[site] state_dir / [database] url" in line
    assert not (tmp_path / "var").exists()


def test_calls_without_file_in_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    config = write_config(tmp_path, f"[site]\nstate_dir = {str(state_dir)!r}\n")

    result = run_sigap(tmp_path, "--config", str(config), "calls")

    line = assert_one_line_error(result, 1)
    assert line.startswith(f"error: no database at {state_dir / 'sigap.db'}: ")
    assert list(state_dir.iterdir()) == []


def test_calls_old_schema_not_migrated(tmp_path: Path) -> None:
    database = tmp_path / "var" / "sigap.db"
    database.parent.mkdir()
    database.touch()

    result = run_sigap(tmp_path, "calls")

    line = assert_one_line_error(result, 1)
    assert "is at revision None" in line
    assert "start the controller once" in line
    assert str(database) in line


def test_calls_unreachable_postgres(tmp_path: Path) -> None:
    result = run_sigap(
        tmp_path, "calls", environ={"SIGAP_DATABASE__URL": UNREACHABLE_POSTGRES}
    )

    line = assert_one_line_error(result, 1)
    assert "postgresql+asyncpg://sigap:***@127.0.0.1:1/sigap" in line
    assert "check that PostgreSQL is running" in line
    assert "hunter2" not in line


def test_calls_lists_recorded_calls(tmp_path: Path) -> None:
    database = tmp_path / "var" / "sigap.db"
    database.parent.mkdir()
    asyncio.run(
        create_database(
            database, ("1796409216.0", "081234567890"), ("1796409300.4", "")
        )
    )

    result = run_sigap(tmp_path, "calls", "--json", "--limit", "500")

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["uniqueid"] for row in rows] == ["1796409300.4", "1796409216.0"]


def test_calls_table_unknown_number(tmp_path: Path) -> None:
    database = tmp_path / "var" / "sigap.db"
    database.parent.mkdir()
    asyncio.run(
        create_database(
            database, ("1796409216.0", "0811&PJSIP/op1"), ("1796409300.4", "")
        )
    )

    result = run_sigap(tmp_path, "calls")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert " withheld " in lines[1]
    assert " unknown " in lines[2]
    assert "PJSIP" not in result.stdout


def test_serve_port_in_use_exits_3(tmp_path: Path) -> None:
    """A start-up failure has its own exit code: scripts/run.sh tells it from a crash
    (1), which it answers by starting the controller again."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = run_sigap(tmp_path, "serve", environ={
            "SIGAP_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/sigap.db",
            "SIGAP_SITE__STATE_DIR": str(tmp_path),
            "SIGAP_AGI__PORT": str(port),
            # Nothing listens there: the controller keeps retrying AMI in the background.
            "SIGAP_AMI__PORT": "1",
            "SIGAP_WEB__PORT": "2",
        })
    finally:
        taken.close()

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"error: [agi] cannot listen on 127.0.0.1:{port}")
    assert "SIGAP_AGI__PORT" in last
