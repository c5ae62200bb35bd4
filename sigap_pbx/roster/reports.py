"""Shift reports built from a shift window's figures, with no I/O.

`build_report` takes what the reporter read from the store (member figures per
interface, pause intervals, the calls that arrived in the window) and the roster's
view of the shift, and returns the report as a JSON-ready dict. docs/shift-reports.md
explains each figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from sigap_pbx.members.wrapup import WRAPUP_REASON
from sigap_pbx.roster.model import Operator
from sigap_pbx.roster.schedule import COUNTED_ROLES, Duty
from sigap_pbx.store.models import CallOutcome
from sigap_pbx.store.shifts import MemberFigures

# Version of the report's JSON layout, stored in each report.
REPORT_VERSION = 1
# Seconds within which answered calls are counted, from arrival at the PBX.
ANSWER_THRESHOLDS = (10, 15, 20)
INTERFACE_PREFIX = "PJSIP/"


class AnswerTarget(NamedTuple):
    standard: str
    seconds: int
    percent: float


# Share of all arriving calls that must be answered within `seconds`.
ANSWER_TARGETS = (
    AnswerTarget("NFPA 1225", 10, 90.0),
    AnswerTarget("NENA-STA-020.1-2020", 15, 90.0),
    AnswerTarget("NENA-STA-020.1-2020", 20, 95.0),
)


class CallFigures(Protocol):
    """The fields of a stored call that the queue figures read (CallView has them)."""

    @property
    def arrived_at(self) -> datetime | None: ...
    @property
    def answered_at(self) -> datetime | None: ...
    @property
    def wait_seconds(self) -> float | None: ...
    @property
    def outcome(self) -> str: ...


class PauseInterval(Protocol):
    """The fields of a stored pause interval that pause sums read (PauseView has them)."""

    @property
    def interface(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class ShiftWindow:
    """One shift on one date: its UTC window, crew and staffing minimum from the roster."""

    shift_date: date
    shift_name: str
    start: datetime
    end: datetime
    zone: ZoneInfo
    crew: str | None
    minimum_operators: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.shift_date.isoformat(),
            "name": self.shift_name,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "start_local": self.start.astimezone(self.zone).isoformat(),
            "end_local": self.end.astimezone(self.zone).isoformat(),
            "zone": self.zone.key,
            "crew": self.crew,
            "minimum_operators": self.minimum_operators,
        }


def interface_of(endpoint: str) -> str:
    """Return the queue member interface of a roster endpoint."""
    return INTERFACE_PREFIX + endpoint


def endpoint_of(interface: str) -> str:
    """Return the endpoint of a `PJSIP/<endpoint>` interface, or the interface itself."""
    if interface.startswith(INTERFACE_PREFIX):
        return interface[len(INTERFACE_PREFIX) :]
    return interface


def pause_seconds(
    pauses: Iterable[PauseInterval], since: datetime, until: datetime, now: datetime
) -> dict[str, dict[str, float]]:
    """Sum paused seconds in [since, until) per interface and reason.

    Intervals are clipped to the window, and one still open counts up to ``now``.
    A member paused under one reason in several queues at once has one interval
    per queue, so the intervals of each interface and reason are merged first and
    overlapping time counts once.
    """
    spans: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for pause in pauses:
        start = max(pause.started_at, since)
        end = min(pause.ended_at if pause.ended_at is not None else now, until)
        if end > start:
            spans.setdefault((pause.interface, pause.reason), []).append((start, end))
    totals: dict[str, dict[str, float]] = {}
    for (interface, reason), intervals in spans.items():
        totals.setdefault(interface, {})[reason] = _union_seconds(intervals)
    return totals


def _union_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    total = 0.0
    current_start, current_end = None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += (current_end - current_start).total_seconds()
    return total


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 3)


def _percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100 * part / whole, 1)


def _round(seconds: float) -> float:
    return round(seconds, 1)


def wait_of(call: CallFigures) -> float | None:
    """Return the seconds from arrival at the PBX to the answer, or None."""
    if call.answered_at is None:
        return None
    if call.arrived_at is not None:
        return max((call.answered_at - call.arrived_at).total_seconds(), 0.0)
    return call.wait_seconds


def queue_figures(calls: Iterable[CallFigures]) -> dict[str, Any]:
    """Count the calls of a window by outcome and by time to answer.

    A call counts as answered when it has an answer time, whoever answered it, so
    an overflowed call that the backup queue answered is answered. The answer-time
    percentages are of every arrived call, abandoned and failed ones included.
    """
    calls = list(calls)
    outcomes = {outcome.value: 0 for outcome in CallOutcome}
    waits: list[float] = []
    overflowed_answered = 0
    for call in calls:
        outcome = str(call.outcome)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        wait = wait_of(call)
        if wait is None:
            continue
        waits.append(wait)
        if outcome == CallOutcome.OVERFLOWED:
            overflowed_answered += 1

    arrived = len(calls)
    within = []
    for seconds in ANSWER_THRESHOLDS:
        count = sum(1 for wait in waits if wait <= seconds)
        within.append(
            {"seconds": seconds, "count": count, "percent": _percent(count, arrived)}
        )
    targets = []
    for target in ANSWER_TARGETS:
        count = sum(1 for wait in waits if wait <= target.seconds)
        percent = _percent(count, arrived)
        targets.append(
            {
                "standard": target.standard,
                "seconds": target.seconds,
                "target_percent": target.percent,
                "percent": percent,
                "met": None if percent is None else percent >= target.percent,
            }
        )
    return {
        "arrived": arrived,
        "answered": len(waits),
        "abandoned_before_queue": outcomes[CallOutcome.ABANDONED_BEFORE_QUEUE],
        "abandoned_in_queue": outcomes[CallOutcome.ABANDONED_IN_QUEUE],
        "overflowed": outcomes[CallOutcome.OVERFLOWED],
        "overflowed_answered": overflowed_answered,
        "failed": outcomes[CallOutcome.FAILED],
        "in_progress": outcomes[CallOutcome.IN_PROGRESS],
        "outcomes": outcomes,
        "answered_within": within,
        "targets": targets,
        "max_wait_seconds": _round(max(waits)) if waits else None,
        "mean_wait_seconds": _round(sum(waits) / len(waits)) if waits else None,
    }


def operator_row(
    interface: str,
    *,
    operator: Operator | None,
    duty: Duty | None,
    figures: MemberFigures | None,
    pauses: Mapping[str, float],
) -> dict[str, Any]:
    """Build one operator's line of the report."""
    figures = figures if figures is not None else MemberFigures(interface)
    other_pauses = {
        reason: _round(seconds)
        for reason, seconds in sorted(pauses.items())
        if reason != WRAPUP_REASON
    }
    decided = figures.answered + figures.missed
    if operator is not None:
        name: str | None = operator.name
    else:
        name = figures.member_name
    role = None
    if duty is not None:
        role = duty.role
    elif operator is not None:
        role = operator.role
    return {
        "endpoint": endpoint_of(interface),
        "interface": interface,
        "name": name,
        "role": None if role is None else str(role),
        "rostered": duty is not None,
        "offered": figures.offered,
        "answered": figures.answered,
        "missed": figures.missed,
        "answer_ratio": _ratio(figures.answered, decided),
        "mean_ring_seconds": (
            _round(figures.answer_ring_seconds / figures.answered)
            if figures.answered
            else None
        ),
        "talk_seconds": _round(figures.talk_seconds),
        "open_calls": figures.open_calls,
        "wrapup_seconds": _round(pauses.get(WRAPUP_REASON, 0.0)),
        "pause_seconds": other_pauses,
        "paused_seconds": _round(sum(other_pauses.values())),
    }


