"""Read-only queries on the SQLite files Asterisk writes (cel.db, cdr.db)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def query_asterisk_db(path: Path, sql: str, params: tuple[Any, ...] | list[Any]) -> list[tuple]:
    """Run one SELECT on an Asterisk SQLite file and return its rows (blocking).

    A missing file or table gives no rows: Asterisk creates both on its first record.
    The file is opened read-only, and the reader waits out Asterisk's write locks,
    because its SQLite uses a rollback journal and a reader can meet a lock while a
    row is written.
    """
    if not path.exists():
        return []
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return connection.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        connection.close()
