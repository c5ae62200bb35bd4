"""Roster documents, YAML and CSV: round trips, located errors, spreadsheet quirks.

`sample_document` and `sample_config` are shared with the CLI, route and store
tests of the roster.
"""

from __future__ import annotations

import copy
from datetime import date, time
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.config import Config
from sigap_pbx.roster.io import (
    CSV_COLUMNS,
    MAX_NAME_LENGTH,
    MAX_REPORTED_PROBLEMS,
    MAX_YAML_DEPTH,
    SECTIONS,
    RosterDocumentError,
    exception_from_dict,
    format_path,
    load_yaml,
    operator_from_dict,
    read_csv,
    roster_from_csv,
    roster_from_dict,
    roster_from_yaml,
    roster_to_csv,
    roster_to_dict,
    roster_to_yaml,
)
from sigap_pbx.roster.model import ExtraCover, Leave, Role, RosterError, Swap
from sigap_pbx.roster.schedule import DEFAULT_TZ
from sigap_pbx.roster.service import shifts_of

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "roster.yaml"
ENDPOINTS = [f"op{i}" for i in range(1, 9)]


def sample_document() -> dict[str, Any]:
    """Four crews of two on three 8-hour shifts, with one of each exception."""
    return {
        "operators": [
            {
                "endpoint": "op1",
                "name": "Ayu",
                "role": "operator",
                "languages": ["id", "en"],
                "skills": ["triage"],
                "active": True,
            },
            {"endpoint": "op2", "name": "Agus", "role": "backup"},
            {"endpoint": "op3", "name": "Budi"},
            {"endpoint": "op4", "name": "Bayu"},
            {"endpoint": "op5", "name": "Citra"},
            {"endpoint": "op6", "name": "Candra"},
            {"endpoint": "op7", "name": "Dewi"},
            {"endpoint": "op8", "name": "Dian", "active": False},
            {"endpoint": "spv1", "name": "Sari", "role": "supervisor"},
        ],
        "crews": [
            {"name": "A", "members": ["op1", "op2"]},
            {"name": "B", "members": ["op3", "op4"]},
            {"name": "C", "members": ["op5", "op6", "spv1"]},
            {"name": "D", "members": ["op7", "op8"]},
        ],
        "pattern": {
            "name": "three-8h",
            "shifts": [
                {"name": "early", "start": "07:00", "hours": 8, "minimum_operators": 2},
                {"name": "late", "start": "15:00", "hours": 8, "minimum_operators": 2},
                {"name": "night", "start": "23:00", "hours": 8, "minimum_operators": 1},
            ],
        },
        "rotation": {"anchor": "2026-12-01", "crews": ["A", "B", "C", "D"]},
        "exceptions": [
            {
                "type": "leave",
                "endpoint": "op3",
                "start": "2026-12-10",
                "end": "2026-12-12",
            },
            {
                "type": "swap",
                "date": "2026-12-01",
                "shift": "early",
                "out_endpoint": "op2",
                "in_endpoint": "op7",
            },
            {
                "type": "extra_cover",
                "date": "2026-12-01",
                "shift": "late",
                "endpoint": "op5",
            },
        ],
    }


def sample_config() -> Config:
    """A configuration whose [sip] declares op1..op8 (and spv1, oncall1)."""
    return Config.model_validate(
        {"sip": {"operators": [{"endpoint": endpoint} for endpoint in ENDPOINTS]}}
    )


def problems_of(error: pytest.ExceptionInfo[RosterDocumentError]) -> list[str]:
    return error.value.problems


# --- Documents ---------------------------------------------------------------


def test_document_round_trip() -> None:
    roster = roster_from_dict(sample_document())

    assert roster_from_dict(roster_to_dict(roster)) == roster


