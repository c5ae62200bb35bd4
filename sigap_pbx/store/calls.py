"""Call records: idempotent writes from the call tracker and reconciler, and reads.

Every ``CallStore`` method runs in its own transaction, so many asyncio tasks, and
several processes on the same database, may call it at once. Writes are idempotent
because Asterisk events can arrive twice or out of order, and reconciliation may
replay a call that the live path already stored.
"""

from __future__ import annotations

import copy
import enum
import json
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, exc, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import CallNotFound, InvalidFieldValue, UnknownField
from sigap_pbx.store.models import (
    Call,
    CallEvent,
    CallLeg,
    CallOutcome,
    Checkpoint,
    EventSource,
    LegOutcome,
    OverflowStage,
)

CALLS: Table = Call.__table__  # type: ignore[assignment]
CALL_LEGS: Table = CallLeg.__table__  # type: ignore[assignment]
CALL_EVENTS: Table = CallEvent.__table__  # type: ignore[assignment]
CHECKPOINTS: Table = Checkpoint.__table__  # type: ignore[assignment]

# Maximum number of values bound in one IN (...) list. SQLite builds before 3.32.0
# default to at most 999 bound parameters per statement, so 500 stays below it.
IN_CLAUSE_CHUNK = 500

Validator = Callable[[str, Any], Any]


# --- Field validation -------------------------------------------------------


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidFieldValue(field, value, "a string")
    if "\x00" in value:
        raise InvalidFieldValue(
            field, value, "a string without NUL characters (PostgreSQL rejects them)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFieldValue(
            field, value, "a string that encodes as UTF-8, without lone surrogates"
        ) from None
    return value


def _key(field: str, value: Any) -> str:
    if _text(field, value) == "":
        raise InvalidFieldValue(field, value, "a non-empty string")
    return value


