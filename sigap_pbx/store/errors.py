"""Exceptions raised by the storage layer. ``StoreError`` is the root."""

from __future__ import annotations

from collections.abc import Iterable


class StoreError(Exception):
    """Root of every error that the storage layer raises on purpose."""


class InvalidDatabaseURL(StoreError):
    """The database URL cannot be parsed or names an unsupported driver."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached, or the connection failed during a query."""


class MigrationError(StoreError):
    """The schema could not be brought to the head revision, or is not at it."""


class CallNotFound(StoreError, LookupError):
    """A leg or event names a call id that has no row in ``calls``."""

    def __init__(self, call_id: int) -> None:
        super().__init__(
            f"call id {call_id} not found: create the call with upsert_call() "
            "and pass the id that it returns"
        )
        self.call_id = call_id


class InvalidFieldValue(StoreError, ValueError):
    """A field value has the wrong type or is outside the allowed values.

    Raised before any SQL runs, so nothing of the rejected call is written.
    """

    def __init__(
        self,
        field: str,
        value: object,
        expected: str,
        allowed: Iterable[str] | None = None,
    ) -> None:
        message = f"invalid value for field {field!r}: {value!r}; expected {expected}"
        if allowed is not None:
            message += " (allowed: " + ", ".join(repr(a) for a in allowed) + ")"
        super().__init__(message)
        self.field = field
        self.value = value
        self.allowed = tuple(allowed) if allowed is not None else None


class UnknownField(StoreError, TypeError):
    """A keyword argument names no writable column."""

    def __init__(self, method: str, field: str, known: Iterable[str]) -> None:
        super().__init__(
            f"{method}() got an unknown field {field!r}; "
            f"known fields: {', '.join(sorted(known))}"
        )
        self.field = field