def test_document_fills_defaults() -> None:
    roster = roster_from_dict(sample_document())

    agus = roster.operator("op2")
    assert agus is not None
    assert agus.role is Role.BACKUP
    assert agus.languages == ()
    assert agus.active is True
    assert roster.rotation.pattern.shifts[1].start == time(15)
    assert roster.rotation.anchor == date(2026, 12, 1)
    assert roster.exceptions == (
        Leave("op3", date(2026, 12, 10), date(2026, 12, 12)),
        Swap(date(2026, 12, 1), "early", "op2", "op7"),
        ExtraCover(date(2026, 12, 1), "late", "op5"),
    )


def test_written_document_has_every_key() -> None:
    document = roster_to_dict(roster_from_dict(sample_document()))

    assert document["operators"][1] == {
        "endpoint": "op2",
        "name": "Agus",
        "role": "backup",
        "languages": [],
        "skills": [],
        "active": True,
    }
    assert document["pattern"]["shifts"][0] == {
        "name": "early",
        "start": "07:00",
        "hours": 8,
        "minimum_operators": 2,
    }


def test_unknown_key_named_with_path() -> None:
    document = sample_document()
    document["operators"][3]["skils"] = ["triage"]

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error) == [
        "operators[3].skils: unknown key 'skils' in an operator, did you mean"
        " 'skills'? (known keys: endpoint, name, role, languages, skills, active)"
    ]


def test_unknown_top_level_key_rejected() -> None:
    document = sample_document()
    document["exception"] = []

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert (
        "exception: unknown key 'exception' in a roster, did you mean 'exceptions'?"
        in (problems_of(error)[0])
    )


def test_unknown_crew_member_path() -> None:
    document = sample_document()
    document["crews"][2]["members"][0] = "op9"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error) == [
        "crews[2].members[0]: 'op9' not found among the operators, add it under"
        " operators or remove it from the crew"
    ]


def test_every_problem_reported_once() -> None:
    document = sample_document()
    document["operators"][0]["role"] = "boss"
    document["operators"][4]["active"] = "yes"
    document["pattern"]["shifts"][2]["hours"] = "8"
    document["exceptions"][0]["start"] = "10/12/2026"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert error.value.total == 4
    assert [problem.split(":")[0] for problem in problems_of(error)] == [
        "operators[0].role",
        "operators[4].active",
        "pattern.shifts[2].hours",
        "exceptions[0].start",
    ]
    assert (
        "'boss' is not a role, use one of operator, backup, supervisor"
        in (problems_of(error)[0])
    )


def test_missing_key_named() -> None:
    document = sample_document()
    del document["pattern"]["shifts"][0]["minimum_operators"]

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error) == [
        "pattern.shifts[0]: 'minimum_operators' is missing from a shift, add it"
    ]


def test_duplicate_operator_names_both_places() -> None:
    document = sample_document()
    document["operators"].append({"endpoint": "op4", "name": "Bayu again"})

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error) == [
        "operators[9].endpoint: 'op4' is listed twice (also at"
        " operators[3].endpoint), list each operator once"
    ]


def test_operator_in_two_crews_rejected() -> None:
    document = sample_document()
    document["crews"][3]["members"].append("op1")

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error) == [
        "crews[3].members[2]: 'op1' is already in crew 'A',"
        " keep each operator in one crew"
    ]


def test_rotation_names_undefined_crew() -> None:
    document = sample_document()
    document["rotation"]["crews"] = ["A", "B", "C", "E"]

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert [p.split(":")[0] for p in problems_of(error)] == [
        "rotation.crews[3]",
        "crews[3].name",
    ]
    assert "crew 'E' not found among the crews" in problems_of(error)[0]
    assert "crew 'D' is not in rotation.crews" in problems_of(error)[1]


def test_pattern_gap_located() -> None:
    document = sample_document()
    document["pattern"]["shifts"][1]["start"] = "16:00"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error)[0].startswith(
        "pattern.shifts: pattern 'three-8h' is invalid"
    )


