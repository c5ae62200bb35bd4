"""The roster as a document: dict, YAML, and one CSV file per section.

The document is the stable, documented form of a roster (docs/roster.md). It is
what the web API sends and receives, what YAML files contain, and what the store
saves for each version. Reading a document checks every field and reports every
problem it finds, each with its location (``crews[2].members[0]`` in a document,
``crews.csv row 4, column endpoint`` in a CSV file), the value and the fix.
Unknown keys and columns are errors, so that a typo is never silently ignored.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import yaml

from sigap_pbx.roster.model import (
    Crew,
    ExtraCover,
    Leave,
    Operator,
    Role,
    Roster,
    RosterError,
    RosterException,
    Rotation,
    ShiftDef,
    ShiftPattern,
    Swap,
)
from sigap_pbx.roster.schedule import on_duty

# A location inside a document, such as ("crews", 2, "members", 0).
DocumentPath = tuple[str | int, ...]
Locate = Callable[[DocumentPath], str]

# At most this many problems are listed in one error; the rest are only counted.
MAX_REPORTED_PROBLEMS = 50

# The same rule as EndpointName in sigap_pbx.config, so that a roster cannot name
# an endpoint that the configuration could never declare.
ENDPOINT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Names of operators, crews, shifts and the pattern are printed on terminals and
# written to CSV files, so they may not contain control characters (C0, DEL and
# C1, which include the terminal escape ESC). The length limit is that of
# DisplayName in sigap_pbx.config.
MAX_NAME_LENGTH = 64
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Part of the message for an operator endpoint that the configuration lacks,
# which the CLI looks for to say which configuration file it read.
NOT_CONFIGURED = "is not a SIP endpoint of this site"

ROLES = tuple(role.value for role in Role)
EXCEPTION_TYPES = ("leave", "swap", "extra_cover")

TOP_KEYS = ("operators", "crews", "pattern", "rotation")
TOP_OPTIONAL = ("exceptions",)
OPERATOR_KEYS = ("endpoint", "name")
OPERATOR_OPTIONAL = ("role", "languages", "skills", "active")
CREW_KEYS = ("name", "members")
PATTERN_KEYS = ("name", "shifts")
SHIFT_KEYS = ("name", "start", "hours", "minimum_operators")
ROTATION_KEYS = ("anchor", "crews")
EXCEPTION_KEYS = {
    "leave": ("type", "endpoint", "start", "end"),
    "swap": ("type", "date", "shift", "out_endpoint", "in_endpoint"),
    "extra_cover": ("type", "date", "shift", "endpoint"),
}

SECTIONS = ("operators", "crews", "shifts", "exceptions")
CSV_COLUMNS = {
    "operators": ("endpoint", "name", "role", "languages", "skills", "active"),
    "crews": ("crew", "endpoint"),
    "shifts": ("name", "start", "hours", "minimum_operators"),
    "exceptions": (
        "type",
        "endpoint",
        "start",
        "end",
        "date",
        "shift",
        "out_endpoint",
        "in_endpoint",
    ),
}
# A spreadsheet runs a cell that starts with one of these as a formula. On export
# such a cell gets a leading apostrophe, and on import that apostrophe is removed.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_TRUE = frozenset({"true", "yes", "1"})
CSV_FALSE = frozenset({"false", "no", "0"})


class RosterDocumentError(RosterError):
    """A roster document, YAML file or CSV file with one or more problems.

    `problems` lists at most MAX_REPORTED_PROBLEMS messages, each starting with
    its location, and `total` counts all of them.
    """

    def __init__(self, problems: Sequence[str], total: int | None = None) -> None:
        self.problems = list(problems[:MAX_REPORTED_PROBLEMS])
        self.total = len(problems) if total is None else total
        lines = list(self.problems)
        if self.total > len(lines):
            lines.append(f"... and {self.total - len(lines)} more problems")
        if self.total == 1:
            message = f"invalid roster: {lines[0]}"
        else:
            message = f"invalid roster, {self.total} problems:\n  " + "\n  ".join(lines)
        super().__init__(message)


def format_path(path: DocumentPath) -> str:
    """Write a document path the way the docs do: ``crews[2].members[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "roster"


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- Roster to document ------------------------------------------------------


def _clock_text(value: time) -> str:
    if value.second:
        return value.strftime("%H:%M:%S")
    return value.strftime("%H:%M")


def _hours_value(hours: float) -> int | float:
    return int(hours) if float(hours).is_integer() else float(hours)


def exception_to_dict(change: RosterException) -> dict[str, Any]:
    """Return the document form of one roster exception."""
    if isinstance(change, Leave):
        return {
            "type": "leave",
            "endpoint": change.endpoint,
            "start": change.start.isoformat(),
            "end": change.end.isoformat(),
        }
    if isinstance(change, Swap):
        return {
            "type": "swap",
            "date": change.shift_date.isoformat(),
            "shift": change.shift_name,
            "out_endpoint": change.out_endpoint,
            "in_endpoint": change.in_endpoint,
        }
    if isinstance(change, ExtraCover):
        return {
            "type": "extra_cover",
            "date": change.shift_date.isoformat(),
            "shift": change.shift_name,
            "endpoint": change.endpoint,
        }
    raise RosterError(
        f"exception {change!r} is of unknown type, use Leave, Swap or ExtraCover"
    )


def operator_to_dict(operator: Operator) -> dict[str, Any]:
    """Return the document form of one operator, with every key present."""
    return {
        "endpoint": operator.endpoint,
        "name": operator.name,
        "role": operator.role.value,
        "languages": list(operator.languages),
        "skills": list(operator.skills),
        "active": operator.active,
    }


def roster_to_dict(roster: Roster) -> dict[str, Any]:
    """Return the document form of a roster, with every optional key written out.

    The result contains only strings, numbers, booleans, lists and dicts, so it
    serialises to JSON and YAML as it is, and `roster_from_dict` reads it back
    to an equal Roster.
    """
    rotation = roster.rotation
    return {
        "operators": [operator_to_dict(operator) for operator in roster.operators],
        "crews": [
            {"name": crew.name, "members": list(crew.members)}
            for crew in rotation.crews
        ],
        "pattern": {
            "name": rotation.pattern.name,
            "shifts": [
                {
                    "name": shift.name,
                    "start": _clock_text(shift.start),
                    "hours": _hours_value(shift.hours),
                    "minimum_operators": shift.minimum_operators,
                }
                for shift in rotation.pattern.shifts
            ],
        },
        "rotation": {
            "anchor": rotation.anchor.isoformat(),
            "crews": [crew.name for crew in rotation.crews],
        },
        "exceptions": [exception_to_dict(change) for change in roster.exceptions],
    }


# --- Document to roster ------------------------------------------------------


class _Reader:
    """Field checks that record each problem with its location and carry on.

    Each check returns the converted value, or None after recording a problem,
    so that one pass over a document reports every bad field.
    """

    def __init__(self, locate: Locate, *, check_names: bool = True) -> None:
        self.locate = locate
        self.check_names = check_names
        self.problems: list[str] = []

    def fail(self, path: DocumentPath, message: str) -> None:
        self.problems.append(f"{self.locate(path)}: {message}")

    def mapping(
        self,
        value: Any,
        path: DocumentPath,
        required: Sequence[str],
        optional: Sequence[str] = (),
        description: str = "an object",
    ) -> dict[str, Any] | None:
        if not isinstance(value, Mapping):
            keys = ", ".join([*required, *optional])
            self.fail(
                path,
                f"{_quoted(value)} is not {description}, give an object with {keys}",
            )
            return None
        known = [*required, *optional]
        # An unknown key is reported but the known ones are still read, so that
        # one pass lists every problem of the item.
        complete = True
        for key in value:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove it"
            self.fail(
                (*path, str(key)),
                f"unknown key {str(key)!r} in {description}, {hint}"
                f" (known keys: {', '.join(known)})",
            )
        for key in required:
            if key not in value:
                self.fail(path, f"{key!r} is missing from {description}, add it")
                complete = False
        return dict(value) if complete else None

    def text(
        self, value: Any, path: DocumentPath, *, empty: bool = False
    ) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"{_quoted(value)} is not text, write it as a string")
            return None
        if not empty and not value.strip():
            self.fail(path, "is empty, fill it in")
            return None
        if value != value.strip():
            self.fail(path, f"{_quoted(value)} has spaces around it, remove them")
            return None
        return value

    def name(self, value: Any, path: DocumentPath) -> str | None:
        """Check a name: text without control characters, at most MAX_NAME_LENGTH long."""
        text = self.text(value, path)
        if text is None or not self.check_names:
            return text
        control = CONTROL_CHARACTERS.search(text)
        if control is not None:
            self.fail(
                path,
                f"{_quoted(text)} contains the control character"
                f" U+{ord(control.group()):04X}, remove it",
            )
            return None
        if len(text) > MAX_NAME_LENGTH:
            self.fail(
                path,
                f"{_quoted(text)} is {len(text)} characters long, shorten it to at"
                f" most {MAX_NAME_LENGTH}",
            )
            return None
        return text

    def endpoint(self, value: Any, path: DocumentPath) -> str | None:
        text = self.text(value, path)
        if text is None:
            return None
        if not ENDPOINT_PATTERN.fullmatch(text):
            self.fail(
                path,
                f"{_quoted(text)} is not a valid endpoint name, use 1 to 64 letters,"
                " digits, '_', '.' or '-', starting with a letter or digit",
            )
            return None
        return text

    def text_list(self, value: Any, path: DocumentPath) -> tuple[str, ...] | None:
        if not isinstance(value, list):
            self.fail(path, f"{_quoted(value)} is not a list, write a list of strings")
            return None
        items = [self.text(item, (*path, index)) for index, item in enumerate(value)]
        if any(item is None for item in items):
            return None
        return tuple(item for item in items if item is not None)

    def boolean(self, value: Any, path: DocumentPath) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, f"{_quoted(value)} is not true or false, use one of them")
            return None
        return value

    def whole_number(self, value: Any, path: DocumentPath) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(
                path, f"{_quoted(value)} is not a whole number, write one such as 2"
            )
            return None
        return value

    def number(self, value: Any, path: DocumentPath) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(
                path,
                f"{_quoted(value)} is not a number, write one such as 8 or 7.5"
                " (with a dot)",
            )
            return None
        return value

    def day(self, value: Any, path: DocumentPath) -> date | None:
        # YAML reads an unquoted 2026-12-01 as a date, JSON and CSV give a string.
        if isinstance(value, datetime):
            self.fail(path, f"{value.isoformat()} has a time, give a date YYYY-MM-DD")
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            try:
                return date.fromisoformat(value)
            except ValueError as error:
                self.fail(
                    path,
                    f"{_quoted(value)} is not a valid date ({error}),"
                    " correct the year, month or day",
                )
                return None
        self.fail(path, f"{_quoted(value)} is not a date, write it as YYYY-MM-DD")
        return None

    def clock(self, value: Any, path: DocumentPath) -> time | None:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 15:00 as the base-60 number 900.
            self.fail(
                path,
                f"{value} is a number, not a time of day: quote the time, as in"
                ' start: "15:00"',
            )
            return None
        if isinstance(value, str) and re.fullmatch(r"\d{2}:\d{2}(:\d{2})?", value):
            try:
                return time.fromisoformat(value)
            except ValueError:
                pass
        self.fail(path, f"{_quoted(value)} is not a time of day, write it as HH:MM")
        return None

    def build(self, path: DocumentPath, factory: Callable[[], Any]) -> Any:
        """Run a model constructor and record its RosterError at `path`."""
        try:
            return factory()
        except RosterError as error:
            self.fail(path, str(error))
            return None


