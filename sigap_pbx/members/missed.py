"""Missed calls: pause a member who leaves several offered calls unanswered in a row.

app_queue sends `AgentRingNoAnswer` each time a member's ring times out (or the
phone reports busy), and `AgentConnect` when a member takes the call. After
`threshold` unanswered offers in a row, across all queues, the member is paused
with reason `missed_calls` in every queue where it is not paused already, and a
`missed_calls` alarm asks a supervisor to check on the operator. The member is not
unpaused here: when anyone unpauses it, in any queue, the count starts again from
zero and the alarm clears.

With ring-all, each ring timeout of a member counts once, so one caller who waits
through two ring cycles without an answer counts twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

import structlog

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.members.health import MemberState, QueueMembership, send_queue_pause
from sigap_pbx.members.pauses import is_paused
from sigap_pbx.members.wrapup import AmiActions
from sigap_pbx.wire.ami import Event

log = structlog.get_logger(__name__)

MISSED_CALLS_REASON = "missed_calls"
ALARM_KIND = "missed_calls"


class MissedCallGuard:
    """Count unanswered offers per member and pause at `threshold` (0 turns it off).

    `on_event` and `reset_from_status` must be called from the event loop.
    """

    def __init__(
        self,
        ami: AmiActions,
        alarms: AlarmBoard,
        threshold: int,
        *,
        action_timeout: float | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ValueError(
                f"invalid missed-call threshold {threshold!r}: expected a whole "
                "number >= 0 ([queue] missed_calls_pause, 0 turns it off)"
            )
        self.ami = ami
        self.alarms = alarms
        self.threshold = threshold
        self.action_timeout = action_timeout
        self.membership = QueueMembership()
        # Unanswered offers in a row, per interface.
        self.missed: dict[str, int] = {}
        # Members paused, or being paused, for missed calls.
        self.tripped: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    # Event entry point (called by the AMI client, must not block) -----------------

    def on_event(self, event: Event) -> None:
        if event.name == "AgentRingNoAnswer":
            self._on_ring_no_answer(event)
            return
        if event.name == "AgentConnect":
            interface = event.get("Interface") or ""
            if self.missed.pop(interface, None):
                log.debug("missed_calls_count_reset", interface=interface, cause="answered")
            return
        member = self.membership.on_event(event)
        if member is None:
            return
        if event.name == "QueueMemberPause" and not is_paused(event):
            self._release(member, "unpaused")
        elif not member.pauses:
            self._release(member, "member_removed")

    def _on_ring_no_answer(self, event: Event) -> None:
        interface = event.get("Interface") or ""
        if not self.enabled or not interface:
            return
        count = self.missed.get(interface, 0) + 1
        self.missed[interface] = count
        log.info(
            "member_missed_call",
            interface=interface,
            queue=event.get("Queue"),
            member_name=event.get("MemberName"),
            missed_in_a_row=count,
            uniqueid=event.get("Uniqueid"),
        )
        if count < self.threshold or interface in self.tripped:
            return
        member = self.membership.members.get(interface)
        if member is None:
            # The offer came from a queue whose membership the guard has not seen,
            # so the pause goes to every queue of the member.
            queue = event.get("Queue") or ""
            member = self.membership.on_event(_member_placeholder(event, queue))
        if member is not None:
            self._trip(member, event.get("MemberName") or member.name, count)

    def _trip(self, member: MemberState, name: str, count: int) -> None:
        self.tripped.add(member.interface)
        queues = member.queues_where(lambda reason: reason is None)
        self.alarms.raise_alarm(
            ALARM_KIND,
            member.subject,
            f"Operator {name} ({member.subject}) left {count} offered calls in a row "
            f"unanswered and is paused with reason {MISSED_CALLS_REASON}; check on "
            "the operator and the phone, then unpause",
            detail={
                "interface": member.interface,
                "member_name": name,
                "missed_in_a_row": count,
                "threshold": self.threshold,
            },
        )
        if not queues:
            log.info("missed_calls_pause_skipped_member_paused", interface=member.interface)
            return
        log.warning(
            "member_paused_missed_calls",
            interface=member.interface,
            member_name=name,
            missed_in_a_row=count,
            queues=queues,
        )
        self._spawn(self._pause(member, queues))

    async def _pause(self, member: MemberState, queues: list[str]) -> None:
        succeeded = await send_queue_pause(
            self.ami,
            member.interface,
            paused=True,
            reason=MISSED_CALLS_REASON,
            queues=member.pause_targets(queues),
            timeout=self.action_timeout,
        )
        if not succeeded:
            # The next unanswered offer tries the pause again. The alarm stays.
            self.tripped.discard(member.interface)

    def _release(self, member: MemberState, cause: str) -> None:
        count = self.missed.pop(member.interface, 0)
        if member.interface in self.tripped:
            self.tripped.discard(member.interface)
            log.info("missed_calls_pause_ended", interface=member.interface, cause=cause)
        elif count:
            log.debug("missed_calls_count_reset", interface=member.interface, cause=cause)
        self.alarms.clear(ALARM_KIND, member.subject, cause)

    def reset_from_status(self, events: Iterable[Event]) -> None:
        """Rebuild membership from a QueueStatus list after a (re)connect.

        A member found paused under `missed_calls` keeps (or gets) its alarm,
        including one paused before the controller started. An alarm whose
        member is no longer paused under that reason is cleared, because the
        unpause happened during the gap. Counts of members no longer in any
        queue are dropped.
        """
        self.membership.reset_from_status(events)
        paused_subjects = set()
        self.tripped = set()
        for member in self.membership.members.values():
            if MISSED_CALLS_REASON not in member.pauses.values():
                continue
            self.tripped.add(member.interface)
            paused_subjects.add(member.subject)
            if self.alarms.get_active(ALARM_KIND, member.subject) is None:
                self.alarms.raise_alarm(
                    ALARM_KIND,
                    member.subject,
                    f"Operator {member.name} ({member.subject}) is paused with reason "
                    f"{MISSED_CALLS_REASON} after unanswered offered calls; check on "
                    "the operator and the phone, then unpause",
                    detail={"interface": member.interface, "member_name": member.name},
                )
        for record in self.alarms.active(ALARM_KIND):
            if record.subject not in paused_subjects:
                self.alarms.clear(ALARM_KIND, record.subject, "queue_status")
        for interface in list(self.missed):
            if interface not in self.membership.members:
                del self.missed[interface]

    # Tasks ---------------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine, name="missed-calls-pause")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("missed_calls_task_failed", exc_info=task.exception())

    async def stop(self) -> None:
        """Cancel pauses in flight. Members paused for missed calls stay paused."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _member_placeholder(event: Event, queue: str) -> Event:
    """Build a QueueMemberAdded-like event for a member first seen in an offer."""
    headers = (
        ("Event", "QueueMemberAdded"),
        ("Queue", queue),
        ("Interface", event.get("Interface") or ""),
        ("MemberName", event.get("MemberName") or ""),
        ("Paused", "0"),
    )
    return Event(headers=headers)