def test_too_few_crews_located() -> None:
    document = sample_document()
    document["crews"].pop()
    document["operators"] = document["operators"][:6] + document["operators"][8:]
    document["rotation"]["crews"] = ["A", "B", "C"]
    document["exceptions"] = []

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error)[0].startswith(
        "rotation.crews: rotation: 3 crews for 3 shifts"
    )


def test_exception_shift_unknown() -> None:
    document = sample_document()
    document["exceptions"][2]["shift"] = "evening"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error) == [
        "exceptions[2].shift: 'evening' is not a shift of pattern 'three-8h',"
        " use one of early, late, night"
    ]


def test_swap_of_operator_not_on_shift() -> None:
    document = sample_document()
    # op3 is in crew B, which works the late shift on the anchor day.
    document["exceptions"][1]["out_endpoint"] = "op3"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert len(problems_of(error)) == 1
    assert problems_of(error)[0].startswith("exceptions[1]: swap on 2026-12-01 'early'")
    assert "out_endpoint 'op3' is not on this shift" in problems_of(error)[0]


def test_extra_cover_already_on_shift() -> None:
    document = sample_document()
    # op7 is swapped into the early shift by exceptions[1] first.
    document["exceptions"].append(
        {
            "type": "extra_cover",
            "date": "2026-12-01",
            "shift": "early",
            "endpoint": "op7",
        }
    )

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error)[0].startswith(
        "exceptions[3]: extra_cover on 2026-12-01 'early': endpoint 'op7'"
    )
    assert "'op7' is already on this shift" in problems_of(error)[0]


def test_repeated_exception_rejected() -> None:
    document = sample_document()
    document["exceptions"].append(copy.deepcopy(document["exceptions"][0]))

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error) == [
        "exceptions[3]: repeats the exception at exceptions[0], remove one of them"
    ]


def test_exception_field_of_other_type_rejected() -> None:
    document = sample_document()
    document["exceptions"][0]["shift"] = "early"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error)[0].startswith(
        "exceptions[0].shift: unknown key 'shift' in a leave"
    )


def test_endpoint_not_configured() -> None:
    config = sample_config()
    known = {op.endpoint for op in config.sip.operators} | {"spv1", "oncall1"}
    document = sample_document()
    document["operators"][2]["endpoint"] = "op33"
    document["crews"][1]["members"][0] = "op33"
    document["exceptions"].pop(0)

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document, known_endpoints=known)

    assert problems_of(error) == [
        "operators[2].endpoint: endpoint 'op33' is not a SIP endpoint of this site,"
        " add it under [sip] operators in the configuration and restart with"
        " `make run` (which renders the Asterisk configuration again)"
    ]


def test_invalid_endpoint_name_rejected() -> None:
    document = sample_document()
    document["operators"][0]["endpoint"] = "op 1"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert problems_of(error)[0].startswith(
        "operators[0].endpoint: 'op 1' is not a valid"
    )


def test_problem_list_capped() -> None:
    document = sample_document()
    document["operators"] += [
        {"endpoint": f"x{i}", "name": "", "role": "none"} for i in range(40)
    ]

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert error.value.total == 80
    assert len(problems_of(error)) == MAX_REPORTED_PROBLEMS
    assert str(error.value).endswith(
        f"... and {80 - MAX_REPORTED_PROBLEMS} more problems"
    )


def test_not_a_mapping_rejected() -> None:
    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(["operators"])

    assert problems_of(error)[0].startswith("roster: ['operators'] is not a roster")


# --- YAML --------------------------------------------------------------------


def test_yaml_round_trip() -> None:
    roster = roster_from_dict(sample_document())

    text = roster_to_yaml(roster, header="version 3\nsaved by test")

    assert text.startswith("# version 3\n# saved by test\n")
    assert roster_from_yaml(text) == roster


def test_yaml_unquoted_time_explained() -> None:
    text = roster_to_yaml(roster_from_dict(sample_document()))
    # safe_dump quotes '15:00' because YAML 1.1 would read it as a number.
    text = text.replace("'15:00'", "15:00")

    with pytest.raises(RosterDocumentError) as error:
        roster_from_yaml(text, "week.yaml")

    assert problems_of(error) == [
        "week.yaml: pattern.shifts[1].start: 900 is a number, not a time of day:"
        ' quote the time, as in start: "15:00"'
    ]


