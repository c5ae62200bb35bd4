"""Caller number normalisation to E.164."""

from __future__ import annotations

import pytest

from sigap_pbx.calls.numbers import normalise_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("081234567890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("+6281234567890", "+6281234567890"),
        ("006281234567890", "+6281234567890"),
        ("0812 3456 7890", "+6281234567890"),
        ("0812-3456-7890", "+6281234567890"),
        ("(021) 555-1234", "+62215551234"),
        ("+62 812-3456-7890", "+6281234567890"),
        (" 081234567890 ", "+6281234567890"),
        ("+14155550123", "+14155550123"),
        # The trunk 0 written in brackets after the country code is not dialled.
        ("+62 (0)812-3456-7890", "+6281234567890"),
        ("+62(0)81234567890", "+6281234567890"),
        ("+44 (0) 20 7946 0018", "+442079460018"),
        # Brackets at the start are an area code's, and keep their 0.
        ("(0)81234567890", "+6281234567890"),
        # The trunk 0 written after this country's code without brackets.
        ("+62 0812-3456-7890", "+6281234567890"),
        ("0062081234567890", "+6281234567890"),
        ("62081234567890", "+6281234567890"),
        # Another country's number keeps its digits.
        ("+390612345678", "+390612345678"),
    ],
)
def test_number_to_e164(raw: str, expected: str) -> None:
    assert normalise_number(raw, "62") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        None,
        "anonymous",
        "Anonymous",
        "unknown",
        "unavailable",
        "private",
        "restricted",
    ],
)
def test_withheld_number_empty(raw: str | None) -> None:
    assert normalise_number(raw, "62") == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("112", "112"),
        ("110", "110"),
        ("1500123", "1500123"),
        ("0361", "0361"),
        ("6211", "6211"),
    ],
)
def test_short_code_stays_digits(raw: str, expected: str) -> None:
    assert normalise_number(raw, "62") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "sip:081234567890@10.0.0.1",
        "sip:+6281234567890@carrier.example",
        "<unknown>",
        "0812abc34567890",
        "*123#",
        "+",
        "0811&PJSIP/op1",
        "0811,1,Dial(x)",
        "0811;op1",
        "62+81234567890",
        "0812\x0034567890",
        "\u0660\u0668\u0661\u0662",
    ],
    ids=[
        "sip-uri",
        "sip-uri-plus",
        "asterisk-unknown",
        "letters",
        "feature-code",
        "plus-only",
        "dial-string",
        "dialplan-application",
        "semicolon",
        "plus-inside",
        "nul",
        "arabic-indic-digits",
    ],
)
def test_non_number_gives_empty(raw: str) -> None:
    assert normalise_number(raw, "62") == ""


def test_double_zero_alone_stays() -> None:
    assert normalise_number("00", "62") == "00"


def test_other_country_code() -> None:
    assert normalise_number("0612345678", "31") == "+31612345678"
    assert normalise_number("31612345678", "31") == "+31612345678"
