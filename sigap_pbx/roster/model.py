"""Roster data: operators, crews, shift patterns, the crew rotation and its exceptions.

Every class is a frozen dataclass that validates itself on construction and raises
`RosterError` with the field, the value and the fix. Shift dates are local calendar
dates of the site, and a shift belongs to the date on which it starts.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, time, timedelta

DAY_SECONDS = 24 * 3600


class RosterError(ValueError):
    """Invalid roster data, or an exception that does not fit the roster."""


class Role(enum.StrEnum):
    OPERATOR = "operator"
    BACKUP = "backup"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class Operator:
    """A person who can be rostered, identified by their SIP endpoint."""

    endpoint: str
    name: str
    languages: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    active: bool = True
    role: Role = Role.OPERATOR

    def __post_init__(self) -> None:
        if not self.endpoint:
            raise RosterError(
                f"operator {self.name!r}: endpoint is empty, set it to the SIP endpoint"
            )
        try:
            role = Role(self.role)
        except ValueError:
            choices = ", ".join(r.value for r in Role)
            raise RosterError(
                f"operator {self.endpoint!r}: role {self.role!r} is invalid,"
                f" use one of {choices}"
            ) from None
        object.__setattr__(self, "role", role)


@dataclass(frozen=True)
class Crew:
    """A team that works its shifts together, listed by operator endpoint."""

    name: str
    members: tuple[str, ...]

    def __post_init__(self) -> None:
        for endpoint, count in Counter(self.members).items():
            if count > 1:
                raise RosterError(
                    f"crew {self.name!r}: member {endpoint!r} is listed {count} times,"
                    " list each endpoint once"
                )


@dataclass(frozen=True)
class ShiftDef:
    """One shift of a pattern: a local start time, a length and a staffing minimum.

    `hours` is elapsed time, so a shift always lasts exactly that long in UTC.
    """

    name: str
    start: time
    hours: float
    minimum_operators: int

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None:
            raise RosterError(
                f"shift {self.name!r}: start {self.start} has a time zone,"
                " give the local wall-clock time without one"
            )
        if not 0 < self.hours <= 24:
            raise RosterError(
                f"shift {self.name!r}: hours {self.hours} is out of range,"
                " use more than 0 and at most 24"
            )
        minutes = self.hours * 60
        if abs(minutes - round(minutes)) > 1e-9:
            raise RosterError(
                f"shift {self.name!r}: hours {self.hours} is not a whole number of"
                " minutes, round it to the minute"
            )
        if self.minimum_operators < 0:
            raise RosterError(
                f"shift {self.name!r}: minimum_operators {self.minimum_operators}"
                " is negative, use 0 or more"
            )

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=round(self.hours * 60))

    @property
    def start_seconds(self) -> int:
        """Start as seconds after local midnight."""
        return self.start.hour * 3600 + self.start.minute * 60 + self.start.second


@dataclass(frozen=True)
class ShiftPattern:
    """The shifts of one day, which must cover the 24 hours exactly once."""

    name: str
    shifts: tuple[ShiftDef, ...]

    def __post_init__(self) -> None:
        if not self.shifts:
            raise RosterError(f"pattern {self.name!r}: shifts is empty, add a shift")
        for shift_name, count in Counter(s.name for s in self.shifts).items():
            if count > 1:
                raise RosterError(
                    f"pattern {self.name!r}: shift name {shift_name!r} is used"
                    f" {count} times, give each shift its own name"
                )
        problems = _coverage_gaps_and_overlaps(self.shifts)
        total = sum(s.duration.total_seconds() for s in self.shifts) / 3600
        if total != 24:
            problems.append(f"shift hours sum to {total:g}, expected 24")
        if problems:
            raise RosterError(
                f"pattern {self.name!r} is invalid: {', '.join(problems)}."
                " Start each shift when the previous one ends, so that the shifts"
                " cover 24 hours exactly once."
            )

    def shift(self, name: str) -> ShiftDef:
        """Return the shift called `name`, or raise RosterError."""
        for shift in self.shifts:
            if shift.name == name:
                return shift
        known = ", ".join(repr(s.name) for s in self.shifts)
        raise RosterError(
            f"pattern {self.name!r}: shift {name!r} not found, use one of {known}"
        )


def _clock(seconds: float) -> str:
    seconds = int(seconds) % DAY_SECONDS
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}"


def _coverage_gaps_and_overlaps(shifts: Iterable[ShiftDef]) -> list[str]:
    """Describe each gap or overlap between a shift and the next one by start time."""
    ordered = sorted(shifts, key=lambda s: s.start_seconds)
    problems = []
    for index, shift in enumerate(ordered):
        following = ordered[(index + 1) % len(ordered)]
        next_start = following.start_seconds
        # The last shift is followed by the first one of the next day.
        if index + 1 == len(ordered):
            next_start += DAY_SECONDS
        end = shift.start_seconds + shift.duration.total_seconds()
        if end < next_start:
            problems.append(
                f"no shift covers {_clock(end)}-{_clock(next_start)}"
                f" (gap between {shift.name!r} and {following.name!r})"
            )
        elif end > next_start:
            problems.append(
                f"{shift.name!r} overlaps {following.name!r}"
                f" from {_clock(next_start)} to {_clock(end)}"
            )
    return problems


@dataclass(frozen=True)
class Rotation:
    """Crews cycling through the shifts of a pattern, one shift per crew per day.

    With k the number of days from `anchor` to a shift date (negative before it)
    and C the number of crews, shift i of the pattern (in the order the pattern
    lists them) is worked by crew ``crews[(i - k) mod C]``. So on the anchor day
    shift i gets crew i, and each day every crew moves on to the next shift in
    the list. A crew whose next index is past the last shift is off that day.
    Four crews on early, late and night shifts thus work early, late, night,
    then a day off. When the pattern lists its shifts in start order, a crew
    has at least 24 hours off between the end of one shift and the next.
    """

    pattern: ShiftPattern
    crews: tuple[Crew, ...]
    anchor: date

    def __post_init__(self) -> None:
        # With one crew per shift, a crew would go straight from the last shift
        # of one day to the first shift of the next, with no rest between them.
        if len(self.crews) <= len(self.pattern.shifts):
            raise RosterError(
                f"rotation: {len(self.crews)} crews for"
                f" {len(self.pattern.shifts)} shifts in pattern"
                f" {self.pattern.name!r}, add crews so there are more crews than"
                " shifts and each crew has a day off"
            )
        for crew_name, count in Counter(c.name for c in self.crews).items():
            if count > 1:
                raise RosterError(
                    f"rotation: crew name {crew_name!r} is used {count} times,"
                    " give each crew its own name"
                )
        seen: dict[str, str] = {}
        for crew in self.crews:
            for endpoint in crew.members:
                if endpoint in seen:
                    raise RosterError(
                        f"rotation: endpoint {endpoint!r} is in crew {seen[endpoint]!r}"
                        f" and crew {crew.name!r}, keep each operator in one crew"
                    )
                seen[endpoint] = crew.name

    def crew_on(self, shift_date: date, shift_name: str) -> Crew:
        """Return the crew that the rotation assigns to a shift."""
        shifts = self.pattern.shifts
        index = shifts.index(self.pattern.shift(shift_name))
        days = (shift_date - self.anchor).days
        return self.crews[(index - days) % len(self.crews)]

    def check_endpoints(self, operators: Iterable[Operator]) -> None:
        """Raise RosterError if a crew lists an endpoint that is not an operator."""
        known = {o.endpoint for o in operators}
        for crew in self.crews:
            for endpoint in crew.members:
                if endpoint not in known:
                    raise RosterError(
                        f"crew {crew.name!r}: member {endpoint!r} not found among"
                        " the operators, add the operator or remove it from the crew"
                    )


@dataclass(frozen=True)
class Leave:
    """An operator's absence for every shift dated `start` to `end`, both included."""

    endpoint: str
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise RosterError(
                f"leave of {self.endpoint!r}: end {self.end} is before start"
                f" {self.start}, swap the dates"
            )

    def covers(self, shift_date: date) -> bool:
        return self.start <= shift_date <= self.end