def test_yaml_unquoted_dates_accepted() -> None:
    text = roster_to_yaml(roster_from_dict(sample_document())).replace(
        "'2026-12-01'", "2026-12-01"
    )
    assert "anchor: 2026-12-01" in text

    assert roster_from_yaml(text).rotation.anchor == date(2026, 12, 1)


def test_yaml_repeated_key_rejected() -> None:
    text = roster_to_yaml(roster_from_dict(sample_document()))
    text = text.replace("  name: Ayu\n", "  name: Ayu\n  name: Ayu Lestari\n")

    with pytest.raises(RosterDocumentError) as error:
        roster_from_yaml(text, "week.yaml")

    assert problems_of(error)[0].startswith("week.yaml line 4, column 3: invalid YAML")
    assert "found key 'name' twice" in problems_of(error)[0]


def test_yaml_syntax_error_located() -> None:
    with pytest.raises(RosterDocumentError) as error:
        roster_from_yaml("operators: [\n", "bad.yaml")

    assert problems_of(error)[0].startswith("bad.yaml line 2, column 1: invalid YAML")


def test_yaml_python_tags_not_run() -> None:
    with pytest.raises(RosterDocumentError) as error:
        roster_from_yaml("!!python/object/apply:os.system ['true']\n", "evil.yaml")

    assert "invalid YAML" in problems_of(error)[0]


def test_example_roster_is_valid() -> None:
    roster = roster_from_yaml(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))

    assert [shift.start for shift in roster.rotation.pattern.shifts] == [
        time(7),
        time(15),
        time(23),
    ]
    assert len(roster.rotation.crews) == 4
    endpoints = {operator.endpoint for operator in roster.operators}
    assert endpoints <= set(ENDPOINTS) | {"spv1", "oncall1"}


# --- CSV ---------------------------------------------------------------------


@pytest.mark.parametrize("section", SECTIONS)
def test_csv_round_trip(section: str) -> None:
    roster = roster_from_dict(sample_document())

    text = roster_to_csv(roster, section)

    assert text.splitlines()[0] == ",".join(CSV_COLUMNS[section])
    assert roster_from_csv(roster, text, section, f"{section}.csv") == roster


def test_csv_replaces_section_only() -> None:
    document = sample_document()
    document["exceptions"] = []
    roster = roster_from_dict(document)
    text = "name,start,hours,minimum_operators\nday,07:00,12,3\nnight,19:00,12,2\n"

    updated = roster_from_csv(roster, text, "shifts", "shifts.csv")

    assert [s.name for s in updated.rotation.pattern.shifts] == ["day", "night"]
    assert updated.rotation.pattern.shifts[0].minimum_operators == 3
    assert updated.operators == roster.operators
    assert updated.rotation.crews == roster.rotation.crews


def test_csv_crews_set_rotation_order() -> None:
    document = sample_document()
    document["exceptions"] = []
    roster = roster_from_dict(document)
    text = (
        "crew,endpoint\r\nB,op3\r\nB,op4\r\nA,op1\r\nA,op2\r\n"
        "C,op5\r\nC,op6\r\nC,spv1\r\nD,op7\r\nD,op8\r\n"
    )

    updated = roster_from_csv(roster, text, "crews", "crews.csv")

    assert [crew.name for crew in updated.rotation.crews] == ["B", "A", "C", "D"]
    assert updated.rotation.anchor == roster.rotation.anchor


def test_csv_bom_crlf_blank_lines() -> None:
    roster = roster_from_dict(sample_document())
    text = roster_to_csv(roster, "operators")
    data = b"\xef\xbb\xbf" + text.encode("utf-8") + b"\r\n,,,,,\r\n\r\n"

    assert roster_from_csv(roster, data, "operators", "operators.csv") == roster


