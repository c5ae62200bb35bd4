"""The agency directory: reading agency documents, YAML and CSV, and `AgencyService`.

An agency document is the form that YAML files, the web API and `sigap agencies
export` use (docs/agencies.md). Reading one checks every field and reports every
problem with its location (``agencies[2].lines[0].target`` in a document,
``agencies.csv row 4, column target`` in a CSV file), the value and the fix.
Unknown keys and columns are errors, so a typo is never silently ignored.

Webhook secrets never leave the store through an export. A document without a
`webhook_secret` key keeps the stored secret, and `null` removes it.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import structlog
import yaml

from sigap_pbx.config import Config
from sigap_pbx.roster.io import load_yaml
from sigap_pbx.roster.model import RosterError
from sigap_pbx.store.agencies import (
    CODE_PATTERN,
    CODE_RULE,
    DIAL_CODE_PATTERN,
    KEEP,
    AccountSpec,
    AgencyKind,
    AgencyNotFound,
    AgencySpec,
    AgencyStore,
    AgencyView,
    KeepStored,
    LineKind,
    LineSpec,
    SaveOutcome,
)
from sigap_pbx.store.db import Database
from sigap_pbx.wire.dialstring import validate_endpoint, validate_number
from sigap_pbx.wire.errors import DialStringError

log = structlog.get_logger(__name__)

# A location inside a document, such as ("agencies", 2, "lines", 0, "target").
DocumentPath = tuple[str | int, ...]
Locate = Callable[[DocumentPath], str]

MAX_REPORTED_PROBLEMS = 50
KINDS = tuple(kind.value for kind in AgencyKind)
LINE_KINDS = tuple(kind.value for kind in LineKind)
AGENCY_KEYS = ("code", "name", "kind")
AGENCY_OPTIONAL = (
    "dial_code",
    "webhook_url",
    "webhook_secret",
    "active",
    "sample",
    "lines",
    "accounts",
)
LINE_KEYS = ("priority", "kind", "target")
LINE_OPTIONAL = ("label", "hours", "backup")
ACCOUNT_KEYS = ("username",)
ACCOUNT_OPTIONAL = ("display_name",)
MAX_PRIORITY = 99
HOURS_PATTERN = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SECRET_PATTERN = re.compile(r"[\x21-\x7e]{16,256}")
MAX_NAME_LENGTH = 200

# CSV: one row per line; the agency's own columns repeat on each of its rows. An
# agency without lines has one row with the line columns empty. Accounts and
# secrets are not in CSV files, so an import from CSV keeps the stored ones.
AGENCY_COLUMNS = ("code", "dial_code", "name", "kind", "active", "sample", "webhook_url")
LINE_COLUMNS = ("priority", "line_kind", "target", "label", "hours", "backup")
CSV_COLUMNS = AGENCY_COLUMNS + LINE_COLUMNS
# A spreadsheet runs a cell that starts with one of these as a formula. On export
# such a cell gets a leading apostrophe, and on import that apostrophe is removed.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_TRUE = frozenset({"true", "yes", "1"})
CSV_FALSE = frozenset({"false", "no", "0"})


class AgencyDocumentError(ValueError):
    """An agency document, YAML file or CSV file with one or more problems.

    `problems` lists at most MAX_REPORTED_PROBLEMS messages, each starting with
    its location, and `total` counts all of them.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems[:MAX_REPORTED_PROBLEMS])
        self.total = len(problems)
        lines = list(self.problems)
        if self.total > len(lines):
            lines.append(f"... and {self.total - len(lines)} more problems")
        if self.total == 1:
            message = f"invalid agency directory: {lines[0]}"
        else:
            message = (
                f"invalid agency directory, {self.total} problems:\n  "
                + "\n  ".join(lines)
            )
        super().__init__(message)


