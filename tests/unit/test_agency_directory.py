"""Reading agency documents, YAML and CSV, and choosing the lines staffed now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sigap_pbx.agencies.directory import (
    AgencyDocumentError,
    agency_from_dict,
    directory_from_csv,
    directory_from_yaml,
    directory_to_csv,
    lines_staffed_at,
    parse_hours,
)
from sigap_pbx.store.agencies import KEEP, AgencyView, LineKind, LineSpec

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "agencies.yaml"
ZONE = ZoneInfo("Asia/Pontianak")
LINES = (
    LineSpec(1, LineKind.ENDPOINT, "day-desk", hours="07:00-19:00"),
    LineSpec(2, LineKind.NUMBER, "00000101", hours="19:00-07:00"),
    LineSpec(3, LineKind.NUMBER, "00000102", backup=True),
    LineSpec(4, LineKind.ENDPOINT, "always-desk"),
)


def local(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 4, hour, minute, tzinfo=ZONE)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (local(7), ["day-desk", "always-desk", "00000102"]),
        (local(18, 59), ["day-desk", "always-desk", "00000102"]),
        (local(19), ["00000101", "always-desk", "00000102"]),
        (local(3), ["00000101", "always-desk", "00000102"]),
    ],
)
def test_lines_staffed_at(moment: datetime, expected: list[str]) -> None:
    staffed = lines_staffed_at(LINES, moment, ZONE)

    assert [line.target for line in staffed] == expected


def test_lines_staffed_converts_utc() -> None:
    # 12:00 UTC is 19:00 in Pontianak.
    staffed = lines_staffed_at(LINES, datetime(2026, 12, 4, 12, 0, tzinfo=UTC), ZONE)

    assert staffed[0].target == "00000101"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7-19", "is not a time range"),
        ("07:00-07:00", "same time"),
        ("24:00-07:00", "out of range"),
        ("07:00-24:30", "out of range"),
    ],
)
def test_parse_hours_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hours(text)


def test_parse_hours_until_midnight() -> None:
    hours = parse_hours("18:00-24:00")

    assert hours is not None
    assert hours.contains(local(23, 59).time())
    assert not hours.contains(local(0).time())


def test_example_directory_reads() -> None:
    specs = directory_from_yaml(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))

    assert [spec.code for spec in specs] == ["damkar", "polres", "psc119", "bpbd", "satpolpp"]
    assert all(spec.sample for spec in specs)
    targets = [line.target for spec in specs for line in spec.lines]
    assert all(t.startswith("agency-") or t.startswith("0000") for t in targets)


@pytest.mark.parametrize(
    ("target", "bad_char"),
    [("112&PJSIP/x", "'&'"), ("0812\r\nAction: Originate", "'\\r'"), ("1,2", "','")],
)
def test_injection_in_number_rejected(target: str, bad_char: str) -> None:
    document = {
        "code": "damkar",
        "name": "Damkar",
        "kind": "fire",
        "lines": [{"priority": 1, "kind": "number", "target": target}],
    }

    with pytest.raises(AgencyDocumentError) as caught:
        agency_from_dict(document)

    [problem] = caught.value.problems
    assert problem.startswith(f"agency.lines[0].target: invalid target {target!r}")
    assert f"character {bad_char}" in problem
    assert "Allowed: '+' and 1 to 20 digits" in problem


def test_every_problem_listed() -> None:
    document = {
        "code": "Damkar",
        "name": "",
        "kind": "fyre",
        "dial_code": 1,
        "webhook_url": "ftp://x",
        "lines": [
            {"priority": 1, "kind": "endpoint", "target": "agency fire"},
            {"priority": 1, "kind": "number", "target": "00001", "bakup": True},
        ],
    }

    with pytest.raises(AgencyDocumentError) as caught:
        agency_from_dict(document)

    problems = "\n".join(caught.value.problems)
    assert "agency.code: 'Damkar' is invalid" in problems
    assert "agency.name: is empty" in problems
    assert "agency.kind: 'fyre' is invalid, use one of fire, police" in problems
    assert 'quote the dial code so its digits stay as written: dial_code: "1"' in problems
    assert "agency.webhook_url: 'ftp://x' is not an http or https URL" in problems
    assert "agency.lines[0].target: invalid target 'agency fire'" in problems
    assert "did you mean 'backup'?" in problems


def test_duplicate_priority() -> None:
    document = {
        "code": "damkar",
        "name": "Damkar",
        "kind": "fire",
        "lines": [
            {"priority": 1, "kind": "endpoint", "target": "a"},
            {"priority": 1, "kind": "endpoint", "target": "b"},
        ],
    }

    with pytest.raises(AgencyDocumentError, match=r"lines\[1\].priority: 1 is used twice"):
        agency_from_dict(document)


def test_secret_absent_keeps_stored() -> None:
    spec = agency_from_dict({"code": "damkar", "name": "Damkar", "kind": "fire"})
    cleared = agency_from_dict(
        {"code": "damkar", "name": "Damkar", "kind": "fire", "webhook_secret": None}
    )

    assert spec.webhook_secret is KEEP
    assert spec.accounts is KEEP
    assert cleared.webhook_secret is None


def test_bad_secret_not_echoed() -> None:
    with pytest.raises(AgencyDocumentError) as caught:
        agency_from_dict(
            {"code": "d", "name": "D", "kind": "fire", "webhook_secret": "short pw"}
        )

    assert "short pw" not in str(caught.value)
    assert "webhook_secret: is invalid" in str(caught.value)


CSV = (
    "code,dial_code,name,kind,active,sample,webhook_url,priority,line_kind,target,"
    "label,hours,backup\r\n"
    "damkar,1,Damkar,fire,true,true,,1,endpoint,agency-fire-1,Posko,,false\r\n"
    "damkar,1,Damkar,fire,true,true,,2,number,'+6200000101,Piket,19:00-07:00,true\r\n"
    "polres,2,Polres,police,,,,,,,,,\r\n"
)


def test_csv_reads_rows_as_lines() -> None:
    specs = directory_from_csv(CSV, "agencies.csv")

    assert [spec.code for spec in specs] == ["damkar", "polres"]
    assert [line.target for line in specs[0].lines] == ["agency-fire-1", "+6200000101"]
    assert specs[0].lines[1].backup is True
    assert specs[1].lines == ()
    assert specs[1].active is True


def test_csv_error_has_row_and_column() -> None:
    bad = CSV.replace("'+6200000101", "0812&PJSIP/x")

    with pytest.raises(AgencyDocumentError) as caught:
        directory_from_csv(bad, "agencies.csv")

    [problem] = caught.value.problems
    assert problem.startswith("agencies.csv row 3, column target: invalid target")


def test_csv_agency_columns_must_agree() -> None:
    bad = CSV.replace("damkar,1,Damkar,fire,true,true,,2", "damkar,3,Damkar,fire,true,true,,2")

    with pytest.raises(AgencyDocumentError, match="row 3, column dial_code: '3' differs"):
        directory_from_csv(bad, "agencies.csv")


def test_csv_round_trip_escapes_plus() -> None:
    specs = directory_from_csv(CSV, "agencies.csv")
    views = [
        AgencyView(
            i, s.code, s.dial_code, s.name, s.kind, s.webhook_url, None, s.active,
            s.sample, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC),
            s.lines, (),
        )
        for i, s in enumerate(specs)
    ]

    text = directory_to_csv(views)

    assert ",'+6200000101," in text
    assert [s.lines for s in directory_from_csv(text)] == [s.lines for s in specs]
