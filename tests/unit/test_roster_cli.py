"""`sigap roster ...` and `sigap audit`, run in-process against an SQLite file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from sigap_pbx.cli import main
from sigap_pbx.roster.io import roster_from_dict
from sigap_pbx.store import Database
from tests.unit.test_roster_io import ENDPOINTS, EXAMPLE, sample_document

CONFIG = '[site]\nstate_dir = "{state}"\n' + "".join(
    f'[[sip.operators]]\nendpoint = "{endpoint}"\n' for endpoint in ENDPOINTS
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A configuration file declaring op1..op8, with an empty database beside it."""
    state = tmp_path / "var"
    state.mkdir()
    config = tmp_path / "sigap.toml"
    config.write_text(CONFIG.format(state=state), encoding="utf-8")

    async def create() -> None:
        database = await Database.open(f"sqlite+aiosqlite:///{state / 'sigap.db'}")
        await database.close()

    asyncio.run(create())
    return config


def sigap(config: Path, *arguments: str) -> int:
    return main(["--config", str(config), *arguments])


def write_yaml(path: Path, document: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_show_without_roster(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sigap(site, "roster", "show") == 1

    error = capsys.readouterr().err
    assert error.startswith(
        "error: no roster saved yet: import one with `sigap roster import"
    )


def test_without_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sigap.toml"
    config.write_text(CONFIG.format(state=tmp_path / "none"), encoding="utf-8")

    assert sigap(config, "roster", "history") == 1

    assert "error: no database at" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_import_then_show(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE), "--actor", "ayu") == 0
    assert "saved roster version 1: operators added: op1" in capsys.readouterr().out

    assert (
        sigap(site, "roster", "show", "--from", "2026-12-12", "--days", "2", "--json")
        == 0
    )

    body = json.loads(capsys.readouterr().out)
    assert body["version_id"] == 1
    first = body["shifts"][0]
    assert first["date"] == "2026-12-12"
    assert first["shift"] == "early"
    assert first["start"] == "2026-12-12T07:00:00+07:00"
    assert first["crew"] == "B"
    # op3 is on leave and op2 gives extra cover, per the sample's exceptions.
    assert [d["endpoint"] for d in first["duties"]] == ["op4", "op2"]
    assert len(body["shifts"]) == 6


def test_show_table_marks_short_shift(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # op8 is inactive in the sample, so crew D is one short on 2026-12-02 early.
    path = write_yaml(tmp_path / "roster.yaml", sample_document())
    assert sigap(site, "roster", "import", str(path)) == 0
    capsys.readouterr()

    assert sigap(site, "roster", "show", "--from", "2026-12-02") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "roster version 1, times in Asia/Pontianak"
    early = next(line for line in lines if line.startswith("2026-12-02  early"))
    assert "07:00-15:00" in early
    assert early.endswith("op7 (operator)  BELOW MINIMUM: 1 of 2")
    night = next(line for line in lines if line.startswith("2026-12-02  night"))
    assert "23:00-07:00 (+1 day)" in night


def test_import_reports_every_problem(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = sample_document()
    document["operators"][0]["role"] = "boss"
    document["crews"][1]["members"][1] = "op9"
    path = write_yaml(tmp_path / "bad.yaml", document)

    assert sigap(site, "roster", "import", str(path)) == 1

    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"error: {path}: 2 problems, nothing saved:"
    assert lines[1].startswith(f"  {path}: operators[0].role: 'boss' is not a role")
    assert lines[2].startswith(f"  {path}: crews[1].members[1]: 'op9' not found")
    assert sigap(site, "roster", "history", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_import_unconfigured_endpoint(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = sample_document()
    document["operators"].append({"endpoint": "op12", "name": "Eko"})
    path = write_yaml(tmp_path / "roster.yaml", document)

    assert sigap(site, "roster", "import", str(path)) == 1

    error = capsys.readouterr().err
    assert (
        "endpoint 'op12' is not a SIP endpoint of this site, add it under [sip]"
        in error
    )
    assert "`make run`" in error


def test_import_same_twice(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    capsys.readouterr()

    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0

    assert "roster unchanged, version 1 stays in force" in capsys.readouterr().out
    assert sigap(site, "audit", "--json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["detail"]["changed"] for e in entries] == [False, True]
    assert entries[0]["actor"].startswith("cli:")


def test_dry_run_saves_nothing(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE), "--dry-run") == 0

    assert "roster valid, not saved" in capsys.readouterr().out
    assert sigap(site, "roster", "history", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_check_needs_no_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sigap.toml"
    config.write_text(CONFIG.format(state=tmp_path / "none"), encoding="utf-8")

    assert sigap(config, "roster", "check", str(EXAMPLE)) == 0

    assert f"{EXAMPLE}: roster valid, not saved" in capsys.readouterr().out


def test_csv_section_replaced(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    out = tmp_path / "roster-operators.csv"
    assert (
        sigap(
            site,
            "roster",
            "export",
            "--format",
            "csv",
            "--section",
            "operators",
            "--out",
            str(out),
        )
        == 0
    )
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfendpoint,name,role")
    out.write_bytes(data.replace(b"Budi Santoso", b"Budi S."))
    capsys.readouterr()

    # The section comes from the file name.
    assert sigap(site, "roster", "import", str(out), "--comment", "rename") == 0

    assert "saved roster version 2: operators changed: op3" in capsys.readouterr().out
    assert sigap(site, "roster", "export") == 0
    exported = capsys.readouterr().out
    assert exported.startswith("# Sigap 112 roster, version 2, saved ")
    assert "name: Budi S.\n" in exported


def test_csv_bad_rows_listed(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    path = tmp_path / "shifts.csv"
    path.write_text(
        "name,start,hours,minimum_operators\r\nearly,7am,8,2\r\nlate,15:00,8,-1\r\n"
        "night,23:00,8,1\r\n",
        encoding="utf-8",
    )
    capsys.readouterr()

    assert sigap(site, "roster", "import", str(path)) == 1

    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"error: {path}: 2 problems, nothing saved:"
    assert lines[1].startswith(
        f"  {path} row 2, column start: '7am' is not a time of day"
    )
    assert lines[2] == (
        f"  {path} row 3, column minimum_operators: -1 is negative, use 0 or more"
    )


def test_csv_without_roster(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "crews.csv"
    path.write_text("crew,endpoint\nA,op1\n", encoding="utf-8")

    assert sigap(site, "roster", "import", str(path)) == 1

    assert "import a whole roster as YAML first" in capsys.readouterr().err


def test_csv_section_unknown(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "team.csv"
    path.write_text("crew,endpoint\n", encoding="utf-8")

    assert sigap(site, "roster", "import", str(path)) == 1

    assert "give --section with one of operators, crews, shifts, exceptions" in (
        capsys.readouterr().err
    )


def test_export_round_trips(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    out = tmp_path / "export.yaml"

    assert sigap(site, "roster", "export", "--out", str(out)) == 0

    exported = yaml.safe_load(out.read_text(encoding="utf-8"))
    original = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert roster_from_dict(exported) == roster_from_dict(original)


def test_export_csv_needs_section(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "export", "--format", "csv") == 1

    assert "give --section" in capsys.readouterr().err


def test_history_and_audit_filters(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE), "--comment", "first") == 0
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    document["exceptions"] = []
    path = write_yaml(tmp_path / "roster.yaml", document)
    assert sigap(site, "roster", "import", str(path), "--actor", "spv:sari") == 0
    capsys.readouterr()

    assert sigap(site, "roster", "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[0] == "2"
    assert "spv:sari" in lines[1]
    assert lines[2].endswith("first")

    assert sigap(site, "audit", "--subject", "roster", "--limit", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "spv:sari" in lines[1]
    assert lines[1].endswith("3 exceptions removed")

    assert sigap(site, "audit", "--action", "alarm.") == 0
    assert capsys.readouterr().out == "(no audit entries match)\n"


def test_audit_since_needs_offset(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sigap(site, "audit", "--since", "2026-12-01T07:00")

    assert exit_info.value.code == 2
    assert "is not an ISO 8601 time with an offset" in capsys.readouterr().err
