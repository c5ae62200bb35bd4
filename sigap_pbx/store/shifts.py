"""Shift statistics tables: queue member events and the stored shift reports.

``member_events`` holds one row per offer of a call to a queue member and per
outcome of that offer, taken from app_queue's AMI events. Shift reports are built
from it, from ``member_pauses`` and from ``calls`` when a shift ends.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Date,
    Float,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.calls import (
    _aware_datetime,
    _fields_to_dict,
    _insert,
    _key,
    _non_negative_int,
    _one_of,
    _seconds,
    _text,
    _validate_json_object,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import InvalidFieldValue
from sigap_pbx.store.models import Base, _check_in


class MemberEventKind(enum.StrEnum):
    """The app_queue AMI event behind a member event row."""

    OFFERED = "offered"  # AgentCalled
    ANSWERED = "answered"  # AgentConnect; seconds is the ring time
    MISSED = "missed"  # AgentRingNoAnswer; seconds is the ring time
    COMPLETED = "completed"  # AgentComplete; seconds is the talk time


class MemberEvent(Base):
    """One offer of a call to a queue member, or one outcome of such an offer."""

    __tablename__ = "member_events"
    __table_args__ = (
        CheckConstraint(_check_in("kind", MemberEventKind), name="kind"),
        CheckConstraint("seconds IS NULL OR seconds >= 0", name="seconds"),
        Index(None, "interface", "at"),
        Index(None, "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    interface: Mapped[str] = mapped_column(String)
    member_name: Mapped[str | None] = mapped_column(String)
    queue: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    # Uniqueid and linkedid of the caller's channel.
    uniqueid: Mapped[str | None] = mapped_column(String)
    linkedid: Mapped[str | None] = mapped_column(String)
    seconds: Mapped[float | None] = mapped_column(Float)


class ShiftReport(Base):
    """Figures of one shift window, per operator and for the whole queue."""

    __tablename__ = "shift_reports"
    __table_args__ = (UniqueConstraint("shift_date", "shift_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shift_date: Mapped[date] = mapped_column(Date)
    shift_name: Mapped[str] = mapped_column(String)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    created_at: Mapped[datetime]
    crew: Mapped[str | None] = mapped_column(String)
    content: Mapped[dict[str, Any]]


MEMBER_EVENTS: Table = MemberEvent.__table__  # type: ignore[assignment]
SHIFT_REPORTS: Table = ShiftReport.__table__  # type: ignore[assignment]

# How far before and after a window `member_figures` reads answered and completed
# rows, to find calls whose talk overlaps the window. NOTE: a call that lasts longer
# than this loses the talk whose answer or end lies beyond it.
TALK_LOOKAHEAD = timedelta(hours=24)

_validate_kind = _one_of(MemberEventKind)
_RING_KINDS = (
    MemberEventKind.OFFERED.value,
    MemberEventKind.ANSWERED.value,
    MemberEventKind.MISSED.value,
)


def _optional_text(field: str, value: Any) -> str | None:
    return None if value is None else _text(field, value)


def member_event_row(
    *,
    at: datetime,
    interface: str,
    queue: str,
    kind: str,
    member_name: str | None = None,
    uniqueid: str | None = None,
    linkedid: str | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Validate one ``member_events`` row and return it as a dict for the insert.

    Raises InvalidFieldValue, a ValueError, naming the first bad field.
    """
    return {
        "at": _aware_datetime("at", at),
        "interface": _key("interface", interface),
        "queue": _key("queue", queue),
        "kind": _validate_kind("kind", kind),
        "member_name": _optional_text("member_name", member_name),
        "uniqueid": _optional_text("uniqueid", uniqueid),
        "linkedid": _optional_text("linkedid", linkedid),
        "seconds": None if seconds is None else _seconds("seconds", seconds),
    }


@dataclass
class MemberFigures:
    """What one interface did in a window, from ``member_events``.

    Counts are of events inside the window. ``talk_seconds`` is the part of each
    call's talk that falls inside the window, so a call that crosses a window
    edge is split between the two windows. ``open_calls`` counts answered calls
    without an ``AgentComplete`` yet, whose talk counts up to ``now``.
    """

    interface: str
    member_name: str | None = None
    offered: int = 0
    answered: int = 0
    missed: int = 0
    # Sums of the ring times of answered and of missed offers.
    answer_ring_seconds: float = 0.0
    missed_ring_seconds: float = 0.0
    talk_seconds: float = 0.0
    open_calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _fields_to_dict(self)


@dataclass(frozen=True, slots=True)
class ShiftReportView:
    """One stored shift report, read from ``shift_reports``."""

    id: int
    shift_date: date
    shift_name: str
    started_at: datetime
    ended_at: datetime
    created_at: datetime
    crew: str | None
    content: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        result = _fields_to_dict(self, skip=["shift_date", "content"])
        result["shift_date"] = self.shift_date.isoformat()
        result["content"] = copy.deepcopy(self.content)
        return result