def test_csv_semicolons_and_spreadsheet_booleans() -> None:
    roster = roster_from_dict(sample_document())
    text = roster_to_csv(roster, "operators").replace(",", ";")
    text = text.replace(";true", ";TRUE").replace(";false", ";FALSE")

    assert roster_from_csv(roster, text, "operators", "operators.csv") == roster


def test_csv_header_column_missing_and_unknown() -> None:
    text = "endpoint,nama,role,languages,active\nop1,Ayu,operator,,true\n"

    with pytest.raises(RosterDocumentError) as error:
        read_csv(text, "operators", "ops.csv")

    assert problems_of(error) == [
        "ops.csv row 1: unknown column 'nama', did you mean 'name'? (columns of"
        " operators: endpoint, name, role, languages, skills, active)",
        "ops.csv row 1: column 'name' is missing, add it",
        "ops.csv row 1: column 'skills' is missing, add it",
    ]


def test_csv_every_bad_row_reported() -> None:
    roster = roster_from_dict(sample_document())
    lines = roster_to_csv(roster, "operators").splitlines()
    lines[2] = "op2,Agus,boss,,,true"
    lines[5] = "op5,Citra,operator,,,maybe"
    lines[7] = "op7,,operator,,,true"
    data = "\r\n".join(lines) + "\r\n"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_csv(roster, data, "operators", "operators.csv")

    assert problems_of(error) == [
        "operators.csv row 3, column role: 'boss' is not a role, use one of"
        " operator, backup, supervisor",
        "operators.csv row 6, column active: 'maybe' is not true or false,"
        " use one of them",
        "operators.csv row 8, column name: is empty, fill it in",
    ]


def test_csv_row_numbers_count_blank_and_multiline_rows() -> None:
    roster = roster_from_dict(sample_document())
    text = (
        'name,start,hours,minimum_operators\n\n"early\nshift",07:00,8,2\n'
        "late,15:00,8,two\nnight,23:00,8,1\n"
    )

    with pytest.raises(RosterDocumentError) as error:
        roster_from_csv(roster, text, "shifts", "shifts.csv")

    # The header is row 1, the blank line row 2, and the quoted two-line cell
    # is one row (3), as a spreadsheet shows them.
    assert problems_of(error) == [
        "shifts.csv row 3, column name: 'early\\nshift' contains the control"
        " character U+000A, remove it",
        "shifts.csv row 4, column minimum_operators: 'two' is not a whole number,"
        " write one such as 2",
    ]


def test_csv_crew_member_row_located() -> None:
    roster = roster_from_dict(sample_document())
    text = roster_to_csv(roster, "crews").replace("B,op4", "B,op44")

    with pytest.raises(RosterDocumentError) as error:
        roster_from_csv(roster, text, "crews", "crews.csv")

    assert problems_of(error) == [
        "crews.csv row 5, column endpoint: 'op44' not found among the operators,"
        " add it under operators or remove it from the crew"
    ]


def test_csv_exception_cell_of_other_type() -> None:
    roster = roster_from_dict(sample_document())
    text = (
        "type,endpoint,start,end,date,shift,out_endpoint,in_endpoint\n"
        "leave,op3,2026-12-10,2026-12-12,,early,,\n"
    )

    with pytest.raises(RosterDocumentError) as error:
        roster_from_csv(roster, text, "exceptions", "exceptions.csv")

    assert problems_of(error)[0].startswith(
        "exceptions.csv row 2, column shift: unknown key 'shift' in a leave"
    )


def test_csv_problem_outside_section_named() -> None:
    roster = roster_from_dict(sample_document())
    text = roster_to_csv(roster, "operators").replace(
        "op4,Bayu,operator,,,true\r\n", ""
    )

    with pytest.raises(RosterDocumentError) as error:
        roster_from_csv(roster, text, "operators", "operators.csv")

    assert problems_of(error)[0].startswith(
        "crews[1].members[1] (in the current roster):"
        " 'op4' not found among the operators"
    )


