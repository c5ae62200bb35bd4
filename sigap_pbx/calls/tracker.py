"""Follow every 112 call through AMI events and record it.

A call starts with the `Newchannel` of the trunk's channel in the inbound context, and
its uniqueid is the call's key. Every other channel of the call shares its linkedid:
the operator legs that a ring-all queue rings at once, Local channels, the overflow
lines. Events are applied at once to an in-memory state per call and per leg. The
resulting writes go through one ordered queue to the store, so the AMI reader never
waits for the database. Writes that queue up together are merged per call by the same
rules the store applies one by one (`merge_ops`).

Times come from the `Timestamp` header that Asterisk adds (timestampevents = yes), so
figures stay right when events are read late. Wait is counted from the call's arrival
at the PBX, as the answer-time standards require, not from queue entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from sigap_pbx.calls.numbers import normalise_number
from sigap_pbx.store import CallOutcome, CallStore
from sigap_pbx.store.calls import CALL_OVERWRITABLE, LEG_OVERWRITABLE
from sigap_pbx.wire.ami import Event

log = structlog.get_logger(__name__)

INBOUND_CONTEXT = "sigap-trunk-inbound"
# Causes that mean the caller (or the network on the caller's behalf) ended the call,
# as opposed to a failure on our side. Q.850: 16 normal clearing, 17 busy, 18 no user
# responding, 19 no answer, 31 normal unspecified, 127 interworking.
CALLER_CLEARED_CAUSES = {16, 17, 18, 19, 31, 127}
# Calls ended longer ago than this are forgotten; later events for them are ignored.
ENDED_CALL_MEMORY_SECONDS = 120.0
_ENDPOINT_OF_CHANNEL = re.compile(r"^PJSIP/(?P<endpoint>[^-/]+(?:-[^-/]+)*?)-[0-9a-f]{8}")
# Code points that cannot be stored: NUL, which PostgreSQL rejects in text and JSON,
# and lone surrogates, which have no UTF-8 encoding.
_NUL = "\x00"
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
# An invalid Timestamp header is logged the first time and then once per this many.
INVALID_TIMESTAMP_LOG_EVERY = 100

# Events that belong in a call's timeline.
TIMELINE_EVENTS = {
    "Newchannel",
    "Newstate",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentCalled",
    "AgentRingNoAnswer",
    "AgentConnect",
    "AgentComplete",
    "DialBegin",
    "DialEnd",
    "UserEvent",
    "Hangup",
}


def endpoint_of(channel: str | None) -> str | None:
    """Return the PJSIP endpoint of a channel name (`PJSIP/op1-0000002a` -> `op1`)."""
    if not channel:
        return None
    match = _ENDPOINT_OF_CHANNEL.match(channel)
    return match.group("endpoint") if match else None


def _float(value: str | None) -> float | None:
    """Parse a numeric header, or return None if it is absent, NaN, infinite or text."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _timestamp(event: Event) -> datetime | None:
    """Return the event's `Timestamp` header as a UTC time, or None if it is unusable.

    A missing, non-numeric, non-finite or negative value is unusable, and so is one
    beyond year 9999, where Python's datetime ends.
    """
    stamp = _float(event.get("Timestamp"))
    if stamp is None or stamp < 0:
        return None
    try:
        return datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _when(event: Event) -> datetime:
    """Return the event's time, falling back to the controller's clock."""
    return _timestamp(event) or datetime.fromtimestamp(time.time(), UTC)


def _seconds_between(start: datetime, end: datetime) -> float:
    """Return the seconds from start to end, or 0 if end comes first.

    End can come first when one of the two times fell back to the controller's clock.
    The store rejects a negative duration together with the rest of the write.
    """
    return max(0.0, (end - start).total_seconds())


def storable_text(value: str) -> str:
    """Remove NUL and replace lone surrogates with U+FFFD, keeping all else as is.

    Caller ID comes from the caller's network, and the store rejects a whole write
    that contains either.
    """
    return _LONE_SURROGATE.sub("\ufffd", value.replace(_NUL, ""))


# Caller ID name and number are kept to this many characters. They come from the
# caller's network and are shown on every page, so a long value is cut, and the call
# is still recorded.
MAX_CALLER_ID_LENGTH = 80
# Headers with caller ID text, also with a prefix such as Dest: CallerIDNum,
# CallerIDName, ConnectedLineNum and ConnectedLineName.
_CALLER_ID_HEADER = re.compile(r"(?:CallerID|ConnectedLine)(?:Num|Name)$")


