"""Caller number normalisation for call records.

Carriers deliver the calling number in several forms (0812..., 62812..., +62812...,
with spaces or dashes). Records keep the number as received and a normalised E.164
form, so that calls from one phone group together whatever the trunk sent.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s().-]")
_TRUNK_ZERO = re.compile(r"(?<=[0-9])\s*\(\s*0\s*\)")
_PHONE_NUMBER = re.compile(r"\+?[0-9]+")
_WITHHELD = {"", "anonymous", "unknown", "unavailable", "private", "restricted"}


def normalise_number(raw: str | None, country_code: str = "62") -> str:
    """Return `+<country><national>` for a recognisable number, else ''.

    Spaces, dashes, dots and parentheses are removed first. A withheld or empty
    caller ID gives ''. So does anything that is then not an optional `+` followed
    by ASCII digits, such as a SIP URI or `0811&PJSIP/op1`, because keeping only its
    digits would invent a number that never called. The tracker stores the value as
    received in `caller_number_raw`. Short codes and national numbers too short to
    recognise (`112`, `0361`) are returned as their digits.
    """
    if raw is None:
        return ""
    # "+62 (0)812...": the "(0)" after a country code is the trunk prefix, not dialled.
    text = _SEPARATORS.sub("", _TRUNK_ZERO.sub("", raw.strip()))
    if text.lower() in _WITHHELD or not _PHONE_NUMBER.fullmatch(text):
        return ""
    digits = text.removeprefix("+")
    if text.startswith("+"):
        return "+" + _without_trunk_zero(digits, country_code)
    if digits.startswith("00") and len(digits) > 2:
        return "+" + _without_trunk_zero(digits[2:], country_code)
    if digits.startswith(country_code) and len(digits) >= 9 + len(country_code) - 2:
        return "+" + _without_trunk_zero(digits, country_code)
    if digits.startswith("0") and len(digits) >= 8:
        return "+" + country_code + digits[1:]
    return digits


def _without_trunk_zero(digits: str, country_code: str) -> str:
    """Drop the national trunk 0 written after this country's code (+62 0812...).

    Numbers here are dialled nationally with a leading 0 that is not part of the
    number, so after the country code a 0 can only be that prefix written by habit.
    """
    prefix = country_code + "0"
    if digits.startswith(prefix) and len(digits) > len(prefix):
        return country_code + digits[len(prefix):]
    return digits
