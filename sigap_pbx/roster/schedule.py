"""Shift windows, the shift in force, who is on duty and where coverage falls short.

Times of day are local to the site's time zone, and every instant in or out is an
aware UTC datetime. A shift belongs to the local date on which it starts, so the
23:00-07:00 shift of 4 December is one window that ends on 5 December.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sigap_pbx.roster.model import (
    ExtraCover,
    Leave,
    Operator,
    Role,
    RosterError,
    RosterException,
    Rotation,
    ShiftDef,
    ShiftPattern,
    Swap,
)

# Asia/Pontianak is UTC+7 all year (WIB), with no daylight saving time.
DEFAULT_TZ = ZoneInfo("Asia/Pontianak")

# Asterisk queue member penalties: app_queue offers a call to the lowest penalty
# first, so backups and then supervisors take calls only when operators are busy.
OPERATOR_PENALTY = 0
BACKUP_PENALTY = 5
SUPERVISOR_PENALTY = 10
PENALTIES = {
    Role.OPERATOR: OPERATOR_PENALTY,
    Role.BACKUP: BACKUP_PENALTY,
    Role.SUPERVISOR: SUPERVISOR_PENALTY,
}

# Roles counted towards a shift's `minimum_operators`. Supervisors watch the
# queues and take calls only as a last resort, so they are left out.
COUNTED_ROLES = frozenset({Role.OPERATOR, Role.BACKUP})


class Duty(NamedTuple):
    endpoint: str
    role: Role
    penalty: int


class ShiftStart(NamedTuple):
    start_utc: datetime
    shift_date: date
    shift: ShiftDef


@dataclass(frozen=True)
class CoverageProblem:
    """A shift whose counted on-duty operators are fewer than its minimum."""

    shift_date: date
    shift_name: str
    on_duty: int
    minimum: int

    def __str__(self) -> str:
        return (
            f"shift {self.shift_name!r} on {self.shift_date}: {self.on_duty}"
            f" operators on duty, minimum is {self.minimum}"
        )


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise RosterError(
            f"{name} {value.isoformat()} has no time zone, pass an aware UTC datetime"
        )


def shift_window(
    pattern: ShiftPattern,
    shift_name: str,
    shift_date: date,
    tz: ZoneInfo = DEFAULT_TZ,
) -> tuple[datetime, datetime]:
    """Return the UTC start (included) and end (excluded) of a shift on a date."""
    shift = pattern.shift(shift_name)
    local_start = datetime.combine(shift_date, shift.start, tzinfo=tz)
    start_utc = local_start.astimezone(UTC)
    return start_utc, start_utc + shift.duration


def shift_at(
    rotation: Rotation, instant_utc: datetime, tz: ZoneInfo = DEFAULT_TZ
) -> tuple[date, ShiftDef]:
    """Return the shift date and shift in force at an instant."""
    _require_aware("instant_utc", instant_utc)
    pattern = rotation.pattern
    local_date = instant_utc.astimezone(tz).date()
    # No shift is longer than 24 hours, so the shift in force started on the
    # instant's local date or the day before.
    for shift_date in (local_date - timedelta(days=1), local_date):
        for shift in pattern.shifts:
            start, end = shift_window(pattern, shift.name, shift_date, tz)
            if start <= instant_utc < end:
                return shift_date, shift
    # NOTE: hours are elapsed time, so in a zone with daylight saving time the
    # windows next to a clock change overlap or leave a gap, and an instant in
    # such a gap raises here.
    raise RosterError(
        f"no shift of pattern {pattern.name!r} covers {instant_utc.isoformat()}"
        f" in {tz.key}, check the pattern's start times"
    )


def boundaries(
    rotation: Rotation,
    start_utc: datetime,
    end_utc: datetime,
    tz: ZoneInfo = DEFAULT_TZ,
) -> list[ShiftStart]:
    """List the shift starts from `start_utc` (included) to `end_utc` (excluded)."""
    _require_aware("start_utc", start_utc)
    _require_aware("end_utc", end_utc)
    pattern = rotation.pattern
    first = start_utc.astimezone(tz).date() - timedelta(days=1)
    last = end_utc.astimezone(tz).date() + timedelta(days=1)
    starts = []
    shift_date = first
    while shift_date <= last:
        for shift in pattern.shifts:
            start, _ = shift_window(pattern, shift.name, shift_date, tz)
            if start_utc <= start < end_utc:
                starts.append(ShiftStart(start, shift_date, shift))
        shift_date += timedelta(days=1)
    starts.sort(key=lambda item: item.start_utc)
    return starts


def _operator(
    by_endpoint: dict[str, Operator], endpoint: str, source: str
) -> Operator:
    try:
        return by_endpoint[endpoint]
    except KeyError:
        raise RosterError(
            f"{source}: endpoint {endpoint!r} not found among the operators,"
            " add the operator or correct the endpoint"
        ) from None


def _apply_swap(planned: list[str], swap: Swap, source: str) -> None:
    if swap.out_endpoint not in planned:
        raise RosterError(
            f"{source}: out_endpoint {swap.out_endpoint!r} is not on this shift"
            f" (on it: {', '.join(planned) or 'nobody'}), swap out an operator"
            " who is"
        )
    if swap.in_endpoint in planned:
        raise RosterError(
            f"{source}: in_endpoint {swap.in_endpoint!r} is already on this shift,"
            " swap in an operator from another crew"
        )
    planned[planned.index(swap.out_endpoint)] = swap.in_endpoint


def on_duty(
    rotation: Rotation,
    operators: Iterable[Operator],
    exceptions: Iterable[RosterException],
    shift_date: date,
    shift_name: str,
) -> list[Duty]:
    """List who works a shift, as (endpoint, role, penalty) in crew order.

    The crew comes first. Swaps then replace operators in the order given, and
    extra cover is appended. Last, operators on leave or marked inactive are
    removed, wherever they came from. Raises RosterError when a crew, swap,
    leave or extra cover names an unknown endpoint, when a swap's out-operator
    is not on the shift, or when someone would be on the shift twice.
    """
    by_endpoint = {o.endpoint: o for o in operators}
    rotation.check_endpoints(by_endpoint.values())
    shift_name = rotation.pattern.shift(shift_name).name
    exceptions = list(exceptions)

    planned = list(rotation.crew_on(shift_date, shift_name).members)
    for change in exceptions:
        if isinstance(change, Leave):
            _operator(by_endpoint, change.endpoint, f"leave {change.start}")
            continue
        if change.shift_date != shift_date or change.shift_name != shift_name:
            continue
        kind = "swap" if isinstance(change, Swap) else "extra_cover"
        source = f"{kind} on {shift_date} {shift_name!r}"
        if isinstance(change, Swap):
            _operator(by_endpoint, change.out_endpoint, source)
            _operator(by_endpoint, change.in_endpoint, source)
            _apply_swap(planned, change, source)
        elif isinstance(change, ExtraCover):
            _operator(by_endpoint, change.endpoint, source)
            if change.endpoint in planned:
                raise RosterError(
                    f"{source}: endpoint {change.endpoint!r} is already on this"
                    " shift, remove the extra cover"
                )
            planned.append(change.endpoint)
        else:
            raise RosterError(
                f"exception {change!r} is of unknown type, use Leave, Swap or"
                " ExtraCover"
            )

    on_leave = {
        change.endpoint
        for change in exceptions
        if isinstance(change, Leave) and change.covers(shift_date)
    }
    duties = []
    for endpoint in planned:
        operator = by_endpoint[endpoint]
        if endpoint in on_leave or not operator.active:
            continue
        duties.append(Duty(endpoint, operator.role, PENALTIES[operator.role]))
    return duties


def check_coverage(
    rotation: Rotation,
    operators: Sequence[Operator],
    exceptions: Sequence[RosterException],
    start_date: date,
    days: int,
) -> list[CoverageProblem]:
    """Report every shift over `days` dates from `start_date` below its minimum.

    Only operators and backups count towards the minimum. Invalid exceptions
    raise RosterError, as in `on_duty`.
    """
    if days < 0:
        raise RosterError(f"days {days} is negative, use 0 or more")
    problems = []
    for offset in range(days):
        shift_date = start_date + timedelta(days=offset)
        for shift in rotation.pattern.shifts:
            duties = on_duty(rotation, operators, exceptions, shift_date, shift.name)
            counted = sum(1 for duty in duties if duty.role in COUNTED_ROLES)
            if counted < shift.minimum_operators:
                problems.append(
                    CoverageProblem(
                        shift_date, shift.name, counted, shift.minimum_operators
                    )
                )
    return problems
