"""Subcommands of `sigap` (filled in by the module's owner)."""

from __future__ import annotations

from typing import Any


def add_parsers(sub: Any) -> None:
    del sub
