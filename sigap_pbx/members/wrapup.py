"""Wrap-up time after each call, enforced by the controller in all of a member's queues.

Sites have reported app_queue offering a member of two queues a new call 3 s after the
last one ended, with `wrapuptime = 30` and `shared_lastcall = yes` (the Asterisk
version was not recorded). So queues.conf sets `wrapuptime = 0`, and this guard does
the job. When a member's call ends (`AgentComplete`, or the `Hangup` of the member's
channel), it records the time per interface, whatever the queue. It then pauses the
member in every queue with reason `wrapup` and unpauses it `wrapup_seconds` later.
Queues where someone else paused the member under another reason are left alone. An
`AgentCalled` for the member inside the window raises an alert, whether or not the
pause took effect.

The reason `wrapup` belongs to the controller. After a (re)connect, a member found
paused under it without a pending unpause is unpaused when its window ends, or at once
if the window is unknown. This also releases members that a stopped controller left
paused.

AMI failures are logged and never raised into the event loop. An unpause lost to a
failure is sent again at the next resync, and a lost pause is not sent again.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from sigap_pbx.ami.client import AmiError, Fields
from sigap_pbx.members.pauses import (
    Clock,
    MemberKey,
    is_paused,
    member_key,
    paused_reason,
    utc_now,
)
from sigap_pbx.wire.ami import Completion, Event

log = structlog.get_logger(__name__)

WRAPUP_REASON = "wrapup"
# Number of alerts kept in `WrapupGuard.alerts`. `alerts_total` counts every alert.
ALERT_HISTORY = 100
# Number of member channels remembered between AgentConnect and the end of the call.
LEG_MEMORY = 1000

Sleep = Callable[[float], Awaitable[None]]


class AmiActions(Protocol):
    """The part of AmiClient that the guard uses."""

    async def action(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> Completion: ...


@dataclass(frozen=True)
class WrapupAlert:
    """A call offered to a member inside its wrap-up window."""

    at: datetime
    interface: str
    queue: str
    member_name: str | None
    seconds_since_last_call: float
    # Uniqueid of the caller's channel that was offered.
    uniqueid: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "interface": self.interface,
            "queue": self.queue,
            "member_name": self.member_name,
            "seconds_since_last_call": self.seconds_since_last_call,
            "uniqueid": self.uniqueid,
        }


@dataclass
class Wrapup:
    """One member's pending wrap-up: the unpause task and when it is due."""

    interface: str
    deadline: datetime
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class MemberLeg:
    interface: str
    queue: str
    member_name: str | None