def _read_operator(reader: _Reader, value: Any, path: DocumentPath) -> Operator | None:
    item = reader.mapping(value, path, OPERATOR_KEYS, OPERATOR_OPTIONAL, "an operator")
    if item is None:
        return None
    before = len(reader.problems)
    endpoint = reader.endpoint(item["endpoint"], (*path, "endpoint"))
    name = reader.name(item["name"], (*path, "name"))
    role = item.get("role", Role.OPERATOR.value)
    if role not in ROLES:
        reader.fail(
            (*path, "role"),
            f"{_quoted(role)} is not a role, use one of {', '.join(ROLES)}",
        )
    languages = reader.text_list(item.get("languages", []), (*path, "languages"))
    skills = reader.text_list(item.get("skills", []), (*path, "skills"))
    active = reader.boolean(item.get("active", True), (*path, "active"))
    if len(reader.problems) > before:
        return None
    return reader.build(
        path,
        lambda: Operator(
            endpoint,
            name,
            languages,
            skills,
            active,
            Role(role),  # type: ignore[arg-type]
        ),
    )


def _read_crew(
    reader: _Reader, value: Any, path: DocumentPath
) -> tuple[str, tuple[str, ...]] | None:
    item = reader.mapping(value, path, CREW_KEYS, (), "a crew")
    if item is None:
        return None
    name = reader.name(item["name"], (*path, "name"))
    members_value = item["members"]
    if not isinstance(members_value, list):
        reader.fail(
            (*path, "members"),
            f"{_quoted(members_value)} is not a list, list the crew's endpoints",
        )
        return None
    members = [
        reader.endpoint(member, (*path, "members", index))
        for index, member in enumerate(members_value)
    ]
    if name is None or any(member is None for member in members):
        return None
    return name, tuple(member for member in members if member is not None)