def _aware_datetime(field: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidFieldValue(field, value, "a timezone-aware datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidFieldValue(
            field, value, "a timezone-aware datetime, such as datetime.now(UTC)"
        )
    return value


def _seconds(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidFieldValue(field, value, "a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise InvalidFieldValue(field, value, "a finite number of seconds >= 0")
    return float(value)


def _non_negative_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidFieldValue(field, value, "an integer >= 0")
    return value


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidFieldValue(field, value, "True or False")
    return value


def _one_of(values: type[enum.StrEnum]) -> Validator:
    allowed = [member.value for member in values]

    def validate(field: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise InvalidFieldValue(field, value, "one of the allowed values", allowed)
        return str(values(value))

    return validate


CALL_FIELDS: dict[str, Validator] = {
    "linkedid": _text,
    "channel": _text,
    "caller_number": _text,
    "caller_number_raw": _text,
    "caller_name": _text,
    "trunk": _text,
    "dialled_number": _text,
    "queue": _text,
    "arrived_at": _aware_datetime,
    "queued_at": _aware_datetime,
    "answered_at": _aware_datetime,
    "ended_at": _aware_datetime,
    "operator": _text,
    "operator_interface": _text,
    "wait_seconds": _seconds,
    "talk_seconds": _seconds,
    "outcome": _one_of(CallOutcome),
    "overflow_stage": _one_of(OverflowStage),
    "answered_by": _text,
    "hangup_cause": _non_negative_int,
    "hangup_cause_text": _text,
    "reconciled": _bool,
}

# Fields that a later upsert may replace. Every other field is only filled while
# it is still NULL, so the first value seen wins.
CALL_OVERWRITABLE = frozenset(
    {
        "outcome",
        "ended_at",
        "talk_seconds",
        "wait_seconds",
        "hangup_cause",
        "hangup_cause_text",
        "operator",
        "operator_interface",
        "answered_at",
        "overflow_stage",
        "answered_by",
        "queue",
        "reconciled",
    }
)

LEG_FIELDS: dict[str, Validator] = {
    "channel": _text,
    "interface": _text,
    "member_name": _text,
    "queue": _text,
    "called_at": _aware_datetime,
    "connected_at": _aware_datetime,
    "ended_at": _aware_datetime,
    "ring_seconds": _seconds,
    "outcome": _one_of(LegOutcome),
}
LEG_OVERWRITABLE = frozenset({"outcome", "connected_at", "ended_at", "ring_seconds"})

_validate_call_outcome = _one_of(CallOutcome)
_validate_source = _one_of(EventSource)


def _validate_fields(
    method: str, fields_given: Mapping[str, Any], rules: Mapping[str, Validator]
) -> dict[str, Any]:
    """Validate keyword fields and return them without the ones set to None."""
    values = {}
    for name, value in fields_given.items():
        validate = rules.get(name)
        if validate is None:
            raise UnknownField(method, name, rules)
        if value is not None:
            values[name] = validate(name, value)
    return values


def _validate_id(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFieldValue(field, value, "an integer id")
    return value


def _validate_json_object(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidFieldValue(field, value, "a dict that serialises to a JSON object")
    try:
        # NaN and infinity are not JSON, and PostgreSQL rejects them.
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidFieldValue(
            field, value, f"a dict of JSON-serialisable values ({error})"
        ) from None
    return value


# --- Update rules -----------------------------------------------------------


def _update_values(
    table: Table,
    values: Mapping[str, Any],
    overwritable: frozenset[str],
    initial_outcome: str,
) -> dict[str, Any]:
    """Build the SET clause that merges new values into an existing row.

    The rules are applied inside one UPDATE statement, so concurrent upserts of
    the same row cannot lose each other's fields. The initial outcome
    (``in_progress`` or ``ringing``) never replaces a stored outcome, because it
    is either the same value or a step backwards from a final one.
    ``reconciled`` is replaced like any overwritable field: reconciliation sets it
    when it completes a record the live path left in progress.
    """
    assignments: dict[str, Any] = {}
    for name, value in values.items():
        if name == "outcome" and value == initial_outcome:
            continue
        if name in overwritable:
            assignments[name] = value
        else:
            column = table.c[name]
            assignments[name] = func.coalesce(column, value)
    return assignments


def _insert(dialect: str, table: Table) -> Any:
    """Return an INSERT that supports ON CONFLICT for the given dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _is_foreign_key_violation(error: exc.IntegrityError) -> bool:
    # SQLite: "FOREIGN KEY constraint failed". PostgreSQL: "... violates foreign
    # key constraint ...".
    return "foreign key" in str(error.orig).lower()


# --- Views ------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _fields_to_dict(view: Any, skip: Iterable[str] = ()) -> dict[str, Any]:
    skipped = set(skip)
    return {
        field.name: _json_value(getattr(view, field.name))
        for field in fields(view)
        if field.name not in skipped
    }


@dataclass(frozen=True, slots=True)
class EventView:
    """One timeline event, read from ``call_events``."""

    id: int
    call_id: int
    at: datetime
    source: EventSource
    kind: str
    dedupe_key: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        result = _fields_to_dict(self, skip=["data"])
        result["data"] = copy.deepcopy(self.data)
        return result


@dataclass(frozen=True, slots=True)
class LegView:
    """One operator leg of a call, read from ``call_legs``."""

    id: int
    call_id: int
    uniqueid: str
    channel: str | None
    interface: str | None
    member_name: str | None
    queue: str | None
    called_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    ring_seconds: float | None
    outcome: LegOutcome
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class CallView:
    """One call with its legs, read from ``calls``.

    ``events`` is None when the view comes from ``list_calls``, which does not
    load the timeline, and a tuple ordered by time and then id otherwise.
    """

    id: int
    uniqueid: str
    linkedid: str | None
    channel: str | None
    caller_number: str | None
    caller_number_raw: str | None
    caller_name: str | None
    trunk: str | None
    dialled_number: str | None
    queue: str | None
    arrived_at: datetime | None
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    operator: str | None
    operator_interface: str | None
    wait_seconds: float | None
    talk_seconds: float | None
    outcome: CallOutcome
    overflow_stage: OverflowStage | None
    answered_by: str | None
    hangup_cause: int | None
    hangup_cause_text: str | None
    reconciled: bool
    created_at: datetime
    updated_at: datetime
    legs: tuple[LegView, ...]
    events: tuple[EventView, ...] | None

    @property
    def answering_endpoint(self) -> str | None:
        """The PJSIP endpoint that answered the call, as the operator filter matches it.

        It is taken from the queue member's interface, then from the phone an
        overflow stage reached, then from the queue member's name.
        """
        if self.operator_interface and self.operator_interface.upper().startswith("PJSIP/"):
            return self.operator_interface.split("/", 1)[1]
        return self.answered_by or self.operator

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        result = _fields_to_dict(self, skip=["legs", "events"])
        result["legs"] = [leg.to_dict() for leg in self.legs]
        if self.events is None:
            result["events"] = None
        else:
            result["events"] = [event.to_dict() for event in self.events]
        return result


def _event_view(row: Mapping[str, Any]) -> EventView:
    return EventView(**{**row, "source": EventSource(row["source"])})


def _leg_view(row: Mapping[str, Any]) -> LegView:
    return LegView(**{**row, "outcome": LegOutcome(row["outcome"])})


def _call_view(
    row: Mapping[str, Any],
    legs: tuple[LegView, ...],
    events: tuple[EventView, ...] | None,
) -> CallView:
    stage = row["overflow_stage"]
    return CallView(
        **{
            **row,
            "outcome": CallOutcome(row["outcome"]),
            "overflow_stage": OverflowStage(stage) if stage is not None else None,
            "reconciled": bool(row["reconciled"]),
        },
        legs=legs,
        events=events,
    )


# --- Filters ----------------------------------------------------------------


def _answered_by(endpoint: str) -> ColumnElement[bool]:
    """Return a condition that matches calls the PJSIP endpoint answered.

    The live tracker stores the queue member's interface on the call and on its
    answered leg, reconciliation stores it on the call only, and an overflow call
    answered on the supervisor or on-call phone has the endpoint in answered_by.
    """
    interface = f"PJSIP/{endpoint}"
    answered_leg = select(CALL_LEGS.c.id).where(
        CALL_LEGS.c.call_id == CALLS.c.id,
        CALL_LEGS.c.outcome == LegOutcome.ANSWERED.value,
        CALL_LEGS.c.interface == interface,
    )
    return (
        (CALLS.c.operator_interface == interface)
        | (CALLS.c.answered_by == endpoint)
        | answered_leg.exists()
    )


def _reported_as(category: str | None, call_type: str | None) -> ColumnElement[bool]:
    """Return a condition that matches calls with a report of this category and type."""
    # Imported here because sigap_pbx.store.reports imports this module.
    from sigap_pbx.store.reports import (
        INCIDENT_REPORTS,
        REPORT_CALLS,
        CallType,
        ReportCategory,
    )

    conditions = [
        REPORT_CALLS.c.call_uniqueid == CALLS.c.uniqueid,
        INCIDENT_REPORTS.c.id == REPORT_CALLS.c.report_id,
    ]
    if category is not None:
        category = _one_of(ReportCategory)("category", category)
        conditions.append(INCIDENT_REPORTS.c.category == category)
    if call_type is not None:
        call_type = _one_of(CallType)("call_type", call_type)
        conditions.append(INCIDENT_REPORTS.c.call_type == call_type)
    linked = select(REPORT_CALLS.c.id).select_from(REPORT_CALLS, INCIDENT_REPORTS)
    return linked.where(*conditions).exists()


# --- Store ------------------------------------------------------------------


class CallStore:
    """Reads and idempotent writes of call records in one Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert_call(self, uniqueid: str, **fields_given: Any) -> int:
        """Insert the call with this uniqueid or merge fields into it; return its id.

        An existing row gets only the fields that are still NULL, except the fields
        in CALL_OVERWRITABLE, which are replaced. ``outcome`` never goes back to
        ``in_progress``.
        Fields passed as None are ignored and never clear a stored value.

        Raises UnknownField, a TypeError, for a name that is not a column, and
        InvalidFieldValue, a ValueError, for a bad value. Both are raised before
        anything is written.
        """
        uniqueid = _key("uniqueid", uniqueid)
        values = _validate_fields("upsert_call", fields_given, CALL_FIELDS)
        async with self._db.session() as session:
            return await self._upsert(
                session,
                CALLS,
                {"uniqueid": uniqueid},
                values,
                CALL_OVERWRITABLE,
                CallOutcome.IN_PROGRESS.value,
            )

    async def upsert_leg(self, call_id: int, uniqueid: str, **fields_given: Any) -> int:
        """Insert the leg with this uniqueid or merge fields into it; return its id.

        The merge rules are those of ``upsert_call``, with LEG_OVERWRITABLE and
        ``ringing`` as the initial outcome. The call_id of an existing leg is never
        changed. Raises CallNotFound when no call has ``call_id``.
        """
        call_id = _validate_id("call_id", call_id)
        uniqueid = _key("uniqueid", uniqueid)
        values = _validate_fields("upsert_leg", fields_given, LEG_FIELDS)
        try:
            async with self._db.session() as session:
                return await self._upsert(
                    session,
                    CALL_LEGS,
                    {"call_id": call_id, "uniqueid": uniqueid},
                    values,
                    LEG_OVERWRITABLE,
                    LegOutcome.RINGING.value,
                )
        except exc.IntegrityError as error:
            if _is_foreign_key_violation(error):
                raise CallNotFound(call_id) from error
            raise

    async def _upsert(
        self,
        session: AsyncSession,
        table: Table,
        identity: dict[str, Any],
        values: dict[str, Any],
        overwritable: frozenset[str],
        initial_outcome: str,
    ) -> int:
        # ON CONFLICT DO NOTHING makes concurrent inserts of one uniqueid leave
        # exactly one row. PostgreSQL makes the second insert wait for the first
        # transaction, and SQLite's BEGIN IMMEDIATE serialises writers.
        insert = (
            _insert(self._db.dialect, table)
            .values(**identity, **values)
            .on_conflict_do_nothing(index_elements=["uniqueid"])
            .returning(table.c.id)
        )
        row_id = (await session.execute(insert)).scalar_one_or_none()
        if row_id is not None:
            return row_id

        match_row = table.c.uniqueid == identity["uniqueid"]
        assignments = _update_values(table, values, overwritable, initial_outcome)
        if not assignments:
            existing = select(table.c.id).where(match_row)
            return (await session.execute(existing)).scalar_one()
        merge = update(table).where(match_row).values(assignments).returning(table.c.id)
        return (await session.execute(merge)).scalar_one()

    async def add_event(
        self,
        call_id: int,
        *,
        at: datetime,
        source: str,
        kind: str,
        dedupe_key: str,
        data: dict[str, Any],
    ) -> bool:
        """Append an event to a call's timeline; return False if it was a duplicate.

        An event is a duplicate when the call already has one with the same
        ``dedupe_key``, and the stored event is then left unchanged. Raises
        CallNotFound when no call has ``call_id``.
        """
        row = {
            "call_id": _validate_id("call_id", call_id),
            "at": _aware_datetime("at", at),
            "source": _validate_source("source", source),
            "kind": _key("kind", kind),
            "dedupe_key": _key("dedupe_key", dedupe_key),
            "data": _validate_json_object("data", data),
        }
        insert = (
            _insert(self._db.dialect, CALL_EVENTS)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["call_id", "dedupe_key"])
            .returning(CALL_EVENTS.c.id)
        )
        try:
            async with self._db.session() as session:
                event_id = (await session.execute(insert)).scalar_one_or_none()
        except exc.IntegrityError as error:
            if _is_foreign_key_violation(error):
                raise CallNotFound(call_id) from error
            raise
        return event_id is not None

    async def add_events(self, call_id: int, events: list[dict[str, Any]]) -> int:
        """Append several timeline events in one statement; return how many were new.

        Each item has the keyword arguments of `add_event`. Duplicates (same
        ``dedupe_key`` for the call, in the store or within `events`) are stored once.
        """
        if not events:
            return 0
        call_id = _validate_id("call_id", call_id)
        rows: dict[str, dict[str, Any]] = {}
        for event in events:
            row = {
                "call_id": call_id,
                "at": _aware_datetime("at", event["at"]),
                "source": _validate_source("source", event["source"]),
                "kind": _key("kind", event["kind"]),
                "dedupe_key": _key("dedupe_key", event["dedupe_key"]),
                "data": _validate_json_object("data", event["data"]),
            }
            rows.setdefault(row["dedupe_key"], row)
        insert = (
            _insert(self._db.dialect, CALL_EVENTS)
            .values(list(rows.values()))
            .on_conflict_do_nothing(index_elements=["call_id", "dedupe_key"])
            .returning(CALL_EVENTS.c.id)
        )
        try:
            async with self._db.session() as session:
                inserted = (await session.execute(insert)).scalars().all()
        except exc.IntegrityError as error:
            if _is_foreign_key_violation(error):
                raise CallNotFound(call_id) from error
            raise
        return len(inserted)

    async def get_call(
        self, call_id: int | None = None, *, uniqueid: str | None = None
    ) -> CallView | None:
        """Return the call with its legs and timeline, or None if there is none.

        Pass exactly one of ``call_id`` and ``uniqueid``.
        """
        if (call_id is None) == (uniqueid is None):
            raise TypeError("get_call() needs exactly one of call_id and uniqueid")
        if call_id is not None:
            condition = CALLS.c.id == _validate_id("call_id", call_id)
        else:
            condition = CALLS.c.uniqueid == _text("uniqueid", uniqueid)

        async with self._db.session(write=False) as session:
            result = await session.execute(select(CALLS).where(condition))
            row = result.mappings().one_or_none()
            if row is None:
                return None
            legs = await self._load_legs(session, [row["id"]])
            events_query = (
                select(CALL_EVENTS)
                .where(CALL_EVENTS.c.call_id == row["id"])
                .order_by(CALL_EVENTS.c.at, CALL_EVENTS.c.id)
            )
            event_rows = (await session.execute(events_query)).mappings().all()
        events = tuple(_event_view(event) for event in event_rows)
        return _call_view(row, legs.get(row["id"], ()), events)

    async def _load_legs(
        self, session: AsyncSession, call_ids: list[int]
    ) -> dict[int, tuple[LegView, ...]]:
        legs: dict[int, list[LegView]] = {}
        for start in range(0, len(call_ids), IN_CLAUSE_CHUNK):
            chunk = call_ids[start : start + IN_CLAUSE_CHUNK]
            query = (
                select(CALL_LEGS)
                .where(CALL_LEGS.c.call_id.in_(chunk))
                .order_by(CALL_LEGS.c.id)
            )
            for row in (await session.execute(query)).mappings():
                legs.setdefault(row["call_id"], []).append(_leg_view(row))
        return {call_id: tuple(call_legs) for call_id, call_legs in legs.items()}

    async def list_calls(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        number: str | None = None,
        operator: str | None = None,
        category: str | None = None,
        call_type: str | None = None,
        max_id: int | None = None,
    ) -> list[CallView]:
        """Return calls with their legs, newest ``arrived_at`` first, without events.

        ``since`` is inclusive and ``until`` exclusive, both on ``arrived_at``, so a
        call whose arrival time is unknown only appears without them, after the
        rest. ``number`` matches the normalised or the raw caller number exactly.
        ``operator`` is the PJSIP endpoint that answered the call: the interface of
        its answered leg, or the phone an overflow stage reached. ``category`` and
        ``call_type`` match calls linked to an incident report with that value.
        ``max_id`` leaves out calls stored after a paged read began.
        """
        limit = _non_negative_int("limit", limit)
        offset = _non_negative_int("offset", offset)
        query = (
            self._filter(
                select(CALLS),
                since=since,
                until=until,
                outcome=outcome,
                number=number,
                operator=operator,
                category=category,
                call_type=call_type,
                max_id=max_id,
            )
            .order_by(CALLS.c.arrived_at.desc().nulls_last(), CALLS.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
            legs = await self._load_legs(session, [row["id"] for row in rows])
        return [_call_view(row, legs.get(row["id"], ()), None) for row in rows]

    async def count_calls(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        number: str | None = None,
        operator: str | None = None,
        category: str | None = None,
        call_type: str | None = None,
        max_id: int | None = None,
    ) -> int:
        """Return the number of calls that ``list_calls`` would list without a limit."""
        query = self._filter(
            select(func.count()).select_from(CALLS),
            since=since,
            until=until,
            outcome=outcome,
            number=number,
            operator=operator,
            category=category,
            call_type=call_type,
            max_id=max_id,
        )
        async with self._db.session(write=False) as session:
            return (await session.execute(query)).scalar_one()

    async def iter_calls(
        self, *, batch: int = IN_CLAUSE_CHUNK, **filters: Any
    ) -> AsyncIterator[CallView]:
        """Yield every call that ``list_calls`` would list, reading ``batch`` at a time.

        Each batch is its own read, so no transaction stays open while the caller
        handles a batch. Calls stored after the iteration starts are left out.
        """
        batch = _non_negative_int("batch", batch)
        if batch == 0:
            raise InvalidFieldValue("batch", batch, "an integer >= 1")
        async with self._db.session(write=False) as session:
            max_id = (await session.execute(select(func.max(CALLS.c.id)))).scalar_one()
        if max_id is None:
            return
        offset = 0
        while True:
            calls = await self.list_calls(
                limit=batch, offset=offset, max_id=max_id, **filters
            )
            for call in calls:
                yield call
            if len(calls) < batch:
                return
            offset += batch

    async def linked_reports(
        self, uniqueids: Iterable[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Return the incident reports linked to each call, by the call's uniqueid.

        Each report is ``{"id", "category", "call_type", "priority"}``, oldest
        first. A call without a report is left out of the result.
        """
        # Imported here because sigap_pbx.store.reports imports this module.
        from sigap_pbx.store.reports import INCIDENT_REPORTS, REPORT_CALLS

        requested = sorted({_text("uniqueids", value) for value in uniqueids})
        linked: dict[str, list[dict[str, Any]]] = {}
        async with self._db.session(write=False) as session:
            for start in range(0, len(requested), IN_CLAUSE_CHUNK):
                chunk = requested[start : start + IN_CLAUSE_CHUNK]
                query = (
                    select(
                        REPORT_CALLS.c.call_uniqueid,
                        INCIDENT_REPORTS.c.id,
                        INCIDENT_REPORTS.c.category,
                        INCIDENT_REPORTS.c.call_type,
                        INCIDENT_REPORTS.c.priority,
                    )
                    .join(
                        INCIDENT_REPORTS,
                        INCIDENT_REPORTS.c.id == REPORT_CALLS.c.report_id,
                    )
                    .where(REPORT_CALLS.c.call_uniqueid.in_(chunk))
                    .order_by(INCIDENT_REPORTS.c.id)
                )
                for row in (await session.execute(query)).mappings():
                    linked.setdefault(row["call_uniqueid"], []).append(
                        {
                            "id": row["id"],
                            "category": row["category"],
                            "call_type": row["call_type"],
                            "priority": row["priority"],
                        }
                    )
        return linked

    @staticmethod
    def _filter(
        query: Select[Any],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        number: str | None = None,
        operator: str | None = None,
        category: str | None = None,
        call_type: str | None = None,
        max_id: int | None = None,
    ) -> Select[Any]:
        conditions: list[ColumnElement[bool]] = []
        if max_id is not None:
            conditions.append(CALLS.c.id <= _validate_id("max_id", max_id))
        if since is not None:
            conditions.append(CALLS.c.arrived_at >= _aware_datetime("since", since))
        if until is not None:
            conditions.append(CALLS.c.arrived_at < _aware_datetime("until", until))
        if outcome is not None:
            outcome = _validate_call_outcome("outcome", outcome)
            conditions.append(CALLS.c.outcome == outcome)
        if number is not None:
            number = _text("number", number)
            conditions.append(
                (CALLS.c.caller_number == number)
                | (CALLS.c.caller_number_raw == number)
            )
        if operator is not None:
            conditions.append(_answered_by(_key("operator", operator)))
        if category is not None or call_type is not None:
            conditions.append(_reported_as(category, call_type))
        return query.where(*conditions)

    async def existing_uniqueids(self, uniqueids: Iterable[str]) -> set[str]:
        """Return the given uniqueids that already have a row in ``calls``."""
        return await self._existing(CALLS.c.uniqueid, "uniqueids", uniqueids)

    async def existing_linkedids(self, linkedids: Iterable[str]) -> set[str]:
        """Return the given linkedids that at least one stored call has."""
        return await self._existing(CALLS.c.linkedid, "linkedids", linkedids)

    async def _existing(
        self, column: Any, field: str, candidates: Iterable[str]
    ) -> set[str]:
        requested = sorted({_text(field, value) for value in candidates})
        found: set[str] = set()
        if not requested:
            return found
        async with self._db.session(write=False) as session:
            for start in range(0, len(requested), IN_CLAUSE_CHUNK):
                chunk = requested[start : start + IN_CLAUSE_CHUNK]
                query = select(column).where(column.in_(chunk)).distinct()
                found.update((await session.execute(query)).scalars())
        return found

    async def get_checkpoint(self, name: str) -> str | None:
        """Return the value stored under this checkpoint name, or None."""
        query = select(CHECKPOINTS.c.value).where(
            CHECKPOINTS.c.name == _key("name", name)
        )
        async with self._db.session(write=False) as session:
            return (await session.execute(query)).scalar_one_or_none()

    async def set_checkpoint(self, name: str, value: str) -> None:
        """Store a checkpoint value, replacing any earlier value under the name."""
        insert = _insert(self._db.dialect, CHECKPOINTS).values(
            name=_key("name", name), value=_text("value", value)
        )
        upsert = insert.on_conflict_do_update(
            index_elements=["name"],
            set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
        )
        async with self._db.session() as session:
            await session.execute(upsert)