def cap_caller_id(value: str | None) -> str:
    """Return caller ID text cut to MAX_CALLER_ID_LENGTH characters ('' for None)."""
    return (value or "")[:MAX_CALLER_ID_LENGTH]


def _storable(value: Any) -> Any:
    return storable_text(value) if isinstance(value, str) else value


@dataclass
class Leg:
    uniqueid: str
    channel: str
    interface: str | None = None
    member_name: str | None = None
    called_at: datetime | None = None
    outcome: str = "ringing"


@dataclass
class LiveCall:
    uniqueid: str
    linkedid: str
    channel: str
    arrived_at: datetime
    queue: str | None = None
    queued_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    stage: str | None = None
    outcome: str = CallOutcome.IN_PROGRESS
    legs: dict[str, Leg] = field(default_factory=dict)
    # Found alive after an AMI gap: what happened before (queue, answer) is not known
    # here, and CEL gives it to the reconciler.
    adopted: bool = False


@dataclass(frozen=True)
class StoreOp:
    """One ordered write: an upsert of the call, of a leg, or a timeline event."""

    kind: str
    call_uniqueid: str
    payload: dict[str, Any]


class CallTracker:
    """Turn AMI events into call records; all writes go through `run_writer`."""

    def __init__(
        self,
        store: CallStore,
        *,
        primary_queue: str = "operators",
        country_code: str = "62",
        inbound_context: str = INBOUND_CONTEXT,
    ) -> None:
        self.store = store
        self.primary_queue = primary_queue
        self.country_code = country_code
        self.inbound_context = inbound_context
        self.calls: dict[str, LiveCall] = {}
        # Calls whose caller hung up, kept a while for the events that follow the
        # caller's Hangup (the other legs' Hangup, AgentComplete).
        self._ended: OrderedDict[str, tuple[LiveCall, float]] = OrderedDict()
        self._ops: asyncio.Queue[StoreOp] = asyncio.Queue()
        self._call_ids: dict[str, int] = {}
        self.events_seen = 0
        self.writes_done = 0
        self.invalid_timestamps = 0

    # Event entry point (called by the AMI client, must not block) -------------------

    def on_event(self, event: Event) -> None:
        self.events_seen += 1
        self._check_timestamp(event)
        name = event.name
        if name == "Newchannel" and event.get("Context") == self.inbound_context:
            self._start_call(event)
            return
        linkedid = event.get("Linkedid") or ""
        call = self.calls.get(linkedid)
        if call is None and linkedid in self._ended:
            call = self._ended[linkedid][0]
        if call is None:
            return
        with structlog.contextvars.bound_contextvars(
            uniqueid=call.uniqueid, linkedid=call.linkedid
        ):
            if name in TIMELINE_EVENTS:
                self._timeline(call, event)
            handler = getattr(self, f"_on_{name}", None)
            if handler is not None:
                handler(call, event)

    def _check_timestamp(self, event: Event) -> None:
        raw = event.get("Timestamp")
        if raw is None or _timestamp(event) is not None:
            return
        self.invalid_timestamps += 1
        count = self.invalid_timestamps
        if count == 1 or count % INVALID_TIMESTAMP_LOG_EVERY == 0:
            log.warning(
                "ami_timestamp_invalid_using_clock",
                event_name=event.name,
                timestamp=raw,
                uniqueid=event.get("Uniqueid"),
                invalid_timestamps=count,
            )

    # Handlers --------------------------------------------------------------------------

    def _start_call(self, event: Event) -> None:
        uniqueid = event.get("Uniqueid") or ""
        linkedid = event.get("Linkedid") or uniqueid
        # A repeated Newchannel of a call that already ended must not open it again.
        if not uniqueid or linkedid in self.calls or linkedid in self._ended:
            return
        channel = event.get("Channel") or ""
        call = self._open_call(
            uniqueid,
            linkedid,
            channel,
            arrived_at=_when(event),
            raw_number=event.get("CallerIDNum"),
            raw_name=event.get("CallerIDName"),
            dialled=event.get("Exten") or "",
        )
        with structlog.contextvars.bound_contextvars(uniqueid=uniqueid, linkedid=linkedid):
            log.info("call_arrived", channel=channel, dialled=event.get("Exten"))
            self._timeline(call, event)

    def _on_QueueCallerJoin(self, call: LiveCall, event: Event) -> None:
        if event.get("Uniqueid") != call.uniqueid:
            return
        queue = event.get("Queue")
        if call.queued_at is None:
            call.queued_at = _when(event)
            call.queue = queue
            self._upsert(call, queued_at=call.queued_at, queue=queue)

    def _on_AgentCalled(self, call: LiveCall, event: Event) -> None:
        leg_id = event.get("DestUniqueid")
        if not leg_id:
            return
        leg = Leg(
            uniqueid=leg_id,
            channel=event.get("DestChannel") or "",
            interface=event.get("Interface"),
            member_name=event.get("MemberName"),
            called_at=_when(event),
        )
        call.legs[leg_id] = leg
        self._upsert_leg(
            call,
            leg_id,
            channel=leg.channel,
            interface=leg.interface,
            member_name=leg.member_name,
            queue=event.get("Queue"),
            called_at=leg.called_at,
            outcome="ringing",
        )

    def _on_AgentRingNoAnswer(self, call: LiveCall, event: Event) -> None:
        leg_id = event.get("DestUniqueid")
        if leg_id in call.legs:
            call.legs[leg_id].outcome = "no_answer"
            ring_ms = _float(event.get("RingTime"))
            self._upsert_leg(
                call,
                leg_id,
                outcome="no_answer",
                ended_at=_when(event),
                ring_seconds=ring_ms / 1000 if ring_ms is not None else None,
            )

    def _on_AgentConnect(self, call: LiveCall, event: Event) -> None:
        if event.get("Uniqueid") != call.uniqueid:
            return
        when = _when(event)
        member = event.get("MemberName")
        call.answered_at = when
        call.outcome = CallOutcome.ANSWERED if call.stage is None else CallOutcome.OVERFLOWED
        fields: dict[str, Any] = dict(
            answered_at=when,
            operator=member,
            operator_interface=event.get("Interface"),
            wait_seconds=_seconds_between(call.arrived_at, when),
            outcome=call.outcome,
        )
        if call.stage is not None:
            fields["answered_by"] = member
        self._upsert(call, **fields)
        leg_id = event.get("DestUniqueid")
        if leg_id:
            if leg_id in call.legs:
                call.legs[leg_id].outcome = "answered"
            ring_ms = _float(event.get("RingTime"))
            self._upsert_leg(
                call,
                leg_id,
                channel=event.get("DestChannel"),
                interface=event.get("Interface"),
                member_name=member,
                connected_at=when,
                outcome="answered",
                ring_seconds=ring_ms if ring_ms is not None else None,
            )
        log.info("call_answered", operator=member, wait=fields["wait_seconds"])

    def _on_AgentComplete(self, call: LiveCall, event: Event) -> None:
        # TalkTime is in whole seconds; the Hangup's timestamps give a finer figure,
        # so it is used only when the answer was missed (a call adopted after a gap).
        talk = _float(event.get("TalkTime"))
        if talk is not None and call.answered_at is None:
            self._upsert(call, talk_seconds=talk)
        leg_id = event.get("DestUniqueid")
        if leg_id:
            self._upsert_leg(call, leg_id, ended_at=_when(event))

    def _on_QueueCallerAbandon(self, call: LiveCall, event: Event) -> None:
        if event.get("Uniqueid") != call.uniqueid:
            return
        when = _when(event)
        outcome = (
            CallOutcome.ABANDONED_IN_QUEUE if call.stage is None else CallOutcome.OVERFLOWED
        )
        call.outcome = outcome
        self._upsert(
            call,
            outcome=outcome,
            wait_seconds=_seconds_between(call.arrived_at, when),
        )
        log.info("call_abandoned_in_queue", queue=event.get("Queue"))

    def _on_UserEvent(self, call: LiveCall, event: Event) -> None:
        if event.get("UserEvent") != "SigapOverflow" or event.get("Uniqueid") != call.uniqueid:
            return
        stage = event.get("Stage")
        if stage not in ("backup", "supervisor", "oncall"):
            return
        call.stage = stage
        call.outcome = CallOutcome.OVERFLOWED
        self._upsert(call, overflow_stage=stage, outcome=CallOutcome.OVERFLOWED)
        log.warning("call_overflowed", stage=stage, queue_status=event.get("QueueStatus"))

    def _on_DialEnd(self, call: LiveCall, event: Event) -> None:
        # The queue's own legs end with DialEnd too; only the overflow chain's Dial()
        # to the supervisor or on-call line is handled here.
        if call.stage not in ("supervisor", "oncall"):
            return
        if event.get("Uniqueid") != call.uniqueid or event.get("DialStatus") != "ANSWER":
            return
        when = _when(event)
        endpoint = endpoint_of(event.get("DestChannel"))
        call.answered_at = when
        self._upsert(
            call,
            answered_at=when,
            answered_by=endpoint,
            wait_seconds=_seconds_between(call.arrived_at, when),
            outcome=CallOutcome.OVERFLOWED,
        )
        log.info("call_answered_by_overflow", answered_by=endpoint, stage=call.stage)

    def _on_Hangup(self, call: LiveCall, event: Event) -> None:
        when = _when(event)
        leg_id = event.get("Uniqueid")
        if leg_id != call.uniqueid:
            if leg_id in call.legs:
                leg = call.legs[leg_id]
                if leg.outcome == "ringing":
                    leg.outcome = "cancelled"
                self._upsert_leg(call, leg_id, ended_at=when, outcome=leg.outcome)
            return
        call.ended_at = when
        cause = _int(event.get("Cause"))
        fields: dict[str, Any] = dict(
            ended_at=when,
            hangup_cause=cause,
            hangup_cause_text=event.get("Cause-txt"),
        )
        if call.adopted and call.outcome == CallOutcome.IN_PROGRESS:
            # The answer or the queue may have come before the gap. The stored record
            # keeps what the controller saw then, and the reconciler decides the rest
            # from CEL once the call's rows are complete; a guess here would record
            # an answered call as abandoned.
            self._upsert(call, **fields)
            log.info("call_ended_after_gap", cause=cause, uniqueid=call.uniqueid)
            if self.calls.pop(call.linkedid, None) is not None:
                self._remember_ended(call)
            return
        if call.answered_at is not None:
            fields["talk_seconds"] = _seconds_between(call.answered_at, when)
        else:
            fields["wait_seconds"] = _seconds_between(call.arrived_at, when)
        fields["outcome"] = self._final_outcome(call, cause)
        call.outcome = fields["outcome"]
        self._upsert(call, **fields)
        for leg in call.legs.values():
            if leg.outcome == "ringing":
                leg.outcome = "cancelled"
                self._upsert_leg(call, leg.uniqueid, outcome="cancelled", ended_at=when)
        log.info("call_ended", outcome=str(fields["outcome"]), cause=cause)
        if self.calls.pop(call.linkedid, None) is not None:
            self._remember_ended(call)

    def _final_outcome(self, call: LiveCall, cause: int | None) -> str:
        if call.outcome != CallOutcome.IN_PROGRESS:
            return call.outcome
        if call.stage is not None:
            return CallOutcome.OVERFLOWED
        if call.queued_at is not None:
            return CallOutcome.ABANDONED_IN_QUEUE
        if cause is None or cause in CALLER_CLEARED_CAUSES:
            return CallOutcome.ABANDONED_BEFORE_QUEUE
        return CallOutcome.FAILED

    # Resynchronisation after an AMI gap --------------------------------------------

    def _open_call(
        self,
        uniqueid: str,
        linkedid: str,
        channel: str,
        *,
        arrived_at: datetime,
        raw_number: str | None,
        raw_name: str | None,
        dialled: str | None,
    ) -> LiveCall:
        """Start tracking a call and queue the write of its caller fields."""
        call = LiveCall(
            uniqueid=uniqueid, linkedid=linkedid, channel=channel, arrived_at=arrived_at
        )
        self.calls[linkedid] = call
        number = _caller_id_text(raw_number)
        self._upsert(
            call,
            linkedid=linkedid,
            channel=channel,
            caller_number=normalise_number(number, self.country_code),
            caller_number_raw=number,
            caller_name=_caller_id_text(unescape_display_name(raw_name)),
            trunk=endpoint_of(channel) or "",
            dialled_number=dialled,
            arrived_at=arrived_at,
        )
        return call

    def adopt_channel(self, entry: dict[str, str]) -> None:
        """Track a live caller channel found by CoreShowChannels after a reconnect."""
        if entry.get("Context") not in (self.inbound_context, "sigap-emergency"):
            return
        linkedid = entry.get("Linkedid") or entry.get("Uniqueid") or ""
        if linkedid in self.calls or entry.get("Uniqueid") != linkedid:
            return
        duration = _parse_duration(entry.get("Duration"))
        call = self._open_call(
            linkedid,
            linkedid,
            entry.get("Channel", ""),
            arrived_at=datetime.fromtimestamp(time.time() - duration, UTC),
            raw_number=entry.get("CallerIDNum"),
            raw_name=entry.get("CallerIDName"),
            dialled=None,
        )
        call.adopted = True
        log.info("call_adopted_after_gap", uniqueid=linkedid, channel=call.channel)

    def forget_calls_not_in(self, live_linkedids: set[str]) -> list[str]:
        """Drop calls that ended while AMI was away; reconciliation records their end."""
        gone = [linkedid for linkedid in self.calls if linkedid not in live_linkedids]
        for linkedid in gone:
            self._remember_ended(self.calls.pop(linkedid))
        return gone

    # Store writes ----------------------------------------------------------------

    # Every string from AMI goes through storable_text here, not only the caller ID,
    # because any header can carry a NUL that would make the store reject the write.

    def _upsert(self, call: LiveCall, **fields: Any) -> None:
        fields = {
            key: _storable(value) for key, value in fields.items() if value is not None
        }
        self._ops.put_nowait(StoreOp("call", call.uniqueid, fields))

    def _upsert_leg(self, call: LiveCall, leg_id: str, **fields: Any) -> None:
        fields = {
            key: _storable(value) for key, value in fields.items() if value is not None
        }
        self._ops.put_nowait(
            StoreOp("leg", call.uniqueid, {"uniqueid": storable_text(leg_id), **fields})
        )

    def _timeline(self, call: LiveCall, event: Event) -> None:
        # The digest covers the headers as received, before cleaning, so two events
        # that differ only in a NUL keep different dedupe keys.
        digest = hashlib.sha1(repr(event.headers).encode()).hexdigest()[:24]
        data = {
            storable_text(key): storable_text(
                cap_caller_id(value) if _CALLER_ID_HEADER.search(key) else value
            )
            for key, value in event.as_dict().items()
        }
        data.pop("Privilege", None)
        self._ops.put_nowait(
            StoreOp(
                "event",
                call.uniqueid,
                {
                    "at": _when(event),
                    "source": "ami",
                    "kind": storable_text(
                        event.name
                        if event.name != "UserEvent"
                        else f"UserEvent:{event.get('UserEvent')}"
                    ),
                    "dedupe_key": f"ami:{digest}",
                    "data": data,
                },
            )
        )

    def _remember_ended(self, call: LiveCall) -> None:
        now = time.monotonic()
        self._ended[call.linkedid] = (call, now)
        while self._ended:
            oldest, (old_call, ended_at) = next(iter(self._ended.items()))
            if now - ended_at <= ENDED_CALL_MEMORY_SECONDS:
                break
            self._ended.popitem(last=False)
            self._call_ids.pop(old_call.uniqueid, None)

    @property
    def pending_writes(self) -> int:
        return self._ops.qsize()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued write is in the store (for tests and shutdown)."""
        await asyncio.wait_for(self._ops.join(), timeout)

    async def run_writer(self) -> None:
        """Apply queued writes in order; a failing database is retried, never skipped.

        Writes that queued up while the previous ones ran are applied together: a
        call's upserts are merged into one and its timeline events inserted in one
        statement. Each store transaction costs far more than the rows in it, so
        under load the writer does fewer, larger ones and keeps up with AMI.
        """
        while True:
            batch = [await self._ops.get()]
            while len(batch) < WRITE_BATCH_MAX and not self._ops.empty():
                batch.append(self._ops.get_nowait())
            try:
                for group in merge_ops(batch):
                    await self._apply_with_retry(group)
            finally:
                for _ in batch:
                    self._ops.task_done()

    async def _apply_with_retry(self, op: StoreOp) -> None:
        delay = 0.2
        while True:
            try:
                await self._apply(op)
                self.writes_done += 1
                return
            except (ValueError, TypeError, LookupError):
                if op.kind == "events" and len(op.payload["events"]) > 1:
                    # One bad event must not cost the others: store them one by one.
                    for event in op.payload["events"]:
                        await self._apply_with_retry(StoreOp("event", op.call_uniqueid, event))
                    return
                # A value the store rejects (InvalidFieldValue, UnknownField) or a row
                # it cannot find (CallNotFound) will fail again: log it whole.
                log.exception("store_write_rejected", op=op.kind, uniqueid=op.call_uniqueid)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "store_write_failed_retrying",
                    op=op.kind,
                    uniqueid=op.call_uniqueid,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _apply(self, op: StoreOp) -> None:
        if op.kind == "call":
            self._call_ids[op.call_uniqueid] = await self.store.upsert_call(
                op.call_uniqueid, **op.payload
            )
            return
        call_id = self._call_ids.get(op.call_uniqueid)
        if call_id is None:
            call_id = await self.store.upsert_call(op.call_uniqueid)
            self._call_ids[op.call_uniqueid] = call_id
        if op.kind == "leg":
            payload = dict(op.payload)
            await self.store.upsert_leg(call_id, payload.pop("uniqueid"), **payload)
        elif op.kind == "events":
            await self.store.add_events(call_id, op.payload["events"])
        else:
            await self.store.add_event(call_id, **op.payload)


WRITE_BATCH_MAX = 500


def _merge_fields(
    merged: dict[str, Any], later: dict[str, Any], overwritable: frozenset[str],
    initial_outcome: str,
) -> None:
    """Fold `later` into `merged` the way the store would apply them one after the
    other: overwritable fields take the later value (but an outcome never goes back
    to the initial one), the others keep the first value given."""
    for key, value in later.items():
        if key == "outcome" and value == initial_outcome and key in merged:
            continue
        if key in overwritable or key not in merged:
            merged[key] = value


def merge_ops(batch: list[StoreOp]) -> list[StoreOp]:
    """Merge a batch of writes: one upsert per call and per leg, one bulk insert of
    each call's events. The calls keep the order in which they first appear, and
    each call's own upsert comes before its legs and events."""
    calls: dict[str, dict[str, Any]] = {}
    legs: dict[tuple[str, str], dict[str, Any]] = {}
    events: dict[str, list[dict[str, Any]]] = {}
    order: list[str] = []
    for op in batch:
        if op.call_uniqueid not in calls:
            calls[op.call_uniqueid] = {}
            order.append(op.call_uniqueid)
        if op.kind == "call":
            _merge_fields(calls[op.call_uniqueid], op.payload, CALL_OVERWRITABLE, "in_progress")
        elif op.kind == "leg":
            key = (op.call_uniqueid, op.payload["uniqueid"])
            _merge_fields(legs.setdefault(key, {}), op.payload, LEG_OVERWRITABLE, "ringing")
        else:
            events.setdefault(op.call_uniqueid, []).append(op.payload)
    merged: list[StoreOp] = []
    for uniqueid in order:
        merged.append(StoreOp("call", uniqueid, calls[uniqueid]))
        for (call_uniqueid, _), payload in legs.items():
            if call_uniqueid == uniqueid:
                merged.append(StoreOp("leg", uniqueid, payload))
        if uniqueid in events:
            merged.append(StoreOp("events", uniqueid, {"events": events[uniqueid]}))
    return merged


_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def unescape_display_name(value: str | None) -> str:
    """Undo the quoted-pair escapes of a SIP display name: `\\"` is `"`, `\\\\` is `\\`.

    Asterisk passes a quoted display name on with its escapes, so a caller who
    sends `"Pak \\"Budi\\""` would otherwise be shown with the backslashes.
    """
    return _QUOTED_PAIR.sub(r"\1", value or "")


def _caller_id_text(value: str | None) -> str:
    """Return a caller ID part as stored: '' for Asterisk's `<unknown>` placeholder."""
    text = storable_text(cap_caller_id(value))
    return "" if text == "<unknown>" else text


def _parse_duration(text: str | None) -> float:
    """Parse CoreShowChannel's `Duration: HH:MM:SS` into seconds (0 when absent)."""
    if not text:
        return 0.0
    try:
        hours, minutes, seconds = (int(part) for part in text.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds
