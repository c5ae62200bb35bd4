"""Coverage: alarms when the operators' queue is short of people or callers wait long.

`CoverageGuard.evaluate` reads the live view of the queues and keeps three alarms
in step with it:

- `below_minimum` (warning, subject the primary queue): fewer operators on post in
  the primary queue than the current shift's `minimum_operators`. An operator is
  on post when the phone is reachable and the member is not paused, or paused
  only for wrap-up. Members at penalty 10 or more (supervisors) do not count,
  as in the roster's minimum. A member in a call counts, because the minimum is
  about staffing, and a full queue shows up as `nobody_available`.
- `nobody_available` (critical, subject the primary queue): no member at all,
  supervisors included, can take a new call. A member can when it is not paused,
  its phone is reachable and it is not in a call. A ringing member can.
- `long_wait` (warning, subject each queue): a caller in that queue has waited
  longer than `long_wait_seconds`. The wait counts from the first queue the
  caller joined, so a caller moved down the overflow chain keeps its wait.

The guard only raises alarms. With nobody available, Asterisk's dialplan sends the
caller down the overflow chain (backup queue, supervisor, on-call line, then the
operators again), and no call is dropped. Without a roster (`shift_provider`
returns None), only `nobody_available` and `long_wait` apply.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import structlog

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.live import LiveView, Member
from sigap_pbx.members.wrapup import WRAPUP_REASON
from sigap_pbx.store.alarms import AlarmSeverity

log = structlog.get_logger(__name__)

BELOW_MINIMUM = "below_minimum"
NOBODY_AVAILABLE = "nobody_available"
LONG_WAIT = "long_wait"

# Members at this penalty or above (supervisors) do not count towards a shift's
# minimum. The roster gives operators 0, backups 5 and supervisors 10.
UNCOUNTED_PENALTY = 10
UNREACHABLE_STATES = frozenset({"invalid", "unavailable"})
# Device states of a phone already in a call. With `ringinuse = no`, app_queue does
# not offer such a member a new call.
IN_CALL_STATES = frozenset({"in_use", "busy", "ringing_in_use", "on_hold"})
# Seconds a caller's first join time is kept after it was last seen in a queue. It
# covers the overflow steps outside any queue (supervisor and on-call lines), whose
# ring times are at most 120 s each in the configuration.
CALLER_MEMORY_SECONDS = 3600.0
# The long-wait message rounds the longest wait down to this step, so a growing
# wait alone rewrites the alarm once per step rather than every second.
WAIT_STEP_SECONDS = 10


@dataclass(frozen=True)
class ShiftInfo:
    """The shift in force: its name, staffing minimum and date."""

    name: str
    minimum_operators: int
    shift_date: date | None = None


ShiftProvider = Callable[[], ShiftInfo | None]


def is_available(member: Member) -> bool:
    """Return whether app_queue could offer this member a new call now."""
    return (
        not member.paused
        and member.status not in UNREACHABLE_STATES
        and member.status not in IN_CALL_STATES
        and not member.in_call
    )


def is_on_post(member: Member) -> bool:
    """Return whether the member counts as staffing its shift now."""
    paused_elsewhere = member.paused and member.paused_reason != WRAPUP_REASON
    return (
        not paused_elsewhere
        and member.status not in UNREACHABLE_STATES
        and member.penalty < UNCOUNTED_PENALTY
    )


class CoverageGuard:
    """Raise and clear the coverage alarms from the live view.

    Call `evaluate` every second and after member events. `clock` is a monotonic
    clock in seconds, the one that dates the live view's callers.
    """

    def __init__(
        self,
        live: LiveView,
        alarms: AlarmBoard,
        primary_queue: str,
        long_wait_seconds: float,
        shift_provider: ShiftProvider = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        hold_seconds: float = 0.0,
    ) -> None:
        if not math.isfinite(long_wait_seconds) or long_wait_seconds <= 0:
            raise ValueError(
                f"invalid long_wait_seconds {long_wait_seconds!r}: expected a number "
                "of seconds > 0 ([queue] long_wait_alarm_seconds)"
            )
        self.live = live
        self.alarms = alarms
        self.primary_queue = primary_queue
        self.long_wait_seconds = float(long_wait_seconds)
        self.shift_provider = shift_provider
        self.clock = clock
        # Seconds a condition must hold before its alarm is raised. Under load every
        # operator is briefly busy many times a minute, and without a hold the
        # alarms would be raised and cleared that often.
        self.hold_seconds = hold_seconds
        self._since: dict[str, float] = {}
        # Per caller uniqueid: (first join, last seen), in `clock` seconds.
        self._callers: dict[str, tuple[float, float]] = {}
        self._shift_error: str | None = None

    def evaluate(self) -> None:
        """Bring the three alarms in line with the live view.

        Nothing changes while the live view is not synced with Asterisk (before
        the first QueueStatus and during an AMI gap), because its members and
        callers may be stale.
        """
        if not self.live.synced:
            return
        queue = self.live.queues.get(self.primary_queue)
        members = list(queue.members.values()) if queue is not None else []
        self._check_nobody_available(members)
        self._check_below_minimum(members, self._current_shift())
        self._check_long_waits()

    # Members ---------------------------------------------------------------------------

    def _held(self, kind: str, active: bool) -> bool:
        """Return whether a condition has been true for `hold_seconds` without a break."""
        if not active:
            self._since.pop(kind, None)
            return False
        since = self._since.setdefault(kind, self.clock())
        return self.clock() - since >= self.hold_seconds

    def _check_nobody_available(self, members: list[Member]) -> None:
        if not self._held(NOBODY_AVAILABLE, not any(is_available(m) for m in members)):
            if any(is_available(member) for member in members):
                self.alarms.clear(NOBODY_AVAILABLE, self.primary_queue, "member_available")
            return
        counts = _unavailable_counts(members)
        if members:
            reasons = ", ".join(f"{count} {reason}" for reason, count in counts.items())
            summary = f"none of its {len(members)} members can take a call ({reasons})"
        else:
            summary = "it has no members"
        self.alarms.raise_alarm(
            NOBODY_AVAILABLE,
            self.primary_queue,
            f"Nobody can answer in queue {self.primary_queue}: {summary}; new "
            "callers go down the overflow chain",
            severity=AlarmSeverity.CRITICAL,
            detail={"queue": self.primary_queue, "members": len(members), **counts},
        )

    def _check_below_minimum(self, members: list[Member], shift: ShiftInfo | None) -> None:
        on_post = sum(1 for member in members if is_on_post(member))
        short = shift is not None and on_post < shift.minimum_operators
        if not self._held(BELOW_MINIMUM, short):
            if not short:
                self.alarms.clear(BELOW_MINIMUM, self.primary_queue, "minimum_met")
            return
        assert shift is not None
        self.alarms.raise_alarm(
            BELOW_MINIMUM,
            self.primary_queue,
            f"Shift {shift.name}: {on_post} operators on post in queue "
            f"{self.primary_queue}, minimum is {shift.minimum_operators}",
            detail={
                "queue": self.primary_queue,
                "shift": shift.name,
                "shift_date": shift.shift_date.isoformat() if shift.shift_date else None,
                "on_post": on_post,
                "minimum": shift.minimum_operators,
            },
        )

    def _current_shift(self) -> ShiftInfo | None:
        try:
            shift = self.shift_provider()
        except Exception as exc:
            # The roster lookup must not stop the other alarms. The error is logged
            # once until it changes, because evaluate runs every second.
            error = f"{type(exc).__name__}: {exc}"
            if error != self._shift_error:
                log.error("coverage_shift_lookup_failed", error=error)
                self._shift_error = error
            return None
        self._shift_error = None
        return shift

    # Callers ---------------------------------------------------------------------------

    def _check_long_waits(self) -> None:
        now = self.clock()
        waits_by_queue: dict[str, list[float]] = {}
        for name, queue in self.live.queues.items():
            waits = waits_by_queue.setdefault(name, [])
            for caller in queue.callers.values():
                first, _ = self._callers.get(caller.uniqueid, (caller.joined_monotonic, now))
                first = min(first, caller.joined_monotonic)
                self._callers[caller.uniqueid] = (first, now)
                waits.append(max(now - first, 0.0))
        self._forget_old_callers(now)

        for name, waits in waits_by_queue.items():
            longest = max(waits, default=0.0)
            if longest <= self.long_wait_seconds:
                self.alarms.clear(LONG_WAIT, name, "no_long_wait")
                continue
            self._raise_long_wait(name, waits, longest)
        for record in self.alarms.active(LONG_WAIT):
            if record.subject not in waits_by_queue:
                self.alarms.clear(LONG_WAIT, record.subject, "queue_gone")

    def _raise_long_wait(self, queue: str, waits: list[float], longest: float) -> None:
        over = sum(1 for wait in waits if wait > self.long_wait_seconds)
        shown = max(
            int(longest // WAIT_STEP_SECONDS) * WAIT_STEP_SECONDS,
            int(self.long_wait_seconds),
        )
        callers = "caller is" if len(waits) == 1 else "callers are"
        self.alarms.raise_alarm(
            LONG_WAIT,
            queue,
            f"{len(waits)} {callers} waiting in queue {queue}, the longest for over "
            f"{shown} s (alarm after {self.long_wait_seconds:g} s)",
            detail={
                "queue": queue,
                "waiting": len(waits),
                "over_threshold": over,
                "longest_wait_over_seconds": shown,
                "threshold_seconds": self.long_wait_seconds,
            },
        )

    def _forget_old_callers(self, now: float) -> None:
        for uniqueid, (_, last_seen) in list(self._callers.items()):
            if now - last_seen > CALLER_MEMORY_SECONDS:
                del self._callers[uniqueid]


def _unavailable_counts(members: list[Member]) -> dict[str, int]:
    """Count why members cannot take a call, one reason per member."""
    counts: dict[str, int] = {}
    for member in members:
        if member.status in UNREACHABLE_STATES:
            reason = "unreachable"
        elif member.paused:
            reason = "paused"
        else:
            reason = "in_call"
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def coverage_snapshot(guard: CoverageGuard) -> dict[str, Any]:
    """Return the primary queue's counts as a JSON-ready dict, for the wallboard."""
    queue = guard.live.queues.get(guard.primary_queue)
    members = list(queue.members.values()) if queue is not None else []
    return {
        "queue": guard.primary_queue,
        "members": len(members),
        "available": sum(1 for member in members if is_available(member)),
        "on_post": sum(1 for member in members if is_on_post(member)),
    }