def format_path(path: DocumentPath) -> str:
    """Write a document path the way the docs do: ``agencies[2].lines[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "agency"


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- Hours ---------------------------------------------------------------------


@dataclass(frozen=True)
class StaffedHours:
    """A daily window of local time, `start` included and `end` excluded.

    A window whose end is not after its start runs past midnight: 22:00-06:00.
    `end` None stands for 24:00.
    """

    start: time
    end: time | None

    def contains(self, moment: time) -> bool:
        if self.end is None:
            return moment >= self.start
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def parse_hours(text: str) -> StaffedHours | None:
    """Read "HH:MM-HH:MM" ("" for always, which gives None); raise ValueError."""
    if text == "":
        return None
    match = HOURS_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a time range, write HH:MM-HH:MM such as 07:00-19:00,"
            ' or "" for always'
        )
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (
        end_h == 24 and end_m != 0
    ):
        raise ValueError(
            f"{text!r} has a time out of range, use 00:00 to 23:59 (24:00 as an end)"
        )
    start = time(start_h, start_m)
    end = None if end_h == 24 else time(end_h, end_m)
    if end == start:
        raise ValueError(
            f"{text!r} starts and ends at the same time, write \"\" for a line that"
            " is always staffed"
        )
    return StaffedHours(start, end)


def lines_staffed_at(
    lines: Sequence[LineSpec], at: datetime, zone: ZoneInfo
) -> list[LineSpec]:
    """Return the lines staffed at an aware instant, in the order to dial them.

    `hours` are local times in `zone`. Main lines come first and backup lines
    after them, each group by priority.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: pass a timezone-aware value")
    moment = at.astimezone(zone).time()
    staffed = []
    for line in lines:
        hours = parse_hours(line.hours)
        if hours is None or hours.contains(moment):
            staffed.append(line)
    return sorted(staffed, key=lambda line: (line.backup, line.priority))


# --- Agency to document --------------------------------------------------------


def agency_to_dict(agency: AgencyView | AgencySpec) -> dict[str, Any]:
    """Return the document form of an agency, without its webhook secret."""
    accounts = () if isinstance(agency.accounts, KeepStored) else agency.accounts
    return {
        "code": agency.code,
        "dial_code": agency.dial_code,
        "name": agency.name,
        "kind": agency.kind.value,
        "active": agency.active,
        "sample": agency.sample,
        "webhook_url": agency.webhook_url,
        "lines": [line.to_dict() for line in agency.lines],
        "accounts": [account.to_dict() for account in accounts],
    }


def directory_to_yaml(agencies: Sequence[AgencyView], header: str = "") -> str:
    """Write agencies as a YAML directory, with `header` lines as comments."""
    body = yaml.safe_dump(
        {"agencies": [agency_to_dict(agency) for agency in agencies]},
        sort_keys=False,
        allow_unicode=True,
        width=88,
    )
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + body


# --- Document to agency --------------------------------------------------------


class _Reader:
    """Field checks that record each problem with its location and carry on."""

    def __init__(self, locate: Locate) -> None:
        self.locate = locate
        self.problems: list[str] = []

    def fail(self, path: DocumentPath, message: str) -> None:
        self.problems.append(f"{self.locate(path)}: {message}")

    def mapping(
        self,
        value: Any,
        path: DocumentPath,
        required: Sequence[str],
        optional: Sequence[str],
        description: str,
    ) -> dict[str, Any] | None:
        known = [*required, *optional]
        if not isinstance(value, Mapping):
            self.fail(
                path,
                f"{_quoted(value)} is not {description}, give an object with"
                f" {', '.join(known)}",
            )
            return None
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
        if re.search(r"[\x00-\x1f\x7f]", value):
            self.fail(
                path, f"{_quoted(value)} contains a control character, remove it"
            )
            return None
        if len(value) > MAX_NAME_LENGTH:
            self.fail(path, f"is {len(value)} characters long, use at most 200")
            return None
        return value

    def pattern(
        self, value: Any, path: DocumentPath, pattern: re.Pattern[str], rule: str
    ) -> str | None:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            self.fail(path, f"{_quoted(value)} is invalid, use {rule}")
            return None
        return value

    def boolean(self, value: Any, path: DocumentPath) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, f"{_quoted(value)} is not true or false, use one of them")
            return None
        return value

    def choice(
        self, value: Any, path: DocumentPath, allowed: Sequence[str]
    ) -> str | None:
        if not isinstance(value, str) or value not in allowed:
            self.fail(
                path, f"{_quoted(value)} is invalid, use one of {', '.join(allowed)}"
            )
            return None
        return value


def _read_dial_code(reader: _Reader, value: Any, path: DocumentPath) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML reads an unquoted 1 as a number, and 01 as the number 1.
        reader.fail(
            path,
            f"{value} is a number, quote the dial code so its digits stay as"
            f' written: dial_code: "{value}"',
        )
        return None
    return reader.pattern(value, path, DIAL_CODE_PATTERN, "1 or 2 digits such as \"1\"")