def _read_shift(reader: _Reader, value: Any, path: DocumentPath) -> ShiftDef | None:
    item = reader.mapping(value, path, SHIFT_KEYS, (), "a shift")
    if item is None:
        return None
    before = len(reader.problems)
    name = reader.name(item["name"], (*path, "name"))
    start = reader.clock(item["start"], (*path, "start"))
    hours = reader.number(item["hours"], (*path, "hours"))

    # ShiftDef checks these ranges too, but it runs only once every field is
    # valid, so they are checked here to report them with the other fields.
    if hours is not None and not 0 < hours <= 24:
        reader.fail(
            (*path, "hours"),
            f"{hours:g} is out of range, use more than 0 and at most 24",
        )
    elif hours is not None and abs(hours * 60 - round(hours * 60)) > 1e-9:
        reader.fail(
            (*path, "hours"),
            f"{hours:g} is not a whole number of minutes, round it to the minute",
        )

    minimum = reader.whole_number(
        item["minimum_operators"], (*path, "minimum_operators")
    )
    if minimum is not None and minimum < 0:
        reader.fail(
            (*path, "minimum_operators"), f"{minimum} is negative, use 0 or more"
        )
    if len(reader.problems) > before:
        return None
    return reader.build(
        path,
        lambda: ShiftDef(name, start, hours, minimum),  # type: ignore[arg-type]
    )


