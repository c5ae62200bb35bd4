"""Call storage: one record per emergency call, its operator legs and timeline.

SQLite (through aiosqlite) by default and PostgreSQL (through asyncpg) by URL.
Alembic revisions in ``migrations/`` own the schema, and ``Database.open()``
applies them.
"""

from sigap_pbx.store.calls import CallStore, CallView, EventView, LegView
from sigap_pbx.store import (  # noqa: F401  (registers their tables)
    accounts,
    agencies,
    alarms,
    callbacks,
    diversions,
    reports,
    roster,
    shifts,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import (
    CallNotFound,
    DatabaseUnavailable,
    InvalidDatabaseURL,
    InvalidFieldValue,
    MigrationError,
    StoreError,
    UnknownField,
)
from sigap_pbx.store.members import MemberStore, PauseNotFound, PauseSource, PauseView
from sigap_pbx.store.models import CallOutcome, EventSource, LegOutcome, OverflowStage

__all__ = [
    "CallNotFound",
    "CallOutcome",
    "CallStore",
    "CallView",
    "Database",
    "DatabaseUnavailable",
    "EventSource",
    "EventView",
    "InvalidDatabaseURL",
    "InvalidFieldValue",
    "LegOutcome",
    "LegView",
    "MemberStore",
    "MigrationError",
    "OverflowStage",
    "PauseNotFound",
    "PauseSource",
    "PauseView",
    "StoreError",
    "UnknownField",
]
