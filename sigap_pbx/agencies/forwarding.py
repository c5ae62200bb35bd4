"""Forwarding calls to agency lines: conference, blind transfer, consult and call-out.

The controller starts each forward with AMI actions and then leaves the call to
the dialplan (dialplans/sigap-agencies.conf), which tries the agency's lines in
order from AstDB. So a controller that dies mid-forward loses no caller: a caller
whose lines all fail goes back to the operators' queue at the highest priority,
and a caller on hold during a consult returns there after `consult_hold_seconds`.

The dialplan announces every attempt and result with a SigapForward user event,
from which the controller records the attempts (table `forward_attempts`).

Every value that goes into an AMI action or AstDB key is checked first: dial
codes are one or two digits, uniqueids are Asterisk's `<epoch>.<serial>`, and line
targets are PJSIP endpoints or numbers validated by sigap_pbx.wire.dialstring.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from sigap_pbx.ami.client import AmiActionFailed, AmiError
from sigap_pbx.store.reports import ForwardMode, ForwardResult
from sigap_pbx.wire.ami import Event
from sigap_pbx.wire.dialstring import validate_endpoint, validate_number
from sigap_pbx.wire.errors import DialStringError

log = structlog.get_logger(__name__)

AGENCY_FAMILY = "sigap/agency"
# The feed event that tells the console the state of a consult.
CONSULT_KIND = "forward.consult"
DIAL_CODE = re.compile(r"[0-9]{1,2}")
UNIQUEID = re.compile(r"[0-9]{1,20}\.[0-9]{1,10}")

# DIALSTATUS values of app_dial and the attempt result each one records.
DIAL_RESULTS = {
    "ANSWER": ForwardResult.ANSWERED,
    "NOANSWER": ForwardResult.NO_ANSWER,
    "BUSY": ForwardResult.BUSY,
    "CANCEL": ForwardResult.CANCELLED,
}

Clock = Callable[[], datetime]
Audit = Callable[[str, str, str, dict[str, Any]], Awaitable[Any]]


class ForwardError(Exception):
    """A forward that cannot start, with a stable code and HTTP status for the API."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class AgencyRoute:
    """An agency's lines as the dialplan dials them, in the order they are tried."""

    agency_id: int
    code: str
    dial_code: str
    name: str
    # PJSIP targets without the "PJSIP/" prefix: "agency-fire-1" or "0812345@carrier".
    targets: tuple[str, ...]


def line_target(kind: str, target: str, trunk: str) -> str:
    """Return the PJSIP target of an agency line, after validating it.

    Raises DialStringError, which names the field and the value.
    """
    if kind == "endpoint":
        return validate_endpoint(target, field="line target")
    if kind == "number":
        number = validate_number(target, field="line target")
        return f"{number}@{validate_endpoint(trunk, field='trunk')}"
    raise DialStringError(f"line kind {kind!r} is invalid, use endpoint or number")


class ForwardStoreLike(Protocol):
    async def insert_attempt(self, **fields: Any) -> int: ...

    async def finish_attempt(self, attempt_id: int, **fields: Any) -> None: ...


class AmiActions(Protocol):
    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> Any: ...


@dataclass
class Conference:
    room: str
    call_uniqueid: str
    # Uniqueids of the channels in the room now.
    members: set[str] = field(default_factory=set)
    agency_joined: bool = False


@dataclass
class Consult:
    call_uniqueid: str
    caller_channel: str
    operator_channel: str
    route: AgencyRoute
    report_id: int | None
    # The caller's number as Asterisk shows it, to tell consults apart on the console.
    caller_number: str = ""
    # Set while consult_complete moves the channels: the operator's consult leg then
    # ends on purpose, and must not send the caller back to the queue.
    completing: bool = False
    # Why an ended consult ended: caller_gone, operator_gone, requeued (the hold
    # limit) or gone (not found again after an AMI login).
    end_reason: str = ""

    @property
    def operator_endpoint(self) -> str | None:
        return _endpoint(self.operator_channel)

    def to_dict(self) -> dict[str, Any]:
        return {
            "call": self.call_uniqueid,
            "agency": self.route.code,
            "agency_name": self.route.name,
            "operator": self.operator_endpoint,
            "report_id": self.report_id,
            "caller_number": self.caller_number,
        }