def _read_exception(
    reader: _Reader, value: Any, path: DocumentPath
) -> RosterException | None:
    if not isinstance(value, Mapping):
        reader.fail(
            path,
            f"{_quoted(value)} is not an exception, give an object with a type:"
            f" {', '.join(EXCEPTION_TYPES)}",
        )
        return None
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in EXCEPTION_KEYS:
        reader.fail(
            (*path, "type"),
            f"{_quoted(kind)} is not an exception type, use one of"
            f" {', '.join(EXCEPTION_TYPES)}",
        )
        return None
    article = "an" if kind == "extra_cover" else "a"
    item = reader.mapping(
        value, path, EXCEPTION_KEYS[kind], (), f"{article} {kind}"
    )
    if item is None:
        return None

    before = len(reader.problems)
    if kind == "leave":
        endpoint = reader.endpoint(item["endpoint"], (*path, "endpoint"))
        start = reader.day(item["start"], (*path, "start"))
        end = reader.day(item["end"], (*path, "end"))
        if len(reader.problems) > before:
            return None
        return reader.build(
            path,
            lambda: Leave(endpoint, start, end),  # type: ignore[arg-type]
        )

    shift_date = reader.day(item["date"], (*path, "date"))
    shift_name = reader.text(item["shift"], (*path, "shift"))
    if kind == "swap":
        out_endpoint = reader.endpoint(item["out_endpoint"], (*path, "out_endpoint"))
        in_endpoint = reader.endpoint(item["in_endpoint"], (*path, "in_endpoint"))
        if len(reader.problems) > before:
            return None
        return reader.build(
            path,
            lambda: Swap(
                shift_date,  # type: ignore[arg-type]
                shift_name,  # type: ignore[arg-type]
                out_endpoint,  # type: ignore[arg-type]
                in_endpoint,  # type: ignore[arg-type]
            ),
        )

    endpoint = reader.endpoint(item["endpoint"], (*path, "endpoint"))
    if len(reader.problems) > before:
        return None
    return ExtraCover(shift_date, shift_name, endpoint)  # type: ignore[arg-type]


def _read_list(
    reader: _Reader,
    value: Any,
    path: DocumentPath,
    read_item: Callable[[_Reader, Any, DocumentPath], Any],
    description: str,
) -> list[Any] | None:
    if not isinstance(value, list):
        reader.fail(
            path, f"{_quoted(value)} is not a list, write a list of {description}"
        )
        return None
    return [read_item(reader, item, (*path, index)) for index, item in enumerate(value)]


def _endpoint_fields(change: RosterException) -> list[tuple[str, str]]:
    if isinstance(change, Swap):
        return [
            ("out_endpoint", change.out_endpoint),
            ("in_endpoint", change.in_endpoint),
        ]
    return [("endpoint", change.endpoint)]


def _check_operators(
    reader: _Reader,
    operators: list[Operator | None],
    known_endpoints: Collection[str] | None,
) -> None:
    first_seen: dict[str, int] = {}
    for index, operator in enumerate(operators):
        if operator is None:
            continue
        path = ("operators", index, "endpoint")
        if operator.endpoint in first_seen:
            other = ("operators", first_seen[operator.endpoint], "endpoint")
            reader.fail(
                path,
                f"{operator.endpoint!r} is listed twice (also at"
                f" {reader.locate(other)}), list each operator once",
            )
            continue
        first_seen[operator.endpoint] = index
        if known_endpoints is not None and operator.endpoint not in known_endpoints:
            reader.fail(
                path,
                f"endpoint {operator.endpoint!r} {NOT_CONFIGURED},"
                " add it under [sip] operators in the configuration and restart with"
                " `make run` (which renders the Asterisk configuration again)",
            )


def _check_crews(
    reader: _Reader,
    crews: list[tuple[str, tuple[str, ...]] | None],
    endpoints: set[str],
) -> None:
    crew_index: dict[str, int] = {}
    member_of: dict[str, str] = {}
    for index, crew in enumerate(crews):
        if crew is None:
            continue
        name, members = crew
        if name in crew_index:
            reader.fail(
                ("crews", index, "name"),
                f"crew name {name!r} is used twice, give each crew its own name",
            )
        crew_index[name] = index
        seen: set[str] = set()
        for position, endpoint in enumerate(members):
            path = ("crews", index, "members", position)
            if endpoint in seen:
                reader.fail(
                    path, f"{endpoint!r} is listed twice in crew {name!r}, list it once"
                )
            elif endpoint not in endpoints:
                reader.fail(
                    path,
                    f"{endpoint!r} not found among the operators, add it under"
                    " operators or remove it from the crew",
                )
            elif endpoint in member_of:
                reader.fail(
                    path,
                    f"{endpoint!r} is already in crew {member_of[endpoint]!r},"
                    " keep each operator in one crew",
                )
            seen.add(endpoint)
            member_of.setdefault(endpoint, name)