class WrapupGuard:
    """Pause members for `wrapup_seconds` after each call and alert on early offers.

    `wrapup_seconds = 0` disables the pause and the alerts. `clock` returns aware
    UTC datetimes and dates the call ends and alerts. `sleep` waits for the end of
    the window, and tests may replace it.
    """

    def __init__(
        self,
        ami: AmiActions,
        wrapup_seconds: float,
        clock: Clock = utc_now,
        *,
        sleep: Sleep = asyncio.sleep,
        action_timeout: float | None = None,
    ) -> None:
        if not math.isfinite(wrapup_seconds) or wrapup_seconds < 0:
            raise ValueError(
                f"invalid wrapup_seconds {wrapup_seconds!r}: expected a finite "
                "number of seconds >= 0 (0 disables wrap-up)"
            )
        self.ami = ami
        self.wrapup_seconds = float(wrapup_seconds)
        self.clock = clock
        self.action_timeout = action_timeout
        self.last_call_end: dict[str, datetime] = {}
        self.alerts: deque[WrapupAlert] = deque(maxlen=ALERT_HISTORY)
        self.alerts_total = 0
        self.wrapups: dict[str, Wrapup] = {}
        self._sleep = sleep
        self._queues: dict[str, set[str]] = {}
        self._pause_reasons: dict[MemberKey, str] = {}
        self._legs: OrderedDict[str, MemberLeg] = OrderedDict()
        self._ended_legs: OrderedDict[str, None] = OrderedDict()
        # Running wrap-up tasks and the interface each one pauses or unpauses.
        self._tasks: dict[asyncio.Task[None], str] = {}

    @property
    def enabled(self) -> bool:
        return self.wrapup_seconds > 0

    # Event entry point (called by the AMI client, must not block) -----------------

    def on_event(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.name}", None)
        if handler is not None:
            handler(event)

    def _on_AgentConnect(self, event: Event) -> None:
        leg_id = event.get("DestUniqueid")
        if not leg_id or leg_id in self._ended_legs:
            return
        self._legs[leg_id] = MemberLeg(
            interface=event.get("Interface") or "",
            queue=event.get("Queue") or "",
            member_name=event.get("MemberName"),
        )
        _trim(self._legs)

    def _on_AgentComplete(self, event: Event) -> None:
        leg_id = event.get("DestUniqueid") or ""
        if leg_id and leg_id in self._ended_legs:
            return
        self._legs.pop(leg_id, None)
        self._remember_ended(leg_id)
        leg = MemberLeg(
            interface=event.get("Interface") or "",
            queue=event.get("Queue") or "",
            member_name=event.get("MemberName"),
        )
        self._call_ended(leg, "AgentComplete")

    def _on_Hangup(self, event: Event) -> None:
        # The member's channel can hang up before AgentComplete arrives, so
        # whichever comes first ends the call and the other is ignored.
        leg_id = event.get("Uniqueid") or ""
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return
        self._remember_ended(leg_id)
        self._call_ended(leg, "Hangup")

    def _on_AgentCalled(self, event: Event) -> None:
        interface = event.get("Interface") or ""
        ended_at = self.last_call_end.get(interface)
        if not self.enabled or ended_at is None:
            return
        now = self.clock()
        since = max((now - ended_at).total_seconds(), 0.0)
        if since >= self.wrapup_seconds:
            return
        alert = WrapupAlert(
            at=now,
            interface=interface,
            queue=event.get("Queue") or "",
            member_name=event.get("MemberName"),
            seconds_since_last_call=since,
            uniqueid=event.get("Uniqueid"),
        )
        self.alerts.append(alert)
        self.alerts_total += 1
        log.warning(
            "wrapup_violation",
            interface=interface,
            queue=alert.queue,
            member_name=alert.member_name,
            seconds_since_last_call=round(since, 3),
            wrapup_seconds=self.wrapup_seconds,
            uniqueid=alert.uniqueid,
            alerts_total=self.alerts_total,
        )

    def _on_QueueMemberPause(self, event: Event) -> None:
        interface, queue = key = member_key(event)
        self._join(key)
        if not is_paused(event):
            self._pause_reasons.pop(key, None)
            return
        reason = paused_reason(event)
        self._pause_reasons[key] = reason
        if reason != WRAPUP_REASON and self._unpause_targets(interface) == set():
            self._cancel(interface, "paused_with_other_reason")

    def _on_QueueMemberAdded(self, event: Event) -> None:
        key = member_key(event)
        self._join(key)
        if is_paused(event):
            self._pause_reasons.setdefault(key, paused_reason(event))

    _on_QueueMemberStatus = _on_QueueMemberAdded

    def _on_QueueMemberRemoved(self, event: Event) -> None:
        interface, queue = key = member_key(event)
        self._pause_reasons.pop(key, None)
        queues = self._queues.get(interface, set())
        queues.discard(queue)
        if not queues:
            self._queues.pop(interface, None)
            self._cancel(interface, "member_logged_out")

    def reset_from_status(self, events: Iterable[Event]) -> None:
        """Rebuild queue membership and pauses from a QueueStatus list.

        Call it after every (re)connect. A member paused under `wrapup` with no
        pending unpause gets one, due when its window ends, or at once when the
        controller saw no call end for it. This happens even with wrap-up
        disabled, so that no member stays paused under the controller's reason.
        """
        self._queues = {}
        self._pause_reasons = {}
        for event in events:
            if event.name != "QueueMember":
                continue
            key = member_key(event)
            self._join(key)
            if is_paused(event):
                self._pause_reasons[key] = paused_reason(event)
        in_wrapup = {
            interface
            for (interface, _queue), reason in self._pause_reasons.items()
            if reason == WRAPUP_REASON
        }
        for interface in sorted(in_wrapup - set(self.wrapups)):
            self._resume(interface)

    # Wrap-up --------------------------------------------------------------------

    def _call_ended(self, leg: MemberLeg, cause: str) -> None:
        if not leg.interface:
            return
        now = self.clock()
        self.last_call_end[leg.interface] = now
        if not self.enabled:
            return
        self._cancel(leg.interface, "new_call_ended")
        targets = self._unpause_targets(leg.interface)
        if targets == set():
            log.info(
                "wrapup_skipped_member_paused",
                interface=leg.interface,
                queue=leg.queue,
            )
            return
        deadline = now + timedelta(seconds=self.wrapup_seconds)
        self._schedule(leg.interface, deadline, pause_first=True, pause_queues=targets)
        log.info(
            "wrapup_started",
            interface=leg.interface,
            queue=leg.queue,
            member_name=leg.member_name,
            seconds=self.wrapup_seconds,
            cause=cause,
        )

    def _resume(self, interface: str) -> None:
        now = self.clock()
        ended_at = self.last_call_end.get(interface)
        deadline = now
        if ended_at is not None:
            deadline = max(now, ended_at + timedelta(seconds=self.wrapup_seconds))
        self._schedule(interface, deadline, pause_first=False, pause_queues=None)
        log.info(
            "wrapup_resumed_after_resync",
            interface=interface,
            remaining_seconds=(deadline - now).total_seconds(),
        )

    def _schedule(
        self,
        interface: str,
        deadline: datetime,
        *,
        pause_first: bool,
        pause_queues: set[str] | None,
    ) -> None:
        wrapup = Wrapup(interface, deadline)
        self.wrapups[interface] = wrapup
        wrapup.task = self._spawn(
            self._run(wrapup, pause_first, pause_queues), interface
        )

    async def _run(
        self, wrapup: Wrapup, pause_first: bool, pause_queues: set[str] | None
    ) -> None:
        if pause_first:
            await self._send_pause(wrapup.interface, True, pause_queues)
        await self._mark_expiry(wrapup.interface, wrapup.deadline)
        delay = (wrapup.deadline - self.clock()).total_seconds()
        if delay > 0:
            await self._sleep(delay)
        if self.wrapups.get(wrapup.interface) is wrapup:
            del self.wrapups[wrapup.interface]
        await self._release(wrapup.interface, "window_ended")

    async def _release(self, interface: str, cause: str) -> None:
        await self._clear_expiry(interface)
        targets = self._unpause_targets(interface)
        if targets == set():
            log.info("wrapup_release_skipped_member_paused", interface=interface)
            return
        await self._send_pause(interface, False, targets)
        log.info("wrapup_ended", interface=interface, cause=cause)

    def _cancel(self, interface: str, cause: str) -> None:
        wrapup = self.wrapups.pop(interface, None)
        if wrapup is None or wrapup.task is None:
            return
        wrapup.task.cancel()
        # The dialplan must not lift a pause that is no longer a wrap-up.
        self._spawn(self._clear_expiry(interface), interface)
        log.info("wrapup_cancelled", interface=interface, cause=cause)

    def _unpause_targets(self, interface: str) -> set[str] | None:
        """Return the queues where the guard may pause or unpause the member.

        None means every queue, sent as one QueuePause without `Queue`. When
        someone paused the member under another reason in some queues, only the
        other known queues are returned, so that pause is left alone. An empty
        set means the member is paused under other reasons everywhere.
        """
        queues = self._queues.get(interface, set())
        other = {
            queue
            for queue in queues
            if self._pause_reasons.get((interface, queue)) not in (None, WRAPUP_REASON)
        }
        if not other:
            return None
        return queues - other

    async def _mark_expiry(self, interface: str, deadline: datetime) -> None:
        """Write the wrap-up's end into AstDB, where the dialplan can lift it alone.

        The emergency dialplan unpauses a member whose sigap/wrapup key has passed,
        so a controller that dies during a wrap-up cannot leave operators paused.
        """
        key = _expiry_key(interface)
        if key is None:
            return
        value = str(math.ceil(deadline.timestamp()))
        await self._astdb("DBPut", {"Family": EXPIRY_FAMILY, "Key": key, "Val": value})

    async def _clear_expiry(self, interface: str) -> None:
        key = _expiry_key(interface)
        if key is not None:
            await self._astdb("DBDel", {"Family": EXPIRY_FAMILY, "Key": key})

    async def _astdb(self, action: str, fields: dict[str, str]) -> None:
        try:
            await self.ami.action(action, fields, timeout=self.action_timeout)
        except AmiError as exc:
            # DBDel of a key that is not there fails too, which is harmless.
            log.debug("wrapup_astdb_failed", action=action, key=fields["Key"], error=str(exc))

    async def _send_pause(
        self, interface: str, paused: bool, queues: set[str] | None
    ) -> None:
        fields = {"Interface": interface, "Paused": "true" if paused else "false"}
        if paused:
            fields["Reason"] = WRAPUP_REASON
        # Without a Queue header, QueuePause applies to every queue of the member.
        queue_headers = (
            [{}] if queues is None else [{"Queue": q} for q in sorted(queues)]
        )
        for queue_header in queue_headers:
            action = {**fields, **queue_header}
            try:
                await self.ami.action("QueuePause", action, timeout=self.action_timeout)
            except AmiError as exc:
                log.error(
                    "wrapup_queue_pause_failed",
                    interface=interface,
                    queue=queue_header.get("Queue"),
                    paused=paused,
                    error=f"{type(exc).__name__}: {exc}",
                )

    # Membership and bookkeeping -------------------------------------------------

    def _join(self, key: MemberKey) -> None:
        interface, queue = key
        if interface and queue:
            self._queues.setdefault(interface, set()).add(queue)

    def _remember_ended(self, leg_id: str) -> None:
        if leg_id:
            self._ended_legs[leg_id] = None
            _trim(self._ended_legs)

    def _spawn(
        self, coroutine: Coroutine[Any, Any, None], interface: str
    ) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=f"wrapup-{interface}")
        self._tasks[task] = interface
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("wrapup_task_failed", task=task.get_name(), exc_info=error)

    def alerts_snapshot(self) -> list[dict[str, Any]]:
        """Return the kept alerts as JSON-ready dicts, oldest first."""
        return [alert.to_dict() for alert in self.alerts]

    async def stop(self) -> None:
        """Cancel every pending wrap-up and unpause its member at once.

        Call it before the AMI client stops, so that no member stays paused
        under `wrapup` while the controller is down.
        """
        pending = set(self.wrapups) | set(self._tasks.values())
        self.wrapups.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for interface in sorted(pending):
            await self._release(interface, "controller_stopping")


def _trim(items: OrderedDict[str, Any]) -> None:
    while len(items) > LEG_MEMORY:
        items.popitem(last=False)


EXPIRY_FAMILY = "sigap/wrapup"
_PJSIP_INTERFACE = re.compile(r"^PJSIP/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")


def _expiry_key(interface: str) -> str | None:
    """Return the AstDB key of a PJSIP member (`PJSIP/op1` -> `op1`), else None."""
    match = _PJSIP_INTERFACE.match(interface)
    return match.group(1) if match else None
