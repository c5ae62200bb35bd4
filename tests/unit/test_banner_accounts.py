"""The start banner's first-account line, shown only while no account exists."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sigap_pbx import banner
from sigap_pbx.accounts import AccountService
from sigap_pbx.config import Config
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import Role

FIRST_ACCOUNT = "sigap user add NAME --role admin"


def site_config(state_dir: Path) -> Config:
    return Config.model_validate({"site": {"state_dir": str(state_dir)}})


def create_database(state_dir: Path, usernames: list[str]) -> None:
    """Create the SQLite database in `state_dir` with the schema and these admins."""

    async def main() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{state_dir / 'sigap.db'}")
        try:
            accounts = AccountService(db)
            for username in usernames:
                await accounts.add_user(
                    username, "banner test password", Role.ADMIN, actor="test"
                )
        finally:
            await db.close()

    state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(main())


def run_banner(state_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m sigap_pbx.banner` as scripts/run.sh does, on `state_dir`."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("SIGAP_")
    }
    env["SIGAP_SITE__STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [sys.executable, "-m", "sigap_pbx.banner"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_count_without_database_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()

    assert banner.count_accounts(site_config(state_dir)) == 0
    # `sigap user add` creates the schema only in a new file, so none may appear.
    assert not (state_dir / "sigap.db").exists()


def test_count_empty_and_filled_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    create_database(empty, [])
    filled = tmp_path / "filled"
    create_database(filled, ["admin1", "admin2"])

    assert banner.count_accounts(site_config(empty)) == 0
    assert banner.count_accounts(site_config(filled)) == 2


def test_count_unreadable_database(tmp_path: Path) -> None:
    # An empty file has no schema, which reads like the old schema of an older version.
    (tmp_path / "sigap.db").write_bytes(b"")

    assert banner.count_accounts(site_config(tmp_path)) is None


def test_render_hint_by_account_count() -> None:
    config = Config()

    without_accounts = banner.render_banner(config, 0)
    with_accounts = banner.render_banner(config, 3)
    not_counted = banner.render_banner(config, None)

    first_account = f"no account yet, add the first: .venv/bin/{FIRST_ACCOUNT}"
    assert first_account in without_accounts
    assert "user add" not in with_accounts
    assert "no account" not in with_accounts
    assert f"if there is none yet: .venv/bin/{FIRST_ACCOUNT}" in not_counted
    for text in (without_accounts, with_accounts, not_counted):
        assert "Web pages          http://127.0.0.1:8112/login" in text
        assert "  Database           sqlite+aiosqlite:///" in text


def test_banner_command_with_accounts(tmp_path: Path) -> None:
    create_database(tmp_path, ["admin1"])

    result = run_banner(tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Sigap 112 is starting" in result.stdout
    assert FIRST_ACCOUNT not in result.stdout
    assert result.stderr == ""


def test_banner_command_without_accounts(tmp_path: Path) -> None:
    result = run_banner(tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"no account yet, add the first: .venv/bin/{FIRST_ACCOUNT}" in result.stdout
    assert not (tmp_path / "sigap.db").exists()


def test_banner_command_old_schema(tmp_path: Path) -> None:
    (tmp_path / "sigap.db").write_bytes(b"")

    result = run_banner(tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"if there is none yet: .venv/bin/{FIRST_ACCOUNT}" in result.stdout
    assert "banner_accounts_not_counted" in result.stderr