def _read_rotation(
    reader: _Reader, value: Any, crews: list[tuple[str, tuple[str, ...]]]
) -> tuple[date, list[str]] | None:
    item = reader.mapping(value, ("rotation",), ROTATION_KEYS, (), "the rotation")
    if item is None:
        return None
    anchor = reader.day(item["anchor"], ("rotation", "anchor"))
    names = reader.text_list(item["crews"], ("rotation", "crews"))
    if anchor is None or names is None:
        return None
    defined = [name for name, _ in crews]
    before = len(reader.problems)
    for index, name in enumerate(names):
        path = ("rotation", "crews", index)
        if name not in defined:
            reader.fail(
                path,
                f"crew {name!r} not found among the crews"
                f" (defined: {', '.join(defined)}),"
                " define it under crews or correct the name",
            )
        elif names.index(name) != index:
            reader.fail(path, f"crew {name!r} is listed twice, list each crew once")
    for index, name in enumerate(defined):
        if name not in names:
            reader.fail(
                ("crews", index, "name"),
                f"crew {name!r} is not in rotation.crews, add it there in its turn"
                " or remove the crew",
            )
    if len(reader.problems) > before:
        return None
    return anchor, list(names)


def _check_exceptions(
    reader: _Reader,
    exceptions: list[RosterException],
    operators: list[Operator],
    rotation: Rotation,
) -> None:
    endpoints = {operator.endpoint for operator in operators}
    shift_names = [shift.name for shift in rotation.pattern.shifts]
    checked: list[tuple[int, RosterException]] = []
    first_seen: dict[RosterException, int] = {}
    for index, change in enumerate(exceptions):
        path: DocumentPath = ("exceptions", index)
        before = len(reader.problems)
        if change in first_seen:
            other = reader.locate(("exceptions", first_seen[change]))
            reader.fail(path, f"repeats the exception at {other}, remove one of them")
            continue
        first_seen[change] = index
        for field, endpoint in _endpoint_fields(change):
            if endpoint not in endpoints:
                reader.fail(
                    (*path, field),
                    f"{endpoint!r} not found among the operators, add the operator"
                    " or correct the endpoint",
                )
        if not isinstance(change, Leave) and change.shift_name not in shift_names:
            reader.fail(
                (*path, "shift"),
                f"{change.shift_name!r} is not a shift of pattern"
                f" {rotation.pattern.name!r}, use one of {', '.join(shift_names)}",
            )
        if len(reader.problems) == before:
            checked.append((index, change))
    # Swaps and extra cover depend on who is already on the shift, so each one is
    # checked against its crew and the earlier exceptions of the same shift.
    for position, (index, change) in enumerate(checked):
        if isinstance(change, Leave):
            continue
        earlier = [
            other
            for _, other in checked[: position + 1]
            if isinstance(other, Leave)
            or (other.shift_date, other.shift_name)
            == (change.shift_date, change.shift_name)
        ]
        try:
            on_duty(rotation, operators, earlier, change.shift_date, change.shift_name)
        except RosterError as error:
            reader.fail(("exceptions", index), str(error))


