"""Dial-string validation: only allow-listed characters reach a dial string."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sigap_pbx.wire.dialstring import (
    pjsip_dial_target,
    pjsip_interface,
    validate_endpoint,
    validate_number,
    validate_queue_name,
)
from sigap_pbx.wire.errors import DialStringError, WireError

# Values a caller, a dialplan variable or an operator could supply to split a dial
# string, add a channel, run an expression or start a new AGI command or AMI header.
INJECTIONS = [
    "112&PJSIP/attacker",
    "112,30,tT",
    "112|30",
    "112;2",
    "${EXTEN}",
    "$[1+1]",
    "{x}",
    "op1(x)",
    "1 12",
    "112\n",
    "112\r\nAction: Originate",
    "112\tx",
    "112\x00",
    "op1/x",
    "op1@trunk",
    "112'",
    '112"',
    "\u0661\u0661\u0662",  # Arabic-Indic digits
    "",
]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "validate", [validate_endpoint, validate_number, validate_queue_name]
)
def test_injection_rejected_by_every_validator(
    validate: Callable[[str], str], value: str
) -> None:
    with pytest.raises(DialStringError) as raised:
        validate(value)

    message = str(raised.value)
    assert repr(value) in message
    assert "Allowed:" in message


# --- Endpoints -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["op1", "trunk-telkom", "a", "op_1.backup", "9" * 64])
def test_valid_endpoint_returned_unchanged(name: str) -> None:
    assert validate_endpoint(name) == name


@pytest.mark.parametrize("name", ["-op1", ".op1", "_op1", "x" * 65, "op1\n"])
def test_invalid_endpoint_rejected(name: str) -> None:
    with pytest.raises(DialStringError):
        validate_endpoint(name)


def test_endpoint_error_names_field_and_character() -> None:
    with pytest.raises(DialStringError) as raised:
        validate_endpoint("op1&PJSIP/x", field="operator endpoint")

    message = str(raised.value)
    assert message.startswith("invalid operator endpoint 'op1&PJSIP/x'")
    assert "character '&' at position 3" in message
    assert "pjsip.conf" in message


def test_endpoint_too_long_says_length() -> None:
    with pytest.raises(DialStringError, match="65 characters long, more than 64"):
        validate_endpoint("x" * 65)


# --- Numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["112", "+62211234567", "0", "*21#", "#31#112", "9" * 20, "+" + "9" * 20]
)
def test_valid_number_returned_unchanged(number: str) -> None:
    assert validate_number(number) == number


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("+*21#", "'*' and '#' are not allowed after '+'"),
        ("1+2", "'+' is allowed only as the first character"),
        ("++112", "'+' is allowed only as the first character"),
        ("#", "it contains no digit"),
        ("+", "it contains no digit"),
        ("9" * 21, "21 characters after any '+', more than 20"),
        ("+" + "9" * 21, "21 characters after any '+', more than 20"),
        ("112-555", "character '-' at position 3 is not allowed"),
        ("", "the value is empty"),
    ],
)
def test_invalid_number_says_why(number: str, reason: str) -> None:
    with pytest.raises(DialStringError) as raised:
        validate_number(number, field="callback number")

    message = str(raised.value)
    assert message.startswith(f"invalid callback number {number!r}")
    assert reason in message
    assert "Remove spaces" in message


def test_unicode_digits_rejected() -> None:
    # str.isdigit() accepts Arabic-Indic digits; a dial string must not.
    with pytest.raises(DialStringError, match="character '\u0661' at position 0"):
        validate_number("\u0661\u0661\u0662")


# --- Queues --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["operators", "sigap-test", "q_1", "Q" * 64])
def test_valid_queue_returned_unchanged(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("name", ["ops.main", "x" * 65, "ops,1"])
def test_invalid_queue_rejected(name: str) -> None:
    with pytest.raises(DialStringError, match="invalid queue"):
        validate_queue_name(name)


# --- Building dial strings -----------------------------------------------------------


def test_pjsip_interface_from_valid_endpoint() -> None:
    assert pjsip_interface("op1") == "PJSIP/op1"


def test_pjsip_interface_rejects_second_channel() -> None:
    with pytest.raises(DialStringError, match="'op1&PJSIP/op2'"):
        pjsip_interface("op1&PJSIP/op2")


def test_pjsip_dial_target_through_trunk() -> None:
    assert pjsip_dial_target("+62211234567", endpoint="trunk") == (
        "PJSIP/+62211234567@trunk"
    )


def test_pjsip_dial_target_validates_both_parts() -> None:
    with pytest.raises(DialStringError, match="invalid number"):
        pjsip_dial_target("112&PJSIP/x", endpoint="trunk")
    with pytest.raises(DialStringError, match="invalid trunk endpoint"):
        pjsip_dial_target("112", endpoint="trunk,30")


@pytest.mark.parametrize("value", [112, None, b"112"])
def test_non_str_rejected(value: object) -> None:
    with pytest.raises(DialStringError, match="expected a str"):
        validate_number(value)  # type: ignore[arg-type]


def test_dial_string_error_is_value_error() -> None:
    assert issubclass(DialStringError, ValueError)
    assert issubclass(DialStringError, WireError)


def test_long_value_truncated_in_message() -> None:
    with pytest.raises(DialStringError) as raised:
        validate_number("&" * 500)

    assert len(str(raised.value)) < 400
    assert "..." in str(raised.value)