def _read_target(
    reader: _Reader, kind: str | None, value: Any, path: DocumentPath
) -> str | None:
    if kind is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        reader.fail(
            path,
            f"{value} is a number, quote it so a leading 0 or + is kept:"
            f' target: "{value}"',
        )
        return None
    try:
        if kind == LineKind.ENDPOINT.value:
            return validate_endpoint(value, field="target")
        return validate_number(value, field="target")
    except DialStringError as error:
        reader.fail(path, str(error))
        return None


def _read_line(reader: _Reader, value: Any, path: DocumentPath) -> LineSpec | None:
    item = reader.mapping(value, path, LINE_KEYS, LINE_OPTIONAL, "a line")
    if item is None:
        return None
    before = len(reader.problems)
    priority = item["priority"]
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not 1 <= priority <= MAX_PRIORITY
    ):
        reader.fail(
            (*path, "priority"),
            f"{_quoted(priority)} is invalid, use a whole number from 1 to"
            f" {MAX_PRIORITY} (1 is dialled first)",
        )
    kind = reader.choice(item["kind"], (*path, "kind"), LINE_KINDS)
    target = _read_target(reader, kind, item["target"], (*path, "target"))
    label = reader.text(item.get("label", ""), (*path, "label"), empty=True)
    hours = item.get("hours", "")
    if hours is None:
        hours = ""
    if not isinstance(hours, str):
        reader.fail(
            (*path, "hours"),
            f"{_quoted(hours)} is not text, write HH:MM-HH:MM in quotes, or \"\"",
        )
    else:
        try:
            parse_hours(hours)
        except ValueError as error:
            reader.fail((*path, "hours"), str(error))
    backup = reader.boolean(item.get("backup", False), (*path, "backup"))
    if len(reader.problems) > before:
        return None
    return LineSpec(
        priority=priority,
        kind=LineKind(kind),
        target=target,  # type: ignore[arg-type]
        label=label,  # type: ignore[arg-type]
        hours=hours,
        backup=backup,  # type: ignore[arg-type]
    )


def _read_account(
    reader: _Reader, value: Any, path: DocumentPath
) -> AccountSpec | None:
    item = reader.mapping(value, path, ACCOUNT_KEYS, ACCOUNT_OPTIONAL, "an account")
    if item is None:
        return None
    username = reader.pattern(
        item["username"],
        (*path, "username"),
        USERNAME_PATTERN,
        "1 to 64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter"
        " or digit",
    )
    display_name = reader.text(
        item.get("display_name", ""), (*path, "display_name"), empty=True
    )
    if username is None or display_name is None:
        return None
    return AccountSpec(username, display_name)


def _read_webhook_url(reader: _Reader, value: Any, path: DocumentPath) -> str | None:
    text = reader.text(value, path)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid or re.search(r"\s", text):
        reader.fail(
            path,
            f"{_quoted(text)} is not an http or https URL, write one such as"
            " https://app.example.org/sigap/webhook",
        )
        return None
    return text


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


def _check_unique(
    reader: _Reader,
    items: Sequence[Any],
    path: DocumentPath,
    key: Callable[[Any], Any],
    field: str,
    what: str,
) -> None:
    first_seen: dict[Any, int] = {}
    for index, item in enumerate(items):
        if item is None or key(item) is None:
            continue
        value = key(item)
        if value in first_seen:
            other = reader.locate((*path, first_seen[value], field))
            reader.fail(
                (*path, index, field),
                f"{value!r} is used twice (also at {other}), give each {what} its own",
            )
        else:
            first_seen[value] = index


