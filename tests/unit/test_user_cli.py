"""`sigap user add/list/passwd/disable/enable`, run as a separate process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sigap_pbx.accounts import AccountService, SignInRejected
from sigap_pbx.store import Database

PASSWORD = "correct horse battery"


AGENCIES = Path(__file__).parents[2] / "docs" / "examples" / "agencies.yaml"


def sigap(
    state_dir: Path, *args: str, password: str | None = None, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `sigap ARGS` with its database in `state_dir`, and the default config
    (operator endpoints op1 and op2, supervisor spv1) unless `config` is given."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("SIGAP_")
    }
    env["SIGAP_SITE__STATE_DIR"] = str(state_dir)
    config_args = () if config is None else ("--config", str(config))
    return subprocess.run(
        [sys.executable, "-m", "sigap_pbx.cli", *config_args, *args],
        input=None if password is None else password + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def sign_in(state_dir: Path, username: str, password: str) -> str:
    """Sign in against the CLI's database; return the user's role."""

    async def main() -> str:
        db = await Database.open(f"sqlite+aiosqlite:///{state_dir / 'sigap.db'}")
        try:
            signed_in = await AccountService(db).sign_in(username, password, "127.0.0.1")
            return signed_in.user.role.value
        finally:
            await db.close()

    return asyncio.run(main())


def test_add_creates_database(tmp_path: Path) -> None:
    state_dir = tmp_path / "new" / "state"

    result = sigap(state_dir, "user", "add", "admin1", "--role", "admin",
                   "--password-stdin", password=PASSWORD)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "added user admin1 with role admin"
    assert (state_dir / "sigap.db").is_file()
    assert (state_dir / "sigap.db").stat().st_mode & 0o077 == 0
    assert sign_in(state_dir, "admin1", PASSWORD) == "admin"


def test_list_table_and_json(tmp_path: Path) -> None:
    sigap(tmp_path, "user", "add", "admin1", "--role", "admin", "--password-stdin",
          password=PASSWORD)
    sigap(tmp_path, "agencies", "import", str(AGENCIES))
    sigap(tmp_path, "user", "add", "damkar1", "--role", "agency", "--agency", "damkar",
          "--name", "Petugas Damkar", "--password-stdin", password=PASSWORD)
    sigap(tmp_path, "user", "add", "op1", "--role", "operator", "--endpoint", "op1",
          "--password-stdin", password=PASSWORD)

    table = sigap(tmp_path, "user", "list")
    listed = sigap(tmp_path, "user", "list", "--json")

    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["USERNAME", "ROLE", "AGENCY", "ENDPOINT", "STATE"]
    assert rows[1:] == [
        ["admin1", "admin", "-", "-", "active"],
        ["damkar1", "agency", "damkar", "-", "active"],
        ["op1", "operator", "-", "op1", "active"],
    ]
    users = json.loads(listed.stdout)
    assert [user["username"] for user in users] == ["admin1", "damkar1", "op1"]
    assert users[1]["display_name"] == "Petugas Damkar"
    assert "password_hash" not in users[0]
    assert PASSWORD not in listed.stdout


def test_passwd_changes_password(tmp_path: Path) -> None:
    sigap(tmp_path, "user", "add", "spv1", "--role", "supervisor", "--password-stdin",
          password=PASSWORD)

    result = sigap(tmp_path, "user", "passwd", "spv1", "--password-stdin",
                   password="a new passphrase")

    assert result.returncode == 0, result.stderr
    assert "sessions are ended" in result.stdout
    assert sign_in(tmp_path, "spv1", "a new passphrase") == "supervisor"
    with pytest.raises(SignInRejected):
        sign_in(tmp_path, "spv1", PASSWORD)


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password.txt"
    secret.write_text(PASSWORD + "\nignored second line\n", encoding="utf-8")

    result = sigap(tmp_path, "user", "add", "spv1", "--role", "supervisor",
                   "--password-file", str(secret))

    assert result.returncode == 0, result.stderr
    assert sign_in(tmp_path, "spv1", PASSWORD) == "supervisor"


def test_disable_and_enable(tmp_path: Path) -> None:
    sigap(tmp_path, "user", "add", "op1", "--role", "operator", "--endpoint", "op1",
          "--password-stdin", password=PASSWORD)

    disabled = sigap(tmp_path, "user", "disable", "op1")
    with pytest.raises(SignInRejected):
        sign_in(tmp_path, "op1", PASSWORD)
    state = sigap(tmp_path, "user", "list").stdout.splitlines()[1].split()[-1]
    enabled = sigap(tmp_path, "user", "enable", "op1")

    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.strip() == "user op1 disabled"
    assert state == "disabled"
    assert enabled.returncode == 0, enabled.stderr
    assert sign_in(tmp_path, "op1", PASSWORD) == "operator"


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (("add", "Budi", "--role", "operator"), PASSWORD, "username 'Budi' is invalid"),
        (("add", "budi", "--role", "operator", "--endpoint", "op1"), "short",
         "password must be 10 to 1024"),
        (("add", "damkar1", "--role", "agency"), PASSWORD,
         "has role agency but no agency code: give the agency with --agency CODE"),
        (("add", "op1", "--role", "operator", "--agency", "damkar"), PASSWORD,
         "takes no agency code"),
        (("add", "op1", "--role", "operator", "--endpoint", "op1&PJSIP/x"), PASSWORD,
         "invalid endpoint 'op1&PJSIP/x'"),
        (("add", "op1", "--role", "operator", "--name", "a\nb"), PASSWORD,
         "display name 'a\\nb' is invalid"),
        (("passwd", "nobody"), PASSWORD, "user 'nobody' not found"),
        (("disable", "nobody"), None, "user 'nobody' not found"),
    ],
)
def test_clear_errors(
    tmp_path: Path, args: tuple[str, ...], password: str | None, message: str
) -> None:
    if args[0] != "add":
        # passwd and disable need an existing database.
        sigap(tmp_path, "user", "add", "admin1", "--role", "admin", "--password-stdin",
              password=PASSWORD)
    stdin = ("--password-stdin",) if password is not None else ()

    result = sigap(tmp_path, "user", *args, *stdin, password=password)

    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_role_rejected(tmp_path: Path) -> None:
    result = sigap(tmp_path, "user", "add", "x1", "--role", "boss", "--password-stdin",
                   password=PASSWORD)

    assert result.returncode == 2
    assert "invalid choice: 'boss'" in result.stderr
    assert not (tmp_path / "sigap.db").exists()


def test_duplicate_user_rejected(tmp_path: Path) -> None:
    sigap(tmp_path, "user", "add", "admin1", "--role", "admin", "--password-stdin",
          password=PASSWORD)

    again = sigap(tmp_path, "user", "add", "admin1", "--role", "admin",
                  "--password-stdin", password=PASSWORD)

    assert again.returncode == 1
    assert "user 'admin1' already exists" in again.stderr
    assert "sigap user passwd" in again.stderr


def test_bad_input_before_database(tmp_path: Path) -> None:
    result = sigap(tmp_path, "user", "add", "Budi", "--role", "operator",
                   "--password-stdin", password=PASSWORD)

    assert result.returncode == 1
    assert not (tmp_path / "sigap.db").exists()


def test_list_without_database(tmp_path: Path) -> None:
    result = sigap(tmp_path, "user", "list")

    assert result.returncode == 1
    assert f"no database at {tmp_path / 'sigap.db'}" in result.stderr
    assert "sigap user add" in result.stderr
    assert not (tmp_path / "sigap.db").exists()


def test_no_terminal_needs_password_option(tmp_path: Path) -> None:
    result = sigap(tmp_path, "user", "add", "admin1", "--role", "admin", password="")

    assert result.returncode == 1
    assert "use --password-stdin or --password-file" in result.stderr


def test_operator_needs_endpoint(tmp_path: Path) -> None:
    # No password option and no terminal: a check made after the password prompt
    # would fail with the terminal message instead.
    result = sigap(tmp_path, "user", "add", "op1", "--role", "operator")

    assert result.returncode == 1
    assert "role operator needs the endpoint" in result.stderr
    assert "--endpoint NAME" in result.stderr
    assert "op1, op2, spv1" in result.stderr
    assert not (tmp_path / "sigap.db").exists()


@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_unknown_endpoint_rejected(tmp_path: Path, role: str) -> None:
    result = sigap(tmp_path, "user", "add", "user1", "--role", role,
                   "--endpoint", "op9")

    assert result.returncode == 1
    assert "endpoint 'op9' is not configured" in result.stderr
    assert "configured endpoints are op1, op2, spv1" in result.stderr
    assert "[[sip.operators]]" in result.stderr
    assert not (tmp_path / "sigap.db").exists()


def test_endpoints_come_from_config(tmp_path: Path) -> None:
    config = tmp_path / "sigap.toml"
    config.write_text(
        '[[sip.operators]]\nendpoint = "desk1"\n\n'
        '[sip.supervisor]\nendpoint = "boss1"\n',
        encoding="utf-8",
    )

    default_name = sigap(tmp_path, "user", "add", "op1", "--role", "operator",
                         "--endpoint", "op1", config=config)
    operator = sigap(tmp_path, "user", "add", "desk1", "--role", "operator",
                     "--endpoint", "desk1", "--password-stdin", password=PASSWORD,
                     config=config)
    supervisor = sigap(tmp_path, "user", "add", "boss1", "--role", "supervisor",
                       "--endpoint", "boss1", "--password-stdin", password=PASSWORD,
                       config=config)

    assert default_name.returncode == 1
    assert "configured endpoints are desk1, boss1" in default_name.stderr
    assert operator.returncode == 0, operator.stderr
    assert supervisor.returncode == 0, supervisor.stderr
    assert sign_in(tmp_path, "desk1", PASSWORD) == "operator"


def test_agency_needs_imported_directory(tmp_path: Path) -> None:
    result = sigap(tmp_path, "user", "add", "damkar1", "--role", "agency",
                   "--agency", "damkar")

    assert result.returncode == 1
    assert "agency 'damkar' not found" in result.stderr
    assert "sigap agencies import" in result.stderr
    assert not (tmp_path / "sigap.db").exists()


def test_unknown_agency_rejected(tmp_path: Path) -> None:
    sigap(tmp_path, "user", "add", "admin1", "--role", "admin", "--password-stdin",
          password=PASSWORD)
    before_import = sigap(tmp_path, "user", "add", "damkar1", "--role", "agency",
                          "--agency", "damkar")
    imported = sigap(tmp_path, "agencies", "import", str(AGENCIES))

    unknown = sigap(tmp_path, "user", "add", "x1", "--role", "agency",
                    "--agency", "pmi")
    known = sigap(tmp_path, "user", "add", "damkar1", "--role", "agency",
                  "--agency", "damkar", "--password-stdin", password=PASSWORD)

    assert before_import.returncode == 1
    assert "the directory is empty" in before_import.stderr
    assert "sigap agencies import" in before_import.stderr
    assert imported.returncode == 0, imported.stderr
    assert unknown.returncode == 1
    assert "agency 'pmi' not found" in unknown.stderr
    assert "bpbd, damkar, polres, psc119, satpolpp" in unknown.stderr
    assert "sigap agencies list" in unknown.stderr
    assert known.returncode == 0, known.stderr
    assert sign_in(tmp_path, "damkar1", PASSWORD) == "agency"
