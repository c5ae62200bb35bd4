"""The operator console's live parts: call cards and callbacks of abandoned calls.

`CallCards` follows the queue's AMI events for each operator phone and publishes
a ``call.card`` event on the controller's feed when a call rings at the phone,
connects, or ends there. The page then reads the caller's earlier calls and
diversion flags over the JSON API.

`CallbackDialer` calls an abandoned caller back: an AMI Originate rings the
operator's own phone, and when the operator answers, the sigap-callback context
(dialplans/sigap-callback.conf) dials the caller's number through the carrier
trunk. The attempt's outcome comes from the OriginateResponse, the dialplan's
SigapCallback user event and the Hangup of the operator's channel.

NOTE: attempts live in memory while they run. An attempt still going on when
the controller stops keeps the outcome ``calling`` in the table.

Caller ID text is untrusted: it is stripped of control characters and cut to
CALLER_TEXT_LIMIT characters before it is published.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from sigap_pbx.ami.client import AmiError
from sigap_pbx.calls.asterisk_db import query_asterisk_db
from sigap_pbx.calls.tracker import unescape_display_name
from sigap_pbx.clock import Clock, utc_now
from sigap_pbx.store.callbacks import (
    CallbackAttemptView,
    CallbackOutcome,
    CallbackStore,
)
from sigap_pbx.web.access import CALL_STAFF
from sigap_pbx.wire.ami import Event
from sigap_pbx.wire.dialstring import validate_endpoint

if TYPE_CHECKING:
    from sigap_pbx.web.feed import Feed

log = structlog.get_logger(__name__)

CALLER_TEXT_LIMIT = 64
CARD_KIND = "call.card"
CALLBACK_KIND = "callback.updated"
CALLBACK_CONTEXT = "sigap-callback"
# Milliseconds the operator's phone rings for a callback before the attempt fails.
OPERATOR_RING_MS = 30_000
# A callback dials only this: an optional '+' and 3 to 20 digits. It is stricter
# than sigap_pbx.wire.dialstring.validate_number, because a caller number never
# needs '*' or '#', and a service code must not be dialled from the callback list.
CALLBACK_NUMBER = re.compile(r"\+?[0-9]{3,20}")
# Maximum number of OriginateResponse events kept while no attempt claims them,
# because one may arrive before `CallbackDialer.start` has read its action's id.
UNCLAIMED_LIMIT = 100
CEL_GRACE_SECONDS = 10.0
FINISHED_IDS_KEPT = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INTERFACE = re.compile(r"PJSIP/(?P<endpoint>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})")
# A phone's channel: PJSIP/<endpoint>-<8 hex digits>.
_PHONE_CHANNEL = re.compile(r"PJSIP/(?P<endpoint>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})-[0-9a-f]+")
# The context a caller's channel runs in while it is queued or connected.
EMERGENCY_CONTEXT = "sigap-emergency"

# DIALSTATUS of the Dial() to the caller, and the outcome each one records.
DIAL_OUTCOMES = {
    "ANSWER": CallbackOutcome.ANSWERED,
    "NOANSWER": CallbackOutcome.NO_ANSWER,
    "BUSY": CallbackOutcome.BUSY,
    "CANCEL": CallbackOutcome.CANCELLED,
}

def caller_text(value: str | None) -> str:
    """Return caller-supplied text without control characters, at most
    CALLER_TEXT_LIMIT characters long."""
    if not value or value == "<unknown>":
        return ""
    return _CONTROL.sub("", value)[:CALLER_TEXT_LIMIT]


def _duration_seconds(channel: Event) -> int:
    """Return a CoreShowChannel's Duration ("HH:MM:SS") in seconds, 0 if unreadable."""
    try:
        hours, minutes, seconds = (int(part) for part in (channel.get("Duration") or "").split(":"))
    except ValueError:
        return 0
    return hours * 3600 + minutes * 60 + seconds


