"""ShiftReporter over a real SQLite store: due reports, catch-up, the shift in
progress, and the loop that wakes at each shift end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sigap_pbx.roster import reporter as reporter_module
from sigap_pbx.roster.model import (
    Crew,
    Operator,
    Roster,
    Rotation,
    ShiftDef,
    ShiftPattern,
    Swap,
)
from sigap_pbx.roster.reporter import (
    RosterUnavailable,
    ShiftNotFound,
    ShiftNotStarted,
    ShiftReporter,
)
from sigap_pbx.store import CallStore, Database, MemberStore
from sigap_pbx.store.shifts import ShiftStore

ZONE = ZoneInfo("Asia/Pontianak")
DAY = date(2026, 12, 4)
# 07:00 local on DAY, the start of the early shift.
EARLY_START = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)


def make_roster(exceptions: tuple = ()) -> Roster:
    pattern = ShiftPattern(
        "three",
        (
            ShiftDef("early", time(7), 8, 2),
            ShiftDef("late", time(15), 8, 2),
            ShiftDef("night", time(23), 8, 1),
        ),
    )
    crews = tuple(Crew(name, (f"{name.lower()}1", f"{name.lower()}2")) for name in "ABCD")
    operators = tuple(
        Operator(endpoint, endpoint.upper()) for crew in crews for endpoint in crew.members
    )
    return Roster(operators, Rotation(pattern, crews, DAY), exceptions)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Setup:
    reporter: ShiftReporter
    shifts: ShiftStore
    calls: CallStore
    members: MemberStore
    clock: FakeClock
    roster: list[Roster | None]
    # When the roster's shift pattern came into force; None reports every window.
    pattern_since: list[datetime | None]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/reports.db")
    holder: list[Roster | None] = [make_roster()]
    since: list[datetime | None] = [None]

    async def provider() -> Roster | None:
        return holder[0]

    async def pattern_since() -> datetime | None:
        return since[0]

    clock = FakeClock(EARLY_START + timedelta(hours=8, minutes=5))
    shifts, members, calls = ShiftStore(db), MemberStore(db), CallStore(db)
    reporter = ShiftReporter(
        shifts,
        members,
        calls,
        provider,
        zone=ZONE,
        clock=clock,
        catch_up_days=2,
        settle_seconds=60,
        pattern_since=pattern_since,
    )
    yield Setup(reporter, shifts, calls, members, clock, holder, since)
    await db.close()


async def add_call(calls: CallStore, uniqueid: str, arrived: datetime, wait: float | None) -> None:
    fields = {"arrived_at": arrived, "outcome": "abandoned_in_queue"}
    if wait is not None:
        fields = {
            "arrived_at": arrived,
            "answered_at": arrived + timedelta(seconds=wait),
            "outcome": "answered",
        }
    await calls.upsert_call(uniqueid, **fields)


# --- Building ---------------------------------------------------------------------------


async def test_build_reads_the_store(setup: Setup) -> None:
    await add_call(setup.calls, "1.1", EARLY_START + timedelta(minutes=5), 8)
    await add_call(setup.calls, "1.2", EARLY_START + timedelta(minutes=9), None)
    await add_call(setup.calls, "1.3", EARLY_START - timedelta(minutes=1), 3)
    await setup.shifts.add_member_events(
        [
            {"at": EARLY_START + timedelta(minutes=5), "interface": "PJSIP/a1",
             "queue": "operators", "kind": "offered"},
            {"at": EARLY_START + timedelta(minutes=5, seconds=8), "interface": "PJSIP/a1",
             "queue": "operators", "kind": "answered", "seconds": 8.0, "uniqueid": "1.1"},
        ]
    )
    pause_id = await setup.members.open_pause(
        interface="PJSIP/a2", queue="operators", reason="break",
        started_at=EARLY_START + timedelta(hours=1), source="pause_event",
    )
    await setup.members.close_pause(pause_id, EARLY_START + timedelta(hours=1, minutes=15), 900)

    report = await setup.reporter.build(DAY, "early")

    assert report["shift"]["crew"] == "A"
    assert report["shift"]["minimum_operators"] == 2
    assert report["queue"]["arrived"] == 2
    assert report["queue"]["answered_within"][0]["count"] == 1
    assert report["queue"]["answered_within"][0]["percent"] == 50.0
    rows = {row["endpoint"]: row for row in report["operators"]}
    assert list(rows) == ["a1", "a2"]
    assert rows["a1"]["offered"] == 1
    assert rows["a1"]["answered"] == 1
    assert rows["a1"]["open_calls"] == 1
    assert rows["a2"]["pause_seconds"] == {"break": 900.0}


async def test_build_applies_roster_exceptions(setup: Setup) -> None:
    setup.roster[0] = make_roster((Swap(DAY, "early", "a2", "b1"),))

    report = await setup.reporter.build(DAY, "early")

    assert [row["endpoint"] for row in report["operators"]] == ["a1", "b1"]


async def test_night_shift_is_one_window(setup: Setup) -> None:
    setup.clock.now = EARLY_START + timedelta(days=1, hours=1)

    report = await setup.reporter.build(DAY, "night")

    assert report["shift"]["start_local"] == "2026-12-04T23:00:00+07:00"
    assert report["shift"]["end_local"] == "2026-12-05T07:00:00+07:00"
    assert report["shift"]["date"] == "2026-12-04"


async def test_build_future_shift_rejected(setup: Setup) -> None:
    with pytest.raises(ShiftNotStarted, match="'night' on 2026-12-04 starts at"):
        await setup.reporter.build(DAY, "night")


async def test_build_unknown_shift_rejected(setup: Setup) -> None:
    with pytest.raises(ShiftNotFound, match="'noon' not found"):
        await setup.reporter.build(DAY, "noon")


async def test_build_without_roster_rejected(setup: Setup) -> None:
    setup.roster[0] = None

    with pytest.raises(RosterUnavailable, match="no roster is saved"):
        await setup.reporter.build(DAY, "early")


async def test_report_now_is_shift_in_progress(setup: Setup) -> None:
    report = await setup.reporter.report_now()

    assert report["shift"]["name"] == "late"
    assert report["complete"] is False
    assert await setup.shifts.list_reports() == []


# --- Due reports ----------------------------------------------------------------------------


async def test_run_due_stores_ended_shifts(setup: Setup) -> None:
    stored = await setup.reporter.run_due()

    # catch_up_days=2 from 15:05 on DAY reaches back to 15:05 on DAY-2.
    assert stored == [
        (date(2026, 12, 2), "late"),
        (date(2026, 12, 2), "night"),
        (date(2026, 12, 3), "early"),
        (date(2026, 12, 3), "late"),
        (date(2026, 12, 3), "night"),
        (DAY, "early"),
    ]
    assert len(await setup.shifts.list_reports()) == 6


async def test_run_due_waits_for_settle(setup: Setup) -> None:
    setup.clock.now = EARLY_START + timedelta(hours=8, seconds=30)

    stored = await setup.reporter.run_due()

    assert (DAY, "early") not in stored
    setup.clock.now = EARLY_START + timedelta(hours=8, seconds=60)
    assert await setup.reporter.run_due() == [(DAY, "early")]


async def test_run_due_never_rewrites(setup: Setup) -> None:
    await setup.reporter.run_due()
    before = await setup.shifts.get_report(DAY, "early")
    await add_call(setup.calls, "2.1", EARLY_START + timedelta(minutes=5), 4)
    setup.clock.now += timedelta(minutes=5)

    assert await setup.reporter.run_due() == []

    after = await setup.shifts.get_report(DAY, "early")
    assert before is not None
    assert after is not None
    assert after.content == before.content


async def test_store_report_replaces(setup: Setup) -> None:
    await setup.reporter.run_due()
    await add_call(setup.calls, "2.1", EARLY_START + timedelta(minutes=5), 4)

    content, written = await setup.reporter.store_report(DAY, "early")

    assert written is True
    assert content["queue"]["arrived"] == 1
    view = await setup.shifts.get_report(DAY, "early")
    assert view is not None
    assert view.content["queue"]["arrived"] == 1


async def test_run_due_without_roster(setup: Setup) -> None:
    setup.roster[0] = None

    assert await setup.reporter.run_due() == []


async def test_run_due_skips_shifts_before_roster(setup: Setup) -> None:
    # The first roster is saved at 05:00 local on DAY, during the night shift.
    setup.pattern_since[0] = EARLY_START - timedelta(hours=2)

    stored = await setup.reporter.run_due()

    assert stored == [(date(2026, 12, 3), "night"), (DAY, "early")]


async def test_run_due_at_pattern_end_skipped(setup: Setup) -> None:
    # A window that ends exactly when the pattern came into force never ran
    # under it.
    setup.pattern_since[0] = EARLY_START

    stored = await setup.reporter.run_due()

    assert stored == [(DAY, "early")]


async def test_run_due_after_pattern_change(setup: Setup) -> None:
    # 09:00 local on DAY: the reports up to the night before are stored.
    setup.clock.now = EARLY_START + timedelta(hours=2)
    before = await setup.reporter.run_due()
    # At 10:00 local the pattern changes to two 12-hour shifts.
    changed_at = EARLY_START + timedelta(hours=3)
    twelve = ShiftPattern(
        "two-12h", (ShiftDef("day", time(7), 12, 2), ShiftDef("night", time(19), 12, 1))
    )
    old = make_roster()
    setup.roster[0] = Roster(
        old.operators, Rotation(twelve, old.rotation.crews, DAY), old.exceptions
    )
    setup.pattern_since[0] = changed_at
    setup.clock.now = EARLY_START + timedelta(days=1, hours=1, minutes=5)

    after = await setup.reporter.run_due()

    assert before[-1] == (date(2026, 12, 3), "night")
    # The day shift contains the change, so it is reported under the new pattern.
    assert after == [(DAY, "day"), (DAY, "night")]
    views = sorted(await setup.shifts.list_reports(), key=lambda v: v.started_at)
    for earlier, later in zip(views, views[1:], strict=False):
        assert earlier.ended_at <= later.started_at, (earlier, later)


async def test_run_due_pattern_changed_mid_pass(setup: Setup) -> None:
    values = iter([EARLY_START, EARLY_START + timedelta(hours=1)])

    async def changing() -> datetime | None:
        return next(values)

    setup.reporter.pattern_since = changing

    assert await setup.reporter.run_due() == []
    assert await setup.shifts.list_reports() == []


async def test_next_pass_at_shift_end(setup: Setup) -> None:
    # 15:05 local: the late shift ends at 23:00, so the pass waits the maximum.
    assert await setup.reporter.seconds_to_next_pass() == 60.0
    setup.clock.now = EARLY_START + timedelta(hours=16, seconds=30)
    # 23:00:30 local: the late shift ended 30 s ago, and its report is due after 60 s.
    assert await setup.reporter.seconds_to_next_pass() == pytest.approx(30.0)


async def test_run_loop_stores_reports(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter_module, "MAX_SLEEP_SECONDS", 0.01)
    task = asyncio.create_task(setup.reporter.run())
    try:
        for _ in range(200):
            if setup.reporter.reports_stored >= 6:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert setup.reporter.reports_stored == 6


def test_catch_up_days_checked() -> None:
    with pytest.raises(ValueError, match="catch_up_days 0 is below 1"):
        ShiftReporter(None, None, None, None, catch_up_days=0)  # type: ignore[arg-type]
