"""Shift roster: patterns, windows in Asia/Pontianak time, rotation and coverage.

WIB (Asia/Pontianak) is UTC+7 with no daylight saving time, so every expected
UTC instant below is the local time minus seven hours.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from sigap_pbx.roster.model import (
    Crew,
    ExtraCover,
    Leave,
    Operator,
    Role,
    RosterError,
    Rotation,
    ShiftDef,
    ShiftPattern,
    Swap,
)
from sigap_pbx.roster.schedule import (
    BACKUP_PENALTY,
    DEFAULT_TZ,
    OPERATOR_PENALTY,
    SUPERVISOR_PENALTY,
    CoverageProblem,
    boundaries,
    check_coverage,
    on_duty,
    shift_at,
    shift_window,
)

WIB = ZoneInfo("Asia/Pontianak")
ANCHOR = date(2026, 12, 1)

THREE_EIGHTS = ShiftPattern(
    "three-8h",
    (
        ShiftDef("early", time(7), 8, 2),
        ShiftDef("late", time(15), 8, 2),
        ShiftDef("night", time(23), 8, 2),
    ),
)
TWO_TWELVES = ShiftPattern(
    "two-12h",
    (
        ShiftDef("day", time(7), 12, 1),
        ShiftDef("night", time(19), 12, 1),
    ),
)

OPERATORS = [
    Operator("op-a1", "Ayu", ("id",), ("triage",)),
    Operator("op-a2", "Agus", role=Role.BACKUP),
    Operator("op-b1", "Budi"),
    Operator("op-b2", "Bayu"),
    Operator("op-c1", "Citra"),
    Operator("op-c2", "Candra"),
    Operator("op-c3", "Cahya", role=Role.SUPERVISOR),
    Operator("op-d1", "Dewi"),
    Operator("op-d2", "Dian"),
    Operator("op-x", "Eko"),
]
CREWS = (
    Crew("A", ("op-a1", "op-a2")),
    Crew("B", ("op-b1", "op-b2")),
    Crew("C", ("op-c1", "op-c2", "op-c3")),
    Crew("D", ("op-d1", "op-d2")),
)
ROTATION = Rotation(THREE_EIGHTS, CREWS, ANCHOR)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def endpoints(rotation, exceptions, shift_date, shift_name) -> list[str]:
    duties = on_duty(rotation, OPERATORS, exceptions, shift_date, shift_name)
    return [duty.endpoint for duty in duties]


def test_default_zone_is_pontianak():
    assert DEFAULT_TZ.key == "Asia/Pontianak"


def test_window_late_evening_wib():
    start, end = shift_window(THREE_EIGHTS, "late", date(2026, 12, 4))
    local = datetime(2026, 12, 4, 23, 30, tzinfo=WIB)

    assert local.astimezone(UTC) == utc(2026, 12, 4, 16, 30)
    assert start == utc(2026, 12, 4, 8)
    assert end == utc(2026, 12, 4, 16)


def test_night_shift_is_one_window():
    start, end = shift_window(THREE_EIGHTS, "night", date(2026, 12, 4), WIB)

    assert start == utc(2026, 12, 4, 16)
    assert end == utc(2026, 12, 5, 0)
    assert end - start == timedelta(hours=8)


def test_window_in_other_zone():
    start, _ = shift_window(THREE_EIGHTS, "early", date(2026, 12, 4), ZoneInfo("UTC"))

    assert start == utc(2026, 12, 4, 7)


def test_shift_at_after_midnight():
    # 02:00 WIB on 5 December belongs to the night shift dated 4 December.
    shift_date, shift = shift_at(ROTATION, utc(2026, 12, 4, 19), WIB)

    assert shift_date == date(2026, 12, 4)
    assert shift.name == "night"


def test_shift_at_2330_wib():
    shift_date, shift = shift_at(ROTATION, utc(2026, 12, 4, 16, 30))

    assert shift_date == date(2026, 12, 4)
    assert shift.name == "night"


@pytest.mark.parametrize(
    ("instant", "expected_date", "expected_name"),
    [
        (utc(2026, 12, 4, 0), date(2026, 12, 4), "early"),  # 07:00 WIB, start
        (utc(2026, 12, 4, 7, 59, 59), date(2026, 12, 4), "early"),  # 14:59:59
        (utc(2026, 12, 4, 8), date(2026, 12, 4), "late"),  # 15:00
        (utc(2026, 12, 4, 17), date(2026, 12, 4), "night"),  # 00:00 on the 5th
        (utc(2026, 12, 4, 23, 59, 59), date(2026, 12, 4), "night"),  # 06:59:59
    ],
)
def test_shift_at_edges(instant, expected_date, expected_name):
    shift_date, shift = shift_at(ROTATION, instant)

    assert shift_date == expected_date
    assert shift.name == expected_name


def test_shift_at_two_twelves():
    rotation = Rotation(TWO_TWELVES, CREWS[:3], ANCHOR)

    night_date, night = shift_at(rotation, utc(2026, 12, 3, 22))  # 05:00 WIB
    day_date, day = shift_at(rotation, utc(2026, 12, 4, 11, 59))  # 18:59 WIB

    assert (night_date, night.name) == (date(2026, 12, 3), "night")
    assert (day_date, day.name) == (date(2026, 12, 4), "day")


def test_shift_at_rejects_naive_instant():
    with pytest.raises(RosterError, match="no time zone"):
        shift_at(ROTATION, datetime(2026, 12, 4, 16, 30))


def test_boundaries_over_one_day():
    starts = boundaries(ROTATION, utc(2026, 12, 4, 0), utc(2026, 12, 5, 0))

    assert [s.start_utc for s in starts] == [
        utc(2026, 12, 4, 0),
        utc(2026, 12, 4, 8),
        utc(2026, 12, 4, 16),
    ]
    assert [s.shift.name for s in starts] == ["early", "late", "night"]
    assert {s.shift_date for s in starts} == {date(2026, 12, 4)}


def test_boundaries_cross_midnight():
    # 22:00 WIB on the 4th to 08:00 WIB on the 5th.
    starts = boundaries(ROTATION, utc(2026, 12, 4, 15), utc(2026, 12, 5, 1))

    assert [(s.shift_date, s.shift.name) for s in starts] == [
        (date(2026, 12, 4), "night"),
        (date(2026, 12, 5), "early"),
    ]


def test_boundaries_end_excluded():
    starts = boundaries(ROTATION, utc(2026, 12, 4, 0), utc(2026, 12, 4, 8))

    assert [s.shift.name for s in starts] == ["early"]


def test_rotation_anchor_day():
    crews = [ROTATION.crew_on(ANCHOR, name).name for name in ("early", "late", "night")]

    assert crews == ["A", "B", "C"]


def test_rotation_four_crews():
    # Each crew moves forward one shift a day: early, late, night, then off.
    expected = {
        ANCHOR: ["A", "B", "C"],
        ANCHOR + timedelta(days=1): ["D", "A", "B"],
        ANCHOR + timedelta(days=2): ["C", "D", "A"],
        ANCHOR + timedelta(days=3): ["B", "C", "D"],
        ANCHOR + timedelta(days=4): ["A", "B", "C"],
        ANCHOR - timedelta(days=1): ["B", "C", "D"],
    }
    for shift_date, crews in expected.items():
        actual = [
            ROTATION.crew_on(shift_date, name).name
            for name in ("early", "late", "night")
        ]
        assert actual == crews, shift_date


def test_rotation_two_twelves():
    rotation = Rotation(TWO_TWELVES, CREWS[:3], ANCHOR)
    days = [ANCHOR + timedelta(days=k) for k in range(4)]

    assert [rotation.crew_on(d, "day").name for d in days] == ["A", "C", "B", "A"]
    assert [rotation.crew_on(d, "night").name for d in days] == ["B", "A", "C", "B"]


def test_rotation_too_few_crews():
    with pytest.raises(RosterError, match="2 crews for 3 shifts"):
        Rotation(THREE_EIGHTS, CREWS[:2], ANCHOR)


def test_rotation_one_crew_per_shift():
    with pytest.raises(RosterError, match="3 crews for 3 shifts"):
        Rotation(THREE_EIGHTS, CREWS[:3], ANCHOR)


def test_rotation_endpoint_in_two_crews():
    crews = (*CREWS[:3], Crew("D", ("op-d1", "op-a1")))

    with pytest.raises(RosterError, match="'op-a1' is in crew 'A' and crew 'D'"):
        Rotation(THREE_EIGHTS, crews, ANCHOR)


def test_on_duty_penalties():
    duties = on_duty(ROTATION, OPERATORS, [], ANCHOR, "early")

    assert duties == [
        ("op-a1", Role.OPERATOR, OPERATOR_PENALTY),
        ("op-a2", Role.BACKUP, BACKUP_PENALTY),
    ]
    assert OPERATOR_PENALTY == 0
    assert BACKUP_PENALTY == 5
    assert SUPERVISOR_PENALTY == 10


def test_on_duty_supervisor_penalty():
    duties = on_duty(ROTATION, OPERATORS, [], ANCHOR, "night")

    assert duties[2] == ("op-c3", Role.SUPERVISOR, SUPERVISOR_PENALTY)


def test_on_duty_unknown_crew_member():
    rotation = Rotation(THREE_EIGHTS, (*CREWS[:3], Crew("D", ("op-zz",))), ANCHOR)

    with pytest.raises(RosterError, match="member 'op-zz' not found"):
        on_duty(rotation, OPERATORS, [], ANCHOR, "early")


def test_on_duty_unknown_shift():
    with pytest.raises(RosterError, match="shift 'evening' not found"):
        on_duty(ROTATION, OPERATORS, [], ANCHOR, "evening")


def test_on_duty_skips_inactive():
    operators = [
        Operator("op-b1", "Budi", active=False) if o.endpoint == "op-b1" else o
        for o in OPERATORS
    ]

    duties = on_duty(ROTATION, operators, [], ANCHOR, "late")

    assert [d.endpoint for d in duties] == ["op-b2"]


def test_swap_replaces_operator():
    swap = Swap(ANCHOR, "late", "op-b1", "op-x")

    assert endpoints(ROTATION, [swap], ANCHOR, "late") == ["op-x", "op-b2"]
    assert endpoints(ROTATION, [swap], ANCHOR + timedelta(days=1), "late") == [
        "op-a1",
        "op-a2",
    ]


def test_swap_out_not_on_shift():
    swap = Swap(ANCHOR, "late", "op-a1", "op-x")

    with pytest.raises(RosterError, match="'op-a1' is not on this shift"):
        on_duty(ROTATION, OPERATORS, [swap], ANCHOR, "late")


def test_swap_in_already_on_shift():
    swap = Swap(ANCHOR, "late", "op-b1", "op-b2")

    with pytest.raises(RosterError, match="'op-b2' is already on this shift"):
        on_duty(ROTATION, OPERATORS, [swap], ANCHOR, "late")


def test_swap_unknown_endpoint():
    swap = Swap(ANCHOR, "late", "op-b1", "op-zz")

    with pytest.raises(RosterError, match="'op-zz' not found"):
        on_duty(ROTATION, OPERATORS, [swap], ANCHOR, "late")


def test_swap_same_endpoint():
    with pytest.raises(RosterError, match="both 'op-b1'"):
        Swap(ANCHOR, "late", "op-b1", "op-b1")


def test_extra_cover_added():
    cover = ExtraCover(ANCHOR, "night", "op-x")

    assert endpoints(ROTATION, [cover], ANCHOR, "night") == [
        "op-c1",
        "op-c2",
        "op-c3",
        "op-x",
    ]
    assert endpoints(ROTATION, [cover], ANCHOR, "early") == ["op-a1", "op-a2"]


def test_extra_cover_already_on_shift():
    cover = ExtraCover(ANCHOR, "night", "op-c1")

    with pytest.raises(RosterError, match="'op-c1' is already on this shift"):
        on_duty(ROTATION, OPERATORS, [cover], ANCHOR, "night")


def test_leave_removes_operator():
    leave = Leave("op-a1", ANCHOR, ANCHOR + timedelta(days=1))

    assert endpoints(ROTATION, [leave], ANCHOR, "early") == ["op-a2"]
    assert endpoints(ROTATION, [leave], ANCHOR + timedelta(days=1), "late") == [
        "op-a2"
    ]
    assert endpoints(ROTATION, [leave], ANCHOR + timedelta(days=2), "night") == [
        "op-a1",
        "op-a2",
    ]


def test_leave_end_before_start():
    with pytest.raises(RosterError, match="end 2026-11-30 is before start"):
        Leave("op-a1", ANCHOR, ANCHOR - timedelta(days=1))


def test_swap_covers_leave():
    leave = Leave("op-b1", ANCHOR, ANCHOR)
    swap = Swap(ANCHOR, "late", "op-b1", "op-x")

    assert endpoints(ROTATION, [leave, swap], ANCHOR, "late") == ["op-x", "op-b2"]


def test_coverage_full_roster():
    assert check_coverage(ROTATION, OPERATORS, [], ANCHOR, 8) == []


def test_coverage_reports_leave():
    leave = Leave("op-b1", date(2026, 12, 2), date(2026, 12, 2))

    problems = check_coverage(ROTATION, OPERATORS, [leave], ANCHOR, 4)

    assert problems == [CoverageProblem(date(2026, 12, 2), "night", 1, 2)]
    assert str(problems[0]) == (
        "shift 'night' on 2026-12-02: 1 operators on duty, minimum is 2"
    )


def test_coverage_fixed_by_extra_cover():
    leave = Leave("op-b1", date(2026, 12, 2), date(2026, 12, 2))
    cover = ExtraCover(date(2026, 12, 2), "night", "op-x")

    assert check_coverage(ROTATION, OPERATORS, [leave, cover], ANCHOR, 4) == []


def test_coverage_ignores_supervisors():
    # Crew C has two operators and a supervisor, so it is one short of three.
    pattern = ShiftPattern(
        "three-8h",
        tuple(
            ShiftDef(s.name, s.start, s.hours, 3 if s.name == "night" else 1)
            for s in THREE_EIGHTS.shifts
        ),
    )
    rotation = Rotation(pattern, CREWS, ANCHOR)

    problems = check_coverage(rotation, OPERATORS, [], ANCHOR, 1)

    assert problems == [CoverageProblem(ANCHOR, "night", 2, 3)]


def test_coverage_negative_days():
    with pytest.raises(RosterError, match="days -1 is negative"):
        check_coverage(ROTATION, OPERATORS, [], ANCHOR, -1)


def test_pattern_gap():
    shifts = (ShiftDef("early", time(7), 8, 1), ShiftDef("late", time(16), 15, 1))

    with pytest.raises(RosterError) as caught:
        ShiftPattern("gap", shifts)

    message = str(caught.value)
    assert "no shift covers 15:00-16:00" in message
    assert "hours sum to 23, expected 24" in message


def test_pattern_overlap():
    shifts = (ShiftDef("early", time(7), 9, 1), ShiftDef("late", time(15), 16, 1))

    with pytest.raises(RosterError) as caught:
        ShiftPattern("overlap", shifts)

    message = str(caught.value)
    assert "'early' overlaps 'late' from 15:00 to 16:00" in message
    assert "hours sum to 25, expected 24" in message


def test_pattern_gap_and_overlap():
    # 8 + 8 + 8 hours, but the late shift starts an hour late.
    shifts = (
        ShiftDef("early", time(7), 8, 1),
        ShiftDef("late", time(16), 8, 1),
        ShiftDef("night", time(23), 8, 1),
    )

    with pytest.raises(RosterError) as caught:
        ShiftPattern("shifted", shifts)

    message = str(caught.value)
    assert "no shift covers 15:00-16:00" in message
    assert "'late' overlaps 'night' from 23:00 to 00:00" in message
    assert "sum to" not in message


def test_pattern_hours_not_24():
    shifts = (ShiftDef("day", time(7), 12, 1), ShiftDef("night", time(19), 11, 1))

    with pytest.raises(RosterError, match="hours sum to 23, expected 24"):
        ShiftPattern("short", shifts)


def test_pattern_one_24h_shift():
    pattern = ShiftPattern("single", (ShiftDef("all", time(7), 24, 1),))

    start, end = shift_window(pattern, "all", ANCHOR)

    assert end - start == timedelta(hours=24)


def test_pattern_duplicate_name():
    shifts = (ShiftDef("day", time(7), 12, 1), ShiftDef("day", time(19), 12, 1))

    with pytest.raises(RosterError, match="shift name 'day' is used 2 times"):
        ShiftPattern("twice", shifts)


@pytest.mark.parametrize(
    ("hours", "minimum", "expected"),
    [
        (0, 1, "hours 0 is out of range"),
        (25, 1, "hours 25 is out of range"),
        (8.001, 1, "not a whole number of minutes"),
        (8, -1, "minimum_operators -1 is negative"),
    ],
)
def test_shift_def_invalid(hours, minimum, expected):
    with pytest.raises(RosterError, match=expected):
        ShiftDef("early", time(7), hours, minimum)


def test_operator_invalid_role():
    with pytest.raises(RosterError, match="role 'agent' is invalid"):
        Operator("op-a1", "Ayu", role="agent")


def test_operator_role_from_string():
    assert Operator("op-a1", "Ayu", role="backup").role is Role.BACKUP


def test_crew_duplicate_member():
    with pytest.raises(RosterError, match="'op-a1' is listed 2 times"):
        Crew("A", ("op-a1", "op-a1"))


def test_leave_unknown_endpoint():
    leave = Leave("op-zz", ANCHOR, ANCHOR)

    with pytest.raises(RosterError, match="endpoint 'op-zz' not found"):
        on_duty(ROTATION, OPERATORS, [leave], ANCHOR, "early")
