"""Queue member pause intervals: the ``member_pauses`` table and its reads and writes.

One row is one stretch of time during which a member (an interface) was paused in one
queue under one reason. The controller opens the row when the pause starts and closes
it when the pause ends, so a row with ``ended_at`` NULL is a pause still in progress,
or one that a stopped controller left open. All times come from the controller's clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Float,
    Index,
    Integer,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.calls import (
    _aware_datetime,
    _fields_to_dict,
    _key,
    _one_of,
    _seconds,
    _text,
    _validate_id,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import InvalidFieldValue, StoreError
from sigap_pbx.store.models import Base, _check_in


class PauseSource(enum.StrEnum):
    """AMI message that showed the start of a pause interval.

    Only ``PAUSE_EVENT`` marks the moment the pause began. The other two mean the
    member was already paused when the controller first saw it, so ``started_at``
    is later than the real start and the duration is a lower bound.
    """

    PAUSE_EVENT = "pause_event"  # QueueMemberPause
    MEMBER_EVENT = "member_event"  # QueueMemberAdded or QueueMemberStatus
    QUEUE_STATUS = "queue_status"  # a QueueMember entry of the QueueStatus list


class MemberPause(Base):
    """One interval during which a member was paused in one queue under one reason."""

    __tablename__ = "member_pauses"
    __table_args__ = (
        CheckConstraint(_check_in("source", PauseSource), name="source"),
        CheckConstraint("seconds IS NULL OR seconds >= 0", name="seconds"),
        CheckConstraint(
            "(ended_at IS NULL AND seconds IS NULL) "
            "OR (ended_at IS NOT NULL AND seconds IS NOT NULL)",
            name="closed",
        ),
        Index(None, "interface", "started_at"),
        Index(None, "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    interface: Mapped[str] = mapped_column(String)
    member_name: Mapped[str | None] = mapped_column(String)
    queue: Mapped[str] = mapped_column(String)
    # An empty string is a pause without a reason.
    reason: Mapped[str] = mapped_column(String)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    seconds: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String)


MEMBER_PAUSES: Table = MemberPause.__table__  # type: ignore[assignment]

_validate_source = _one_of(PauseSource)


class PauseNotFound(StoreError, LookupError):
    """A pause id has no row in ``member_pauses``."""

    def __init__(self, pause_id: int) -> None:
        super().__init__(
            f"pause id {pause_id} not found: open the pause with open_pause() "
            "and pass the id that it returns"
        )
        self.pause_id = pause_id


@dataclass(frozen=True, slots=True)
class PauseView:
    """One pause interval, read from ``member_pauses``."""

    id: int
    interface: str
    member_name: str | None
    queue: str
    reason: str
    started_at: datetime
    ended_at: datetime | None
    seconds: float | None
    source: PauseSource

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values, with datetimes in ISO 8601 with offset."""
        return _fields_to_dict(self)


def _pause_view(row: Mapping[str, Any]) -> PauseView:
    return PauseView(**{**row, "source": PauseSource(row["source"])})


def _overlap_seconds(
    pause: PauseView, since: datetime, until: datetime, now: datetime
) -> float:
    """Return the seconds of the pause inside [since, until).

    A pause still open counts up to ``now``.
    """
    end = pause.ended_at if pause.ended_at is not None else now
    start = max(pause.started_at, since)
    end = min(end, until)
    return max((end - start).total_seconds(), 0.0)


