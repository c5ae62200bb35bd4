"""The supervisor wallboard: queues, operator states, shift figures and alarms.

`Wallboard.snapshot()` assembles one JSON-ready dict from state the controller
already keeps: the live view (queue members and waiting callers, from AMI), the
pause tracker and wrap-up guard (pause reasons and start times), endpoint health
(unreachable phones), the call tracker (answer times), the shift reporter (this
shift's figures so far) and the alarm board, with agency names from the agency
directory for the alarm labels. GET /wallboard renders it, and GET /api/wallboard
returns it.

`attach(controller)` keeps open wallboards current: after a relevant AMI event
or alarm change it publishes a "wallboard" snapshot to supervisors on
`controller.feed` once the event burst has lasted DEBOUNCE_SECONDS, and it
publishes one every TICK_SECONDS for the durations. After every AMI login, once
the controller has rebuilt the live view from QueueStatus, and at every AMI
disconnect, it publishes at once, so a page never keeps showing state from
before a gap without saying so.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import structlog

from sigap_pbx.agencies.dispatch import UNACKNOWLEDGED_ALARM
from sigap_pbx.agencies.webhooks import ALARM_KIND as WEBHOOK_ALARM
from sigap_pbx.clock import utc_now
from sigap_pbx.live import Member
from sigap_pbx.members.actions import PAUSE_REASONS
from sigap_pbx.members.coverage import IN_CALL_STATES, UNREACHABLE_STATES
from sigap_pbx.members.health import UNREACHABLE_REASON, pjsip_endpoint
from sigap_pbx.members.wrapup import WRAPUP_REASON
from sigap_pbx.roster.reporter import RosterUnavailable, ShiftReportError
from sigap_pbx.store.errors import DatabaseUnavailable
from sigap_pbx.web.access import CALL_STAFF, SUPERVISORS
from sigap_pbx.wire.ami import Event

if TYPE_CHECKING:
    from sigap_pbx.service import Controller

log = structlog.get_logger(__name__)

FEED_KIND = "wallboard"
# Operator states, in the order the page's legend lists them.
STATES = (
    "available", "ringing", "on_call", "wrapup", "paused", "logged_off", "unreachable"
)
# Seconds from the first relevant AMI event to the snapshot that shows it. Events
# of one call come in bursts, so this sends one snapshot per burst.
DEBOUNCE_SECONDS = 0.25
# Seconds between snapshots while nothing happens, so durations keep counting.
TICK_SECONDS = 1.0
# Seconds a shift's figures are reused. Each build reads every call of the shift
# from the store, so open pages share one read per second.
FIGURES_CACHE_SECONDS = 1.0
# Seconds the agency names that alarm labels show are reused, so a page that is
# open does not read the agency directory every second.
AGENCY_NAMES_CACHE_SECONDS = 30.0
# Answer-time thresholds shown, in seconds from arrival at the PBX. They are the
# shift report's ANSWER_THRESHOLDS.
WITHIN_SECONDS = (10, 15, 20)

RELEVANT_EVENTS = frozenset({
    "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon",
    "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberStatus", "QueueMemberPause",
    "QueueMemberPenalty", "AgentCalled", "AgentConnect", "AgentComplete",
    "AgentRingNoAnswer", "ContactStatus",
})

# app_queue device state of a member whose phone rings with no call on it.
RINGING_STATUS = "ringing"
# QueueMemberStatus `Status` values (AST_DEVICE_*) of a phone with no channel:
# unknown and not in use. A ring that ended unseen ends with one of them.
IDLE_DEVICE_STATUSES = frozenset({"0", "1"})

# Alarm subjects that name a report sent to an agency (dispatch.alarm_subject) and
# an agency whose webhook failed (WebhookSender). The page shows the report number
# and the agency's name in their place.
AGENCY_SUBJECTS = {
    UNACKNOWLEDGED_ALARM: re.compile(r"^report:(?P<report>\d+):(?P<agency>.+)$"),
    WEBHOOK_ALARM: re.compile(r"^webhook:(?P<agency>.+)$"),
}
# An ISO 8601 time with its UTC offset, as datetime.isoformat() writes it into alarm
# messages.
ISO_TIMESTAMP = re.compile(
    r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})"
)


# Operator state ------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorState:
    """An operator's state across all of its queues, with the pause reason if any."""

    state: str
    pause_reason: str = ""
    # Queue whose pause decided the state, for the pause's start time.
    pause_queue: str = ""