def build_report(
    window: ShiftWindow,
    *,
    duties: Sequence[Duty],
    operators: Iterable[Operator],
    member_figures: Mapping[str, MemberFigures],
    pauses: Mapping[str, Mapping[str, float]],
    calls: Iterable[CallFigures],
    generated_at: datetime,
) -> dict[str, Any]:
    """Build the report of one shift window as a JSON-ready dict.

    Operators are everyone rostered for the shift, in roster order, then every
    other interface with member events or pauses in the window, flagged
    ``rostered: false``. ``member_figures`` and ``pauses`` are keyed by interface
    and already clipped to the window. ``complete`` is false while the window
    has not ended at ``generated_at``.
    """
    by_endpoint = {operator.endpoint: operator for operator in operators}
    rows = []
    seen: set[str] = set()
    for duty in duties:
        interface = interface_of(duty.endpoint)
        seen.add(interface)
        rows.append(
            operator_row(
                interface,
                operator=by_endpoint.get(duty.endpoint),
                duty=duty,
                figures=member_figures.get(interface),
                pauses=pauses.get(interface, {}),
            )
        )
    others = (set(member_figures) | set(pauses)) - seen
    for interface in sorted(others):
        rows.append(
            operator_row(
                interface,
                operator=by_endpoint.get(endpoint_of(interface)),
                duty=None,
                figures=member_figures.get(interface),
                pauses=pauses.get(interface, {}),
            )
        )
    counted = sum(1 for duty in duties if duty.role in COUNTED_ROLES)
    shift = window.to_dict()
    shift["rostered"] = len(duties)
    # Operators and backups, the roles that count towards minimum_operators.
    shift["rostered_counted"] = counted
    shift["below_minimum"] = counted < window.minimum_operators
    return {
        "version": REPORT_VERSION,
        "shift": shift,
        "generated_at": generated_at.isoformat(),
        "complete": generated_at >= window.end,
        "operators": rows,
        "queue": queue_figures(calls),
    }


def report_summary(content: Mapping[str, Any]) -> dict[str, Any]:
    """Return the headline figures of a stored report, for lists."""
    shift = content.get("shift", {})
    queue = content.get("queue", {})
    within = {item["seconds"]: item for item in queue.get("answered_within", [])}
    operators = content.get("operators", [])
    return {
        "date": shift.get("date"),
        "name": shift.get("name"),
        "start": shift.get("start"),
        "end": shift.get("end"),
        "start_local": shift.get("start_local"),
        "end_local": shift.get("end_local"),
        "crew": shift.get("crew"),
        "generated_at": content.get("generated_at"),
        "operators": sum(1 for row in operators if row.get("rostered")),
        "not_rostered": sum(1 for row in operators if not row.get("rostered")),
        "arrived": queue.get("arrived"),
        "answered": queue.get("answered"),
        "abandoned": (queue.get("abandoned_before_queue") or 0)
        + (queue.get("abandoned_in_queue") or 0),
        "overflowed": queue.get("overflowed"),
        "answered_within_10_percent": within.get(10, {}).get("percent"),
        "answered_within_15_percent": within.get(15, {}).get("percent"),
        "answered_within_20_percent": within.get(20, {}).get("percent"),
    }