def test_csv_extra_cells_rejected() -> None:
    text = "crew,endpoint\nA,op1,op2\n"

    with pytest.raises(RosterDocumentError) as error:
        read_csv(text, "crews", "crews.csv")

    assert problems_of(error) == [
        "crews.csv row 2: 3 cells for 2 columns, remove the cells to the right of"
        " the last column"
    ]


def test_csv_not_utf8_rejected() -> None:
    with pytest.raises(RosterDocumentError) as error:
        read_csv("crew,endpoint\nÄ,op1\n".encode("latin-1"), "crews", "crews.csv")

    assert problems_of(error)[0].startswith("crews.csv: not valid UTF-8")


def test_csv_unknown_section_rejected() -> None:
    with pytest.raises(RosterError, match="section 'rota' is not a roster section"):
        read_csv("a\n", "rota", "rota.csv")


def test_csv_export_escapes_formulas() -> None:
    document = sample_document()
    document["operators"][0]["name"] = '=HYPERLINK("http://x")'
    document["operators"][1]["name"] = "+62 Agus"
    document["operators"][2]["skills"] = ["@triage"]
    roster = roster_from_dict(document)

    text = roster_to_csv(roster, "operators")

    lines = text.splitlines()
    assert lines[1].startswith('op1,"\'=HYPERLINK(""http://x"")",')
    assert lines[2].startswith("op2,'+62 Agus,")
    assert ",'@triage," in lines[3]
    assert roster_from_csv(roster, text, "operators", "operators.csv") == roster


def test_documented_example_is_valid() -> None:
    text = (EXAMPLE.parents[1] / "roster.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]

    roster = roster_from_yaml(block, "docs/roster.md")

    assert [crew.name for crew in roster.rotation.crews] == ["A", "B", "C", "D"]
    assert len(roster.exceptions) == 3


# --- Single items, YAML edge cases and field checks ----------------------------


def test_operator_unknown_key_rejected() -> None:
    with pytest.raises(RosterDocumentError) as error:
        operator_from_dict({"endpoint": "op1", "name": "Ayu", "actve": False})

    assert problems_of(error) == [
        "operator.actve: unknown key 'actve' in an operator, did you mean 'active'?"
        " (known keys: endpoint, name, role, languages, skills, active)"
    ]


@pytest.mark.parametrize("extra", ["shfit", "actor"])
def test_exception_unknown_key_rejected(extra: str) -> None:
    item = {"type": "extra_cover", "date": "2026-12-12", "shift": "early"}
    item |= {"endpoint": "op2", extra: "x"}

    with pytest.raises(RosterDocumentError) as error:
        exception_from_dict(item)

    assert len(problems_of(error)) == 1
    assert problems_of(error)[0].startswith(
        f"exception.{extra}: unknown key {extra!r} in an extra_cover"
    )


def test_yaml_impossible_date_located() -> None:
    text = roster_to_yaml(roster_from_dict(sample_document())).replace(
        "anchor: '2026-12-01'", "anchor: 2026-02-30"
    )

    with pytest.raises(RosterDocumentError) as error:
        roster_from_yaml(text, "week.yaml")

    assert problems_of(error) == [
        "week.yaml: rotation.anchor: '2026-02-30' is not a valid date (day is out"
        " of range for month), correct the year, month or day"
    ]


def test_yaml_list_as_key_rejected() -> None:
    with pytest.raises(RosterDocumentError) as error:
        roster_from_yaml("? [a, b]\n: x\n", "keys.yaml")

    assert problems_of(error) == [
        "keys.yaml line 1, column 3: invalid YAML (found a list as a key, write the"
        " key as text), correct the file"
    ]


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 20000])
def test_yaml_deep_nesting_rejected(depth: int) -> None:
    with pytest.raises(RosterDocumentError) as error:
        roster_from_yaml("[" * depth + "]" * depth, "deep.yaml")

    assert f"nested more than {MAX_YAML_DEPTH} deep" in problems_of(error)[0]