def _report_view(row: Mapping[str, Any]) -> ShiftReportView:
    return ShiftReportView(**row)


def _overlap(start: datetime, end: datetime, since: datetime, until: datetime) -> float:
    return max((min(end, until) - max(start, since)).total_seconds(), 0.0)


def _date(field: str, value: Any) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise InvalidFieldValue(field, value, "a date, such as date(2026, 12, 4)")
    return value


class ShiftStore:
    """Member events and shift reports in one Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # Member events ----------------------------------------------------------------

    async def add_member_events(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert member events in one transaction and return how many.

        Each row has the keyword arguments of `member_event_row`. Every row is
        validated first, so one bad row raises InvalidFieldValue and nothing is
        written.
        """
        values = [member_event_row(**row) for row in rows]
        if not values:
            return 0
        async with self._db.session() as session:
            await session.execute(MEMBER_EVENTS.insert(), values)
        return len(values)

    async def member_figures(
        self, since: datetime, until: datetime, *, now: datetime | None = None
    ) -> dict[str, MemberFigures]:
        """Sum each interface's offers, answers, misses and talk in [since, until).

        Talk comes from pairs of an `answered` row and the `completed` row of the
        same caller uniqueid and interface. A completed call talked from
        ``at - seconds`` to ``at``. An answered call without a completed row
        talks up to the interface's next offer (with ``ringinuse = no`` Asterisk
        offers calls only to members who are not on one), or else up to
        ``now``, which defaults to the current time. Raises InvalidFieldValue
        when ``until`` is before ``since``.
        """
        since, until = self._window(since, until)
        now = datetime.now(UTC) if now is None else _aware_datetime("now", now)
        figures: dict[str, MemberFigures] = {}

        def figures_of(interface: str, member_name: str | None) -> MemberFigures:
            entry = figures.get(interface)
            if entry is None:
                entry = figures[interface] = MemberFigures(interface)
            if member_name and entry.member_name is None:
                entry.member_name = member_name
            return entry

        table = MEMBER_EVENTS
        counts = (
            select(
                table.c.interface,
                table.c.kind,
                func.count(),
                func.coalesce(func.sum(table.c.seconds), 0.0),
                func.max(table.c.member_name),
            )
            .where(
                table.c.at >= since,
                table.c.at < until,
                table.c.kind.in_(_RING_KINDS),
            )
            .group_by(table.c.interface, table.c.kind)
        )
        talk_rows = (
            select(
                table.c.interface,
                table.c.member_name,
                table.c.kind,
                table.c.at,
                table.c.seconds,
                table.c.uniqueid,
            )
            .where(
                table.c.at >= since - TALK_LOOKAHEAD,
                table.c.at < until + TALK_LOOKAHEAD,
                table.c.kind.in_(
                    [MemberEventKind.ANSWERED.value, MemberEventKind.COMPLETED.value]
                ),
            )
            .order_by(table.c.at, table.c.id)
        )
        async with self._db.session(write=False) as session:
            for interface, kind, count, seconds, member_name in await session.execute(
                counts
            ):
                entry = figures_of(interface, member_name)
                if kind == MemberEventKind.OFFERED:
                    entry.offered = count
                elif kind == MemberEventKind.ANSWERED:
                    entry.answered = count
                    entry.answer_ring_seconds = float(seconds)
                else:
                    entry.missed = count
                    entry.missed_ring_seconds = float(seconds)

            talking: dict[tuple[str, str | None], tuple[datetime, str | None]] = {}
            for row in (await session.execute(talk_rows)).mappings():
                key = (row["interface"], row["uniqueid"])
                if row["kind"] == MemberEventKind.ANSWERED:
                    talking[key] = (row["at"], row["member_name"])
                    continue
                answered = talking.pop(key, None)
                end = row["at"]
                if row["seconds"] is not None:
                    start = end - timedelta(seconds=row["seconds"])
                elif answered is not None:
                    start = answered[0]
                else:
                    continue
                seconds = _overlap(start, end, since, until)
                if seconds > 0:
                    figures_of(row["interface"], row["member_name"]).talk_seconds += seconds

            for (interface, _), (answered_at, member_name) in talking.items():
                if answered_at >= until:
                    continue
                end = await self._next_offer(session, interface, answered_at) or now
                seconds = _overlap(answered_at, end, since, until)
                entry = figures_of(interface, member_name)
                entry.talk_seconds += seconds
                entry.open_calls += 1
        return figures

    @staticmethod
    async def _next_offer(
        session: AsyncSession, interface: str, after: datetime
    ) -> datetime | None:
        query = select(func.min(MEMBER_EVENTS.c.at)).where(
            MEMBER_EVENTS.c.interface == interface,
            MEMBER_EVENTS.c.at > after,
            MEMBER_EVENTS.c.kind == MemberEventKind.OFFERED.value,
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def list_member_events(
        self, since: datetime, until: datetime, *, interface: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the member events in [since, until) as dicts, oldest first."""
        since, until = self._window(since, until)
        query = select(MEMBER_EVENTS).where(
            MEMBER_EVENTS.c.at >= since, MEMBER_EVENTS.c.at < until
        )
        if interface is not None:
            query = query.where(MEMBER_EVENTS.c.interface == _key("interface", interface))
        query = query.order_by(MEMBER_EVENTS.c.at, MEMBER_EVENTS.c.id)
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [dict(row) for row in rows]

    @staticmethod
    def _window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
        since = _aware_datetime("since", since)
        until = _aware_datetime("until", until)
        if until < since:
            raise InvalidFieldValue(
                "until", until, f"a time at or after since ({since.isoformat()})"
            )
        return since, until

    # Shift reports ------------------------------------------------------------------

    async def save_report(
        self,
        shift_date: date,
        shift_name: str,
        *,
        started_at: datetime,
        ended_at: datetime,
        crew: str | None,
        content: dict[str, Any],
        created_at: datetime | None = None,
        replace: bool = True,
    ) -> bool:
        """Store the report of one shift and return whether it was written.

        With ``replace`` true, a stored report of the same shift is replaced.
        With ``replace`` false, it is kept and False is returned, so two writers
        that race on one shift leave the first report. Raises InvalidFieldValue
        before anything is written.
        """
        row = {
            "shift_date": _date("shift_date", shift_date),
            "shift_name": _key("shift_name", shift_name),
            "started_at": _aware_datetime("started_at", started_at),
            "ended_at": _aware_datetime("ended_at", ended_at),
            "created_at": _aware_datetime(
                "created_at", datetime.now(UTC) if created_at is None else created_at
            ),
            "crew": _optional_text("crew", crew),
            "content": _validate_json_object("content", content),
        }
        if row["ended_at"] < row["started_at"]:
            raise InvalidFieldValue(
                "ended_at",
                ended_at,
                f"a time at or after started_at ({started_at.isoformat()})",
            )
        insert = _insert(self._db.dialect, SHIFT_REPORTS).values(**row)
        keys = ["shift_date", "shift_name"]
        if replace:
            statement = insert.on_conflict_do_update(
                index_elements=keys,
                set_={
                    name: insert.excluded[name]
                    for name in ("started_at", "ended_at", "created_at", "crew", "content")
                },
            )
        else:
            statement = insert.on_conflict_do_nothing(index_elements=keys)
        statement = statement.returning(SHIFT_REPORTS.c.id)
        async with self._db.session() as session:
            written = (await session.execute(statement)).scalar_one_or_none()
        return written is not None

    async def get_report(
        self, shift_date: date, shift_name: str
    ) -> ShiftReportView | None:
        """Return the stored report of one shift, or None."""
        query = select(SHIFT_REPORTS).where(
            SHIFT_REPORTS.c.shift_date == _date("shift_date", shift_date),
            SHIFT_REPORTS.c.shift_name == _key("shift_name", shift_name),
        )
        async with self._db.session(write=False) as session:
            row = (await session.execute(query)).mappings().one_or_none()
        return None if row is None else _report_view(row)

    async def list_reports(
        self,
        since: date | None = None,
        until: date | None = None,
        limit: int = 50,
    ) -> list[ShiftReportView]:
        """Return stored reports, newest window first.

        ``since`` is inclusive and ``until`` exclusive, both on the shift date.
        """
        limit = _non_negative_int("limit", limit)
        query = (
            select(SHIFT_REPORTS)
            .where(*self._date_range(since, until))
            .order_by(SHIFT_REPORTS.c.started_at.desc(), SHIFT_REPORTS.c.id.desc())
            .limit(limit)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_report_view(row) for row in rows]

    async def report_keys(
        self, since: date | None = None, until: date | None = None
    ) -> set[tuple[date, str]]:
        """Return (shift_date, shift_name) of every stored report in the date range."""
        query = select(SHIFT_REPORTS.c.shift_date, SHIFT_REPORTS.c.shift_name).where(
            *self._date_range(since, until)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).all()
        return {(row[0], row[1]) for row in rows}

    @staticmethod
    def _date_range(
        since: date | None, until: date | None
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if since is not None:
            conditions.append(SHIFT_REPORTS.c.shift_date >= _date("since", since))
        if until is not None:
            conditions.append(SHIFT_REPORTS.c.shift_date < _date("until", until))
        return conditions