def operator_state(
    memberships: dict[str, Member], *, unreachable: bool = False, ringing: bool = False
) -> OperatorState:
    """Return the state of one operator from its queue members, keyed by queue.

    An operator in no queue is logged off. A phone found unreachable (by device
    state, by the endpoint health guard, or by its `unreachable` pause) decides
    before anything else, then ringing, then a call. `ringing` is True while a
    queue offers the operator a call (AgentCalled without its answer yet), which
    device state cannot show: with `device_state_busy_at = 1` in pjsip.conf a
    ringing phone is `busy` like one in a call. An operator is paused only
    when paused in every one of its queues, because otherwise app_queue still
    offers it calls from the others. A pause other than wrap-up wins over the
    wrap-up, since it lasts beyond the wrap-up window.
    """
    if not memberships:
        return OperatorState("logged_off")
    members = list(memberships.values())
    if unreachable or any(
        m.status in UNREACHABLE_STATES
        or (m.paused and m.paused_reason == UNREACHABLE_REASON)
        for m in members
    ):
        return OperatorState("unreachable")
    if ringing:
        return OperatorState("ringing")
    if any(m.in_call or m.status in IN_CALL_STATES for m in members):
        return OperatorState("on_call")
    if any(m.status == RINGING_STATUS for m in members):
        return OperatorState("ringing")
    if all(m.paused for m in members):
        queues = sorted(memberships)
        for queue in queues:
            reason = memberships[queue].paused_reason
            if reason != WRAPUP_REASON:
                return OperatorState("paused", reason, queue)
        return OperatorState("wrapup", WRAPUP_REASON, queues[0])
    return OperatorState("available")


# Shift figures -----------------------------------------------------------------------


def figures_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """Return the wallboard's figures from a shift report's `queue` section.

    Offered counts every call that arrived in the shift so far. The within-N
    counts are of answered calls timed from arrival, and their percentages are of
    every offered call, abandoned ones included, as in the shift report.
    """
    queue = report["queue"]
    offered = int(queue["arrived"])
    within = {item["seconds"]: item for item in queue["answered_within"]}
    figures: dict[str, Any] = {
        "offered": {"value": offered, "percent": None},
        "answered": {"value": int(queue["answered"]), "percent": _percent(
            int(queue["answered"]), offered)},
        "abandoned": {
            "value": int(queue["abandoned_before_queue"]) + int(queue["abandoned_in_queue"]),
            "percent": None,
        },
    }
    figures["abandoned"]["percent"] = _percent(figures["abandoned"]["value"], offered)
    for seconds in WITHIN_SECONDS:
        item = within.get(seconds, {"count": 0, "percent": None})
        figures[f"within_{seconds}"] = {
            "value": int(item["count"]),
            "percent": item["percent"],
        }
    return figures


def shift_from_report(report: dict[str, Any]) -> dict[str, Any]:
    shift = report["shift"]
    return {
        "name": shift["name"],
        "date": shift["date"],
        "crew": shift.get("crew"),
        "start_local": shift["start_local"],
        "end_local": shift["end_local"],
        "minimum_operators": shift.get("minimum_operators"),
        "rostered": shift.get("rostered"),
    }


def _percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100 * part / whole, 1)


# Alarms ----------------------------------------------------------------------------