def test_yaml_nesting_at_limit_parsed() -> None:
    value = load_yaml("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH)

    for _ in range(MAX_YAML_DEPTH - 1):
        assert isinstance(value, list)
        value = value[0]
    assert value == []


def test_shift_field_problems_reported_together() -> None:
    roster = roster_from_dict(sample_document())
    text = "name,start,hours,minimum_operators\nx,4:55,0,a\n"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_csv(roster, text, "shifts", "shifts.csv")

    assert problems_of(error) == [
        "shifts.csv row 2, column start: '4:55' is not a time of day,"
        " write it as HH:MM",
        "shifts.csv row 2, column hours: 0 is out of range, use more than 0 and at"
        " most 24",
        "shifts.csv row 2, column minimum_operators: 'a' is not a whole number,"
        " write one such as 2",
    ]


@pytest.mark.parametrize(
    ("hours", "minimum", "problem"),
    [
        (24.5, 1, "hours: 24.5 is out of range, use more than 0 and at most 24"),
        (8.01, 1, "hours: 8.01 is not a whole number of minutes, round it"),
        (8, -1, "minimum_operators: -1 is negative, use 0 or more"),
    ],
)
def test_shift_ranges_checked(hours: float, minimum: int, problem: str) -> None:
    document = sample_document()
    document["pattern"]["shifts"][0] |= {"hours": hours, "minimum_operators": minimum}
    document["operators"][0]["name"] = "Ayu\x1b[31m"

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    assert len(problems_of(error)) == 2
    assert problems_of(error)[0].startswith("operators[0].name: ")
    assert problems_of(error)[1].startswith(f"pattern.shifts[0].{problem}")


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("operators", 0), "Ayu\x00x", "contains the control character U+0000"),
        (("operators", 1), "Sari\u009b", "contains the control character U+009B"),
        (("crews", 0), "A\tB", "contains the control character U+0009"),
        (("pattern", "shifts", 1), "late\x1b[31m", "contains the control character"),
        (("operators", 2), "x" * 65, "is 65 characters long, shorten it to at most"),
        (("crews", 1), "B" * 100000, "is 100000 characters long, shorten it"),
    ],
)
def test_bad_names_rejected(
    path: tuple[str | int, ...], value: str, problem: str
) -> None:
    document = sample_document()
    item: Any = document
    for part in path:
        item = item[part]
    item["name"] = value

    with pytest.raises(RosterDocumentError) as error:
        roster_from_dict(document)

    location = format_path((*path, "name"))
    assert any(
        p.startswith(f"{location}: ") and problem in p for p in problems_of(error)
    ), problems_of(error)


def test_name_at_length_limit_accepted() -> None:
    document = sample_document()
    document["operators"][0]["name"] = "x" * MAX_NAME_LENGTH

    assert roster_from_dict(document).operators[0].name == "x" * MAX_NAME_LENGTH


def test_unchecked_names_read_for_stored_versions() -> None:
    document = sample_document()
    document["operators"][0]["name"] = "Ayu\x00"

    roster = roster_from_dict(document, check_names=False)

    assert roster.operators[0].name == "Ayu\x00"


def test_documented_example_matches_sample() -> None:
    text = (EXAMPLE.parents[1] / "roster.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    documented = roster_from_yaml(block, "docs/roster.md")
    sample = roster_from_yaml(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))

    assert [(o.endpoint, o.role, o.active) for o in documented.operators] == [
        (o.endpoint, o.role, o.active) for o in sample.operators
    ]
    assert documented.rotation == sample.rotation
    assert set(documented.exceptions) == set(sample.exceptions)
    start = date(2026, 12, 1)
    for mine, theirs in zip(
        shifts_of(documented, start, 31, DEFAULT_TZ),
        shifts_of(sample, start, 31, DEFAULT_TZ),
        strict=True,
    ):
        assert mine.duties == theirs.duties, (mine.shift_date, mine.shift.name)
