"""Queue membership that follows the roster: who is in the operators' queues, when.

The controller compares the members of the primary and backup queues with the
roster every few seconds and after every AMI (re)connect:

- Everyone the roster puts on the shift in force is added (QueueAdd) with the
  penalty of their role. The incoming crew is added `overlap` seconds before its
  shift starts.
- At a shift boundary, every member of the two queues that the new shift does not
  place is removed. A member on a call is removed when the call ends, so no call
  is cut off. The boundary counts as done only when the last of them has left.
- Between boundaries nobody is removed except by their own log out. A member
  added by hand (the Asterisk CLI, another AMI client) therefore stays until the
  end of the shift in force, and then leaves with it.
- An operator's log in or log out (feature code, API or the dialplan's own
  fallback) is stored as a duty override, and holds for the rest of that shift,
  across restarts of the controller and of Asterisk.

Nothing here is on a caller's path: Asterisk keeps its members whatever happens to
this process, and queues with nobody in them send callers down the overflow chain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog

from sigap_pbx.ami.client import AmiActionFailed, AmiError
from sigap_pbx.live import LiveView
from sigap_pbx.roster.model import Role, Roster, RosterError
from sigap_pbx.roster.schedule import PENALTIES, boundaries, on_duty, shift_at
from sigap_pbx.wire.ami import Event
from sigap_pbx.wire.dialstring import pjsip_interface, validate_endpoint
from sigap_pbx.wire.errors import DialStringError

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# Penalties in the backup queue, which callers reach after waiting in the primary
# queue. Operators are not in it: they are already being rung in the primary queue.
BACKUP_QUEUE_PENALTIES = {Role.BACKUP: 0, Role.SUPERVISOR: PENALTIES[Role.SUPERVISOR]}

# AstDB key of the last shift whose boundary was completed, as "YYYY-MM-DD/name".
# It survives a controller restart, so a boundary passed while the controller was
# down is still carried out when it comes back.
APPLIED_SHIFT_KEY = ("sigap/roster", "applied_shift")
# AstDB family where the dialplan records a log in or log out it did without the
# controller, as "<action>,<epoch>" under the endpoint.
FALLBACK_FAMILY = "sigap/fallback"

# app_queue's replies when the member is already in, or already out of, the queue.
ALREADY_MEMBER = "already there"
NOT_MEMBER = "not there"

BUSY_STATUSES = frozenset({"in_use", "busy", "on_hold", "ringing_in_use"})


class AmiActions(Protocol):
    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> Any: ...


@dataclass(frozen=True, order=True)
class ShiftKey:
    shift_date: date
    shift_name: str

    def __str__(self) -> str:
        return f"{self.shift_date.isoformat()}/{self.shift_name}"

    @classmethod
    def parse(cls, text: str) -> ShiftKey | None:
        day, _, name = text.partition("/")
        try:
            return cls(date.fromisoformat(day), name) if name else None
        except ValueError:
            return None


@dataclass(frozen=True)
class Override:
    """An operator's own log in or log out during one shift."""

    endpoint: str
    action: str  # "login" or "logout"
    at: datetime


@dataclass(frozen=True)
class Placement:
    queue: str
    endpoint: str
    penalty: int
    # "roster" for a rostered duty, "login" for an operator's own log in.
    cause: str


@dataclass
class MemberState:
    queue: str
    endpoint: str
    interface: str
    busy: bool
    penalty: int | None


class OverrideStore(Protocol):
    async def list_overrides(self, key: ShiftKey) -> list[Override]: ...

    async def add_override(
        self, key: ShiftKey, override: Override, *, actor: str, source: str
    ) -> None: ...