def _read_agency(reader: _Reader, value: Any, path: DocumentPath) -> AgencySpec | None:
    item = reader.mapping(value, path, AGENCY_KEYS, AGENCY_OPTIONAL, "an agency")
    if item is None:
        return None
    before = len(reader.problems)
    code = reader.pattern(item["code"], (*path, "code"), CODE_PATTERN, CODE_RULE)
    name = reader.text(item["name"], (*path, "name"))
    kind = reader.choice(item["kind"], (*path, "kind"), KINDS)
    dial_code = None
    if item.get("dial_code") is not None:
        dial_code = _read_dial_code(reader, item["dial_code"], (*path, "dial_code"))
    webhook_url = None
    if item.get("webhook_url") is not None:
        webhook_url = _read_webhook_url(
            reader, item["webhook_url"], (*path, "webhook_url")
        )
    secret: str | None | KeepStored = KEEP
    if "webhook_secret" in item:
        secret = item["webhook_secret"]
        if secret is not None and not (
            isinstance(secret, str) and SECRET_PATTERN.fullmatch(secret)
        ):
            # The value is a secret, so the message does not repeat it.
            reader.fail(
                (*path, "webhook_secret"),
                "is invalid, use 16 to 256 printable ASCII characters without"
                " spaces, or null to remove the secret",
            )
    active = reader.boolean(item.get("active", True), (*path, "active"))
    sample = reader.boolean(item.get("sample", False), (*path, "sample"))
    lines = _read_list(
        reader, item.get("lines", []), (*path, "lines"), _read_line, "lines"
    )
    if lines is not None:
        _check_unique(
            reader, lines, (*path, "lines"), lambda l: l.priority, "priority", "line"
        )
    accounts: list[AccountSpec | None] | None | KeepStored = KEEP
    if "accounts" in item:
        accounts = _read_list(
            reader, item["accounts"], (*path, "accounts"), _read_account, "accounts"
        )
        if accounts is not None:
            _check_unique(
                reader,
                accounts,
                (*path, "accounts"),
                lambda a: a.username,
                "username",
                "account",
            )
    if len(reader.problems) > before:
        return None
    return AgencySpec(
        code=code,  # type: ignore[arg-type]
        name=name,  # type: ignore[arg-type]
        kind=AgencyKind(kind),
        dial_code=dial_code,
        webhook_url=webhook_url,
        webhook_secret=secret,
        active=active,  # type: ignore[arg-type]
        sample=sample,  # type: ignore[arg-type]
        lines=tuple(lines or ()),
        accounts=accounts if isinstance(accounts, KeepStored) else tuple(accounts or ()),  # type: ignore[arg-type]
    )


def agency_from_dict(
    data: Any, *, path: DocumentPath = ("agency",), locate: Locate = format_path
) -> AgencySpec:
    """Read one agency document, raising AgencyDocumentError."""
    reader = _Reader(locate)
    spec = _read_agency(reader, data, path)
    if spec is None:
        raise AgencyDocumentError(reader.problems)
    return spec


def directory_from_dict(data: Any, *, locate: Locate = format_path) -> list[AgencySpec]:
    """Read a directory document ``{"agencies": [...]}``, raising AgencyDocumentError."""
    reader = _Reader(locate)
    top = reader.mapping(data, (), ("agencies",), (), "an agency directory")
    if top is None:
        raise AgencyDocumentError(reader.problems)
    specs = _read_list(reader, top["agencies"], ("agencies",), _read_agency, "agencies")
    if specs is not None:
        _check_unique(
            reader, specs, ("agencies",), lambda s: s.code, "code", "agency"
        )
        _check_unique(
            reader, specs, ("agencies",), lambda s: s.dial_code, "dial_code", "agency"
        )
    if reader.problems or specs is None:
        raise AgencyDocumentError(reader.problems)
    return specs


def directory_from_yaml(text: str, source: str = "agencies") -> list[AgencySpec]:
    """Read a YAML directory, raising AgencyDocumentError."""
    try:
        data = load_yaml(text, source)
    except RosterError as error:
        # load_yaml names the line and column; only the exception type differs.
        raise AgencyDocumentError([str(error).removeprefix("invalid roster: ")]) from None
    return directory_from_dict(
        data, locate=lambda path: f"{source}: {format_path(path)}"
    )


# --- CSV ---------------------------------------------------------------------


def _unescape_cell(cell: str) -> str:
    if len(cell) > 1 and cell[0] == "'" and cell[1] in FORMULA_PREFIXES:
        return cell[1:]
    return cell.strip()


def _escape_cell(value: str) -> str:
    # A number such as +62812... also starts with '+', so it is written as '+62812...
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def _csv_bool(cell: str, default: bool) -> bool | str:
    lowered = cell.lower()
    if lowered == "":
        return default
    if lowered in CSV_TRUE:
        return True
    if lowered in CSV_FALSE:
        return False
    return cell


def _csv_int(cell: str) -> int | str:
    return int(cell) if cell.isascii() and cell.isdigit() else cell