class MemberStore:
    """Reads and writes of member pause intervals in one Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def open_pause(
        self,
        *,
        interface: str,
        queue: str,
        reason: str,
        started_at: datetime,
        source: str,
        member_name: str | None = None,
    ) -> int:
        """Insert an open pause interval and return its id.

        ``reason`` may be empty (a pause without a reason). Raises
        InvalidFieldValue, a ValueError, before anything is written.
        """
        row = {
            "interface": _key("interface", interface),
            "queue": _key("queue", queue),
            "reason": _text("reason", reason),
            "started_at": _aware_datetime("started_at", started_at),
            "source": _validate_source("source", source),
            "member_name": (
                None if member_name is None else _text("member_name", member_name)
            ),
        }
        insert = MEMBER_PAUSES.insert().values(**row).returning(MEMBER_PAUSES.c.id)
        async with self._db.session() as session:
            return (await session.execute(insert)).scalar_one()

    async def close_pause(
        self, pause_id: int, ended_at: datetime, seconds: float
    ) -> None:
        """Set the end time and duration of a pause interval.

        Closing a closed interval again replaces its end, so a retried write is
        harmless. Raises PauseNotFound for an unknown id, and InvalidFieldValue
        when ``ended_at`` is before ``started_at`` or ``seconds`` is negative.
        """
        pause_id = _validate_id("pause_id", pause_id)
        ended_at = _aware_datetime("ended_at", ended_at)
        seconds = _seconds("seconds", seconds)
        started = select(MEMBER_PAUSES.c.started_at).where(
            MEMBER_PAUSES.c.id == pause_id
        )
        async with self._db.session() as session:
            started_at = (await session.execute(started)).scalar_one_or_none()
            if started_at is None:
                raise PauseNotFound(pause_id)
            if ended_at < started_at:
                raise InvalidFieldValue(
                    "ended_at",
                    ended_at,
                    f"a time at or after started_at {started_at.isoformat()}",
                )
            await session.execute(
                update(MEMBER_PAUSES)
                .where(MEMBER_PAUSES.c.id == pause_id)
                .values(ended_at=ended_at, seconds=seconds)
            )

    async def list_pauses(
        self,
        interface: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[PauseView]:
        """Return the pause intervals that overlap [since, until), oldest first.

        An interval overlaps when it starts before ``until`` and ends after
        ``since``, and an open interval counts as not ended. Both bounds are
        optional. Intervals are returned whole, not clipped to the window.
        """
        conditions = self._window(interface, since, until)
        query = (
            select(MEMBER_PAUSES)
            .where(*conditions)
            .order_by(MEMBER_PAUSES.c.started_at, MEMBER_PAUSES.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_pause_view(row) for row in rows]

    async def list_open_pauses(self) -> list[PauseView]:
        """Return every interval whose ``ended_at`` is NULL, oldest first."""
        query = (
            select(MEMBER_PAUSES)
            .where(MEMBER_PAUSES.c.ended_at.is_(None))
            .order_by(MEMBER_PAUSES.c.started_at, MEMBER_PAUSES.c.id)
        )
        async with self._db.session(write=False) as session:
            rows = (await session.execute(query)).mappings().all()
        return [_pause_view(row) for row in rows]

    async def pause_seconds_by_reason(
        self,
        interface: str,
        since: datetime,
        until: datetime,
        *,
        now: datetime | None = None,
    ) -> dict[str, float]:
        """Sum the seconds one interface spent paused in [since, until), per reason.

        Intervals are clipped to the window. An open interval counts up to
        ``now``, which defaults to the current time. A pause in several queues
        at once counts once per queue, because each queue has its own interval.
        Raises InvalidFieldValue when ``until`` is before ``since``.
        """
        interface = _key("interface", interface)
        since = _aware_datetime("since", since)
        until = _aware_datetime("until", until)
        if until < since:
            raise InvalidFieldValue(
                "until", until, f"a time at or after since ({since.isoformat()})"
            )
        now = datetime.now(UTC) if now is None else _aware_datetime("now", now)
        totals: dict[str, float] = {}
        for pause in await self.list_pauses(interface, since, until):
            seconds = _overlap_seconds(pause, since, until, now)
            totals[pause.reason] = totals.get(pause.reason, 0.0) + seconds
        return totals

    @staticmethod
    def _window(
        interface: str | None, since: datetime | None, until: datetime | None
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if interface is not None:
            conditions.append(MEMBER_PAUSES.c.interface == _key("interface", interface))
        if since is not None:
            since = _aware_datetime("since", since)
            conditions.append(
                MEMBER_PAUSES.c.ended_at.is_(None) | (MEMBER_PAUSES.c.ended_at > since)
            )
        if until is not None:
            until = _aware_datetime("until", until)
            conditions.append(MEMBER_PAUSES.c.started_at < until)
        return conditions
