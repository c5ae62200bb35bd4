"""ShiftStore on SQLite and PostgreSQL: member events, their figures per interface,
and stored shift reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from sigap_pbx.store import Database, InvalidFieldValue
from sigap_pbx.store.shifts import ShiftStore

START = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)  # 07:00 in Asia/Pontianak
END = START + timedelta(hours=8)
OP1 = "PJSIP/op1"
OP2 = "PJSIP/op2"


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def event(
    kind: str,
    minutes: float,
    interface: str = OP1,
    *,
    seconds: float | None = None,
    uniqueid: str | None = "1796409216.0",
) -> dict[str, Any]:
    return {
        "at": at(minutes),
        "interface": interface,
        "queue": "operators",
        "kind": kind,
        "member_name": interface.split("/")[-1],
        "uniqueid": uniqueid,
        "linkedid": uniqueid,
        "seconds": seconds,
    }


@pytest.fixture
def shifts(db: Database) -> ShiftStore:
    return ShiftStore(db)


# --- Member events ------------------------------------------------------------------


async def test_member_events_round_trip(shifts: ShiftStore) -> None:
    rows = [
        event("offered", 1),
        event("answered", 1.1, seconds=6),
        event("completed", 5, seconds=234),
    ]

    assert await shifts.add_member_events(rows) == 3

    stored = await shifts.list_member_events(START, END)
    assert [row["kind"] for row in stored] == ["offered", "answered", "completed"]
    assert stored[1]["seconds"] == 6
    assert stored[2]["at"] == at(5)
    assert stored[0]["uniqueid"] == "1796409216.0"


async def test_member_events_bad_row_writes_nothing(shifts: ShiftStore) -> None:
    rows = [event("offered", 1), event("rang", 2)]

    with pytest.raises(InvalidFieldValue, match="'kind'"):
        await shifts.add_member_events(rows)

    assert await shifts.list_member_events(START, END) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("at", datetime(2026, 12, 4, 7, 0)),
        ("interface", ""),
        ("queue", ""),
        ("seconds", -1.0),
    ],
)
async def test_member_event_field_rejected(
    shifts: ShiftStore, field: str, value: Any
) -> None:
    row = event("answered", 1, seconds=3)
    row[field] = value

    with pytest.raises(InvalidFieldValue, match=f"'{field}'"):
        await shifts.add_member_events([row])


async def test_member_events_empty_batch(shifts: ShiftStore) -> None:
    assert await shifts.add_member_events([]) == 0


# --- Member figures -------------------------------------------------------------------


async def test_member_figures_counts_per_interface(shifts: ShiftStore) -> None:
    await shifts.add_member_events(
        [
            event("offered", -1),  # before the window
            event("offered", 1),
            event("offered", 1, OP2),
            event("missed", 1.25, OP2, seconds=15.0),
            event("answered", 1.1, seconds=6),
            event("offered", 30),
            event("missed", 30.25, seconds=15.0),
            event("offered", 8 * 60),  # at the end, which is outside
        ]
    )

    figures = await shifts.member_figures(START, END, now=END)

    assert set(figures) == {OP1, OP2}
    op1 = figures[OP1]
    assert op1.offered == 2
    assert op1.answered == 1
    assert op1.missed == 1
    assert op1.answer_ring_seconds == 6
    assert op1.missed_ring_seconds == 15
    assert op1.member_name == "op1"
    op2 = figures[OP2]
    assert op2.offered == 1
    assert op2.answered == 0
    assert op2.missed == 1


async def test_member_figures_talk_inside_window(shifts: ShiftStore) -> None:
    await shifts.add_member_events(
        [event("answered", 10, seconds=3), event("completed", 14, seconds=240)]
    )

    figures = await shifts.member_figures(START, END, now=END)

    assert figures[OP1].talk_seconds == pytest.approx(240)
    assert figures[OP1].open_calls == 0


async def test_member_figures_talk_clipped_at_start(shifts: ShiftStore) -> None:
    # Answered 4 minutes before the window, completed 6 minutes into it.
    await shifts.add_member_events(
        [event("answered", -4, seconds=3), event("completed", 6, seconds=600)]
    )

    figures = await shifts.member_figures(START, END, now=END)

    assert figures[OP1].talk_seconds == pytest.approx(360)
    assert figures[OP1].answered == 0


async def test_member_figures_talk_clipped_at_end(shifts: ShiftStore) -> None:
    # Answered 2 minutes before the end, completed 3 minutes after it.
    await shifts.add_member_events(
        [
            event("answered", 8 * 60 - 2, seconds=3),
            event("completed", 8 * 60 + 3, seconds=300),
        ]
    )

    figures = await shifts.member_figures(START, END, now=END + timedelta(hours=1))

    assert figures[OP1].talk_seconds == pytest.approx(120)
    assert figures[OP1].answered == 1


async def test_member_figures_open_call_counts_to_now(shifts: ShiftStore) -> None:
    await shifts.add_member_events([event("answered", 60, seconds=2)])

    figures = await shifts.member_figures(START, END, now=at(70))

    assert figures[OP1].talk_seconds == pytest.approx(600)
    assert figures[OP1].open_calls == 1


async def test_member_figures_open_call_ends_at_next_offer(shifts: ShiftStore) -> None:
    # The AgentComplete of the first call was lost; the next offer shows the
    # member was free again by minute 65.
    await shifts.add_member_events(
        [
            event("answered", 60, seconds=2, uniqueid="1.1"),
            event("offered", 65, uniqueid="2.2"),
        ]
    )

    figures = await shifts.member_figures(START, END, now=END)

    assert figures[OP1].talk_seconds == pytest.approx(300)
    assert figures[OP1].open_calls == 1


async def test_member_figures_completed_before_window_ignored(
    shifts: ShiftStore,
) -> None:
    await shifts.add_member_events(
        [event("answered", -60, seconds=2), event("completed", -50, seconds=600)]
    )

    figures = await shifts.member_figures(START, END, now=END)

    assert figures == {}


async def test_member_figures_until_before_since(shifts: ShiftStore) -> None:
    with pytest.raises(InvalidFieldValue, match="'until'"):
        await shifts.member_figures(END, START)


# --- Shift reports -------------------------------------------------------------------


async def save(
    shifts: ShiftStore,
    shift_date: date,
    name: str,
    content: dict[str, Any],
    *,
    replace: bool = True,
    hours: int = 0,
) -> bool:
    started = datetime.combine(shift_date, datetime.min.time(), UTC) + timedelta(
        hours=hours
    )
    return await shifts.save_report(
        shift_date,
        name,
        started_at=started,
        ended_at=started + timedelta(hours=8),
        crew="A",
        content=content,
        created_at=started + timedelta(hours=8, minutes=1),
        replace=replace,
    )


async def test_report_saved_and_read(shifts: ShiftStore) -> None:
    day = date(2026, 12, 4)

    assert await save(shifts, day, "early", {"figures": 1})

    view = await shifts.get_report(day, "early")
    assert view is not None
    assert view.content == {"figures": 1}
    assert view.crew == "A"
    assert view.shift_date == day
    assert view.started_at == datetime(2026, 12, 4, tzinfo=UTC)
    assert view.to_dict()["shift_date"] == "2026-12-04"
    assert await shifts.get_report(day, "late") is None


async def test_report_replaced_by_default(shifts: ShiftStore) -> None:
    day = date(2026, 12, 4)
    await save(shifts, day, "early", {"figures": 1})

    assert await save(shifts, day, "early", {"figures": 2})

    view = await shifts.get_report(day, "early")
    assert view is not None
    assert view.content == {"figures": 2}
    assert len(await shifts.list_reports()) == 1


async def test_report_kept_without_replace(shifts: ShiftStore) -> None:
    day = date(2026, 12, 4)
    await save(shifts, day, "early", {"figures": 1})

    assert not await save(shifts, day, "early", {"figures": 2}, replace=False)

    view = await shifts.get_report(day, "early")
    assert view is not None
    assert view.content == {"figures": 1}


async def test_reports_listed_newest_first(shifts: ShiftStore) -> None:
    await save(shifts, date(2026, 12, 3), "night", {}, hours=16)
    await save(shifts, date(2026, 12, 4), "early", {})
    await save(shifts, date(2026, 12, 4), "late", {}, hours=8)

    reports = await shifts.list_reports()
    assert [(r.shift_date.day, r.shift_name) for r in reports] == [
        (4, "late"),
        (4, "early"),
        (3, "night"),
    ]
    since = await shifts.list_reports(since=date(2026, 12, 4))
    assert [r.shift_name for r in since] == ["late", "early"]
    until = await shifts.list_reports(until=date(2026, 12, 4))
    assert [r.shift_name for r in until] == ["night"]
    assert len(await shifts.list_reports(limit=1)) == 1
    assert await shifts.report_keys(since=date(2026, 12, 4)) == {
        (date(2026, 12, 4), "early"),
        (date(2026, 12, 4), "late"),
    }


async def test_report_end_before_start_rejected(shifts: ShiftStore) -> None:
    with pytest.raises(InvalidFieldValue, match="'ended_at'"):
        await shifts.save_report(
            date(2026, 12, 4),
            "early",
            started_at=END,
            ended_at=START,
            crew=None,
            content={},
        )


async def test_report_content_must_be_json(shifts: ShiftStore) -> None:
    with pytest.raises(InvalidFieldValue, match="'content'"):
        await save(shifts, date(2026, 12, 4), "early", {"wait": float("nan")})