def directory_from_csv(data: bytes | str, source: str = "agencies.csv") -> list[AgencySpec]:
    """Read a CSV directory, one row per line, raising AgencyDocumentError.

    Problems are located by row and column. Accounts and webhook secrets are not
    in CSV files, so the agencies read keep their stored ones.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise AgencyDocumentError(
                [
                    f"{source}: not valid UTF-8 (byte {error.start}), save the file"
                    " as 'CSV UTF-8' in the spreadsheet"
                ]
            ) from None
    else:
        text = data.removeprefix("\ufeff")
    header_line = text.split("\n", 1)[0]
    delimiter = ";" if ";" in header_line and "," not in header_line else ","
    records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        table = list(records)
    except csv.Error as error:
        raise AgencyDocumentError(
            [f"{source} row {records.line_num}: invalid CSV ({error}), correct the file"]
        ) from None
    if not table or not any(cell.strip() for cell in table[0]):
        raise AgencyDocumentError(
            [f"{source}: the header row is missing, start with: {','.join(CSV_COLUMNS)}"]
        )
    header = [cell.strip().lower() for cell in table[0]]
    problems = []
    for cell in header:
        if cell not in CSV_COLUMNS:
            close = difflib.get_close_matches(cell, CSV_COLUMNS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove the column"
            problems.append(
                f"{source} row 1: unknown column {cell!r}, {hint}"
                f" (columns: {', '.join(CSV_COLUMNS)})"
            )
        elif header.count(cell) > 1:
            problems.append(f"{source} row 1: column {cell!r} appears twice, keep one")
    for column in CSV_COLUMNS:
        if column not in header:
            problems.append(f"{source} row 1: column {column!r} is missing, add it")
    if problems:
        raise AgencyDocumentError(list(dict.fromkeys(problems)))

    # Document items, and for each the CSV row of the agency and of each line.
    items: dict[str, dict[str, Any]] = {}
    agency_rows: dict[str, int] = {}
    line_rows: dict[str, list[int]] = {}
    for number, record in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(header) and any(c.strip() for c in record[len(header) :]):
            problems.append(
                f"{source} row {number}: {len(record)} cells for {len(header)}"
                " columns, remove the cells to the right of the last column"
            )
            continue
        cells = [_unescape_cell(cell) for cell in record] + [""] * len(header)
        row = dict(zip(header, cells[: len(header)], strict=True))
        agency = {
            "code": row["code"],
            "dial_code": row["dial_code"] or None,
            "name": row["name"],
            "kind": row["kind"],
            "active": _csv_bool(row["active"], True),
            "sample": _csv_bool(row["sample"], False),
            "webhook_url": row["webhook_url"] or None,
            "lines": [],
        }
        code = row["code"]
        if code not in items:
            items[code] = agency
            agency_rows[code] = number
            line_rows[code] = []
        else:
            first = items[code]
            for column in AGENCY_COLUMNS:
                if first[column] != agency[column]:
                    problems.append(
                        f"{source} row {number}, column {column}: {agency[column]!r}"
                        f" differs from {first[column]!r} on row {agency_rows[code]}"
                        f" for agency {code!r}, use the same value on every row of"
                        " an agency"
                    )
        if any(row[column] for column in LINE_COLUMNS):
            items[code]["lines"].append(
                {
                    "priority": _csv_int(row["priority"]),
                    "kind": row["line_kind"],
                    "target": row["target"],
                    "label": row["label"],
                    "hours": row["hours"],
                    "backup": _csv_bool(row["backup"], False),
                }
            )
            line_rows[code].append(number)
    if problems:
        raise AgencyDocumentError(problems)

    codes = list(items)

    def locate(path: DocumentPath) -> str:
        if len(path) < 2 or not isinstance(path[1], int) or path[1] >= len(codes):
            return f"{source}: {format_path(path)}"
        code = codes[path[1]]
        rest = path[2:]
        if rest[:1] == ("lines",) and len(rest) > 1 and isinstance(rest[1], int):
            row = line_rows[code][rest[1]]
            field = rest[2] if len(rest) > 2 else None
            column = {"kind": "line_kind"}.get(str(field), field)
            where = f", column {column}" if column in LINE_COLUMNS else ""
            return f"{source} row {row}{where}"
        field = rest[0] if rest else None
        where = f", column {field}" if field in AGENCY_COLUMNS else ""
        return f"{source} row {agency_rows[code]}{where}"

    return directory_from_dict({"agencies": list(items.values())}, locate=locate)


def directory_to_csv(agencies: Sequence[AgencyView]) -> str:
    """Write agencies as CSV, one row per line, with CRLF line ends."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for agency in agencies:
        own = [
            agency.code,
            agency.dial_code or "",
            agency.name,
            agency.kind.value,
            "true" if agency.active else "false",
            "true" if agency.sample else "false",
            agency.webhook_url or "",
        ]
        rows = [
            [
                str(line.priority),
                line.kind.value,
                line.target,
                line.label,
                line.hours,
                "true" if line.backup else "false",
            ]
            for line in agency.lines
        ] or [[""] * len(LINE_COLUMNS)]
        for line_cells in rows:
            writer.writerow([_escape_cell(cell) for cell in own + line_cells])
    return buffer.getvalue()