def endpoint_of_interface(interface: str | None) -> str | None:
    """Return the endpoint of a queue member interface (`PJSIP/op1` -> `op1`)."""
    match = _INTERFACE.fullmatch(interface or "")
    return match.group("endpoint") if match else None


class CallbackRejected(Exception):
    """A callback that cannot start, with a stable code and HTTP status for the API."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def validate_callback_number(value: Any) -> str:
    """Return `value` if a callback may dial it; raise CallbackRejected otherwise."""
    if not isinstance(value, str) or not CALLBACK_NUMBER.fullmatch(value):
        raise CallbackRejected(
            "invalid_number",
            f"caller number {repr(value)[:40]} cannot be called back: a callback dials only an "
            "optional '+' and 3 to 20 digits; call this caller from a desk phone",
        )
    return value


# Call cards -------------------------------------------------------------------------


@dataclass
class Card:
    """The call ringing at or connected to one operator phone."""

    endpoint: str
    uniqueid: str
    caller_number: str
    caller_name: str
    queue: str
    state: str
    since: datetime
    # The uniqueid of the member's channel that the queue rang.
    member_uniqueid: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "uniqueid": self.uniqueid,
            "caller_number": self.caller_number,
            "caller_name": self.caller_name,
            "queue": self.queue,
            "state": self.state,
            "since": self.since.isoformat(),
        }


class CallCards:
    """The card of each operator phone, kept from AgentCalled, AgentConnect,
    AgentRingNoAnswer, AgentComplete and Hangup events."""

    def __init__(self, feed: Feed, *, clock: Clock = utc_now) -> None:
        self.feed = feed
        self.clock = clock
        self.cards: dict[str, Card] = {}

    def card_for(self, endpoint: str) -> Card | None:
        return self.cards.get(endpoint)

    def on_event(self, event: Event) -> None:
        name = event.name
        if name == "AgentCalled":
            self._ringing(event)
        elif name == "AgentConnect":
            card = self._member_card(event)
            if card is not None:
                card.state = "connected"
                card.since = self.clock()
                self._publish(card)
        elif name in ("AgentRingNoAnswer", "AgentComplete"):
            card = self._member_card(event)
            if card is not None:
                self._end(card)
        elif name == "Hangup":
            uniqueid = event.get("Uniqueid") or ""
            for card in list(self.cards.values()):
                if uniqueid in (card.uniqueid, card.member_uniqueid):
                    self._end(card)

    def restore(self, channels: list[Event], phones: set[str]) -> None:
        """Rebuild the cards from CoreShowChannels after an AMI login.

        A controller started during a call, or back after an AMI gap, missed the
        AgentCalled and AgentConnect events. Each phone in `phones` that rings for,
        or talks to, a caller in the emergency dialplan gets its card again. A card
        whose call has ended is closed.
        """
        by_uniqueid = {c.get("Uniqueid") or "": c for c in channels}
        found: dict[str, Card] = {}
        for channel in channels:
            match = _PHONE_CHANNEL.fullmatch(channel.get("Channel") or "")
            if match is None or match.group("endpoint") not in phones:
                continue
            bridge = channel.get("BridgeId") or ""
            caller = None
            if bridge:
                caller = next(
                    (c for c in channels if c.get("BridgeId") == bridge
                     and c is not channel and c.get("Context") == EMERGENCY_CONTEXT),
                    None,
                )
                state = "connected"
            elif channel.get("ChannelStateDesc") in ("Ring", "Ringing"):
                candidate = by_uniqueid.get(channel.get("Linkedid") or "")
                if candidate is not None and candidate.get("Context") == EMERGENCY_CONTEXT:
                    caller = candidate
                state = "ringing"
            if caller is None:
                continue
            endpoint = match.group("endpoint")
            queue = ""
            if (caller.get("Application") or "") == "Queue":
                queue = (caller.get("ApplicationData") or "").split(",", 1)[0]
            found[endpoint] = Card(
                endpoint=endpoint,
                uniqueid=caller.get("Uniqueid") or "",
                caller_number=caller_text(caller.get("CallerIDNum")),
                caller_name=caller_text(unescape_display_name(caller.get("CallerIDName"))),
                queue=caller_text(queue),
                state=state,
                since=self.clock() - timedelta(seconds=_duration_seconds(channel)),
                member_uniqueid=channel.get("Uniqueid") or "",
            )
        for endpoint, card in list(self.cards.items()):
            if endpoint not in found:
                self._end(card)
        for endpoint, card in found.items():
            old = self.cards.get(endpoint)
            if old is not None and (old.uniqueid, old.state) == (card.uniqueid, card.state):
                continue
            self.cards[endpoint] = card
            self._publish(card)
        log.info("call_cards_restored", cards=len(found))

    def _ringing(self, event: Event) -> None:
        endpoint = endpoint_of_interface(event.get("Interface"))
        uniqueid = event.get("Uniqueid") or ""
        if endpoint is None or not uniqueid:
            return
        card = Card(
            endpoint=endpoint,
            uniqueid=uniqueid,
            caller_number=caller_text(event.get("CallerIDNum")),
            caller_name=caller_text(unescape_display_name(event.get("CallerIDName"))),
            queue=caller_text(event.get("Queue")),
            state="ringing",
            since=self.clock(),
            member_uniqueid=event.get("DestUniqueid") or "",
        )
        self.cards[endpoint] = card
        self._publish(card)

    def _member_card(self, event: Event) -> Card | None:
        endpoint = endpoint_of_interface(event.get("Interface"))
        card = self.cards.get(endpoint or "")
        if card is None or card.uniqueid != event.get("Uniqueid"):
            return None
        return card

    def _end(self, card: Card) -> None:
        if self.cards.get(card.endpoint) is card:
            del self.cards[card.endpoint]
        card.state = "ended"
        card.since = self.clock()
        self._publish(card)

    def _publish(self, card: Card) -> None:
        self.feed.publish(CARD_KIND, card.to_dict(), roles=CALL_STAFF, endpoint=card.endpoint)


# Callbacks --------------------------------------------------------------------------


def callback_cel_rows(path: Path, uniqueid: str) -> list[tuple[str, str, str]]:
    """Return (eventtype, userdeftype, eventextra) of the CEL rows of a callback's
    operator channel (blocking; run it in a thread)."""
    return query_asterisk_db(
        path,
        "SELECT eventtype, userdeftype, eventextra FROM cel WHERE uniqueid = ? ORDER BY AcctId",
        (uniqueid,),
    )


def outcome_from_cel(rows: list[tuple[str, str, str]]) -> CallbackOutcome | None:
    """Return a callback's outcome from its operator channel's CEL rows, or None
    while that channel has not hung up.

    The dialplan leaves a `sigap_callback` mark with the Dial() status. Without it,
    the operator's phone either never answered or was hung up before the Dial().
    """
    answered = False
    for eventtype, userdeftype, extra in rows:
        if userdeftype == "sigap_callback":
            try:
                status = str(json.loads(extra or "{}").get("extra", "")).upper()
            except (ValueError, AttributeError):
                status = ""
            return DIAL_OUTCOMES.get(status, CallbackOutcome.FAILED)
        if eventtype == "ANSWER":
            answered = True
        if eventtype == "HANGUP":
            return CallbackOutcome.CANCELLED if answered else CallbackOutcome.OPERATOR_NO_ANSWER
    return None


@dataclass
class Attempt:
    id: int
    call_id: int
    uniqueid: str
    endpoint: str
    action_id: str = ""
    outcome: str = CallbackOutcome.CALLING.value
    # Set by the OriginateResponse with Response: Success, sent when the operator's
    # phone answered.
    operator_answered: bool = False


class CallbackDialer:
    """Start callbacks and record their outcomes from AMI events.

    Store writes go through one ordered queue, so the AMI reader never waits for
    the database, and an attempt's outcome is written after its row exists.
    """

    def __init__(
        self,
        ami: Any,
        store: CallbackStore,
        feed: Feed,
        *,
        trunk: str,
        presented_number: str,
        clock: Clock = utc_now,
        action_timeout: float = 5.0,
        cel_path: Path | None = None,
    ) -> None:
        self.ami = ami
        self.store = store
        self.feed = feed
        self.cel_path = cel_path
        # Seconds to wait for CEL rows that lag the end of a channel.
        self.cel_grace = CEL_GRACE_SECONDS
        # Ids of the attempts this process ended, newest last; their store writes may
        # still be queued when settle_unfinished reads the store.
        self._finished_ids: dict[int, None] = {}
        self.trunk = validate_endpoint(trunk, field="trunk")
        self.presented_number = validate_callback_number(presented_number)
        self.clock = clock
        self.action_timeout = action_timeout
        self.attempts: dict[str, Attempt] = {}
        self._by_action: dict[str, Attempt] = {}
        self._unclaimed: dict[str, Event] = {}
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()

    async def start(
        self, *, call_id: int, number: str, username: str, endpoint: str
    ) -> dict[str, Any]:
        """Record an attempt and ring the operator's phone; return the attempt.

        Raises CallbackRejected for an invalid number or endpoint, and when
        Asterisk rejects the Originate or cannot be reached (the attempt is then
        recorded as failed).
        """
        number = validate_callback_number(number)
        try:
            endpoint = validate_endpoint(endpoint)
        except ValueError as exc:
            raise CallbackRejected("invalid_endpoint", str(exc)) from None
        if not self.ami.connected:
            raise CallbackRejected(
                "asterisk_unavailable",
                "no AMI session with Asterisk is logged in; retry in a few seconds",
                503,
            )
        started_at = self.clock()
        # The Originate's ChannelId: the operator channel's uniqueid, known before
        # any event about it arrives.
        uniqueid = f"sigap-callback-{secrets.token_hex(8)}"
        attempt_id = await self.store.insert_attempt(
            call_id=call_id, caller_number=number, username=username,
            endpoint=endpoint, started_at=started_at, uniqueid=uniqueid,
        )
        attempt = Attempt(attempt_id, call_id, uniqueid, endpoint)
        self.attempts[uniqueid] = attempt
        variables = {
            "SIGAP_CALLBACK_ATTEMPT": str(attempt_id),
            "SIGAP_CALLBACK_NUMBER": number,
            "SIGAP_CALLBACK_TRUNK": self.trunk,
            "SIGAP_CALLBACK_PRESENTED": self.presented_number,
        }
        fields = {
            "Channel": f"PJSIP/{endpoint}",
            "Context": CALLBACK_CONTEXT,
            "Exten": "s",
            "Priority": "1",
            "Timeout": str(OPERATOR_RING_MS),
            "CallerID": f'"Panggilan balik" <{number}>',
            "ChannelId": uniqueid,
            "Async": "true",
            "Variable": ",".join(f"{key}={value}" for key, value in variables.items()),
        }
        try:
            completion = await self.ami.action("Originate", fields, timeout=self.action_timeout)
        except AmiError as exc:
            self._finish(attempt, CallbackOutcome.FAILED)
            log.warning("callback_originate_failed", attempt=attempt_id, error=str(exc))
            raise CallbackRejected(
                "asterisk_rejected",
                f"Asterisk did not start the callback: {exc}; check that the phone of "
                f"endpoint {endpoint} is registered, then retry",
                502,
            ) from None
        attempt.action_id = completion.action_id
        self._by_action[completion.action_id] = attempt
        early = self._unclaimed.pop(completion.action_id, None)
        if early is not None:
            self._on_originate_response(early)
        log.info("callback_started", attempt=attempt_id, call_id=call_id, endpoint=endpoint,
                 user=username)
        self._announce(attempt)
        return {"attempt_id": attempt_id, "call_id": call_id, "endpoint": endpoint,
                "uniqueid": uniqueid, "outcome": attempt.outcome,
                "started_at": started_at.isoformat()}

    async def settle_unfinished(self) -> int:
        """Give an outcome to the attempts still `calling` that no event will end.

        Run after every AMI login: an attempt from an earlier run of the controller,
        or one whose events fell in an AMI gap, would otherwise stay `calling`. The
        outcome comes from the CEL rows of the operator's channel. An attempt whose
        channel is still up is followed by its events again. One whose channel is
        gone without an outcome in CEL is read again after `cel_grace` seconds,
        because CEL rows can lag the channel's end, and then recorded as failed.
        An attempt that its own events end meanwhile is left as they recorded it.
        Returns how many were settled.
        """
        tracked = set(self.attempts)
        attempts = [
            view for view in await self.store.unfinished_attempts()
            if view.id not in self._finished_ids
        ]
        if not attempts:
            return 0
        try:
            reply = await self.ami.action("CoreShowChannels", timeout=self.action_timeout)
        except AmiError as exc:
            log.warning("callback_settle_deferred", error=str(exc))
            return 0
        live = {event.get("Uniqueid") or "" for event in reply.events}
        # The channel of an Originate sent moments ago may not exist yet.
        young = self.clock() - timedelta(milliseconds=OPERATOR_RING_MS)
        settled = 0
        gone = []
        for view in attempts:
            uniqueid = view.uniqueid or ""
            rows = await self._cel_rows(uniqueid)
            if self._ended_meanwhile(view, tracked):
                continue
            outcome = outcome_from_cel(rows)
            known = self.attempts.get(uniqueid)
            if outcome is not None:
                settled += self._settle(view, outcome)
            elif uniqueid in live or (known is not None and view.started_at > young):
                if known is None:
                    self.attempts[uniqueid] = Attempt(
                        view.id, view.call_id, uniqueid, view.endpoint,
                        operator_answered=any(row[0] == "ANSWER" for row in rows),
                    )
            else:
                gone.append(view)
        if gone:
            await asyncio.sleep(self.cel_grace)
            for view in gone:
                rows = await self._cel_rows(view.uniqueid or "")
                if self._ended_meanwhile(view, tracked):
                    continue
                settled += self._settle(view, outcome_from_cel(rows) or CallbackOutcome.FAILED)
        if settled:
            log.warning("callbacks_settled", count=settled)
        return settled

    async def _cel_rows(self, uniqueid: str) -> list[tuple[str, str, str]]:
        if self.cel_path is None or not uniqueid:
            return []
        return await asyncio.to_thread(callback_cel_rows, self.cel_path, uniqueid)

    def _ended_meanwhile(self, view: CallbackAttemptView, tracked: set[str]) -> bool:
        """Return whether live events ended the attempt since settling began."""
        uniqueid = view.uniqueid or ""
        return view.id in self._finished_ids or (
            uniqueid in tracked and uniqueid not in self.attempts
        )

    def _settle(self, view: CallbackAttemptView, outcome: CallbackOutcome) -> int:
        uniqueid = view.uniqueid or ""
        attempt = self.attempts.get(uniqueid) or Attempt(
            view.id, view.call_id, uniqueid, view.endpoint
        )
        attempt.outcome = outcome.value
        self._finish(attempt, outcome)
        return 1

    # Events --------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        name = event.name
        if name == "OriginateResponse":
            self._on_originate_response(event)
        elif name == "UserEvent" and event.get("UserEvent") == "SigapCallback":
            self._on_result(event)
        elif name == "Hangup":
            attempt = self.attempts.get(event.get("Uniqueid") or "")
            if attempt is not None:
                # Without a result from the dialplan: the operator's phone never
                # answered (this Hangup may come before the failed
                # OriginateResponse), or the operator hung up before the Dial().
                self._finish(
                    attempt,
                    CallbackOutcome.CANCELLED
                    if attempt.operator_answered
                    else CallbackOutcome.OPERATOR_NO_ANSWER,
                )

    def _on_originate_response(self, event: Event) -> None:
        attempt = self.attempts.get(event.get("Uniqueid") or "")
        if attempt is None:
            attempt = self._by_action.get(event.get("ActionID") or "")
        if attempt is None:
            action_id = event.get("ActionID") or ""
            if action_id:
                self._unclaimed[action_id] = event
                while len(self._unclaimed) > UNCLAIMED_LIMIT:
                    self._unclaimed.pop(next(iter(self._unclaimed)))
            return
        if (event.get("Response") or "") == "Success":
            attempt.operator_answered = True
            channel = caller_text(event.get("Channel"))
            if channel:
                self._write_nowait(
                    lambda: self._update(attempt.id, channel=channel)
                )
        else:
            self._finish(attempt, CallbackOutcome.OPERATOR_NO_ANSWER)

    def _on_result(self, event: Event) -> None:
        raw = event.get("Attempt") or ""
        attempt = next(
            (a for a in self.attempts.values() if str(a.id) == raw), None
        )
        if attempt is None:
            return
        status = (event.get("DialStatus") or "").upper()
        attempt.outcome = DIAL_OUTCOMES.get(status, CallbackOutcome.FAILED).value
        outcome = attempt.outcome
        self._write_nowait(lambda: self._update(attempt.id, outcome=outcome))

    def _finish(self, attempt: Attempt, default: CallbackOutcome) -> None:
        """End an attempt: keep the outcome the dialplan reported, else `default`."""
        if attempt.outcome == CallbackOutcome.CALLING.value:
            attempt.outcome = default.value
        self.attempts.pop(attempt.uniqueid, None)
        self._by_action.pop(attempt.action_id, None)
        self._finished_ids[attempt.id] = None
        while len(self._finished_ids) > FINISHED_IDS_KEPT:
            self._finished_ids.pop(next(iter(self._finished_ids)))
        outcome = attempt.outcome
        ended_at = self.clock()
        self._write_nowait(lambda: self._update(attempt.id, outcome=outcome, ended_at=ended_at))
        log.info("callback_ended", attempt=attempt.id, call_id=attempt.call_id,
                 outcome=outcome)

    async def _update(self, attempt_id: int, **fields: Any) -> None:
        view = await self.store.update_attempt(attempt_id, **fields)
        self.feed.publish(CALLBACK_KIND, view.to_dict(), roles=CALL_STAFF)

    def _announce(self, attempt: Attempt) -> None:
        self.feed.publish(
            CALLBACK_KIND,
            {"id": attempt.id, "call_id": attempt.call_id, "endpoint": attempt.endpoint,
             "outcome": attempt.outcome},
            roles=CALL_STAFF,
        )

    # Ordered writes ----------------------------------------------------------------

    def _write_nowait(self, write: Callable[[], Awaitable[None]]) -> None:
        self._writes.put_nowait(write)

    async def run_writer(self) -> None:
        """Apply the queued store writes in order; a failed write is logged and
        skipped."""
        while True:
            write = await self._writes.get()
            try:
                await write()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("callback_write_failed")
            finally:
                self._writes.task_done()

    async def flush(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._writes.join(), timeout)


def attach(controller: Any) -> None:
    """Create the call cards and the callback dialer and follow the controller's AMI."""
    cards = CallCards(controller.feed, clock=controller.clock)
    config = controller.config
    dialer = CallbackDialer(
        controller.ami,
        CallbackStore(controller.db),
        controller.feed,
        trunk=config.sip.trunks[0].name,
        presented_number=config.sip.emergency_numbers[0],
        clock=controller.clock,
        action_timeout=config.ami.action_timeout,
        cel_path=controller.paths.cel_db,
    )
    controller.call_cards = cards
    controller.callback_dialer = dialer
    controller.ami.add_event_listener(cards.on_event)
    controller.ami.add_event_listener(dialer.on_event)

    async def settle_after_login() -> None:
        # In a task of its own: reading CEL must not hold up the other listeners.
        controller._spawn(dialer.settle_unfinished(), "callback-settle")

    controller.ami.add_connect_listener(settle_after_login)
    controller._spawn(dialer.run_writer(), "callback-writer")