def alarm_label(alarm: dict[str, Any], agency_names: dict[str, str]) -> dict[str, Any]:
    """Return the message key of an alarm's label on the page and the values it takes.

    The key is the alarm's kind, and the values always contain `kind` and `subject`.
    A report or webhook alarm also gets `report` and `agency` (the agency's name,
    else its code). Such an alarm with a subject of another form gets the key
    "other", whose label shows the kind and the raw subject.
    """
    kind = alarm["kind"]
    subject = alarm["subject"]
    values: dict[str, Any] = {"kind": kind, "subject": subject}
    pattern = AGENCY_SUBJECTS.get(kind)
    if pattern is None:
        return {"key": kind, "values": values}
    match = pattern.match(subject)
    if match is None:
        return {"key": "other", "values": values}
    found = match.groupdict()
    values["agency"] = agency_names.get(found["agency"]) or found["agency"]
    if "report" in found:
        values["report"] = found["report"]
    return {"key": kind, "values": values}


def local_timestamps(text: str, zone: tzinfo) -> str:
    """Return `text` with each ISO 8601 time in it written as local time in `zone`."""

    def local(match: re.Match[str]) -> str:
        moment = datetime.fromisoformat(match.group(0)).astimezone(zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S %Z")

    return ISO_TIMESTAMP.sub(local, text)


def alarm_views(
    alarms: list[dict[str, Any]], zone: tzinfo, agency_names: dict[str, str]
) -> list[dict[str, Any]]:
    """Return the alarms newest first, each with the fields the page shows.

    `raised_local` is the raise time in `zone`, `message_local` the message with its
    times in `zone`, and `label` comes from `alarm_label`.
    """
    views = []
    for alarm in sorted(alarms, key=lambda alarm: alarm["raised_at"], reverse=True):
        raised = datetime.fromisoformat(alarm["raised_at"]).astimezone(zone)
        views.append({
            **alarm,
            "raised_local": raised.isoformat(),
            "message_local": local_timestamps(alarm["message"], zone),
            "label": alarm_label(alarm, agency_names),
        })
    return views


# The wallboard ---------------------------------------------------------------------


class Wallboard:
    """The snapshot builder and publisher of one controller's wallboard.

    `debounce_seconds` and `tick_seconds` set the publishing pace (tests shorten
    or stretch them). Only `run` publishes, so nothing is sent unless a task runs
    it, which `attach` starts.
    """

    def __init__(
        self,
        controller: Controller,
        *,
        debounce_seconds: float = DEBOUNCE_SECONDS,
        tick_seconds: float = TICK_SECONDS,
        figures_cache_seconds: float = FIGURES_CACHE_SECONDS,
        agency_names_cache_seconds: float = AGENCY_NAMES_CACHE_SECONDS,
    ) -> None:
        self.controller = controller
        self.debounce_seconds = debounce_seconds
        self.tick_seconds = tick_seconds
        self.figures_cache_seconds = figures_cache_seconds
        self.agency_names_cache_seconds = agency_names_cache_seconds
        self.published = 0
        # Set by events that change what the page shows; `run` publishes after it.
        self.changed = asyncio.Event()
        # Set with `changed` when the next snapshot must go out without waiting.
        self._urgent = False
        # Per endpoint: the state last seen and since when, in time.monotonic().
        self._since: dict[str, tuple[str, float]] = {}
        # Interfaces a queue rings now, with the caller's uniqueid.
        self._ringing: dict[str, str] = {}
        self._figures: tuple[float, dict[str, Any]] | None = None
        self._figures_lock = asyncio.Lock()
        # When the agency names were read, in time.monotonic(), and the names by code.
        self._agency_names: tuple[float, dict[str, str]] | None = None

    # Listeners (called by the AMI client and the alarm board, must not block) -------

    def on_event(self, event: Event) -> None:
        if event.name not in RELEVANT_EVENTS:
            return
        self._track_ringing(event)
        # The live view's listener ran before this one, so the states are current.
        self.observe_states()
        self.changed.set()

    def _track_ringing(self, event: Event) -> None:
        name = event.name
        interface = event.get("Interface") or ""
        caller = event.get("Uniqueid") or ""
        if name == "AgentCalled":
            self._ringing[interface] = caller
        elif name in ("AgentConnect", "QueueCallerLeave", "QueueCallerAbandon"):
            # Once the caller is answered or gone, no member rings for it any more.
            self._ringing.pop(interface, None)
            for ringing, ringing_caller in list(self._ringing.items()):
                if ringing_caller == caller:
                    del self._ringing[ringing]
        elif name in ("AgentRingNoAnswer", "QueueMemberRemoved") or (
            name == "QueueMemberStatus" and event.get("Status") in IDLE_DEVICE_STATUSES
        ):
            self._ringing.pop(interface, None)

    def on_alarm(self, change: str, alarm: dict[str, Any]) -> None:
        self.changed.set()

    async def on_session(self) -> None:
        """Publish at once after each AMI login, when the controller has resynced.

        The controller's own session listener (QueueStatus into the live view) was
        added first, so it has run by now. Nothing here raises, because a failed
        session listener would end the AMI session.
        """
        # Offers under way before the gap cannot be followed to their end.
        self._ringing.clear()
        try:
            self.observe_states()
        except Exception:
            log.exception("wallboard_observe_failed")
        self.request_now()

    def on_disconnect(self) -> None:
        self.request_now()

    def request_now(self) -> None:
        """Make `run` publish the next snapshot without the debounce wait."""
        self._urgent = True
        self.changed.set()

    # Publishing ----------------------------------------------------------------------

    async def run(self) -> None:
        """Publish after each change (debounced, or at once if urgent) and every tick."""
        while True:
            try:
                async with asyncio.timeout(self.tick_seconds):
                    await self.changed.wait()
            except TimeoutError:
                pass
            else:
                if not self._urgent:
                    await asyncio.sleep(self.debounce_seconds)
            self.changed.clear()
            self._urgent = False
            await self.publish()

    async def publish(self) -> None:
        feed = self.controller.feed
        if not feed.has_subscribers(SUPERVISORS):
            return
        try:
            snapshot = await self.snapshot()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The next tick tries again; the loop must keep running.
            log.exception("wallboard_snapshot_failed")
            return
        feed.publish(FEED_KIND, snapshot, roles=SUPERVISORS)
        self.published += 1

    # Snapshot ------------------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        """Return everything the page shows, as a JSON-ready dict."""
        controller = self.controller
        live = controller.live
        self.observe_states()
        report = await self.shift_report()
        alarms = controller.alarms.snapshot() if controller.alarms is not None else []
        names: dict[str, str] = {}
        if any(alarm["kind"] in AGENCY_SUBJECTS for alarm in alarms):
            names = await self.agency_names()
        return {
            "generated_at": utc_now().isoformat(),
            "synced": bool(live.synced and controller.ami.connected),
            "primary_queue": controller.config.queue.name,
            "queues": self.queues(),
            "operators": self.operators(),
            "shift": report.get("shift"),
            "figures": report.get("figures"),
            "figures_error": report.get("error"),
            "alarms": alarm_views(alarms, controller.config.roster.zone, names),
            "pause_reasons": dict(PAUSE_REASONS),
        }

    def queues(self) -> list[dict[str, Any]]:
        """Return each queue with its waiting callers, the longest wait first."""
        controller = self.controller
        primary = controller.config.queue.name
        now_monotonic = time.monotonic()
        now = utc_now()
        views = sorted(controller.live.queues.values(),
                       key=lambda queue: (queue.name != primary, queue.name))
        result = []
        for queue in views:
            callers = []
            for caller in queue.callers.values():
                in_queue = max(now_monotonic - caller.joined_monotonic, 0.0)
                callers.append({
                    "uniqueid": caller.uniqueid,
                    "caller_number": caller.caller_number,
                    "caller_name": caller.caller_name,
                    "wait_seconds": round(self._wait_from_arrival(caller.uniqueid, now,
                                                                  in_queue), 1),
                    "queue_seconds": round(in_queue, 1),
                })
            callers.sort(key=lambda item: item["wait_seconds"], reverse=True)
            members = list(queue.members.values())
            result.append({
                "name": queue.name,
                "primary": queue.name == primary,
                "waiting": len(callers),
                "longest_wait": callers[0]["wait_seconds"] if callers else 0.0,
                "callers": callers,
                "members": len(members),
                "available": sum(1 for member in members
                                 if operator_state({queue.name: member}).state
                                 == "available"),
            })
        return result

    def _wait_from_arrival(self, uniqueid: str, now: datetime, in_queue: float) -> float:
        """Return seconds since the call arrived at the PBX, or since it joined the queue.

        The call tracker keys a call by the caller channel's linkedid, which is its
        uniqueid. A call it does not know (adopted after a gap without a time)
        falls back to the queue wait.
        """
        tracker = self.controller.tracker
        call = tracker.calls.get(uniqueid) if tracker is not None else None
        if call is None or call.uniqueid != uniqueid:
            return in_queue
        return max((now - call.arrived_at).total_seconds(), in_queue)

    # Operators -------------------------------------------------------------------------

    def _memberships(self) -> dict[str, dict[str, Member]]:
        """Return, per endpoint, its queue members keyed by queue name."""
        found: dict[str, dict[str, Member]] = {}
        for queue in self.controller.live.queues.values():
            for interface, member in queue.members.items():
                endpoint = pjsip_endpoint(interface) or interface
                found.setdefault(endpoint, {})[queue.name] = member
        return found

    def _known_operators(self) -> dict[str, str]:
        """Return the configured operators and supervisor, endpoint to display name."""
        sip = self.controller.config.sip
        names = {op.endpoint: op.name or op.endpoint for op in sip.operators}
        names.setdefault(sip.supervisor.endpoint, sip.supervisor.name or sip.supervisor.endpoint)
        return names

    def _unreachable(self, endpoint: str, interfaces: Iterable[str]) -> bool:
        guard = self.controller.health_guard
        if guard is None:
            return False
        for interface in interfaces:
            member = guard.membership.members.get(interface)
            if member is not None and guard.unreachable_cause(member) is not None:
                return True
        return False

    def _states(self) -> dict[str, tuple[OperatorState, dict[str, Member]]]:
        memberships = self._memberships()
        endpoints = list(self._known_operators())
        endpoints += sorted(set(memberships) - set(endpoints))
        states = {}
        for endpoint in endpoints:
            members = memberships.get(endpoint, {})
            interfaces = {member.interface for member in members.values()}
            state = operator_state(
                members,
                unreachable=self._unreachable(endpoint, interfaces),
                ringing=any(interface in self._ringing for interface in interfaces),
            )
            states[endpoint] = (state, members)
        return states

    def observe_states(self) -> None:
        """Note when each operator's state changed, and tell that operator's console.

        The change times give the durations that have no other source. Each change
        is published as an `operator.state` event for the operator's own console.
        """
        now = time.monotonic()
        for endpoint, (state, _) in self._states().items():
            previous = self._since.get(endpoint)
            if previous is None or previous[0] != state.state:
                self._since[endpoint] = (state.state, now)
                self.controller.feed.publish(
                    "operator.state",
                    {"endpoint": endpoint, "state": state.state,
                     "paused_reason": state.pause_reason},
                    roles=CALL_STAFF,
                    endpoint=endpoint,
                )

    def state_of(self, endpoint: str) -> dict[str, Any]:
        """Return one operator's state as the wallboard shows it, for the console."""
        state, members = self._states().get(endpoint, (OperatorState("logged_off"), {}))
        return {
            "state": state.state,
            "paused_reason": state.pause_reason,
            "queues": sorted(members),
        }

    def operators(self) -> list[dict[str, Any]]:
        """Return one row per operator: state, its duration and the pause reason."""
        names = self._known_operators()
        rows = []
        for endpoint, (state, members) in self._states().items():
            interface = next(iter(members.values())).interface if members else (
                f"PJSIP/{endpoint}")
            name = names.get(endpoint) or next(
                (m.name for m in members.values() if m.name), endpoint)
            rows.append({
                "endpoint": endpoint,
                "name": name,
                "state": state.state,
                "seconds": self._seconds_in_state(endpoint, interface, state),
                "pause_reason": state.pause_reason,
                "wrapup_remaining": self._wrapup_remaining(interface, state),
                "queues": [
                    {
                        "queue": queue,
                        "status": member.status,
                        "paused": member.paused,
                        "paused_reason": member.paused_reason,
                        "in_call": member.in_call,
                        "penalty": member.penalty,
                    }
                    for queue, member in sorted(members.items())
                ],
            })
        return rows

    def _seconds_in_state(
        self, endpoint: str, interface: str, state: OperatorState
    ) -> float | None:
        """Return how long the operator has been in its state, in seconds.

        A pause counts from the pause tracker's interval, a wrap-up from the end of
        the last call, and a call from its answer time in the call tracker. Other
        states, and those sources when they lack the member, count from when this
        wallboard first saw the state, which after a controller start or an AMI
        gap is the resync.
        """
        seconds = None
        controller = self.controller
        if state.state == "paused" and controller.pauses is not None:
            interval = controller.pauses.paused.get((interface, state.pause_queue))
            if interval is not None:
                seconds = (controller.pauses.clock() - interval.started_at).total_seconds()
        elif state.state == "wrapup":
            ended_at = controller.wrapup.last_call_end.get(interface)
            if ended_at is not None:
                seconds = (controller.wrapup.clock() - ended_at).total_seconds()
        elif state.state == "on_call":
            seconds = self._talk_seconds(interface)
        if seconds is None:
            since = self._since.get(endpoint)
            if since is None or since[0] != state.state:
                return None
            seconds = time.monotonic() - since[1]
        return round(max(seconds, 0.0), 1)

    def _talk_seconds(self, interface: str) -> float | None:
        tracker = self.controller.tracker
        if tracker is None:
            return None
        for call in tracker.calls.values():
            if call.answered_at is None or call.ended_at is not None:
                continue
            for leg in call.legs.values():
                if leg.interface == interface and leg.outcome == "answered":
                    return (utc_now() - call.answered_at).total_seconds()
        return None

    def _wrapup_remaining(self, interface: str, state: OperatorState) -> float | None:
        if state.state != "wrapup":
            return None
        wrapup = self.controller.wrapup.wrapups.get(interface)
        if wrapup is None:
            return None
        remaining = (wrapup.deadline - self.controller.wrapup.clock()).total_seconds()
        return round(max(remaining, 0.0), 1)

    # Alarms --------------------------------------------------------------------------

    async def agency_names(self) -> dict[str, str]:
        """Return agency names by code, reused for `agency_names_cache_seconds`.

        Without an agency directory, or when reading it fails, the result is empty
        and alarm labels show agency codes. A failure is logged once per period.
        """
        agencies = getattr(self.controller, "agencies", None)
        if agencies is None:
            return {}
        cached = self._agency_names
        if cached is not None and (
            time.monotonic() - cached[0] < self.agency_names_cache_seconds
        ):
            return cached[1]
        try:
            listed = await agencies.list_agencies()
            names = {agency.code: agency.name for agency in listed}
        except Exception:
            # The labels then show agency codes, which still name the agency.
            log.exception("wallboard_agency_names_failed")
            names = {}
        self._agency_names = (time.monotonic(), names)
        return names

    # Shift figures ---------------------------------------------------------------------

    async def shift_report(self) -> dict[str, Any]:
        """Return {"shift", "figures"} of the shift in progress, or {"error"}.

        The report is built by the shift reporter for the current shift's window
        up to now, and reused for `figures_cache_seconds`.
        """
        async with self._figures_lock:
            cached = self._figures
            if cached is not None and time.monotonic() - cached[0] < self.figures_cache_seconds:
                return cached[1]
            result = await self._build_report()
            self._figures = (time.monotonic(), result)
            return result

    async def _build_report(self) -> dict[str, Any]:
        reporter = self.controller.shift_reports
        if reporter is None:
            return {"error": {"code": "shift_reports_unavailable",
                              "message": "shift reports have not started yet"}}
        try:
            report = await reporter.report_now()
        except RosterUnavailable as error:
            return {"error": {"code": "roster_missing", "message": str(error)}}
        except ShiftReportError as error:
            return {"error": {"code": "shift_report_failed", "message": str(error)}}
        except DatabaseUnavailable as error:
            return {"error": {"code": "database_unavailable", "message": str(error)}}
        except Exception:
            # The rest of the wallboard still shows; the log has the cause.
            log.exception("wallboard_figures_failed")
            return {"error": {"code": "shift_report_failed",
                              "message": "the shift report failed; see the controller log"}}
        return {"shift": shift_from_report(report), "figures": figures_from_report(report)}


# Attaching to the controller --------------------------------------------------------


def wallboard_of(controller: Any) -> Wallboard:
    """Return the controller's wallboard, making one (that does not publish) if needed."""
    board = getattr(controller, "wallboard", None)
    if board is None:
        board = Wallboard(controller)
        controller.wallboard = board
    return board


SPY_RESULT_KIND = "spy.result"
# Originate results kept for an action whose reply the spy route has not read yet.
SPY_RESULTS_KEPT = 100


class SpyResults:
    """The outcomes of listen, whisper and barge calls, sent to the supervisor who asked.

    The spy route sends an asynchronous Originate and answers at once. Asterisk's
    OriginateResponse for it arrives once the supervisor's phone answers, or does
    not, and is published as `spy.result` to the pages of the account that asked.
    """

    def __init__(self, feed: Any) -> None:
        self.feed = feed
        self._pending: dict[str, dict[str, str]] = {}
        # Responses that came before the route registered their action, and those
        # of other Originates (callbacks), which no spy request claims.
        self._unclaimed: dict[str, Event] = {}

    def expect(self, action_id: str, username: str, request: dict[str, str]) -> None:
        """Register the spy Originate of account `username`; `request` has endpoint,
        mode and supervisor_endpoint."""
        request = {**request, "username": username}
        early = self._unclaimed.pop(action_id, None)
        if early is not None:
            self._publish(request, early)
            return
        self._pending[action_id] = request
        while len(self._pending) > SPY_RESULTS_KEPT:
            self._pending.pop(next(iter(self._pending)))

    def on_event(self, event: Event) -> None:
        if event.name != "OriginateResponse":
            return
        action_id = event.get("ActionID") or ""
        request = self._pending.pop(action_id, None)
        if request is None:
            self._unclaimed[action_id] = event
            while len(self._unclaimed) > SPY_RESULTS_KEPT:
                self._unclaimed.pop(next(iter(self._unclaimed)))
            return
        self._publish(request, event)

    def _publish(self, request: dict[str, str], event: Event) -> None:
        answered = (event.get("Response") or "") == "Success"
        self.feed.publish(
            SPY_RESULT_KIND,
            {**request, "answered": answered, "reason": event.get("Reason") or ""},
            roles=SUPERVISORS,
            username=request["username"],
        )
        log.info("supervisor_spy_result", answered=answered, **request)


def attach(controller: Controller) -> Wallboard:
    """Follow the controller's AMI events and alarms and publish snapshots on its feed."""
    board = wallboard_of(controller)
    controller.spy_results = SpyResults(controller.feed)
    controller.ami.add_event_listener(controller.spy_results.on_event)
    controller.ami.add_event_listener(board.on_event)
    controller.ami.add_connect_listener(board.on_session)
    controller.ami.add_disconnect_listener(board.on_disconnect)
    if controller.alarms is not None:
        controller.alarms.on_change.append(board.on_alarm)
    controller._spawn(board.run(), "wallboard-publisher")
    return board
