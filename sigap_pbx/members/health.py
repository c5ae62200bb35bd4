"""Endpoint health: pause queue members whose phone is unreachable, and alarm.

A member's phone counts as unreachable when app_queue reports its device state as
unavailable (5) or invalid (4), or when PJSIP reports that the endpoint's contacts
are all unreachable or gone (`ContactStatus` Unreachable or Removed). PJSIP turns
such an endpoint's device state to unavailable shortly after, so both signals
usually agree. The contact signal can come first.

While the phone is unreachable the member is paused with reason `unreachable` in
every queue where it is not paused already, and an `endpoint_unreachable` alarm
is active. If someone unpauses the member meanwhile, it is paused again. When the
phone is back, the member is unpaused in the queues where its reason is still
`unreachable`, so a pause that an operator or another guard set (`prayer`,
`wrapup`, `missed_calls`) is never lifted or replaced here.

Nothing is debounced on the way down: the first event that shows the phone
unreachable pauses the member, because a 112 caller must not ring a dead phone
for the whole ring time. The way up is not debounced either. NOTE: a phone that
flaps raises and clears one alarm per flap.

AMI failures are logged and never raised into the event loop. A failed action is
sent again at the member's next event, or at the next resync.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.ami.client import AmiError
from sigap_pbx.members.pauses import is_paused, member_key, paused_reason
from sigap_pbx.members.wrapup import AmiActions
from sigap_pbx.wire.ami import Event

log = structlog.get_logger(__name__)

UNREACHABLE_REASON = "unreachable"
ALARM_KIND = "endpoint_unreachable"

# app_queue device states that mean the phone cannot take a call at all.
DEVICE_INVALID = "4"
DEVICE_UNAVAILABLE = "5"
DOWN_DEVICE_STATES = {DEVICE_INVALID: "invalid", DEVICE_UNAVAILABLE: "unavailable"}
# ContactStatus value of a contact that failed its qualify (OPTIONS) check. Asterisk
# 22 also sends Reachable, NonQualified, Unknown, Created and Updated, which all
# mean the contact is registered, and Removed, which drops it.
CONTACT_UNREACHABLE = "Unreachable"
CONTACT_REMOVED = "Removed"

MEMBER_EVENTS = frozenset(
    {"QueueMemberAdded", "QueueMemberStatus", "QueueMemberPause", "QueueMemberPenalty"}
)
_PJSIP_INTERFACE = re.compile(r"^PJSIP/([^/@;]+)$")


def pjsip_endpoint(interface: str) -> str | None:
    """Return the endpoint of a PJSIP interface (`PJSIP/op1` -> `op1`), else None."""
    match = _PJSIP_INTERFACE.match(interface)
    return match.group(1) if match else None


# Queue membership ------------------------------------------------------------------


@dataclass
class MemberState:
    """One queue member as the guards see it, across all of its queues."""

    interface: str
    name: str
    # PJSIP endpoint of the state interface, or None for other technologies.
    endpoint: str | None
    device_status: str = "0"
    # Pause reason per queue, None where the member is not paused.
    pauses: dict[str, str | None] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """Return the alarm subject: the endpoint, or the interface without one."""
        return self.endpoint or self.interface

    def queues_where(self, predicate: Callable[[str | None], bool]) -> list[str]:
        return sorted(queue for queue, reason in self.pauses.items() if predicate(reason))

    def pause_targets(self, queues: list[str]) -> list[str] | None:
        """Return `queues` as QueuePause targets, or None when they are all queues.

        None sends one QueuePause without a `Queue` header, which Asterisk
        applies to every queue of the member.
        """
        return None if set(queues) == set(self.pauses) else queues


class QueueMembership:
    """Queues, pause reasons and device state of each member, kept from AMI events."""

    def __init__(self) -> None:
        self.members: dict[str, MemberState] = {}

    def on_event(self, event: Event) -> MemberState | None:
        """Apply a queue member event and return the member it changed, if any.

        After a `QueueMemberRemoved` for the member's last queue, the member is
        forgotten and returned with no queues left.
        """
        if event.name in MEMBER_EVENTS or event.name == "QueueMember":
            return self._apply(event)
        if event.name == "QueueMemberRemoved":
            interface, queue = member_key(event)
            member = self.members.get(interface)
            if member is None:
                return None
            member.pauses.pop(queue, None)
            if not member.pauses:
                del self.members[interface]
            return member
        return None

    def reset_from_status(self, events: Iterable[Event]) -> None:
        """Replace every member with the `QueueMember` entries of a QueueStatus list."""
        self.members = {}
        for event in events:
            if event.name == "QueueMember":
                self._apply(event)

    def with_endpoint(self, endpoint: str) -> list[MemberState]:
        return [member for member in self.members.values() if member.endpoint == endpoint]

    def _apply(self, event: Event) -> MemberState | None:
        interface, queue = member_key(event)
        if not interface or not queue:
            return None
        member = self.members.get(interface)
        if member is None:
            state_interface = event.get("StateInterface") or interface
            member = MemberState(
                interface=interface,
                name=event.get("MemberName") or event.get("Name") or interface,
                endpoint=pjsip_endpoint(state_interface) or pjsip_endpoint(interface),
            )
            self.members[interface] = member
        status = event.get("Status")
        if status:
            member.device_status = status
        member.pauses[queue] = paused_reason(event) if is_paused(event) else None
        return member


async def send_queue_pause(
    ami: AmiActions,
    interface: str,
    *,
    paused: bool,
    reason: str,
    queues: list[str] | None,
    timeout: float | None,
) -> bool:
    """Send QueuePause for one member, and return whether every action succeeded.

    `queues` None sends one action without `Queue`, for all of the member's
    queues. `reason` goes with a pause only. Failures are logged, not raised.
    """
    fields = {"Interface": interface, "Paused": "true" if paused else "false"}
    if paused:
        fields["Reason"] = reason
    headers: list[dict[str, str]] = (
        [{}] if queues is None else [{"Queue": queue} for queue in queues]
    )
    succeeded = True
    for header in headers:
        try:
            await ami.action("QueuePause", {**fields, **header}, timeout=timeout)
        except AmiError as exc:
            succeeded = False
            log.error(
                "queue_pause_failed",
                interface=interface,
                queue=header.get("Queue"),
                paused=paused,
                reason=reason,
                error=f"{type(exc).__name__}: {exc}",
            )
    return succeeded


# The guard ----------------------------------------------------------------------------


class EndpointHealth:
    """Pause members whose phone is unreachable, unpause them when it is back.

    `on_event` and `reset_from_status` must be called from the event loop.
    `action_timeout` is passed to each AMI action (None uses the client's own).
    """

    def __init__(
        self,
        ami: AmiActions,
        alarms: AlarmBoard,
        *,
        action_timeout: float | None = None,
    ) -> None:
        self.ami = ami
        self.alarms = alarms
        self.action_timeout = action_timeout
        self.membership = QueueMembership()
        # Status of each contact URI per endpoint, from ContactStatus events.
        # An endpoint with no entry has not been heard of since the last resync.
        self.contacts: dict[str, dict[str, str]] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Members whose state changed while an action for them was in flight.
        self._dirty: set[str] = set()

    # Event entry point (called by the AMI client, must not block) -----------------

    def on_event(self, event: Event) -> None:
        if event.name == "ContactStatus":
            self._on_contact_status(event)
            return
        member = self.membership.on_event(event)
        if member is None:
            return
        if not member.pauses:
            self.alarms.clear(ALARM_KIND, member.subject, "member_removed")
            return
        self._reconcile(member)

    def _on_contact_status(self, event: Event) -> None:
        endpoint = event.get("EndpointName") or ""
        uri = event.get("URI") or ""
        status = event.get("ContactStatus") or ""
        if not endpoint or not uri or not status:
            return
        contacts = self.contacts.setdefault(endpoint, {})
        if status == CONTACT_REMOVED:
            contacts.pop(uri, None)
        else:
            contacts[uri] = status
        for member in self.membership.with_endpoint(endpoint):
            self._reconcile(member)

    def reset_from_status(self, events: Iterable[Event]) -> None:
        """Bring pauses and alarms in line with a QueueStatus list after a (re)connect.

        Contact states heard before the gap may be stale, so they are dropped, and
        the device state in the list decides until the next ContactStatus. A
        member paused under `unreachable` whose phone is fine is unpaused, which
        also lifts pauses that a stopped controller left. The list must cover
        every queue, as QueueStatus without a `Queue` header does.
        """
        self.membership.reset_from_status(events)
        self.contacts = {}
        down_subjects = set()
        for member in self.membership.members.values():
            self._reconcile(member)
            if self.unreachable_cause(member) is not None:
                down_subjects.add(member.subject)
        for record in self.alarms.active(ALARM_KIND):
            if record.subject not in down_subjects:
                self.alarms.clear(ALARM_KIND, record.subject, "queue_status")

    # Decisions -----------------------------------------------------------------------

    def unreachable_cause(self, member: MemberState) -> str | None:
        """Return why the member's phone is unreachable, or None when it is not."""
        device = DOWN_DEVICE_STATES.get(member.device_status)
        if device is not None:
            return f"device state {device}"
        if member.endpoint is None or member.endpoint not in self.contacts:
            return None
        statuses = self.contacts[member.endpoint].values()
        if not statuses:
            return "no SIP contact registered"
        if all(status == CONTACT_UNREACHABLE for status in statuses):
            return "SIP contact unreachable"
        return None

    def _reconcile(self, member: MemberState) -> None:
        cause = self.unreachable_cause(member)
        self._update_alarm(member, cause)
        if member.interface in self._inflight:
            self._dirty.add(member.interface)
            return
        if cause is not None:
            queues = member.queues_where(lambda reason: reason is None)
        else:
            queues = member.queues_where(lambda reason: reason == UNREACHABLE_REASON)
        if not queues:
            return
        paused = cause is not None
        if paused:
            log.warning(
                "member_unreachable_pausing",
                interface=member.interface,
                endpoint=member.endpoint,
                cause=cause,
                queues=queues,
            )
        else:
            log.info("member_reachable_unpausing", interface=member.interface, queues=queues)
        self._spawn(member.interface, self._send(member, paused, queues))

    def _update_alarm(self, member: MemberState, cause: str | None) -> None:
        if cause is None:
            self.alarms.clear(ALARM_KIND, member.subject, "reachable")
            return
        other_pauses = sorted(
            {reason for reason in member.pauses.values() if reason not in (None, UNREACHABLE_REASON)}
        )
        # Members that the roster adds have their endpoint as MemberName.
        phone = member.subject
        if member.name and member.name != phone:
            phone = f"{phone} of {member.name}"
        message = (
            f"Phone {phone} is unreachable ({cause}); "
            "calls skip this member until the phone is back"
        )
        self.alarms.raise_alarm(
            ALARM_KIND,
            member.subject,
            message,
            detail={
                "interface": member.interface,
                "member_name": member.name,
                "cause": cause,
                "queues": sorted(member.pauses),
                "other_pause_reasons": other_pauses,
            },
        )

    # Actions ---------------------------------------------------------------------------

    async def _send(self, member: MemberState, paused: bool, queues: list[str]) -> None:
        targets = member.pause_targets(queues)
        succeeded = await send_queue_pause(
            self.ami,
            member.interface,
            paused=paused,
            reason=UNREACHABLE_REASON,
            queues=targets,
            timeout=self.action_timeout,
        )
        if not succeeded:
            return
        # Asterisk sends the QueueMemberPause events after the action's response, so
        # the member is marked now, or the next event for it would send again.
        before, after = (None, UNREACHABLE_REASON) if paused else (UNREACHABLE_REASON, None)
        for queue in queues:
            if queue in member.pauses and member.pauses[queue] == before:
                member.pauses[queue] = after

    def _spawn(self, interface: str, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine, name=f"endpoint-health-{interface}")
        self._inflight[interface] = task
        task.add_done_callback(lambda done: self._task_done(interface, done))

    def _task_done(self, interface: str, task: asyncio.Task[None]) -> None:
        if self._inflight.get(interface) is task:
            del self._inflight[interface]
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "endpoint_health_task_failed", interface=interface, exc_info=task.exception()
            )
        if interface in self._dirty:
            self._dirty.discard(interface)
            member = self.membership.members.get(interface)
            if member is not None and not task.cancelled():
                self._reconcile(member)

    def unreachable(self) -> list[dict[str, Any]]:
        """Return the members whose phone is unreachable now, as JSON-ready dicts."""
        result = []
        for member in sorted(self.membership.members.values(), key=lambda m: m.interface):
            cause = self.unreachable_cause(member)
            if cause is not None:
                result.append(
                    {"interface": member.interface, "endpoint": member.endpoint, "cause": cause}
                )
        return result

    async def stop(self) -> None:
        """Cancel actions in flight and lift every `unreachable` pause.

        Call it before the AMI client stops. While the controller is down, nobody
        could unpause a member whose phone comes back, so the pause goes now, and
        the next start pauses the member again if the phone is still down.
        NOTE: meanwhile only Asterisk keeps calls from a dead phone. This assumes
        that app_queue skips a member in device state unavailable when
        `ringinuse = no` (queues.conf), which no test here checks.
        """
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._dirty.clear()
        for member in list(self.membership.members.values()):
            queues = member.queues_where(lambda reason: reason == UNREACHABLE_REASON)
            if queues:
                await self._send(member, False, queues)
                log.info("member_unpaused_controller_stopping", interface=member.interface)