Audit = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
RosterProvider = Callable[[], Awaitable[tuple[int, Roster] | None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


def effective_overrides(overrides: Iterable[Override]) -> dict[str, Override]:
    """Return the latest override of each endpoint."""
    latest: dict[str, Override] = {}
    for override in sorted(overrides, key=lambda item: item.at):
        latest[override.endpoint] = override
    return latest


def shifts_in_force(
    roster: Roster, now: datetime, zone: ZoneInfo, overlap: timedelta
) -> tuple[ShiftKey, list[ShiftKey]]:
    """Return the shift in force and every shift whose crew belongs in the queues now.

    The second list is the shift in force, followed by the next shift when it
    starts within `overlap`.
    """
    shift_date, shift = shift_at(roster.rotation, now, zone)
    current = ShiftKey(shift_date, shift.name)
    keys = [current]
    if overlap > timedelta(0):
        tiny = timedelta(microseconds=1)
        for start in boundaries(roster.rotation, now + tiny, now + overlap + tiny, zone):
            keys.append(ShiftKey(start.shift_date, start.shift.name))
    return current, keys


def previous_shift(roster: Roster, current: ShiftKey, zone: ZoneInfo) -> ShiftKey:
    from sigap_pbx.roster.schedule import shift_window

    start, _ = shift_window(roster.rotation.pattern, current.shift_name, current.shift_date, zone)
    shift_date, shift = shift_at(roster.rotation, start - timedelta(seconds=1), zone)
    return ShiftKey(shift_date, shift.name)


def placements_for_shift(
    roster: Roster,
    key: ShiftKey,
    overrides: Iterable[Override],
    primary_queue: str,
    backup_queue: str,
) -> dict[tuple[str, str], Placement]:
    """Return where the roster and the operators' own overrides put everyone in a shift."""
    placements: dict[tuple[str, str], Placement] = {}
    duties = on_duty(
        roster.rotation, roster.operators, roster.exceptions, key.shift_date, key.shift_name
    )
    for duty in duties:
        placements[(primary_queue, duty.endpoint)] = Placement(
            primary_queue, duty.endpoint, duty.penalty, "roster"
        )
        backup_penalty = BACKUP_QUEUE_PENALTIES.get(duty.role)
        if backup_penalty is not None:
            placements[(backup_queue, duty.endpoint)] = Placement(
                backup_queue, duty.endpoint, backup_penalty, "roster"
            )
    for endpoint, override in effective_overrides(overrides).items():
        if override.action == "logout":
            for queue in (primary_queue, backup_queue):
                placements.pop((queue, endpoint), None)
        elif (primary_queue, endpoint) not in placements:
            operator = roster.operator(endpoint)
            penalty = PENALTIES[operator.role] if operator is not None else 0
            placements[(primary_queue, endpoint)] = Placement(
                primary_queue, endpoint, penalty, "login"
            )
    return placements


@dataclass
class Plan:
    """The queue changes one reconciliation makes."""

    shift: ShiftKey | None = None
    add: list[Placement] = field(default_factory=list)
    remove: list[MemberState] = field(default_factory=list)
    deferred: list[MemberState] = field(default_factory=list)
    penalty: list[Placement] = field(default_factory=list)
    boundary: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "shift": str(self.shift) if self.shift else None,
            "boundary": self.boundary,
            "add": [f"{p.queue}:{p.endpoint}" for p in self.add],
            "remove": [f"{m.queue}:{m.endpoint}" for m in self.remove],
            "deferred": [f"{m.queue}:{m.endpoint}" for m in self.deferred],
            "penalty": [f"{p.queue}:{p.endpoint}={p.penalty}" for p in self.penalty],
        }


def endpoint_of(interface: str) -> str | None:
    prefix, _, rest = interface.partition("/")
    if prefix.upper() != "PJSIP" or not rest:
        return None
    return rest


class MembershipManager:
    """Keeps the primary and backup queues in step with the roster."""

    def __init__(
        self,
        ami: AmiActions,
        live: LiveView,
        roster_provider: RosterProvider,
        overrides: OverrideStore,
        *,
        primary_queue: str,
        backup_queue: str,
        zone: ZoneInfo,
        overlap_seconds: int,
        audit: Audit | None = None,
        clock: Clock = utc_now,
        action_timeout: float = 5.0,
    ) -> None:
        self.ami = ami
        self.live = live
        self.roster_provider = roster_provider
        self.overrides = overrides
        self.primary_queue = primary_queue
        self.backup_queue = backup_queue
        self.zone = zone
        self.overlap = timedelta(seconds=overlap_seconds)
        self.audit = audit
        self.clock = clock
        self.action_timeout = action_timeout
        self.applied: ShiftKey | None = None
        # The value of `applied` in AstDB, which lags it after a renaming edit.
        self._stored_applied: ShiftKey | None = None
        self.leaving: set[tuple[str, str]] = set()
        # The shift whose boundary `leaving` was computed for, and the slots the
        # previous pass wanted filled.
        self._leaving_for: ShiftKey | None = None
        self._desired_last: set[tuple[str, str]] = set()
        # The roster of the last pass, and shifts renamed by an edit: new key -> old key.
        self._previous_roster: Roster | None = None
        self._aliases: dict[ShiftKey, ShiftKey] = {}
        self.last_plan: Plan | None = None
        self.last_error: str | None = None
        self.roster_version: int | None = None
        # The roster read by the last pass, for readers that must not wait on the
        # database (the coverage guard's shift minimum).
        self.roster: Roster | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        # Queue changes this manager sent and whose member event has not come back,
        # as (event name, queue, interface). Other member events are someone else's.
        self._own: dict[tuple[str, str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # When the Asterisk of the last AMI session started, and the members of the
        # primary queue when that session ended (endpoint -> penalty).
        self._asterisk_started: str | None = None
        self._members_at_gap: dict[str, int] = {}

    @property
    def managed_queues(self) -> tuple[str, str]:
        return (self.primary_queue, self.backup_queue)

    # Reconciliation -----------------------------------------------------------------

    async def run(self, interval: float) -> None:
        """Reconcile every `interval` seconds, and at once when woken."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            self._wake.clear()
            try:
                await self.reconcile("periodic")
            except asyncio.CancelledError:
                raise
            except AmiError as exc:
                log.warning("membership_reconcile_failed", error=str(exc))
            except Exception:
                log.exception("membership_reconcile_failed")

    def wake(self) -> None:
        self._wake.set()

    async def on_session(self) -> None:
        """Read the AstDB state after an AMI login, then reconcile."""
        started = await self._startup_time()
        restarted = (
            started is not None
            and self._asterisk_started is not None
            and started != self._asterisk_started
        )
        if started is not None:
            self._asterisk_started = started
        await self._load_applied()
        await self._import_fallbacks()
        await self.reconcile("ami_session")
        if restarted and self.roster is None:
            await self._restore_members()

    def remember_members(self) -> None:
        """Note the primary queue's members as an AMI session ends."""
        queue = self.live.queues.get(self.primary_queue)
        if queue is None or not self.live.synced:
            return
        self._members_at_gap = {
            interface.removeprefix("PJSIP/"): member.penalty
            for interface, member in queue.members.items()
            if interface.startswith("PJSIP/")
        }

    async def _restore_members(self) -> None:
        """Add back the members Asterisk lost in a restart, when no roster lists them.

        With a roster, its shift and the stored log-ins put members back. Without
        one, the operators who had logged in with a feature code would otherwise be
        gone, and callers would go straight down the overflow chain.
        """
        queue = self.live.queues.get(self.primary_queue)
        present = set(queue.members) if queue is not None else set()
        restored = []
        for endpoint, penalty in sorted(self._members_at_gap.items()):
            if pjsip_interface(endpoint) in present:
                continue
            try:
                await self._queue_add(self.primary_queue, endpoint, penalty)
            except AmiError as exc:
                log.warning("member_restore_failed", endpoint=endpoint, error=str(exc))
                continue
            restored.append(endpoint)
        self._members_at_gap = {}
        if restored:
            log.warning("members_restored_after_asterisk_restart", queue=self.primary_queue,
                        endpoints=restored)

    async def _startup_time(self) -> str | None:
        """Return when the Asterisk now connected started, or None if it cannot tell."""
        try:
            reply = await self.ami.action("CoreStatus", {}, timeout=self.action_timeout)
        except AmiError as exc:
            log.warning("asterisk_start_time_unknown", error=str(exc))
            return None
        response = getattr(reply, "response", None)
        if response is None:
            return None
        day, time_of_day = response.get("CoreStartupDate"), response.get("CoreStartupTime")
        if not day or not time_of_day:
            return None
        return f"{day} {time_of_day}"

    async def reconcile(self, reason: str) -> Plan | None:
        """Compare the queues with the roster and send the changes. None without a roster."""
        async with self._lock:
            if not self.live.synced:
                return None
            loaded = await self.roster_provider()
            if loaded is None:
                self.roster_version = None
                self.roster = None
                return None
            version, roster = loaded
            self.roster_version = version
            self.roster = roster
            now = self.clock()
            try:
                plan = await self._plan(roster, now)
            except RosterError as exc:
                # Keep every member where they are: a roster that cannot be read
                # must not empty the queues.
                self.last_error = str(exc)
                log.error("membership_roster_invalid", error=str(exc), version=version)
                return None
            self.last_error = None
            await self._apply(plan)
            self.last_plan = plan
            if plan.add or plan.remove or plan.penalty or plan.boundary:
                log.info("membership_reconciled", reason=reason, version=version, **plan.to_dict())
            return plan

    def _follow_edit(self, roster: Roster, now: datetime, current: ShiftKey) -> None:
        """Treat a saved edit that renames or re-times the shift in force as no boundary.

        The previous roster tells whether time or the edit moved the shift in force:
        if the previous roster still puts `applied` in force now, only the edit did.
        The old shift's overrides then keep holding under the new name.
        """
        previous = self._previous_roster
        self._previous_roster = roster
        if previous is None or previous is roster or self.applied in (None, current):
            return
        try:
            shift_date, shift = shift_at(previous.rotation, now, self.zone)
        except RosterError:
            return
        if ShiftKey(shift_date, shift.name) != self.applied:
            return
        log.info("shift_in_force_renamed", old=str(self.applied), new=str(current))
        self._aliases[current] = self.applied
        self.applied = current
        self._leaving_for = current

    async def _plan(self, roster: Roster, now: datetime) -> Plan:
        current, keys = shifts_in_force(roster, now, self.zone, self.overlap)
        # NOTE: a controller restarted after such an edit has no previous roster, so
        # it carries out the boundary and the old name's overrides no longer apply.
        self._follow_edit(roster, now, current)
        desired: dict[tuple[str, str], Placement] = {}
        for key in keys:
            overrides = await self.overrides.list_overrides(key)
            alias = self._aliases.get(key)
            if alias is not None:
                overrides = [*await self.overrides.list_overrides(alias), *overrides]
            for slot, placement in placements_for_shift(
                roster, key, overrides, self.primary_queue, self.backup_queue
            ).items():
                desired.setdefault(slot, placement)

        actual = self._actual()
        plan = Plan(shift=current)
        for slot, placement in desired.items():
            member = actual.get(slot)
            if member is None:
                plan.add.append(placement)
            elif placement.cause == "roster" and member.penalty not in (None, placement.penalty):
                plan.penalty.append(placement)

        if self.applied is None:
            # The first pass with a roster (or with an AstDB that lost the key) is
            # no boundary: members already in the queues stay until the shift ends.
            self._leaving_for = current
            log.info("roster_activated", shift=str(current))
        elif self.applied != current and self._leaving_for != current:
            plan.boundary = True
            self._leaving_for = current
            self.leaving = {slot for slot in actual if slot not in desired}
        # A roster edit or override that takes someone off the shift in force.
        self.leaving |= {slot for slot in self._desired_last if slot not in desired}
        self._desired_last = set(desired)
        self.leaving = {slot for slot in self.leaving if slot in actual and slot not in desired}
        for slot in sorted(self.leaving):
            member = actual[slot]
            (plan.deferred if member.busy else plan.remove).append(member)
        return plan

    def _actual(self) -> dict[tuple[str, str], MemberState]:
        actual: dict[tuple[str, str], MemberState] = {}
        for queue_name in self.managed_queues:
            queue = self.live.queues.get(queue_name)
            if queue is None:
                continue
            for interface, member in queue.members.items():
                endpoint = endpoint_of(interface)
                if endpoint is None:
                    continue
                actual[(queue_name, endpoint)] = MemberState(
                    queue=queue_name,
                    endpoint=endpoint,
                    interface=interface,
                    busy=member.in_call or member.status in BUSY_STATUSES,
                    penalty=getattr(member, "penalty", None),
                )
        return actual

    async def _apply(self, plan: Plan) -> None:
        for placement in plan.add:
            await self._queue_add(placement.queue, placement.endpoint, placement.penalty)
        for placement in plan.penalty:
            await self._send(
                "QueuePenalty",
                {
                    "Queue": placement.queue,
                    "Interface": pjsip_interface(placement.endpoint),
                    "Penalty": str(placement.penalty),
                },
            )
        for member in plan.remove:
            await self._queue_remove(member.queue, member.endpoint)
            self.leaving.discard((member.queue, member.endpoint))
        for member in plan.deferred:
            log.info("membership_removal_deferred", queue=member.queue, endpoint=member.endpoint,
                     cause="on a call")
        if plan.shift is not None and not self.leaving and (
            self.applied != plan.shift or self._stored_applied != plan.shift
        ):
            await self._store_applied(plan.shift)

    # Operator actions ---------------------------------------------------------------

    async def operator_action(
        self, endpoint: str, action: str, *, actor: str, source: str
    ) -> str:
        """Log an operator in or out for the rest of their shift; return "ok" or "error".

        Without a roster the queue change is made and audited, and no override is
        stored because there is no shift to hold it.
        """
        endpoint = validate_endpoint(endpoint, field="endpoint")
        if action not in ("login", "logout"):
            raise ValueError(f"action {action!r} is invalid, use login or logout")
        now = self.clock()
        key = await self._override_key(endpoint, now)
        if key is not None:
            await self.overrides.add_override(
                key, Override(endpoint, action, now), actor=actor, source=source
            )
        result = "ok"
        try:
            if action == "login":
                penalty = await self._login_penalty(endpoint)
                await self._queue_add(self.primary_queue, endpoint, penalty)
            else:
                for queue in self.managed_queues:
                    await self._queue_remove(queue, endpoint)
                    self.leaving.discard((queue, endpoint))
        except AmiError as exc:
            log.error("operator_queue_change_failed", endpoint=endpoint, action=action,
                      error=str(exc))
            result = "error"
        await self._audit(actor, f"member.{action}", endpoint,
                          {"source": source, "shift": str(key) if key else None, "result": result})
        log.info("operator_action", endpoint=endpoint, action=action, actor=actor,
                 source=source, shift=str(key) if key else None, result=result)
        return result

    async def _login_penalty(self, endpoint: str) -> int:
        loaded = await self.roster_provider()
        if loaded is not None:
            operator = loaded[1].operator(endpoint)
            if operator is not None:
                return PENALTIES[operator.role]
        return 0

    async def _override_key(self, endpoint: str, now: datetime) -> ShiftKey | None:
        """Return the shift an override of `endpoint` belongs to.

        That is the shift in force, unless the endpoint is only on the incoming
        shift of a handover overlap.
        """
        loaded = await self.roster_provider()
        if loaded is None:
            return None
        roster = loaded[1]
        try:
            current, keys = shifts_in_force(roster, now, self.zone, self.overlap)
            for key in keys[1:]:
                duties = on_duty(roster.rotation, roster.operators, roster.exceptions,
                                 key.shift_date, key.shift_name)
                current_duties = on_duty(roster.rotation, roster.operators, roster.exceptions,
                                         current.shift_date, current.shift_name)
                on_next = any(d.endpoint == endpoint for d in duties)
                on_current = any(d.endpoint == endpoint for d in current_duties)
                if on_next and not on_current:
                    return key
        except RosterError as exc:
            log.error("membership_roster_invalid", error=str(exc))
            return None
        return current

    # AMI events ---------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        name = event.name
        if name in ("QueueMemberAdded", "QueueMemberRemoved"):
            self._on_member_change(event)
        elif name == "UserEvent" and event.get("UserEvent") == "SigapFeatureFallback":
            self._on_fallback(event)
        elif name in ("AgentComplete", "QueueMemberStatus") and self.leaving:
            # A member kept for its call may be free to leave now.
            self.wake()

    def _on_member_change(self, event: Event) -> None:
        queue = event.get("Queue") or ""
        interface = event.get("Interface") or ""
        own = (event.name, queue, interface)
        if self._own.get(own):
            self._own[own] -= 1
            if not self._own[own]:
                del self._own[own]
            return
        if queue not in self.managed_queues:
            return
        endpoint = endpoint_of(interface)
        if endpoint is None:
            return
        action = "login" if event.name == "QueueMemberAdded" else "logout"
        log.info("member_changed_outside_controller", queue=queue, endpoint=endpoint,
                 action=action)
        if action == "logout":
            # Someone took a member out by hand: keep it out for the shift instead
            # of adding it back on the next pass.
            self._spawn(self._record_foreign(endpoint, "logout", "asterisk", "asterisk"))

    def _on_fallback(self, event: Event) -> None:
        endpoint = event.get("Endpoint") or ""
        action = event.get("Action") or ""
        if action not in ("login", "logout") or not endpoint:
            return
        self._spawn(self._record_foreign(endpoint, action, endpoint, "dialplan_fallback"))
        # The dialplan also left the change in AstDB for a controller that was away.
        self._spawn(self._delete_fallback(endpoint))

    async def _delete_fallback(self, endpoint: str) -> None:
        with contextlib.suppress(AmiError):
            await self.ami.action(
                "DBDel", {"Family": FALLBACK_FAMILY, "Key": endpoint},
                timeout=self.action_timeout,
            )

    async def _record_foreign(
        self, endpoint: str, action: str, actor: str, source: str, at: datetime | None = None
    ) -> None:
        try:
            endpoint = validate_endpoint(endpoint, field="endpoint")
        except DialStringError as exc:
            log.warning("member_change_ignored", error=str(exc))
            return
        at = at or self.clock()
        key = await self._override_key(endpoint, at)
        if key is not None:
            await self.overrides.add_override(
                key, Override(endpoint, action, at), actor=actor, source=source
            )
        await self._audit(actor, f"member.{action}", endpoint,
                          {"source": source, "shift": str(key) if key else None})

    # AstDB state --------------------------------------------------------------------

    async def _load_applied(self) -> None:
        try:
            response = await self.ami.action(
                "DBGet", {"Family": APPLIED_SHIFT_KEY[0], "Key": APPLIED_SHIFT_KEY[1]},
                timeout=self.action_timeout,
            )
        except AmiActionFailed:
            self.applied = None
            self._stored_applied = None
            return
        value = ""
        for item in getattr(response, "events", []):
            value = item.get("Val") or value
        self.applied = ShiftKey.parse(value)
        self._stored_applied = self.applied

    async def _store_applied(self, key: ShiftKey) -> None:
        await self.ami.action(
            "DBPut",
            {"Family": APPLIED_SHIFT_KEY[0], "Key": APPLIED_SHIFT_KEY[1], "Val": str(key)},
            timeout=self.action_timeout,
        )
        self.applied = key
        self._stored_applied = key
        log.info("shift_boundary_done", shift=str(key))

    async def _import_fallbacks(self) -> None:
        """Store the log ins and log outs the dialplan did while the controller was away."""
        try:
            response = await self.ami.action(
                "DBGetTree", {"Family": FALLBACK_FAMILY}, timeout=self.action_timeout
            )
        except AmiActionFailed:
            return
        for item in getattr(response, "events", []):
            key = item.get("Key") or ""
            endpoint = key.rsplit("/", 1)[-1]
            action, _, epoch = (item.get("Val") or "").partition(",")
            try:
                at = datetime.fromtimestamp(int(epoch), UTC)
            except ValueError:
                at = self.clock()
            if action in ("login", "logout") and endpoint:
                await self._record_foreign(endpoint, action, endpoint, "dialplan_fallback", at)
            await self.ami.action(
                "DBDel", {"Family": FALLBACK_FAMILY, "Key": endpoint},
                timeout=self.action_timeout,
            )

    # Queue actions ------------------------------------------------------------------

    async def _queue_add(self, queue: str, endpoint: str, penalty: int) -> None:
        interface = pjsip_interface(endpoint)
        fields = {
            "Queue": queue,
            "Interface": interface,
            "MemberName": endpoint,
            "StateInterface": interface,
            "Penalty": str(penalty),
            "Paused": "false",
        }
        await self._send("QueueAdd", fields, ("QueueMemberAdded", queue, interface),
                         benign=ALREADY_MEMBER)

    async def _queue_remove(self, queue: str, endpoint: str) -> None:
        interface = pjsip_interface(endpoint)
        await self._send("QueueRemove", {"Queue": queue, "Interface": interface},
                         ("QueueMemberRemoved", queue, interface), benign=NOT_MEMBER)

    async def _send(
        self,
        name: str,
        fields: dict[str, str],
        own: tuple[str, str, str] | None = None,
        *,
        benign: str | None = None,
    ) -> None:
        if own is not None:
            self._own[own] = self._own.get(own, 0) + 1
        try:
            await self.ami.action(name, fields, timeout=self.action_timeout)
        except AmiActionFailed as exc:
            if own is not None:
                self._forget_own(own)
            message = (exc.completion.response.message or "").lower()
            if benign is not None and benign in message:
                return
            log.error("membership_action_failed", action=name, error=str(exc), **fields)
        except AmiError:
            if own is not None:
                self._forget_own(own)
            raise

    def _forget_own(self, own: tuple[str, str, str]) -> None:
        count = self._own.get(own, 0) - 1
        if count > 0:
            self._own[own] = count
        else:
            self._own.pop(own, None)

    # Helpers ------------------------------------------------------------------------

    async def _audit(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        if self.audit is None:
            return
        try:
            await self.audit(actor, action, subject, detail)
        except Exception:
            log.exception("audit_write_failed", action=action, subject=subject)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("membership_task_failed", exc_info=task.exception())

    def desired_slots(self) -> set[tuple[str, str]]:
        """Return the (queue, endpoint) pairs the last pass wanted filled."""
        return set(self._desired_last)

    def snapshot(self) -> dict[str, Any]:
        return {
            "roster_version": self.roster_version,
            "applied_shift": str(self.applied) if self.applied else None,
            "leaving": [f"{queue}:{endpoint}" for queue, endpoint in sorted(self.leaving)],
            "last_plan": self.last_plan.to_dict() if self.last_plan else None,
            "error": self.last_error,
        }

    async def stop(self) -> None:
        # Let overrides and audit entries being written finish first: a database
        # write cancelled halfway leaves a connection to close after the database.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