@dataclass(frozen=True)
class Swap:
    """One shift that `in_endpoint` works in place of `out_endpoint`."""

    shift_date: date
    shift_name: str
    out_endpoint: str
    in_endpoint: str

    def __post_init__(self) -> None:
        if self.out_endpoint == self.in_endpoint:
            raise RosterError(
                f"swap on {self.shift_date} {self.shift_name!r}: out_endpoint and"
                f" in_endpoint are both {self.out_endpoint!r}, name two operators"
            )


@dataclass(frozen=True)
class ExtraCover:
    """An operator added to one shift on top of its crew."""

    shift_date: date
    shift_name: str
    endpoint: str


# A planned change to the rotation. These are roster exceptions, not Python ones.
RosterException = Leave | Swap | ExtraCover


@dataclass(frozen=True)
class Roster:
    """A whole roster: the operators, the crew rotation and its exceptions."""

    operators: tuple[Operator, ...]
    rotation: Rotation
    exceptions: tuple[RosterException, ...] = ()

    def __post_init__(self) -> None:
        for endpoint, count in Counter(o.endpoint for o in self.operators).items():
            if count > 1:
                raise RosterError(
                    f"operators: endpoint {endpoint!r} is listed {count} times,"
                    " list each operator once"
                )
        self.rotation.check_endpoints(self.operators)

    def operator(self, endpoint: str) -> Operator | None:
        for operator in self.operators:
            if operator.endpoint == endpoint:
                return operator
        return None
