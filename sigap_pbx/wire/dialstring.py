"""Validation of every value that goes into a dial string.

`${EXTEN}`, `agi_extension`, `agi_arg_N`, caller ID and numbers typed by operators can
contain characters that change a dial string. `&` adds a second channel to `Dial()`,
`,` and `|` start the next application argument, `;` names a Local channel's half, `$`
and `{` start dialplan expressions, and a line break starts a new AGI command or AMI
header. So a `Dial()` string, an AGI `EXEC` argument, or an `Originate`
`Channel:`/`Exten:` is built only from values these functions accepted. Each one
checks against a short allow-list and never tries to escape.

Number rule: either `+` followed by 1 to 20 digits (an international number), or 1 to
20 characters from digits, `*` and `#` with at least one digit (a local number or a
service code such as `*21#`). `*` and `#` never follow a `+`, because no international
number contains them.
"""

from __future__ import annotations

import re

from sigap_pbx.wire.errors import DialStringError, truncated_repr

_ENDPOINT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENDPOINT_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
)
_INTERNATIONAL = re.compile(r"\+[0-9]{1,20}")
_LOCAL = re.compile(r"(?=[*#]*[0-9])[0-9*#]{1,20}")
_NUMBER_CHARS = frozenset("0123456789*#+")
_QUEUE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_QUEUE_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)

_ENDPOINT_RULE = (
    "1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-', starting with a "
    "letter or digit"
)
_NUMBER_RULE = (
    "'+' and 1 to 20 digits, or 1 to 20 characters from 0-9, '*' and '#' with at "
    "least one digit"
)
_QUEUE_RULE = "1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"


def _reject(field: str, value: object, problem: str, rule: str, fix: str) -> None:
    raise DialStringError(
        f"invalid {field} {truncated_repr(value)}: {problem}. Allowed: {rule}. {fix}"
    )


def _first_bad_char(value: str, allowed: frozenset[str]) -> str | None:
    for position, char in enumerate(value):
        if char not in allowed:
            return f"character {char!r} at position {position} is not allowed"
    return None


def _describe_problem(value: str, allowed: frozenset[str], max_length: int) -> str:
    """Name the first thing wrong with `value`, for the error message."""
    if value == "":
        return "the value is empty"
    bad_char = _first_bad_char(value, allowed)
    if bad_char is not None:
        return bad_char
    if len(value) > max_length:
        return f"it is {len(value)} characters long, more than {max_length}"
    return "the characters are allowed but not in this order"


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise DialStringError(
            f"invalid {field} {truncated_repr(value)}: expected a str, got "
            f"{type(value).__name__}; convert it before validating"
        )
    return value


def validate_endpoint(name: str, *, field: str = "endpoint") -> str:
    """Return `name` if it is a safe PJSIP endpoint or AOR name; raise
    `DialStringError` otherwise."""
    name = _require_str(name, field)
    if not _ENDPOINT.fullmatch(name):
        _reject(
            field,
            name,
            _describe_problem(name, _ENDPOINT_CHARS, 64),
            _ENDPOINT_RULE,
            "Use the endpoint's section name from pjsip.conf.",
        )
    return name


def validate_number(number: str, *, field: str = "number") -> str:
    """Return `number` if it is dialable as defined in the module docstring; raise
    `DialStringError` otherwise."""
    number = _require_str(number, field)
    if not (_INTERNATIONAL.fullmatch(number) or _LOCAL.fullmatch(number)):
        _reject(
            field,
            number,
            _describe_number_problem(number),
            _NUMBER_RULE,
            "Remove spaces, dashes, brackets and separators before dialling.",
        )
    return number


def _describe_number_problem(number: str) -> str:
    """Name the first thing wrong with `number`, for the error message."""
    if number == "":
        return "the value is empty"
    bad_char = _first_bad_char(number, _NUMBER_CHARS)
    if bad_char is not None:
        return bad_char
    body = number.removeprefix("+")
    if "+" in body:
        return "'+' is allowed only as the first character"
    if number.startswith("+") and ("*" in body or "#" in body):
        return "'*' and '#' are not allowed after '+'"
    if not any(char in "0123456789" for char in body):
        return "it contains no digit"
    return f"it has {len(body)} characters after any '+', more than 20"


def validate_queue_name(name: str, *, field: str = "queue") -> str:
    """Return `name` if it is a safe `app_queue` queue name; raise `DialStringError`
    otherwise."""
    name = _require_str(name, field)
    if not _QUEUE.fullmatch(name):
        _reject(
            field,
            name,
            _describe_problem(name, _QUEUE_CHARS, 64),
            _QUEUE_RULE,
            "Use the queue's section name from queues.conf.",
        )
    return name


def pjsip_interface(endpoint: str) -> str:
    """Return `PJSIP/<endpoint>` for `Dial()`, `QueueAdd` or `Originate`, after
    validating the endpoint."""
    return f"PJSIP/{validate_endpoint(endpoint)}"


def pjsip_dial_target(number: str, *, endpoint: str) -> str:
    """Return `PJSIP/<number>@<endpoint>`, which dials `number` through a trunk
    endpoint, after validating both parts."""
    number = validate_number(number)
    return f"PJSIP/{number}@{validate_endpoint(endpoint, field='trunk endpoint')}"