def roster_from_dict(
    data: Any,
    *,
    known_endpoints: Collection[str] | None = None,
    locate: Locate = format_path,
    check_names: bool = True,
) -> Roster:
    """Read a roster document, raising RosterDocumentError with every problem.

    When `known_endpoints` is given, every operator's endpoint must be one of
    them. `locate` turns a document path into the location shown in messages.
    `check_names` false accepts names with control characters or over
    MAX_NAME_LENGTH, which versions saved before that rule may contain.
    """
    reader = _Reader(locate, check_names=check_names)
    top = reader.mapping(data, (), TOP_KEYS, TOP_OPTIONAL, "a roster")
    if top is None:
        raise RosterDocumentError(reader.problems)

    operators = _read_list(
        reader, top["operators"], ("operators",), _read_operator, "operators"
    )
    crews = _read_list(reader, top["crews"], ("crews",), _read_crew, "crews")
    pattern_item = reader.mapping(
        top["pattern"], ("pattern",), PATTERN_KEYS, (), "the pattern"
    )
    pattern_name = shifts = None
    if pattern_item is not None:
        pattern_name = reader.name(pattern_item["name"], ("pattern", "name"))
        shifts = _read_list(
            reader, pattern_item["shifts"], ("pattern", "shifts"), _read_shift, "shifts"
        )
    # An empty YAML key (`exceptions:` with every item commented out) is None.
    exceptions_value = top.get("exceptions")
    exceptions = _read_list(
        reader,
        [] if exceptions_value is None else exceptions_value,
        ("exceptions",),
        _read_exception,
        "exceptions",
    )
    if operators is not None:
        _check_operators(reader, operators, known_endpoints)
    if operators is not None and crews is not None:
        # An operator with a bad field still declares its endpoint, so that its
        # crew is not reported a second time for the same mistake.
        declared = {
            item.get("endpoint")
            for item in top["operators"]
            if isinstance(item, Mapping)
        }
        _check_crews(reader, crews, declared)
    if reader.problems or None in (operators, crews, shifts, exceptions, pattern_name):
        raise RosterDocumentError(reader.problems)
    # Every item read cleanly from here on, so the lists contain no None.

    pattern = reader.build(
        ("pattern", "shifts"),
        lambda: ShiftPattern(pattern_name, tuple(shifts)),  # type: ignore[arg-type]
    )
    order = _read_rotation(reader, top["rotation"], crews)  # type: ignore[arg-type]
    if pattern is None or order is None:
        raise RosterDocumentError(reader.problems)
    anchor, crew_names = order
    by_name = {
        name: Crew(name, members)
        for name, members in crews  # type: ignore[union-attr]
    }
    rotation = reader.build(
        ("rotation", "crews"),
        lambda: Rotation(pattern, tuple(by_name[name] for name in crew_names), anchor),
    )
    if rotation is None:
        raise RosterDocumentError(reader.problems)

    _check_exceptions(reader, exceptions, operators, rotation)  # type: ignore[arg-type]
    if reader.problems:
        raise RosterDocumentError(reader.problems)
    roster = reader.build(
        (), lambda: Roster(tuple(operators), rotation, tuple(exceptions))
    )  # type: ignore[arg-type]
    if roster is None:
        raise RosterDocumentError(reader.problems)
    return roster


def operator_from_dict(data: Any, *, path: DocumentPath = ("operator",)) -> Operator:
    """Read one operator in its document form, raising RosterDocumentError."""
    reader = _Reader(format_path)
    operator = _read_operator(reader, data, path)
    # An unknown key is a problem that still returns the operator.
    if operator is None or reader.problems:
        raise RosterDocumentError(reader.problems)
    return operator


def exception_from_dict(
    data: Any, *, path: DocumentPath = ("exception",)
) -> RosterException:
    """Read one roster exception in its document form, raising RosterDocumentError."""
    reader = _Reader(format_path)
    change = _read_exception(reader, data, path)
    # An unknown key is a problem that still returns the exception.
    if change is None or reader.problems:
        raise RosterDocumentError(reader.problems)
    return change


# --- YAML --------------------------------------------------------------------


# Lists and mappings nested deeper than this are a YAML error.
MAX_YAML_DEPTH = 50


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping.

    Plain SafeLoader keeps the last value of a repeated key, which would hide a
    copy-and-paste mistake. Like yaml.safe_load, it builds only plain types.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                # A complex key (`? [a, b]`) is a list or mapping, which no
                # document key can be.
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found a {type(key).__name__} as a key, write the key as text",
                    key_node.start_mark,
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found key {key!r} twice, keep only one",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """Construct a date or time, or keep the text of an impossible one.

        SafeLoader raises a bare ValueError for an unquoted 2026-02-30. Kept as
        text, the date is reported at its place in the document, like a quoted one.
        """
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # PyYAML's composer and constructor recurse once per level of nesting, so
        # a deeply nested file would raise RecursionError. A roster needs four.
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"lists or mappings nested more than {MAX_YAML_DEPTH} deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


_UniqueKeyLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", _UniqueKeyLoader.construct_yaml_timestamp
)


def load_yaml(text: str, source: str = "roster") -> Any:
    """Parse YAML text into plain Python values, raising RosterDocumentError."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RosterDocumentError(
            [f"{source}{where}: invalid YAML ({problem}), correct the file"]
        ) from None


def roster_from_yaml(
    text: str, source: str = "roster", *, known_endpoints: Collection[str] | None = None
) -> Roster:
    """Read a roster from YAML text, raising RosterDocumentError."""
    data = load_yaml(text, source)
    return roster_from_dict(
        data,
        known_endpoints=known_endpoints,
        locate=lambda path: f"{source}: {format_path(path)}",
    )


def roster_to_yaml(roster: Roster, header: str = "") -> str:
    """Write a roster as YAML, with `header` lines as comments at the top."""
    body = yaml.safe_dump(
        roster_to_dict(roster), sort_keys=False, allow_unicode=True, width=88
    )
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + body


# --- CSV ---------------------------------------------------------------------


