"""Routes of the JSON API (filled in by the module's owner)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    del app
