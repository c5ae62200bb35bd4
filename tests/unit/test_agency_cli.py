"""`sigap agencies ...` and `sigap reports ...`, run in-process against SQLite."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sigap_pbx.cli import main
from sigap_pbx.store import Database

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "agencies.yaml"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    state = tmp_path / "var"
    state.mkdir()
    config = tmp_path / "sigap.toml"
    config.write_text(f'[site]\nstate_dir = "{state}"\n', encoding="utf-8")

    async def create() -> None:
        database = await Database.open(f"sqlite+aiosqlite:///{state / 'sigap.db'}")
        await database.close()

    asyncio.run(create())
    return config


def sigap(config: Path, *arguments: str) -> int:
    return main(["--config", str(config), *arguments])


def test_import_list_show(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sigap(site, "agencies", "import", str(EXAMPLE), "--actor", "spv") == 0
    assert "damkar: created" in capsys.readouterr().out

    assert sigap(site, "agencies", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["code"] for a in listed] == ["bpbd", "damkar", "polres", "psc119", "satpolpp"]

    assert sigap(site, "agencies", "show", "1") == 0
    shown = capsys.readouterr().out
    assert "(damkar)" in shown
    assert "SAMPLE agency" in shown


def test_import_bad_file_saves_nothing(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace('"00000101"', '"112&PJSIP/x"'),
        encoding="utf-8",
    )

    assert sigap(site, "agencies", "import", str(bad)) == 1

    error = capsys.readouterr().err
    assert "error: 1 problem, nothing saved:" in error
    assert "agencies[0].lines[1].target: invalid target '112&PJSIP/x'" in error
    assert sigap(site, "agencies", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_export_csv_round_trip(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sigap(site, "agencies", "import", str(EXAMPLE))
    out = tmp_path / "agencies.csv"

    assert sigap(site, "agencies", "export", "--format", "csv", "--out", str(out)) == 0
    capsys.readouterr()
    assert sigap(site, "agencies", "import", str(out)) == 0

    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{code}: unchanged" for code in ("bpbd", "damkar", "polres", "psc119", "satpolpp")]


def test_report_lifecycle(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sigap(site, "agencies", "import", str(EXAMPLE))
    capsys.readouterr()

    assert sigap(
        site, "reports", "create", "--category", "fire", "--call-type", "emergency",
        "--priority", "1", "--location", "Jl. Ahmad Yani", "--call", "1733312345.17",
    ) == 0
    assert capsys.readouterr().out == "created report 1 (version 1)\n"
    assert sigap(site, "reports", "dispatch", "1", "damkar", "psc119") == 0
    assert "sent to damkar, psc119" in capsys.readouterr().out
    assert sigap(site, "reports", "update", "1", "--priority", "2") == 0
    assert "version 2: priority changed; 2 webhook messages queued" in (
        capsys.readouterr().out
    )
    assert sigap(site, "reports", "link", "1", "1733312399.20") == 0
    capsys.readouterr()

    assert sigap(site, "reports", "show", "1", "--json") == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["report"]["version"] == 2
    assert [c["call_uniqueid"] for c in detail["calls"]] == ["1733312345.17", "1733312399.20"]
    assert [m["version"] for m in detail["outbox"]] == [1, 1, 2, 2]

    assert sigap(site, "reports", "list", "--status", "open", "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [1]


def test_create_from_json_invalid(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fields = tmp_path / "report.json"
    fields.write_text(json.dumps({"category": "banjir", "call_type": "emergency", "priority": 1}))

    assert sigap(site, "reports", "create", "--from-json", str(fields)) == 1

    assert capsys.readouterr().err == (
        "error: invalid report: category: 'banjir' is invalid, use one of fire,"
        " traffic_accident, natural_disaster, security, health, other\n"
    )


def test_dispatch_unknown_report(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sigap(site, "reports", "dispatch", "7", "damkar") == 1

    assert "report 7 not found" in capsys.readouterr().err
