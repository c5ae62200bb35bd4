"""A controller made of the real in-memory components the wallboard reads.

AMI events go through `FakeAmi.emit` to the call tracker, live view, pause
tracker, wrap-up guard and endpoint health guard in the controller's order, then
to the listeners that `attach` adds. Nothing talks to Asterisk or a database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.calls.tracker import CallTracker
from sigap_pbx.config import load_config
from sigap_pbx.live import LiveView
from sigap_pbx.members.health import EndpointHealth
from sigap_pbx.members.pauses import PauseTracker
from sigap_pbx.members.wrapup import WrapupGuard
from sigap_pbx.store.accounts import Role, UserView
from sigap_pbx.web.feed import Feed, Subscription
from sigap_pbx.wire.ami import Event

T0 = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeResponse:
    events: list[Event] = field(default_factory=list)
    action_id: str = "fake-1"


class FakeAmi:
    """Records actions and calls listeners in the order they were added."""

    def __init__(self) -> None:
        self.connected = True
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.listeners: list[Callable[[Event], None]] = []
        self.connect_listeners: list[Callable[[], Any]] = []
        self.disconnect_listeners: list[Callable[[], None]] = []

    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> FakeResponse:
        self.actions.append((name, dict(fields or {})))
        return FakeResponse()

    def add_event_listener(self, listener: Callable[[Event], None]) -> None:
        self.listeners.append(listener)

    def add_connect_listener(self, listener: Callable[[], Any]) -> None:
        self.connect_listeners.append(listener)

    def add_disconnect_listener(self, listener: Callable[[], None]) -> None:
        self.disconnect_listeners.append(listener)

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def names(self) -> list[str]:
        return [name for name, _ in self.actions]


class FakeReporter:
    """A shift reporter whose `report_now` returns `report` or raises `error`."""

    def __init__(self, report: dict[str, Any] | None = None,
                 error: Exception | None = None) -> None:
        self.report = report
        self.error = error
        self.calls = 0

    async def report_now(self) -> dict[str, Any]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


class FakeController:
    def __init__(self, reporter: FakeReporter | None = None) -> None:
        self.config = load_config(None, {})
        self.clock = FakeClock()
        self.ami = FakeAmi()
        self.live = LiveView()
        self.feed = Feed()
        self.alarms = AlarmBoard(None, self.clock)
        self.pauses = PauseTracker(None, clock=self.clock)  # type: ignore[arg-type]
        self.wrapup = WrapupGuard(self.ami, 30, self.clock)
        self.health_guard = EndpointHealth(self.ami, self.alarms)
        self.tracker = CallTracker(None)  # type: ignore[arg-type]
        self.shift_reports = reporter
        self.operator_actions = None
        self.rosters = None
        self.accounts = None
        self.tasks: list[asyncio.Task[Any]] = []
        for listener in (self.tracker.on_event, self.live.on_event, self.pauses.on_event,
                         self.wrapup.on_event, self.health_guard.on_event):
            self.ami.add_event_listener(listener)

    def _spawn(self, coro: Any, name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.wrapup.stop()


def event(name: str, *headers: tuple[str, str]) -> Event:
    return Event(headers=(("Event", name), ("Privilege", "agent,all"), *headers))


def member_event(
    name: str, endpoint: str, *, queue: str = "operators", status: str = "1",
    paused: bool = False, reason: str = "", in_call: bool = False,
) -> Event:
    interface = f"PJSIP/{endpoint}"
    return event(
        name,
        ("Queue", queue),
        ("MemberName", endpoint),
        ("Interface", interface),
        ("StateInterface", interface),
        ("Membership", "dynamic"),
        ("Penalty", "0"),
        ("InCall", "1" if in_call else "0"),
        ("Status", status),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", reason),
    )


def timestamp(when: datetime) -> str:
    return f"{when.timestamp():.6f}"


def supervisor_view(
    username: str = "spv", role: Role = Role.SUPERVISOR, endpoint: str = "spv1"
) -> UserView:
    return UserView(
        id=1, username=username, display_name=username, role=role,
        agency_code=None, endpoint=endpoint, password_hash="", disabled=False,
        created_at=T0, password_changed_at=T0,
    )


async def next_event(
    subscription: Subscription, timeout: float = 5.0, kind: str = "wallboard"
) -> Any:
    """Return the next feed event of `kind` (the timeout only ends a hang).

    Events of other kinds, such as the operator.state events that the same state
    changes publish for consoles, are skipped.
    """
    while True:
        event = await asyncio.wait_for(subscription.queue.get(), timeout)
        if event is None or event.kind == kind:
            return event
