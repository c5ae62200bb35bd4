"""Static checks of the dialplan: strict patterns, safe FILTER sets, no way out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sigap_pbx.asterisk.render import render_extensions
from sigap_pbx.asterisk.paths import InstancePaths
from sigap_pbx.config import load_config

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"


def dialplan_lines() -> list[tuple[str, int, str]]:
    lines = []
    for path in sorted(DIALPLANS.glob("*.conf")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split(";", 1)[0].rstrip()
            if code:
                lines.append((path.name, number, code))
    return lines


def filter_sets() -> list[tuple[str, str]]:
    """Every literal FILTER character set, including those passed to sigap-lib-dbget."""
    found = []
    for name, number, code in dialplan_lines():
        for allowed in re.findall(r"FILTER\(([^,$]+),", code):
            found.append((f"{name}:{number}", allowed))
        for allowed in re.findall(r"sigap-lib-dbget,s,1\([^,]+,[^,]+,([^)]+)\)", code):
            found.append((f"{name}:{number}", allowed))
    return found


def test_filter_sets_found():
    assert len(filter_sets()) >= 8


@pytest.mark.parametrize(("where", "allowed"), filter_sets())
def test_filter_set_keeps_literal_dash(where: str, allowed: str):
    """A "-" that is neither first nor between two characters is read as a range."""
    assert not allowed.endswith("-"), f"{where}: {allowed!r} ends with '-'"
    for index, char in enumerate(allowed):
        if char == "-" and index > 0:
            assert 0 < index < len(allowed) - 1, f"{where}: {allowed!r}"
            assert allowed[index - 1] != "-", f"{where}: {allowed!r}"


def test_no_loose_patterns():
    for name, number, code in dialplan_lines():
        match = re.match(r"\s*exten\s*=>\s*([^,]+),", code)
        if match and match.group(1).startswith("_"):
            pattern = match.group(1)
            assert not pattern.endswith((".", "!")), f"{name}:{number}: {pattern}"


def test_trunk_context_holds_only_emergency_numbers():
    config = load_config(None, {})
    text = render_extensions(config, InstancePaths.for_instance("dev"))
    context = text.split("[sigap-trunk-inbound]", 1)[1]
    extensions = re.findall(r"^exten\s*=>\s*([^,]+),", context, re.MULTILINE)
    assert extensions == ["112"]
    steps = re.findall(r"^\s*(?:exten|same)\s*=>\s*(?:[^,]+,)?[^,]+,(\w+)\(", context, re.MULTILINE)
    assert set(steps) == {"Set", "Goto"}
    assert "Goto(sigap-emergency,s,1)" in context


def test_dial_targets_are_filtered_variables():
    """Every Dial() target is a PJSIP endpoint held in a variable that was filtered."""
    filtered = set()
    for _, _, code in dialplan_lines():
        match = re.search(r"Set\((SIGAP_\w+)=\$\{(?:FILTER|GOSUB_RETVAL)", code)
        if match:
            filtered.add(match.group(1))
    for name, number, code in dialplan_lines():
        for target in re.findall(r"Dial\(([^,)]+)", code):
            if target.startswith("Local/"):
                continue
            variables = re.findall(r"\$\{(\w+)\}", target)
            assert target.startswith("PJSIP/${"), f"{name}:{number}: {target}"
            assert variables and set(variables) <= filtered, f"{name}:{number}: {target}"


def test_no_caller_input_in_dial_or_db_keys():
    for name, number, code in dialplan_lines():
        for risky in ("${EXTEN}", "${CALLERID(", "${CALLERID(num)}"):
            if "Dial(" in code or "DB(" in code or "DB_EXISTS(" in code:
                assert risky not in code, f"{name}:{number}: caller input in {code.strip()}"


def test_values_from_channels_filtered_before_use():
    """Every channel function read into a SIGAP_ variable passes through FILTER."""
    reads = [
        (name, number, code)
        for name, number, code in dialplan_lines()
        if re.search(r"Set\(SIGAP_\w+=.*\$\{(CHANNEL|CALLERID)\(", code)
    ]
    assert reads, "expected the operator feature code to read CHANNEL(endpoint)"
    for name, number, code in reads:
        value = re.search(r"Set\(SIGAP_\w+=(.*)\)$", code).group(1)
        assert value.startswith("${FILTER("), f"{name}:{number}: {code.strip()}"