@dataclass(frozen=True)
class CsvSection:
    """One CSV file read into document items, with the row behind each item.

    `items` are in document form: operators, crews (with their members in
    order), shifts or exceptions. `rows` gives the spreadsheet row number of
    each item, and for crews, `member_rows` that of each member.
    """

    section: str
    source: str
    items: list[dict[str, Any]]
    rows: list[int]
    member_rows: list[list[int]]

    def locate(self, path: DocumentPath) -> str:
        """Turn a document path inside this section into a row and column."""
        prefix = _SECTION_PATHS[self.section]
        if path[: len(prefix)] != prefix:
            return f"{format_path(path)} (in the current roster)"
        rest = path[len(prefix) :]
        if not rest or not isinstance(rest[0], int) or rest[0] >= len(self.rows):
            return self.source
        index = rest[0]
        field = rest[1] if len(rest) > 1 else None
        if self.section == "crews":
            if field == "members" and len(rest) > 2 and isinstance(rest[2], int):
                row = self.member_rows[index][rest[2]]
                return f"{self.source} row {row}, column endpoint"
            row = self.rows[index]
            return f"{self.source} row {row}" + (", column crew" if field else "")
        row = self.rows[index]
        if isinstance(field, str) and field in CSV_COLUMNS[self.section]:
            return f"{self.source} row {row}, column {field}"
        return f"{self.source} row {row}"


# Document path of each CSV section.
_SECTION_PATHS: dict[str, DocumentPath] = {
    "operators": ("operators",),
    "crews": ("crews",),
    "shifts": ("pattern", "shifts"),
    "exceptions": ("exceptions",),
}


def _decode(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        # utf-8-sig drops the byte order mark that spreadsheets write first.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RosterDocumentError(
            [
                f"{source}: not valid UTF-8 (byte {error.start}), save the file as"
                " 'CSV UTF-8' in the spreadsheet"
            ]
        ) from None


def _unescape_cell(cell: str) -> str:
    if len(cell) > 1 and cell[0] == "'" and cell[1] in FORMULA_PREFIXES:
        return cell[1:]
    return cell.strip()


def _csv_bool(cell: str) -> bool | str:
    lowered = cell.lower()
    if lowered in CSV_TRUE:
        return True
    if lowered in CSV_FALSE:
        return False
    return cell


def _csv_number(cell: str) -> int | float | str:
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        value = float(cell)
    except ValueError:
        return cell
    return value if value == value and abs(value) != float("inf") else cell