# --- Service -------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AgencyService:
    """The agency directory, stored in one Database, for the CLI, API and controller."""

    def __init__(
        self, db: Database, config: Config, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._store = AgencyStore(db)
        self._config = config
        self._clock = clock

    @property
    def zone(self) -> ZoneInfo:
        """The site's time zone, in which line hours are given."""
        return self._config.roster.zone  # type: ignore[no-any-return]

    async def list_agencies(self, *, active: bool | None = None) -> list[AgencyView]:
        """Return agencies ordered by code; `active` filters when given."""
        return await self._store.list_agencies(active=active)

    async def find(self, key: str) -> AgencyView | None:
        """Return the agency with this code, or dial code when `key` is digits."""
        if key.isascii() and key.isdigit():
            return await self._store.get_agency(dial_code=key)
        return await self._store.get_agency(code=key)

    async def get(self, key: str) -> AgencyView:
        """Return the agency with this code or dial code, or raise AgencyNotFound."""
        agency = await self.find(key)
        if agency is None:
            raise AgencyNotFound(key)
        return agency

    async def upsert(
        self, agency: AgencySpec | Mapping[str, Any], actor: str
    ) -> SaveOutcome:
        """Create or replace one agency with its lines and accounts.

        Raises AgencyDocumentError for an invalid document, AgencyConflict for a
        dial code or username that another agency has.
        """
        spec = agency if isinstance(agency, AgencySpec) else agency_from_dict(agency)
        outcomes = await self._store.save_agencies([spec], actor=actor, at=self._clock())
        return outcomes[0]

    async def save_all(
        self, specs: Sequence[AgencySpec], actor: str
    ) -> list[SaveOutcome]:
        """Create or replace several agencies in one transaction; others stay."""
        return await self._store.save_agencies(specs, actor=actor, at=self._clock())

    async def deactivate(self, code: str, actor: str) -> tuple[AgencyView, bool]:
        """Mark an agency inactive, so it gets no new dispatches; return it and
        whether it changed. Raises AgencyNotFound."""
        return await self._store.set_active(code, False, actor=actor, at=self._clock())

    async def activate(self, code: str, actor: str) -> tuple[AgencyView, bool]:
        return await self._store.set_active(code, True, actor=actor, at=self._clock())

    async def import_yaml(
        self, text: str, actor: str, source: str = "agencies.yaml"
    ) -> list[SaveOutcome]:
        return await self.save_all(directory_from_yaml(text, source), actor)

    async def import_csv(
        self, data: bytes | str, actor: str, source: str = "agencies.csv"
    ) -> list[SaveOutcome]:
        return await self.save_all(directory_from_csv(data, source), actor)

    async def export_yaml(self) -> str:
        agencies = await self.list_agencies()
        header = (
            f"Sigap 112 agency directory, exported {self._clock():%Y-%m-%d %H:%M} UTC.\n"
            f"Line hours are local time in {self.zone.key}. Webhook secrets are not"
            " exported; importing this file keeps the stored ones."
        )
        return directory_to_yaml(agencies, header)

    async def export_csv(self) -> str:
        return directory_to_csv(await self.list_agencies())

    def lines_for(
        self, agency: AgencyView, at: datetime | None = None
    ) -> list[LineSpec]:
        """Return the agency's lines staffed at `at` (default now), in the order
        to dial them: main lines by priority, then backup lines by priority."""
        return lines_staffed_at(agency.lines, self._clock() if at is None else at, self.zone)
