"""`sigap roster ...` and `sigap audit`, run in-process against an SQLite file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from sigap_pbx.cli import main
from sigap_pbx.roster.io import roster_from_dict, roster_to_yaml
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
    # The night shift of the day before is in force at the listing's start.
    night = body["shifts"][0]
    assert night["date"] == "2026-12-11"
    assert night["shift"] == "night"
    assert night["end"] == "2026-12-12T07:00:00+07:00"
    first = body["shifts"][1]
    assert first["date"] == "2026-12-12"
    assert first["shift"] == "early"
    assert first["start"] == "2026-12-12T07:00:00+07:00"
    assert first["crew"] == "B"
    # op3 is on leave and op2 gives extra cover, per the sample's exceptions.
    assert [d["endpoint"] for d in first["duties"]] == ["op4", "op2"]
    assert len(body["shifts"]) == 7


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

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{EXAMPLE}: roster valid"


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


def test_show_starts_with_shift_in_force(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    capsys.readouterr()

    assert sigap(site, "roster", "show", "--from", "2026-12-12") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("2026-12-11  night       23:00-07:00 (+1 day)  A")
    assert [line[:17] for line in lines[3:]] == [
        "2026-12-12  early",
        "2026-12-12  late ",
        "2026-12-12  night",
    ]


def test_show_first_date_has_no_day_before(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    capsys.readouterr()

    assert sigap(site, "roster", "show", "--from", "2000-01-01", "--json") == 0

    shifts = json.loads(capsys.readouterr().out)["shifts"]
    assert [shift["date"] for shift in shifts] == ["2000-01-01"] * 3


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "2201-01-01"])
def test_show_date_out_of_range(
    site: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        sigap(site, "roster", "show", "--from", value)

    assert exit_info.value.code == 2
    assert (
        f"{value} is out of range, give a date from 2000-01-01 to 2200-12-31"
        in capsys.readouterr().err
    )


def test_show_days_past_last_date(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    capsys.readouterr()

    assert sigap(site, "roster", "show", "--from", "2200-12-31", "--days", "2") == 1

    assert capsys.readouterr().err == (
        "error: 2201-01-01 is out of range, give a date from 2000-01-01 to"
        " 2200-12-31\n"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            roster_to_yaml(roster_from_dict(sample_document())).replace(
                "anchor: '2026-12-01'", "anchor: 2026-02-30"
            ),
            "rotation.anchor: '2026-02-30' is not a valid date",
        ),
        ("? [a, b]\n: x\n", "found a list as a key"),
        ("[" * 20000, "nested more than 50 deep"),
    ],
)
def test_check_bad_yaml_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    config = tmp_path / "sigap.toml"
    config.write_text(CONFIG.format(state=tmp_path / "none"), encoding="utf-8")
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")

    assert sigap(config, "roster", "check", str(path)) == 1

    error = capsys.readouterr().err
    assert error.startswith(f"error: {path}: ")
    assert problem in error
    assert "Traceback" not in error


def test_check_csv_wording(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    good = tmp_path / "shifts.csv"
    good.write_text(
        "name,start,hours,minimum_operators\nearly,07:00,8,2\nlate,15:00,8,2\n"
        "night,23:00,8,1\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad-shifts.csv"
    bad.write_text("name,start,hours,minimum_operators\nx,4:55,0,a\n", encoding="utf-8")
    capsys.readouterr()

    assert sigap(site, "roster", "check", str(good)) == 0
    valid = capsys.readouterr().out.splitlines()
    assert sigap(site, "roster", "check", str(bad)) == 1
    rejected = capsys.readouterr().err.splitlines()

    assert valid[0] == f"{good}: roster valid"
    assert rejected[0] == f"error: {bad}: 3 problems:"
    assert rejected[2] == (
        f"  {bad} row 2, column hours: 0 is out of range, use more than 0 and at"
        " most 24"
    )


def test_unconfigured_endpoint_names_config(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = sample_document()
    document["operators"].append({"endpoint": "op12", "name": "Eko"})
    path = write_yaml(tmp_path / "roster.yaml", document)

    assert sigap(site, "roster", "check", str(path)) == 1

    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(
        f"note: the configuration file {site.resolve()} declares the endpoints"
        " oncall1, op1, op2, op3, op4, op5, op6, op7, op8, spv1."
    )
    assert "run the command from the directory that contains" in last


def test_unconfigured_endpoint_without_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIGAP_CONFIG", raising=False)
    monkeypatch.setattr(
        "sigap_pbx.roster.cli.DEFAULT_CONFIG_PATHS", (Path("sigap.toml"),)
    )
    monkeypatch.setattr(
        "sigap_pbx.config.DEFAULT_CONFIG_PATHS", (Path("sigap.toml"),)
    )

    assert main(["roster", "check", str(EXAMPLE)]) == 1

    error = capsys.readouterr().err
    assert "endpoint 'op3' is not a SIP endpoint of this site" in error
    assert error.splitlines()[-1].startswith(
        "note: no configuration file was found (no --config, no SIGAP_CONFIG, no"
        " sigap.toml), so only the default endpoints exist: oncall1, op1, op2,"
        " spv1."
    )


def test_documented_show_output(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (EXAMPLE.parents[1] / "roster.md").read_text(encoding="utf-8")
    command = "$ sigap roster show --from 2026-12-12\n"
    documented = text.split(command, 1)[1].split("```", 1)[0]
    assert sigap(site, "roster", "import", str(EXAMPLE)) == 0
    capsys.readouterr()

    assert sigap(site, "roster", "show", "--from", "2026-12-12") == 0

    assert capsys.readouterr().out == documented
