"""The pure shift report: pause sums, queue figures and the per-operator lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sigap_pbx.roster.model import Operator, Role
from sigap_pbx.roster.reports import (
    ShiftWindow,
    build_report,
    endpoint_of,
    pause_seconds,
    queue_figures,
    report_summary,
)
from sigap_pbx.roster.schedule import Duty
from sigap_pbx.store.shifts import MemberFigures

START = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
END = START + timedelta(hours=8)
ZONE = ZoneInfo("Asia/Pontianak")


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


@dataclass
class Pause:
    interface: str
    reason: str
    started_at: datetime
    ended_at: datetime | None


@dataclass
class Call:
    arrived_at: datetime | None
    answered_at: datetime | None
    outcome: str
    wait_seconds: float | None = None


def answered(wait: float, outcome: str = "answered") -> Call:
    return Call(at(5), at(5) + timedelta(seconds=wait), outcome)


def unanswered(outcome: str) -> Call:
    return Call(at(5), None, outcome, wait_seconds=30)


WINDOW = ShiftWindow(
    shift_date=date(2026, 12, 4),
    shift_name="early",
    start=START,
    end=END,
    zone=ZONE,
    crew="A",
    minimum_operators=2,
)


# --- Pauses ----------------------------------------------------------------------------


def test_pause_clipped_to_window() -> None:
    pauses = [
        Pause("PJSIP/op1", "break", at(-10), at(5)),
        Pause("PJSIP/op1", "break", at(8 * 60 - 3), at(8 * 60 + 30)),
    ]

    totals = pause_seconds(pauses, START, END, now=END)

    assert totals == {"PJSIP/op1": {"break": pytest.approx(8 * 60)}}


def test_pause_in_two_queues_counts_once() -> None:
    pauses = [
        Pause("PJSIP/op1", "wrapup", at(10), at(10.5)),
        Pause("PJSIP/op1", "wrapup", at(10), at(10.5)),
        Pause("PJSIP/op1", "wrapup", at(10.25), at(11)),
    ]

    totals = pause_seconds(pauses, START, END, now=END)

    assert totals["PJSIP/op1"]["wrapup"] == pytest.approx(60)


def test_open_pause_counts_to_now() -> None:
    pauses = [Pause("PJSIP/op2", "prayer", at(60), None)]

    totals = pause_seconds(pauses, START, END, now=at(70))

    assert totals["PJSIP/op2"]["prayer"] == pytest.approx(600)


def test_pause_outside_window_ignored() -> None:
    pauses = [Pause("PJSIP/op2", "break", at(-30), at(-1))]

    assert pause_seconds(pauses, START, END, now=END) == {}


# --- Queue figures -----------------------------------------------------------------------


def test_answer_times_over_all_arrived() -> None:
    calls = [
        answered(4),
        answered(10),
        answered(14),
        answered(19),
        answered(45),
        unanswered("abandoned_in_queue"),
        unanswered("abandoned_before_queue"),
        answered(80, outcome="overflowed"),
        unanswered("overflowed"),
        unanswered("failed"),
    ]

    figures = queue_figures(calls)

    assert figures["arrived"] == 10
    assert figures["answered"] == 6
    assert figures["abandoned_in_queue"] == 1
    assert figures["abandoned_before_queue"] == 1
    assert figures["overflowed"] == 2
    assert figures["overflowed_answered"] == 1
    assert figures["failed"] == 1
    within = {item["seconds"]: item for item in figures["answered_within"]}
    assert within[10] == {"seconds": 10, "count": 2, "percent": 20.0}
    assert within[15] == {"seconds": 15, "count": 3, "percent": 30.0}
    assert within[20] == {"seconds": 20, "count": 4, "percent": 40.0}
    assert figures["max_wait_seconds"] == 80.0
    assert figures["mean_wait_seconds"] == pytest.approx((4 + 10 + 14 + 19 + 45 + 80) / 6, abs=0.05)


def test_targets_met_and_missed() -> None:
    calls = [answered(5)] * 19 + [answered(18)]

    targets = queue_figures(calls)["targets"]

    by_seconds = {target["seconds"]: target for target in targets}
    assert by_seconds[10]["standard"] == "NFPA 1225"
    assert by_seconds[10]["percent"] == 95.0
    assert by_seconds[10]["met"] is True
    assert by_seconds[20]["percent"] == 100.0
    assert by_seconds[20]["met"] is True


def test_abandoned_call_misses_target() -> None:
    calls = [answered(5)] * 9 + [unanswered("abandoned_in_queue")]

    by_seconds = {t["seconds"]: t for t in queue_figures(calls)["targets"]}

    assert by_seconds[15]["percent"] == 90.0
    assert by_seconds[15]["met"] is True
    assert by_seconds[20]["percent"] == 90.0
    assert by_seconds[20]["met"] is False


def test_no_calls_no_percentages() -> None:
    figures = queue_figures([])

    assert figures["arrived"] == 0
    assert figures["answered_within"][0]["percent"] is None
    assert figures["targets"][0]["met"] is None
    assert figures["max_wait_seconds"] is None
    assert figures["mean_wait_seconds"] is None


def test_wait_seconds_used_without_arrival() -> None:
    calls = [Call(None, at(3), "answered", wait_seconds=12.0)]

    figures = queue_figures(calls)

    assert figures["max_wait_seconds"] == 12.0
    assert figures["answered_within"][1]["count"] == 1


# --- Whole report --------------------------------------------------------------------------


OPERATORS = (
    Operator("op1", "Ayu"),
    Operator("op2", "Budi"),
    Operator("sup1", "Citra", role=Role.SUPERVISOR),
    Operator("op9", "Dewi"),
)
DUTIES = [
    Duty("op1", Role.OPERATOR, 0),
    Duty("op2", Role.OPERATOR, 0),
    Duty("sup1", Role.SUPERVISOR, 10),
]


def make_report() -> dict:
    figures = {
        "PJSIP/op1": MemberFigures(
            "PJSIP/op1",
            "op1",
            offered=10,
            answered=6,
            missed=2,
            answer_ring_seconds=24.0,
            talk_seconds=1234.56,
        ),
        "PJSIP/op9": MemberFigures("PJSIP/op9", "op9", offered=1, answered=1),
        "PJSIP/guest": MemberFigures("PJSIP/guest", "guest", offered=2, missed=2),
    }
    pauses = {
        "PJSIP/op1": {"wrapup": 300.0, "break": 900.0, "prayer": 600.0},
        "PJSIP/op2": {"toilet": 120.0},
    }
    return build_report(
        WINDOW,
        duties=DUTIES,
        operators=OPERATORS,
        member_figures=figures,
        pauses=pauses,
        calls=[answered(4)],
        generated_at=END + timedelta(minutes=1),
    )


def test_report_lists_rostered_then_others() -> None:
    report = make_report()

    endpoints = [row["endpoint"] for row in report["operators"]]
    assert endpoints == ["op1", "op2", "sup1", "guest", "op9"]
    flags = [row["rostered"] for row in report["operators"]]
    assert flags == [True, True, True, False, False]


def test_report_operator_line() -> None:
    op1 = make_report()["operators"][0]

    assert op1["name"] == "Ayu"
    assert op1["role"] == "operator"
    assert op1["interface"] == "PJSIP/op1"
    assert op1["offered"] == 10
    assert op1["answered"] == 6
    assert op1["missed"] == 2
    assert op1["answer_ratio"] == 0.75
    assert op1["mean_ring_seconds"] == 4.0
    assert op1["talk_seconds"] == 1234.6
    assert op1["wrapup_seconds"] == 300.0
    assert op1["pause_seconds"] == {"break": 900.0, "prayer": 600.0}
    assert op1["paused_seconds"] == 1500.0


def test_report_rostered_without_events() -> None:
    sup1 = make_report()["operators"][2]

    assert sup1["offered"] == 0
    assert sup1["answer_ratio"] is None
    assert sup1["mean_ring_seconds"] is None
    assert sup1["wrapup_seconds"] == 0.0
    assert sup1["role"] == "supervisor"


def test_report_unrostered_names() -> None:
    rows = {row["endpoint"]: row for row in make_report()["operators"]}

    assert rows["op9"]["name"] == "Dewi"
    assert rows["op9"]["role"] == "operator"
    assert rows["guest"]["name"] == "guest"
    assert rows["guest"]["role"] is None
    assert rows["guest"]["answer_ratio"] == 0.0


def test_report_shift_header() -> None:
    report = make_report()

    shift = report["shift"]
    assert shift["start"] == "2026-12-04T00:00:00+00:00"
    assert shift["start_local"] == "2026-12-04T07:00:00+07:00"
    assert shift["end_local"] == "2026-12-04T15:00:00+07:00"
    assert shift["crew"] == "A"
    assert shift["rostered"] == 3
    assert shift["rostered_counted"] == 2
    assert shift["below_minimum"] is False
    assert report["complete"] is True


def test_report_in_progress_incomplete() -> None:
    report = build_report(
        WINDOW,
        duties=[],
        operators=OPERATORS,
        member_figures={},
        pauses={},
        calls=[],
        generated_at=at(60),
    )

    assert report["complete"] is False
    assert report["operators"] == []
    assert report["shift"]["below_minimum"] is True


def test_summary_of_report() -> None:
    summary = report_summary(make_report())

    assert summary["date"] == "2026-12-04"
    assert summary["operators"] == 3
    assert summary["not_rostered"] == 2
    assert summary["arrived"] == 1
    assert summary["answered_within_10_percent"] == 100.0


def test_endpoint_of_interface() -> None:
    assert endpoint_of("PJSIP/op1") == "op1"
    assert endpoint_of("Local/op1@members") == "Local/op1@members"
