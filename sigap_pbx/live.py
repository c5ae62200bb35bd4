"""The controller's live view of Asterisk's queues, kept from AMI events.

After every (re)connect the view is rebuilt from QueueStatus, because events missed
during a gap cannot be replayed; until then `synced` is False and the API says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sigap_pbx.calls.tracker import cap_caller_id, unescape_display_name
from sigap_pbx.wire.ami import Event

# app_queue's member status numbers (AST_DEVICE_* values).
DEVICE_STATUS = {
    "0": "unknown",
    "1": "not_in_use",
    "2": "in_use",
    "3": "busy",
    "4": "invalid",
    "5": "unavailable",
    "6": "ringing",
    "7": "ringing_in_use",
    "8": "on_hold",
}


@dataclass
class Member:
    interface: str
    name: str
    status: str = "unknown"
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    # Queue member penalty: app_queue offers a call to the lowest penalty first.
    penalty: int = 0


@dataclass
class Caller:
    uniqueid: str
    channel: str
    caller_number: str
    joined_monotonic: float
    # Caller ID name as the carrier sent it: untrusted text, escape it wherever shown.
    caller_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "uniqueid": self.uniqueid,
            "channel": self.channel,
            "caller_number": self.caller_number,
            "caller_name": self.caller_name,
            "waiting_seconds": round(time.monotonic() - self.joined_monotonic, 1),
        }


@dataclass
class QueueView:
    name: str
    members: dict[str, Member] = field(default_factory=dict)
    callers: dict[str, Caller] = field(default_factory=dict)


class LiveView:
    def __init__(self) -> None:
        self.queues: dict[str, QueueView] = {}
        self.synced = False
        self.synced_at: float | None = None

    def _queue(self, name: str) -> QueueView:
        return self.queues.setdefault(name, QueueView(name))

    def reset_from_status(self, events: list[Event]) -> None:
        """Replace the view with a QueueStatus list (QueueParams/QueueMember/QueueEntry)."""
        self.queues = {}
        for event in events:
            queue = event.get("Queue") or ""
            if event.name == "QueueParams":
                self._queue(queue)
            elif event.name == "QueueMember":
                self._member_from(event)
            elif event.name == "QueueEntry":
                wait = float(event.get("Wait") or 0)
                self._queue(queue).callers[event.get("Uniqueid") or ""] = Caller(
                    uniqueid=event.get("Uniqueid") or "",
                    channel=event.get("Channel") or "",
                    caller_number=cap_caller_id(event.get("CallerIDNum")),
                    joined_monotonic=time.monotonic() - wait,
                    caller_name=cap_caller_id(unescape_display_name(event.get("CallerIDName"))),
                )
        self.synced = True
        self.synced_at = time.time()

    def mark_unsynced(self) -> None:
        self.synced = False

    def _member_from(self, event: Event) -> Member:
        queue = self._queue(event.get("Queue") or "")
        interface = event.get("Interface") or event.get("Location") or ""
        member = queue.members.get(interface) or Member(
            interface=interface, name=event.get("MemberName") or event.get("Name") or ""
        )
        member.status = DEVICE_STATUS.get(event.get("Status") or "", member.status)
        member.paused = (event.get("Paused") or "0") == "1"
        member.paused_reason = event.get("PausedReason") or ""
        member.in_call = (event.get("InCall") or "0") == "1"
        penalty = event.get("Penalty") or ""
        if penalty.isascii() and penalty.isdigit():
            member.penalty = int(penalty)
        queue.members[interface] = member
        return member

    def on_event(self, event: Event) -> None:
        name = event.name
        if name in (
            "QueueMemberAdded",
            "QueueMemberStatus",
            "QueueMemberPause",
            "QueueMemberPenalty",
        ):
            self._member_from(event)
        elif name == "QueueMemberRemoved":
            queue = self._queue(event.get("Queue") or "")
            queue.members.pop(event.get("Interface") or "", None)
        elif name == "QueueCallerJoin":
            self._queue(event.get("Queue") or "").callers[event.get("Uniqueid") or ""] = Caller(
                uniqueid=event.get("Uniqueid") or "",
                channel=event.get("Channel") or "",
                caller_number=cap_caller_id(event.get("CallerIDNum")),
                joined_monotonic=time.monotonic(),
                caller_name=cap_caller_id(unescape_display_name(event.get("CallerIDName"))),
            )
        elif name in ("QueueCallerLeave", "QueueCallerAbandon"):
            self._queue(event.get("Queue") or "").callers.pop(event.get("Uniqueid") or "", None)

    def snapshot(self) -> dict[str, Any]:
        return {
            "synced": self.synced,
            "queues": [
                {
                    "name": queue.name,
                    # /api/live keeps its earlier member fields, without the penalty.
                    "members": [
                        {k: v for k, v in asdict(m).items() if k != "penalty"}
                        for m in queue.members.values()
                    ],
                    "callers": [c.to_dict() for c in queue.callers.values()],
                }
                for queue in sorted(self.queues.values(), key=lambda q: q.name)
            ],
        }