# Called with "started", "completed" or "ended" and the consult, for the console.
ConsultListener = Callable[[str, Consult], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _check_uniqueid(value: str) -> str:
    if not isinstance(value, str) or not UNIQUEID.fullmatch(value):
        raise ForwardError(
            "invalid_call",
            f"call uniqueid {value!r} is invalid, use the caller channel's uniqueid"
            " such as 1796409216.0",
        )
    return value


def room_name(call_uniqueid: str) -> str:
    return "sigap-" + call_uniqueid.replace(".", "-")


class Forwarder:
    def __init__(
        self,
        ami: AmiActions,
        routes_provider: Callable[[], Awaitable[list[AgencyRoute]]],
        store: ForwardStoreLike | None,
        *,
        audit: Audit | None = None,
        clock: Clock = utc_now,
        action_timeout: float = 5.0,
        reports_for_call: Callable[[str], Awaitable[list[int]]] | None = None,
        on_consult: ConsultListener | None = None,
    ) -> None:
        self.ami = ami
        self.on_consult = on_consult
        # Finds the report of a call forwarded without one (an in-call feature code),
        # so its attempts are recorded on the report too.
        self.reports_for_call = reports_for_call
        self.routes_provider = routes_provider
        self.store = store
        self.audit = audit
        self.clock = clock
        self.action_timeout = action_timeout
        self.routes: dict[str, AgencyRoute] = {}
        # Rebuilt from Asterisk's channels after every AMI login (`restore`), so a
        # controller restart or an AMI gap loses neither.
        self.conferences: dict[str, Conference] = {}
        self.consults: dict[str, Consult] = {}
        # While `restore` runs: the channels hung up since its snapshot.
        self._hung_up_meanwhile: set[str] | None = None
        # (context of the attempt, agency dial code, line index) -> forward_attempts id.
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._forward_events: asyncio.Queue[Event] = asyncio.Queue()
        self._worker: asyncio.Future[None] | None = None
        self._stopped = False

    # Agency lines in AstDB -----------------------------------------------------------

    async def publish(self) -> int:
        """Write every agency's lines into AstDB; return how many agencies."""
        routes = await self.routes_provider()
        try:
            await self._action("DBDelTree", {"Family": AGENCY_FAMILY})
        except AmiActionFailed:
            pass  # nothing stored yet
        published: dict[str, AgencyRoute] = {}
        for route in routes:
            if not DIAL_CODE.fullmatch(route.dial_code):
                log.error("agency_not_published", agency=route.code,
                          error=f"dial code {route.dial_code!r} is not 1 or 2 digits")
                continue
            family = f"{AGENCY_FAMILY}/{route.dial_code}"
            await self._action(
                "DBPut", {"Family": family, "Key": "count", "Val": str(len(route.targets))}
            )
            for index, target in enumerate(route.targets, start=1):
                await self._action(
                    "DBPut", {"Family": family, "Key": f"line{index}", "Val": target}
                )
            published[route.dial_code] = route
        self.routes = published
        log.info("agency_lines_published", agencies=len(published))
        return len(published)

    async def find_route(self, agency: str) -> AgencyRoute:
        """Return the route of an agency, publishing the lines again if it is unknown.

        An agency added since the last publication (they run every minute) is
        then found at once.
        """
        try:
            return self.route(agency)
        except ForwardError as exc:
            if exc.code != "agency_not_found":
                raise
        await self.publish()
        return self.route(agency)

    def route(self, agency: str) -> AgencyRoute:
        """Return the route of an agency given by code or dial code."""
        for route in self.routes.values():
            if agency in (route.code, route.dial_code):
                if not route.targets:
                    raise ForwardError(
                        "agency_has_no_lines",
                        f"agency {route.code!r} has no line staffed now; add a line or"
                        " choose another agency",
                        409,
                    )
                return route
        known = ", ".join(sorted(r.code for r in self.routes.values())) or "none"
        raise ForwardError(
            "agency_not_found", f"agency {agency!r} not found, use one of: {known}", 404
        )

    # Forwards ------------------------------------------------------------------------

    async def transfer(
        self, call_uniqueid: str, agency: str, *, actor: str, report_id: int | None = None
    ) -> dict[str, Any]:
        """Hand the caller to the agency's lines; the operator's leg ends."""
        call_uniqueid = self._not_consulting(_check_uniqueid(call_uniqueid))
        route = await self.find_route(agency)
        caller, _ = await self._call_channels(call_uniqueid, need_operator=False)
        await self._setvars(caller, SIGAP_FWD_CODE=route.dial_code,
                            SIGAP_FWD_REPORT=_report(report_id))
        await self._action("Redirect", {
            "Channel": caller, "Context": "sigap-forward-transfer", "Exten": "s",
            "Priority": "1",
        })
        return await self._started("transfer", call_uniqueid, route, actor, report_id)

    async def conference(
        self, call_uniqueid: str, agency: str, *, actor: str, report_id: int | None = None
    ) -> dict[str, Any]:
        """Join the caller, the operator and the agency's first line that answers."""
        call_uniqueid = self._not_consulting(_check_uniqueid(call_uniqueid))
        route = await self.find_route(agency)
        caller, operator = await self._call_channels(call_uniqueid, need_operator=True)
        assert operator is not None
        room = room_name(call_uniqueid)
        self.conferences[room] = Conference(room, call_uniqueid)
        for channel in (caller, operator):
            await self._setvars(channel, SIGAP_CONF_ROOM=room)
        await self._action("Redirect", {
            "Channel": caller, "Context": "sigap-forward-conf", "Exten": "caller",
            "Priority": "1", "ExtraChannel": operator, "ExtraContext": "sigap-forward-conf",
            "ExtraExten": "staff", "ExtraPriority": "1",
        })
        await self._originate_agency(route, room, call_uniqueid, report_id, "conference")
        return await self._started("conference", call_uniqueid, route, actor, report_id)

    async def consult(
        self, call_uniqueid: str, agency: str, *, actor: str, report_id: int | None = None
    ) -> dict[str, Any]:
        """Put the caller on hold and ring the agency's lines from the operator's phone."""
        call_uniqueid = self._not_consulting(_check_uniqueid(call_uniqueid))
        route = await self.find_route(agency)
        caller_leg, operator_leg = await self._call_legs(call_uniqueid, need_operator=True)
        assert operator_leg is not None
        caller = caller_leg.get("Channel") or ""
        operator = operator_leg.get("Channel") or ""
        number = caller_number_of(caller_leg)
        await self._setvars(operator, SIGAP_FWD_CODE=route.dial_code,
                            SIGAP_FWD_CALL=call_uniqueid, SIGAP_FWD_REPORT=_report(report_id))
        # On the caller's channel, which waits in sigap-forward-hold: `restore` reads
        # the consult back from there after a controller restart.
        await self._setvars(caller, SIGAP_CONSULT_OPERATOR=operator,
                            SIGAP_CONSULT_AGENCY=route.code,
                            SIGAP_CONSULT_REPORT=_report(report_id))
        consult = Consult(call_uniqueid, caller, operator, route, report_id, number)
        self.consults[call_uniqueid] = consult
        try:
            await self._action("Redirect", {
                "Channel": caller, "Context": "sigap-forward-hold", "Exten": "s",
                "Priority": "1", "ExtraChannel": operator,
                "ExtraContext": "sigap-forward-consult", "ExtraExten": "s",
                "ExtraPriority": "1",
            })
        except BaseException:
            self.consults.pop(call_uniqueid, None)
            raise
        self._notify("started", consult)
        return await self._started("consult", call_uniqueid, route, actor, report_id)

    async def consult_complete(
        self, call_uniqueid: str, how: str, *, actor: str
    ) -> dict[str, Any]:
        """End a consult: "join" makes a conference of all three, "transfer" leaves the
        caller with the agency and ends the operator's leg."""
        call_uniqueid = _check_uniqueid(call_uniqueid)
        if how not in ("join", "transfer"):
            raise ForwardError("invalid_action", f"{how!r} is invalid, use join or transfer")
        consult = self._current_consult(call_uniqueid)
        if consult.completing:
            raise ForwardError(
                "consult_completing", f"the consult of call {call_uniqueid} is being"
                " completed already; wait for the result", 409,
            )
        channels = await self._channels()
        # The consult may have ended while the channels were read.
        consult = self._current_consult(call_uniqueid, consult)
        if not _on_hold(channels, consult.caller_channel):
            raise ForwardError(
                "no_consult", f"the caller of call {call_uniqueid} is no longer on hold", 409
            )
        agency_channel = _bridged_peer_in(channels, consult.operator_channel)
        if agency_channel is None:
            raise ForwardError(
                "agency_not_connected",
                "the agency has not answered the consult yet; wait for it or hang up",
                409,
            )
        room = room_name(call_uniqueid)
        consult.completing = True
        caller_moved = False
        try:
            self.conferences[room] = Conference(room, call_uniqueid, agency_joined=True)
            moved = [consult.caller_channel, agency_channel]
            if how == "join":
                moved.append(consult.operator_channel)
            for channel in moved:
                await self._setvars(channel, SIGAP_CONF_ROOM=room)
            await self._action("Redirect", {
                "Channel": consult.caller_channel, "Context": "sigap-forward-conf",
                "Exten": "caller", "Priority": "1",
            })
            caller_moved = True
            fields = {
                "Channel": agency_channel, "Context": "sigap-forward-conf", "Exten": "staff",
                "Priority": "1",
            }
            if how == "join":
                fields.update(ExtraChannel=consult.operator_channel,
                              ExtraContext="sigap-forward-conf", ExtraExten="staff",
                              ExtraPriority="1")
            await self._action("Redirect", fields)
        except BaseException:
            consult.completing = False
            self.conferences.pop(room, None)
            if caller_moved:
                # The caller is alone in the room (the agency hung up meanwhile):
                # back on hold, or to the queue if the operator's leg has gone too.
                self._spawn(self._return_caller(consult))
            raise
        self.consults.pop(call_uniqueid, None)
        self._notify("completed", consult)
        await self._audit(actor, f"forward.consult_{how}", call_uniqueid,
                          {"agency": consult.route.code, "report": consult.report_id})
        return {"call": call_uniqueid, "action": how, "room": room}

    def _not_consulting(self, call_uniqueid: str) -> str:
        """Return the uniqueid, or raise if the caller is on hold for a consult."""
        consult = self.consults.get(call_uniqueid)
        if consult is not None:
            raise ForwardError(
                "consult_in_progress",
                f"call {call_uniqueid} is on hold for a consult with {consult.route.code};"
                " join or hand over from the consult panel, or wait for it to end",
                409,
            )
        return call_uniqueid

    def _current_consult(self, call_uniqueid: str, expected: Consult | None = None) -> Consult:
        """Return the consult of a call, or raise no_consult if it has ended (or, with
        `expected`, has been replaced) meanwhile."""
        consult = self.consults.get(call_uniqueid)
        if consult is None or (expected is not None and consult is not expected):
            raise ForwardError(
                "no_consult", f"call {call_uniqueid} has no consult in progress", 409
            )
        return consult

    async def _return_caller(self, consult: Consult) -> None:
        """Put back on hold a caller whose consult could not be completed."""
        try:
            channels = await self._channels()
            if not any(c.get("Channel") == consult.caller_channel for c in channels):
                return
            if any(c.get("Channel") == consult.operator_channel for c in channels):
                await self._action("Redirect", {
                    "Channel": consult.caller_channel, "Context": "sigap-forward-hold",
                    "Exten": "s", "Priority": "1",
                })
                return
            await self._action("Redirect", {
                "Channel": consult.caller_channel, "Context": "sigap-forward-hold",
                "Exten": "requeue", "Priority": "1",
            })
        except (ForwardError, AmiActionFailed) as exc:
            log.error("consult_caller_not_returned", call=consult.call_uniqueid,
                      channel=consult.caller_channel, error=str(exc))
            return
        if self.consults.get(consult.call_uniqueid) is consult:
            self.consults.pop(consult.call_uniqueid, None)
            self._end(consult, "operator_gone")

    def consults_for(self, endpoint: str | None) -> list[Consult]:
        """Return the consults in progress, or only those of one operator's phone."""
        return [
            consult for consult in self.consults.values()
            if endpoint is None or consult.operator_endpoint == endpoint
        ]

    async def restore(self) -> None:
        """Rebuild conferences and consults from Asterisk's channels.

        Run after every AMI login. A caller alone in a conference room, or on hold
        for a consult whose operator leg has gone, is sent back to the queue as
        the live events would have done. What the live events change while this
        runs wins over the snapshot: a channel hung up meanwhile is not restored,
        and a consult started meanwhile is kept.
        """
        self._hung_up_meanwhile = set()
        known_before = set(self.consults)
        try:
            channels = await self._channels()
            await self._restore_conferences(channels)
            found = await self._restore_consults(channels)
        finally:
            gone = self._hung_up_meanwhile
            self._hung_up_meanwhile = None
        for call, consult in found.items():
            if consult.caller_channel in gone or consult.operator_channel in gone:
                continue
            if call not in self.consults:
                self.consults[call] = consult
                self._notify("started", consult)
        for call in known_before - set(found):
            consult = self.consults.get(call)
            if consult is not None and not consult.completing:
                del self.consults[call]
                self._end(consult, "gone")
        log.info("forwards_restored", conferences=len(self.conferences),
                 consults=len(self.consults))

    async def _restore_conferences(self, channels: list[Event]) -> None:
        live = {c.get("Uniqueid") for c in channels}
        rooms: dict[str, Conference] = {}
        for channel in channels:
            if (channel.get("Application") or "").lower() != "confbridge":
                continue
            room = (channel.get("ApplicationData") or "").split(",", 1)[0]
            if not room.startswith("sigap-"):
                continue
            call = room.removeprefix("sigap-").replace("-", ".", 1)
            if not UNIQUEID.fullmatch(call):
                continue
            conference = rooms.setdefault(room, Conference(room, call))
            conference.members.add(channel.get("Uniqueid") or "")
            if (channel.get("Channel") or "").startswith("Local/"):
                conference.agency_joined = True
        for room, conference in list(self.conferences.items()):
            if room not in rooms and conference.call_uniqueid not in live:
                del self.conferences[room]
        self.conferences.update(rooms)
        for conference in rooms.values():
            if conference.members != {conference.call_uniqueid}:
                continue
            log.warning("conference_caller_alone", room=conference.room,
                        call=conference.call_uniqueid)
            try:
                await self._requeue(conference)
            except (ForwardError, AmiActionFailed) as exc:
                log.warning("conference_requeue_failed", room=conference.room,
                            call=conference.call_uniqueid, error=str(exc))

    async def _restore_consults(self, channels: list[Event]) -> dict[str, Consult]:
        by_name = {c.get("Channel") or "": c for c in channels}
        found: dict[str, Consult] = {}
        for channel in channels:
            if channel.get("Context") != "sigap-forward-hold":
                continue
            try:
                consult = await self._held_consult(channel, by_name)
            except (ForwardError, AmiActionFailed) as exc:
                log.warning("consult_not_restored", call=channel.get("Uniqueid"),
                            error=str(exc))
                continue
            if consult is not None:
                found[consult.call_uniqueid] = consult
        return found

    async def _held_consult(
        self, channel: Event, by_name: dict[str, Event]
    ) -> Consult | None:
        """Return the consult a caller on hold waits for, or requeue the caller if
        the operator's leg has ended."""
        call = channel.get("Uniqueid") or ""
        caller = channel.get("Channel") or ""
        values = {}
        for variable in ("SIGAP_CONSULT_OPERATOR", "SIGAP_CONSULT_AGENCY",
                         "SIGAP_CONSULT_REPORT"):
            try:
                reply = await self._action("Getvar", {"Channel": caller, "Variable": variable})
            except AmiActionFailed:
                return None  # the caller has left meanwhile
            response = getattr(reply, "response", None)
            values[variable] = (response.get("Value") if response is not None else None) or ""
        operator = values["SIGAP_CONSULT_OPERATOR"]
        if not UNIQUEID.fullmatch(call) or not operator:
            return None
        if operator not in by_name:
            log.warning("consult_operator_gone", call=call, operator=operator)
            await self._requeue_held(caller)
            return None
        existing = self.consults.get(call)
        if existing is not None:
            return existing
        report = values["SIGAP_CONSULT_REPORT"]
        return Consult(
            call, caller, operator, await self._consult_route(values["SIGAP_CONSULT_AGENCY"]),
            int(report) if report.isdigit() else None, caller_number_of(channel),
        )

    async def _consult_route(self, code: str) -> AgencyRoute:
        """Return the route of a consulted agency, staffed now or not: completing a
        consult needs only its channels."""
        for attempt in range(2):
            for route in self.routes.values():
                if code in (route.code, route.dial_code):
                    return route
            if attempt == 0:
                try:
                    await self.publish()
                except Exception:
                    log.exception("agency_lines_not_read", agency=code[:32])
                    break
        return AgencyRoute(0, code[:32], "", code[:32], ())

    async def callout(
        self, *, agency: str, dispatch_id: int, report_id: int, actor: str = "escalation"
    ) -> dict[str, Any]:
        """Call the agency's lines about an unacknowledged report.

        The line that answers hears the report's message and presses 1 to
        acknowledge it (see the report/acknowledge FastAGI route).
        """
        route = await self.find_route(agency)
        variables = {
            "SIGAP_FWD_CODE": route.dial_code,
            "SIGAP_FWD_DISPATCH": str(int(dispatch_id)),
            "SIGAP_FWD_REPORT": str(int(report_id)),
        }
        await self._action("Originate", {
            "Channel": "Local/s@sigap-escalation",
            "Context": "sigap-escalation-ack", "Exten": "s", "Priority": "1",
            "Async": "true", "CallerID": f'"Sigap 112" <{route.dial_code}>',
            "Variable": ",".join(f"{key}={value}" for key, value in variables.items()),
        })
        return await self._started("escalation", None, route, actor, report_id)

    async def _originate_agency(
        self, route: AgencyRoute, room: str, call_uniqueid: str, report_id: int | None,
        mode: str,
    ) -> None:
        variables = {
            "SIGAP_FWD_CODE": route.dial_code,
            "SIGAP_FWD_CALL": call_uniqueid,
            "SIGAP_FWD_MODE": mode,
            "SIGAP_FWD_REPORT": _report(report_id),
        }
        await self._action("Originate", {
            "Channel": "Local/s@sigap-forward-agency",
            "Application": "ConfBridge",
            "Data": f"{room},sigap-bridge,sigap-staff",
            "Async": "true",
            "Variable": ",".join(f"{key}={value}" for key, value in variables.items()),
        })

    async def _started(
        self, mode: str, call_uniqueid: str | None, route: AgencyRoute, actor: str,
        report_id: int | None,
    ) -> dict[str, Any]:
        detail = {"agency": route.code, "mode": mode, "report": report_id,
                  "call": call_uniqueid}
        await self._audit(actor, f"forward.{mode}", call_uniqueid or f"report:{report_id}",
                          detail)
        log.info("forward_started", **detail, actor=actor)
        return detail

    # Channels ------------------------------------------------------------------------

    async def _channels(self) -> list[Event]:
        response = await self.ami.action("CoreShowChannels", timeout=self.action_timeout)
        return list(getattr(response, "events", []))

    async def _call_channels(
        self, call_uniqueid: str, *, need_operator: bool
    ) -> tuple[str, str | None]:
        caller, operator = await self._call_legs(call_uniqueid, need_operator=need_operator)
        return caller.get("Channel") or "", operator.get("Channel") if operator else None

    async def _call_legs(
        self, call_uniqueid: str, *, need_operator: bool
    ) -> tuple[Event, Event | None]:
        """Return the caller's channel and the channel bridged with it, if any."""
        channels = await self._channels()
        caller = next((c for c in channels if c.get("Uniqueid") == call_uniqueid), None)
        if caller is None:
            raise ForwardError(
                "call_not_found",
                f"call {call_uniqueid} has no channel now; it may have ended", 404,
            )
        bridge = caller.get("BridgeId") or ""
        operator = None
        if bridge:
            operator = next(
                (c for c in channels
                 if c.get("BridgeId") == bridge and c.get("Uniqueid") != call_uniqueid),
                None,
            )
        if need_operator and operator is None:
            raise ForwardError(
                "call_not_connected",
                f"call {call_uniqueid} is not connected to an operator; conference and"
                " consult need the operator on the call, a transfer does not",
                409,
            )
        return caller, operator

    async def _bridged_peer(self, channel: str) -> str | None:
        return _bridged_peer_in(await self._channels(), channel)

    async def _setvars(self, channel: str, **variables: str) -> None:
        for name, value in variables.items():
            await self._action("Setvar", {"Channel": channel, "Variable": name, "Value": value})

    async def _action(self, name: str, fields: dict[str, str]) -> Any:
        try:
            return await self.ami.action(name, fields, timeout=self.action_timeout)
        except AmiActionFailed:
            raise
        except AmiError as exc:
            raise ForwardError(
                "asterisk_unavailable", f"AMI action {name} failed: {exc}", 503
            ) from None

    # Events --------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if self._stopped:
            return
        name = event.name
        if name == "UserEvent" and event.get("UserEvent") == "SigapForward":
            if event.get("Stage") == "requeue" and event.get("Mode") == "consult":
                self._on_hold_limit(event.get("Call") or "")
            # One worker, in event order: a result must find its attempt's row.
            self._forward_events.put_nowait(event)
            if self._worker is None or self._worker.done():
                self._worker = asyncio.ensure_future(self._record_forward_events())
        elif name == "UserEvent" and event.get("UserEvent") == "SigapForwardRequest":
            self._spawn(self._on_request(event))
        elif name == "ConfbridgeJoin":
            room = self.conferences.get(event.get("Conference") or "")
            if room is not None:
                room.members.add(event.get("Uniqueid") or "")
                if (event.get("Channel") or "").startswith("Local/"):
                    room.agency_joined = True
        elif name == "ConfbridgeLeave":
            self._on_leave(event)
        elif name == "Hangup":
            self._on_hangup(event)

    def _on_hangup(self, event: Event) -> None:
        channel = event.get("Channel") or ""
        if self._hung_up_meanwhile is not None:
            self._hung_up_meanwhile.add(channel)
        for consult in list(self.consults.values()):
            if channel == consult.caller_channel:
                self.consults.pop(consult.call_uniqueid, None)
                self._end(consult, "caller_gone")
            elif channel == consult.operator_channel and not consult.completing:
                # The agency never answered, or the operator hung up: no operator will
                # come back to the caller on hold. Back to the queue ahead of the
                # others now, not after the hold limit.
                self.consults.pop(consult.call_uniqueid, None)
                self._end(consult, "operator_gone")
                log.warning("consult_operator_gone", call=consult.call_uniqueid,
                            operator=channel)
                self._spawn(self._requeue_held(consult.caller_channel))

    def _on_hold_limit(self, call_uniqueid: str) -> None:
        """End the consult of a caller the dialplan sent back to the queue at its hold limit."""
        consult = self.consults.get(call_uniqueid)
        if consult is None or consult.completing:
            return
        del self.consults[call_uniqueid]
        self._end(consult, "requeued")

    def _end(self, consult: Consult, reason: str) -> None:
        consult.end_reason = reason
        self._notify("ended", consult)

    def _notify(self, state: str, consult: Consult) -> None:
        if self.on_consult is None:
            return
        try:
            self.on_consult(state, consult)
        except Exception:
            log.exception("consult_listener_failed", state=state, call=consult.call_uniqueid)

    def _on_leave(self, event: Event) -> None:
        room = self.conferences.get(event.get("Conference") or "")
        if room is None:
            return
        room.members.discard(event.get("Uniqueid") or "")
        if room.members == {room.call_uniqueid}:
            # Only the caller is left: the operator left before an agency joined, or
            # the agency could not be reached. Back to the queue, ahead of the others.
            log.warning("conference_caller_alone", room=room.room, call=room.call_uniqueid)
            self._spawn(self._requeue(room))
        elif not room.members:
            self.conferences.pop(room.room, None)

    async def _on_request(self, event: Event) -> None:
        """Carry out an operator's in-call feature code (*6N, *7N, *8N)."""
        mode = event.get("Mode") or ""
        code = event.get("Agency") or ""
        channel = event.get("Channel") or ""
        actor = _endpoint(channel) or "phone"
        if mode not in ("conference", "transfer", "consult") or not DIAL_CODE.fullmatch(code):
            log.warning("forward_request_invalid", mode=mode[:32], agency=code[:8],
                        channel=channel[:64])
            return
        channels = await self._channels()
        own = next((c for c in channels if c.get("Channel") == channel), None)
        bridge = own.get("BridgeId") if own else None
        peer = next(
            (c for c in channels
             if bridge and c.get("BridgeId") == bridge and c.get("Channel") != channel),
            None,
        )
        if peer is None:
            log.warning("forward_request_no_call", channel=channel, mode=mode)
            return
        try:
            await getattr(self, mode)(peer.get("Uniqueid") or "", code, actor=actor)
        except (ForwardError, AmiActionFailed) as exc:
            log.warning("forward_request_failed", channel=channel, mode=mode, agency=code,
                        error=str(exc))

    async def _requeue(self, room: Conference) -> None:
        channels = await self._channels()
        caller = next((c for c in channels if c.get("Uniqueid") == room.call_uniqueid), None)
        if caller is None:
            return
        await self._action("Redirect", {
            "Channel": caller.get("Channel") or "", "Context": "sigap-forward-conf",
            "Exten": "requeue", "Priority": "1",
        })
        self.conferences.pop(room.room, None)

    async def _requeue_held(self, caller_channel: str) -> None:
        """Send a caller on hold for a consult back to the queue at once."""
        try:
            if not _on_hold(await self._channels(), caller_channel):
                # Gone, or back in the queue already (the hold limit), perhaps talking
                # to another operator: leave the caller where they are.
                return
            await self._action("Redirect", {
                "Channel": caller_channel, "Context": "sigap-forward-hold",
                "Exten": "requeue", "Priority": "1",
            })
        except (ForwardError, AmiActionFailed) as exc:
            # The caller has left meanwhile, or AMI is down: the dialplan's hold limit
            # still sends a caller on hold back to the queue.
            log.warning("consult_requeue_failed", channel=caller_channel, error=str(exc))

    async def _record_forward_events(self) -> None:
        while not self._forward_events.empty():
            event = self._forward_events.get_nowait()
            try:
                await self._on_forward(event)
            except Exception:
                log.exception("forward_attempt_not_recorded", stage=event.get("Stage"),
                              call=event.get("Call"))

    async def _on_forward(self, event: Event) -> None:
        stage = event.get("Stage") or ""
        code = event.get("Agency") or ""
        call = event.get("Call") or ""
        report = event.get("Report") or ""
        key = (call or f"report:{report}", code, event.get("Line") or "")
        route = self.routes.get(code)
        if stage == "attempt" and route is not None and self.store is not None:
            if not report.isdigit() and call and self.reports_for_call is not None:
                linked = await self.reports_for_call(call)
                report = str(max(linked)) if linked else ""
            attempt_id = await self.store.insert_attempt(
                agency_id=route.agency_id,
                target=event.get("Target") or "",
                mode=ForwardMode(event.get("Mode") or "transfer"),
                started_at=self.clock(),
                actor="dialplan",
                call_uniqueid=call or None,
                report_id=int(report) if report.isdigit() else None,
                line_priority=int(event.get("Line") or 0) or None,
            )
            self._attempts[key] = attempt_id
        elif stage == "result" and self.store is not None:
            attempt_id = self._attempts.pop(key, None)
            if attempt_id is None:
                return
            status = event.get("DialStatus") or ""
            result = DIAL_RESULTS.get(status, ForwardResult.FAILED)
            now = self.clock()
            answered = _float(event.get("Answered"))
            await self.store.finish_attempt(
                attempt_id,
                result=result,
                ended_at=now,
                answered_at=now - timedelta(seconds=answered) if answered is not None else None,
                seconds=answered,
            )
        elif stage in ("failed", "requeue"):
            log.warning("forward_failed" if stage == "failed" else "forward_requeued",
                        agency=code, call=call, report=report, mode=event.get("Mode"))

    # Helpers -------------------------------------------------------------------------

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
            log.error("forward_task_failed", exc_info=task.exception())

    async def stop(self) -> None:
        # Let the recorder finish the rows it has: a database write cancelled halfway
        # leaves SQLAlchemy a connection to close after the database is gone.
        if self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout=5)
            except TimeoutError:
                log.warning("forward_attempts_not_recorded", pending=self._forward_events.qsize())
                self._worker.cancel()
        self._stopped = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _on_hold(channels: list[Event], channel: str) -> bool:
    """Tell whether `channel` waits in sigap-forward-hold in a CoreShowChannels list."""
    return any(
        c.get("Channel") == channel and c.get("Context") == "sigap-forward-hold"
        for c in channels
    )


def _bridged_peer_in(channels: list[Event], channel: str) -> str | None:
    """Return the channel bridged with `channel` in a CoreShowChannels list."""
    own = next((c for c in channels if c.get("Channel") == channel), None)
    bridge = own.get("BridgeId") if own else None
    if not bridge:
        return None
    peer = next(
        (c for c in channels if c.get("BridgeId") == bridge and c.get("Channel") != channel),
        None,
    )
    return peer.get("Channel") if peer else None


def caller_number_of(channel: Event) -> str:
    """Return a channel's caller number, as untrusted text cut to 32 characters."""
    number = channel.get("CallerIDNum") or ""
    if number == "<unknown>":
        return ""
    return re.sub(r"[^0-9+*#]", "", number)[:32]


def _endpoint(channel: str) -> str | None:
    match = re.fullmatch(r"PJSIP/([A-Za-z0-9_.-]+)-[0-9a-f]+", channel)
    return match.group(1) if match else None


def _report(report_id: int | None) -> str:
    return "" if report_id is None else str(int(report_id))


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None