def _operator_item(row: dict[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {"endpoint": row["endpoint"], "name": row["name"]}
    if row["role"]:
        item["role"] = row["role"]
    item["languages"] = row["languages"].split()
    item["skills"] = row["skills"].split()
    if row["active"]:
        item["active"] = _csv_bool(row["active"])
    return item


def _shift_item(row: dict[str, str]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "start": row["start"],
        "hours": _csv_number(row["hours"]),
        "minimum_operators": _csv_number(row["minimum_operators"]),
    }


def _exception_item(row: dict[str, str]) -> dict[str, Any]:
    # Only the filled cells become keys, so a cell that the type does not use is
    # reported as an unknown key at its column.
    return {column: value for column, value in row.items() if value}


def _sniff_delimiter(text: str) -> str:
    """Return ';' when the header uses it and no commas, else ','.

    Spreadsheets set to Indonesian and other locales with a decimal comma save
    CSV files with semicolons between the cells.
    """
    header = text.split("\n", 1)[0]
    return ";" if ";" in header and "," not in header else ","


def read_csv(data: bytes | str, section: str, source: str) -> CsvSection:
    """Read a CSV file of one section into document items.

    The first row is the header, with every column of the section in any order.
    Rows without any filled cell are skipped. Raises RosterDocumentError with
    every problem of the header or the rows.
    """
    if section not in CSV_COLUMNS:
        raise RosterError(
            f"section {section!r} is not a roster section,"
            f" use one of {', '.join(SECTIONS)}"
        )
    text = _decode(data, source)
    columns = CSV_COLUMNS[section]
    records = csv.reader(
        io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text)
    )
    try:
        table = list(records)
    except csv.Error as error:
        raise RosterDocumentError(
            [
                f"{source} row {records.line_num}: invalid CSV ({error}),"
                " correct the file"
            ]
        ) from None
    if not table or not any(cell.strip() for cell in table[0]):
        raise RosterDocumentError(
            [f"{source}: the header row is missing, start with: {','.join(columns)}"]
        )
    header = [cell.strip().lower() for cell in table[0]]
    problems = []
    for cell in header:
        if cell not in columns:
            close = difflib.get_close_matches(cell, columns, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove the column"
            problems.append(
                f"{source} row 1: unknown column {cell!r}, {hint}"
                f" (columns of {section}: {', '.join(columns)})"
            )
        elif header.count(cell) > 1:
            problems.append(f"{source} row 1: column {cell!r} appears twice, keep one")
    for column in columns:
        if column not in header:
            problems.append(f"{source} row 1: column {column!r} is missing, add it")
    if problems:
        raise RosterDocumentError(list(dict.fromkeys(problems)))

    rows: list[tuple[int, dict[str, str]]] = []
    for number, record in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(header) and any(
            cell.strip() for cell in record[len(header) :]
        ):
            problems.append(
                f"{source} row {number}: {len(record)} cells for {len(header)} columns,"
                " remove the cells to the right of the last column"
            )
            continue
        cells = [_unescape_cell(cell) for cell in record] + [""] * len(header)
        rows.append((number, dict(zip(header, cells[: len(header)], strict=True))))
    if problems:
        raise RosterDocumentError(problems)
    return _section_items(section, source, rows)


def _section_items(
    section: str, source: str, rows: list[tuple[int, dict[str, str]]]
) -> CsvSection:
    if section == "crews":
        crews: dict[str, dict[str, Any]] = {}
        crew_rows: dict[str, int] = {}
        member_rows: dict[str, list[int]] = {}
        for number, row in rows:
            crew = crews.setdefault(row["crew"], {"name": row["crew"], "members": []})
            crew_rows.setdefault(row["crew"], number)
            member_rows.setdefault(row["crew"], [])
            # A row with an empty endpoint declares a crew that has no members.
            if row["endpoint"]:
                crew["members"].append(row["endpoint"])
                member_rows[row["crew"]].append(number)
        return CsvSection(
            section,
            source,
            list(crews.values()),
            list(crew_rows.values()),
            list(member_rows.values()),
        )
    convert = {
        "operators": _operator_item,
        "shifts": _shift_item,
        "exceptions": _exception_item,
    }[section]
    items = [convert(row) for _, row in rows]
    return CsvSection(section, source, items, [number for number, _ in rows], [])


def replace_section(document: dict[str, Any], part: CsvSection) -> dict[str, Any]:
    """Return a copy of a roster document with one section replaced by a CSV file.

    Replacing the crews also sets the rotation's crew order to the order in which
    the crews first appear in the file, and keeps the anchor date.
    """
    result = dict(document)
    if part.section == "operators":
        result["operators"] = part.items
    elif part.section == "crews":
        result["crews"] = part.items
        rotation = dict(result.get("rotation") or {})
        rotation["crews"] = [crew["name"] for crew in part.items]
        result["rotation"] = rotation
    elif part.section == "shifts":
        pattern = dict(result.get("pattern") or {})
        pattern["shifts"] = part.items
        result["pattern"] = pattern
    else:
        result["exceptions"] = part.items
    return result


def roster_from_csv(
    current: Roster,
    data: bytes | str,
    section: str,
    source: str,
    *,
    known_endpoints: Collection[str] | None = None,
) -> Roster:
    """Replace one section of `current` with a CSV file, raising RosterDocumentError.

    Problems inside the file are located by row and column, and problems that the
    new section causes elsewhere (say, a crew member whose operator row was
    dropped) by their path in the current roster.
    """
    part = read_csv(data, section, source)
    document = replace_section(roster_to_dict(current), part)
    return roster_from_dict(
        document, known_endpoints=known_endpoints, locate=part.locate
    )


def _escape_cell(value: str) -> str:
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_rows(roster: Roster, section: str) -> Iterable[list[str]]:
    document = roster_to_dict(roster)
    if section == "operators":
        for item in document["operators"]:
            yield [
                item["endpoint"],
                item["name"],
                item["role"],
                " ".join(item["languages"]),
                " ".join(item["skills"]),
                "true" if item["active"] else "false",
            ]
    elif section == "crews":
        for crew in document["crews"]:
            if not crew["members"]:
                yield [crew["name"], ""]
            for endpoint in crew["members"]:
                yield [crew["name"], endpoint]
    elif section == "shifts":
        for shift in document["pattern"]["shifts"]:
            yield [
                shift["name"],
                shift["start"],
                str(shift["hours"]),
                str(shift["minimum_operators"]),
            ]
    else:
        for change in document["exceptions"]:
            yield [str(change.get(column, "")) for column in CSV_COLUMNS["exceptions"]]


def roster_to_csv(roster: Roster, section: str) -> str:
    """Write one section of a roster as CSV text, with CRLF line ends.

    A cell that starts with =, +, -, @, a tab or a carriage return gets a leading
    apostrophe, so that a spreadsheet shows it as text instead of running it as
    a formula. `read_csv` removes that apostrophe again.
    """
    if section not in CSV_COLUMNS:
        raise RosterError(
            f"section {section!r} is not a roster section,"
            f" use one of {', '.join(SECTIONS)}"
        )
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS[section])
    for row in _csv_rows(roster, section):
        writer.writerow([_escape_cell(cell) for cell in row])
    return buffer.getvalue()
