"""CallTracker: AMI event sequences of real call flows turned into stored call records.

Each sequence is written as the AMI bytes Asterisk 22 sends with `timestampevents =
yes` and parsed with AmiParser, so the tracker gets the Event objects that the AMI
client would pass it.
Times are offsets in seconds from T0; the records must use the `Timestamp` headers,
not the time the events were processed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sigap_pbx.calls.tracker import CallTracker
from sigap_pbx.store import CallStore, CallView, Database
from sigap_pbx.wire.ami import AmiParser, Event

T0 = 1796409216.0
CALLER_ID = "1796409216.0"


def stamp(offset: float) -> str:
    return f"{T0 + offset:.6f}"


def at(offset: float) -> datetime:
    return datetime.fromtimestamp(float(stamp(offset)), UTC)


@dataclass(frozen=True)
class Channel:
    """The channel-state headers that Asterisk writes for one channel."""

    name: str
    uniqueid: str
    context: str
    exten: str
    linkedid: str = CALLER_ID
    caller_number: str = "081234567890"
    caller_name: str = "<unknown>"
    state: str = "Up"

    def headers(self, prefix: str = "") -> list[tuple[str, str]]:
        state_number = {"Down": "0", "Ring": "4", "Ringing": "5", "Up": "6"}[self.state]
        return [
            (f"{prefix}Channel", self.name),
            (f"{prefix}ChannelState", state_number),
            (f"{prefix}ChannelStateDesc", self.state),
            (f"{prefix}CallerIDNum", self.caller_number),
            (f"{prefix}CallerIDName", self.caller_name),
            (f"{prefix}ConnectedLineNum", "<unknown>"),
            (f"{prefix}ConnectedLineName", "<unknown>"),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", self.context),
            (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", "1"),
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Linkedid", self.linkedid),
        ]


CALLER_AT_TRUNK = Channel(
    "PJSIP/carrier-00000000", CALLER_ID, "sigap-trunk-inbound", "112", state="Ring"
)
CALLER = replace(CALLER_AT_TRUNK, context="sigap-emergency", exten="s", state="Up")
OP1_RINGING = Channel(
    "PJSIP/op1-00000001", "1796409216.1", "sigap-operators", "s", state="Down"
)
OP2_RINGING = Channel(
    "PJSIP/op2-00000002", "1796409216.2", "sigap-operators", "s", state="Down"
)
OP1 = replace(OP1_RINGING, state="Up")
OP2 = replace(OP2_RINGING, state="Up")
SPV1 = Channel("PJSIP/spv1-00000003", "1796409216.3", "sigap-emergency", "s")


def event(
    name: str,
    offset: float,
    channel: Channel,
    *fields: tuple[str, str],
    dest: Channel | None = None,
    privilege: str = "call,all",
) -> bytes:
    headers = [
        ("Event", name),
        ("Privilege", privilege),
        ("Timestamp", stamp(offset)),
        *channel.headers(),
    ]
    if dest is not None:
        headers += dest.headers("Dest")
    headers += fields
    return b"".join(f"{key}: {value}\r\n".encode() for key, value in headers) + b"\r\n"


def parse(*chunks: bytes) -> list[Event]:
    messages = AmiParser().feed(b"".join(chunks))
    assert all(isinstance(message, Event) for message in messages)
    return messages  # type: ignore[return-value]


def queue_event(name: str, offset: float, queue: str = "operators") -> bytes:
    return event(
        name,
        offset,
        CALLER,
        ("Queue", queue),
        ("Position", "1"),
        ("Count", "1"),
        privilege="agent,all",
    )


def agent_event(
    name: str, offset: float, agent: Channel, member: str, *fields: tuple[str, str]
) -> bytes:
    return event(
        name,
        offset,
        CALLER,
        ("Queue", "operators"),
        ("Interface", f"PJSIP/{member}"),
        ("MemberName", member),
        *fields,
        dest=agent,
        privilege="agent,all",
    )


def hangup(offset: float, channel: Channel, cause: int, text: str) -> bytes:
    return event("Hangup", offset, channel, ("Cause", str(cause)), ("Cause-txt", text))


def with_timestamp(chunk: bytes, offset: float, value: str) -> bytes:
    """Return an event's bytes with its Timestamp header set to `value`."""
    old = f"Timestamp: {stamp(offset)}\r\n".encode()
    assert old in chunk
    return chunk.replace(old, f"Timestamp: {value}\r\n".encode())


def answered_call() -> list[Event]:
    """Ring-all to op1 and op2; op1 answers, the caller hangs up after a minute."""
    return parse(
        event("Newchannel", 0.0, CALLER_AT_TRUNK),
        queue_event("QueueCallerJoin", 1.5),
        event("Newchannel", 1.6, OP1_RINGING),
        event("Newchannel", 1.6, OP2_RINGING),
        agent_event("AgentCalled", 1.6, OP1_RINGING, "op1"),
        agent_event("AgentCalled", 1.6, OP2_RINGING, "op2"),
        agent_event(
            "AgentConnect", 6.0, OP1, "op1", ("HoldTime", "5"), ("RingTime", "4")
        ),
        queue_event("QueueCallerLeave", 6.0),
        hangup(6.1, OP2_RINGING, 26, "Answered elsewhere"),
        agent_event(
            "AgentComplete",
            66.0,
            OP1,
            "op1",
            ("HoldTime", "5"),
            ("TalkTime", "60"),
            ("Reason", "caller"),
        ),
        hangup(66.1, CALLER, 16, "Normal Clearing"),
        hangup(66.2, OP1, 16, "Normal Clearing"),
    )


def abandoned_in_queue() -> list[Event]:
    return parse(
        event("Newchannel", 0.0, CALLER_AT_TRUNK),
        queue_event("QueueCallerJoin", 1.0),
        event("Newchannel", 1.1, OP1_RINGING),
        event("Newchannel", 1.1, OP2_RINGING),
        agent_event("AgentCalled", 1.1, OP1_RINGING, "op1"),
        agent_event("AgentCalled", 1.1, OP2_RINGING, "op2"),
        event(
            "QueueCallerAbandon",
            10.0,
            CALLER,
            ("Queue", "operators"),
            ("Position", "1"),
            ("OriginalPosition", "1"),
            ("HoldTime", "9"),
            privilege="agent,all",
        ),
        queue_event("QueueCallerLeave", 10.0),
        hangup(10.001, OP1_RINGING, 16, "Normal Clearing"),
        hangup(10.002, OP2_RINGING, 16, "Normal Clearing"),
        hangup(10.004, CALLER, 16, "Normal Clearing"),
    )


def overflow_events(stage: str, offset: float, *fields: tuple[str, str]) -> bytes:
    return event(
        "UserEvent",
        offset,
        CALLER,
        ("UserEvent", "SigapOverflow"),
        ("Stage", stage),
        *fields,
        privilege="user,all",
    )


def overflowed_to_supervisor() -> list[Event]:
    """No operator in either queue answers; the supervisor's line picks up."""
    return parse(
        event("Newchannel", 0.0, CALLER_AT_TRUNK),
        queue_event("QueueCallerJoin", 1.0),
        event("Newchannel", 1.1, OP1_RINGING),
        agent_event("AgentCalled", 1.1, OP1_RINGING, "op1"),
        agent_event(
            "AgentRingNoAnswer", 16.1, OP1_RINGING, "op1", ("RingTime", "15000")
        ),
        hangup(16.1, OP1_RINGING, 16, "Normal Clearing"),
        queue_event("QueueCallerLeave", 31.0),
        overflow_events("backup", 31.0, ("QueueStatus", "TIMEOUT")),
        queue_event("QueueCallerJoin", 31.1, queue="operators-backup"),
        queue_event("QueueCallerLeave", 51.0, queue="operators-backup"),
        overflow_events("supervisor", 51.1, ("Target", "spv1")),
        event("Newchannel", 51.2, replace(SPV1, state="Down")),
        event("DialBegin", 51.2, CALLER, ("DialString", "spv1"), dest=SPV1),
        event("DialEnd", 58.0, CALLER, ("DialStatus", "ANSWER"), dest=SPV1),
        hangup(120.0, CALLER, 16, "Normal Clearing"),
        hangup(120.1, SPV1, 16, "Normal Clearing"),
    )


def feed(tracker: CallTracker, events: Iterable[Event]) -> None:
    for item in events:
        tracker.on_event(item)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallStore]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    yield CallStore(db)
    await db.close()


@pytest.fixture
async def tracker(store: CallStore) -> AsyncIterator[CallTracker]:
    tracker = CallTracker(store)
    writer = asyncio.create_task(tracker.run_writer())
    yield tracker
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer


async def only_call(store: CallStore) -> CallView:
    calls = await store.list_calls()
    assert len(calls) == 1
    full = await store.get_call(calls[0].id)
    assert full is not None
    return full


# --- Outcomes -------------------------------------------------------------------


async def test_answered_call_recorded(tracker: CallTracker, store: CallStore) -> None:
    feed(tracker, answered_call())
    await tracker.flush()

    call = await only_call(store)
    assert call.uniqueid == CALLER_ID
    assert call.outcome == "answered"
    assert call.operator == "op1"
    assert call.operator_interface == "PJSIP/op1"
    assert call.answered_by is None
    assert call.queue == "operators"
    assert call.arrived_at == at(0.0)
    assert call.queued_at == at(1.5)
    assert call.answered_at == at(6.0)
    assert call.ended_at == at(66.1)
    assert call.wait_seconds == pytest.approx(6.0)
    assert call.talk_seconds == pytest.approx(60.1)
    assert call.hangup_cause == 16
    assert call.hangup_cause_text == "Normal Clearing"
    assert call.caller_number == "+6281234567890"
    assert call.caller_number_raw == "081234567890"
    assert call.trunk == "carrier"
    assert call.dialled_number == "112"
    assert call.reconciled is False
    assert tracker.calls == {}


async def test_answered_call_legs(tracker: CallTracker, store: CallStore) -> None:
    feed(tracker, answered_call())
    await tracker.flush()

    call = await only_call(store)
    legs = {leg.member_name: leg for leg in call.legs}
    assert sorted(legs) == ["op1", "op2"]
    assert legs["op1"].outcome == "answered"
    assert legs["op1"].uniqueid == OP1.uniqueid
    assert legs["op1"].interface == "PJSIP/op1"
    assert legs["op1"].called_at == at(1.6)
    assert legs["op1"].connected_at == at(6.0)
    assert legs["op1"].ended_at == at(66.2)
    assert legs["op1"].ring_seconds == pytest.approx(4.0)
    assert legs["op2"].outcome == "cancelled"
    assert legs["op2"].connected_at is None
    assert legs["op2"].ended_at == at(6.1)


async def test_answered_call_timeline(tracker: CallTracker, store: CallStore) -> None:
    feed(tracker, answered_call())
    await tracker.flush()

    call = await only_call(store)
    assert call.events is not None
    assert [item.kind for item in call.events] == [
        "Newchannel",
        "QueueCallerJoin",
        "Newchannel",
        "Newchannel",
        "AgentCalled",
        "AgentCalled",
        "AgentConnect",
        "QueueCallerLeave",
        "Hangup",
        "AgentComplete",
        "Hangup",
        "Hangup",
    ]
    assert {item.source for item in call.events} == {"ami"}
    assert call.events[0].at == at(0.0)
    assert call.events[0].data["Channel"] == "PJSIP/carrier-00000000"
    assert "Privilege" not in call.events[0].data


async def test_abandoned_in_queue(tracker: CallTracker, store: CallStore) -> None:
    feed(tracker, abandoned_in_queue())
    await tracker.flush()

    call = await only_call(store)
    assert call.outcome == "abandoned_in_queue"
    assert call.queued_at == at(1.0)
    assert call.answered_at is None
    assert call.operator is None
    assert call.wait_seconds == pytest.approx(10.0, abs=0.01)
    assert call.talk_seconds is None
    assert call.ended_at == at(10.004)
    assert call.hangup_cause == 16
    assert sorted((leg.member_name, leg.outcome) for leg in call.legs) == [
        ("op1", "cancelled"),
        ("op2", "cancelled"),
    ]


async def test_abandoned_before_queue(tracker: CallTracker, store: CallStore) -> None:
    feed(
        tracker,
        parse(
            event("Newchannel", 0.0, CALLER_AT_TRUNK),
            hangup(2.0, CALLER, 16, "Normal Clearing"),
        ),
    )
    await tracker.flush()

    call = await only_call(store)
    assert call.outcome == "abandoned_before_queue"
    assert call.queued_at is None
    assert call.wait_seconds == pytest.approx(2.0)
    assert call.hangup_cause == 16
    assert call.legs == ()


@pytest.mark.parametrize(
    ("cause", "text"),
    [(0, "Unknown"), (34, "Circuit/channel congestion"), (38, "Network out of order")],
)
async def test_failed_call(
    tracker: CallTracker, store: CallStore, cause: int, text: str
) -> None:
    feed(
        tracker,
        parse(
            event("Newchannel", 0.0, CALLER_AT_TRUNK), hangup(0.5, CALLER, cause, text)
        ),
    )
    await tracker.flush()

    call = await only_call(store)
    assert call.outcome == "failed"
    assert call.hangup_cause == cause
    assert call.hangup_cause_text == text
    assert call.ended_at == at(0.5)


async def test_overflow_to_supervisor(tracker: CallTracker, store: CallStore) -> None:
    feed(tracker, overflowed_to_supervisor())
    await tracker.flush()

    call = await only_call(store)
    assert call.outcome == "overflowed"
    assert call.overflow_stage == "supervisor"
    assert call.answered_by == "spv1"
    assert call.operator is None
    assert call.queue == "operators"
    assert call.answered_at == at(58.0)
    assert call.wait_seconds == pytest.approx(58.0)
    assert call.talk_seconds == pytest.approx(62.0)
    assert call.ended_at == at(120.0)
    (leg,) = call.legs
    assert leg.member_name == "op1"
    assert leg.outcome == "no_answer"
    assert leg.ring_seconds == pytest.approx(15.0)
    assert leg.ended_at == at(16.1)
    assert call.events is not None
    kinds = [item.kind for item in call.events]
    assert kinds.count("UserEvent:SigapOverflow") == 2


async def test_overflow_backup_answered(tracker: CallTracker, store: CallStore) -> None:
    backup_op2 = replace(OP2, uniqueid="1796409216.4")
    feed(
        tracker,
        parse(
            event("Newchannel", 0.0, CALLER_AT_TRUNK),
            queue_event("QueueCallerJoin", 1.0),
            queue_event("QueueCallerLeave", 31.0),
            overflow_events("backup", 31.0, ("QueueStatus", "TIMEOUT")),
            queue_event("QueueCallerJoin", 31.1, queue="operators-backup"),
            agent_event("AgentCalled", 31.2, backup_op2, "op2"),
            agent_event(
                "AgentConnect",
                35.0,
                backup_op2,
                "op2",
                ("HoldTime", "4"),
                ("RingTime", "3"),
            ),
            hangup(95.0, CALLER, 16, "Normal Clearing"),
        ),
    )
    await tracker.flush()

    call = await only_call(store)
    assert call.outcome == "overflowed"
    assert call.overflow_stage == "backup"
    assert call.operator == "op2"
    assert call.answered_by == "op2"
    assert call.wait_seconds == pytest.approx(35.0)
    assert call.talk_seconds == pytest.approx(60.0)


# --- Duplicates and unrelated channels ---------------------------------------------


async def test_duplicate_events_one_record(
    tracker: CallTracker, store: CallStore
) -> None:
    events = answered_call()

    feed(tracker, [item for item in events for _ in range(2)])
    await tracker.flush()

    call = await only_call(store)
    assert call.outcome == "answered"
    assert call.operator == "op1"
    assert call.wait_seconds == pytest.approx(6.0)
    assert len(call.legs) == 2
    assert call.events is not None
    assert len(call.events) == len(events)
    assert len({item.dedupe_key for item in call.events}) == len(events)


async def test_replayed_call_one_record(tracker: CallTracker, store: CallStore) -> None:
    events = answered_call()

    feed(tracker, events)
    feed(tracker, events)
    await tracker.flush()

    call = await only_call(store)
    assert call.outcome == "answered"
    assert call.ended_at == at(66.1)
    assert len(call.legs) == 2
    assert call.events is not None
    assert len(call.events) == len(events)
    assert tracker.calls == {}


async def test_late_duplicate_stays_ended(
    tracker: CallTracker, store: CallStore
) -> None:
    events = answered_call()

    feed(tracker, events)
    feed(tracker, events[:1])
    await tracker.flush()

    call = await only_call(store)
    assert tracker.calls == {}
    assert call.outcome == "answered"


async def test_other_contexts_ignored(tracker: CallTracker, store: CallStore) -> None:
    feature_code = Channel(
        "PJSIP/op1-00000005",
        "1796409300.7",
        "sigap-operators",
        "*11",
        linkedid="1796409300.7",
        caller_number="op1",
    )
    feed(
        tracker,
        parse(
            event("Newchannel", 0.0, feature_code),
            event("Newstate", 0.1, feature_code),
            hangup(3.0, feature_code, 16, "Normal Clearing"),
        ),
    )
    await tracker.flush()

    assert await store.count_calls() == 0
    assert tracker.calls == {}


async def test_unrelated_events_not_in_timeline(
    tracker: CallTracker, store: CallStore
) -> None:
    other = Channel(
        "PJSIP/op2-00000009",
        "1796409300.9",
        "sigap-operators",
        "*12",
        linkedid="1796409300.9",
    )
    events = answered_call()
    unrelated = parse(
        event("Newchannel", 2.0, other), hangup(4.0, other, 16, "Normal Clearing")
    )

    feed(tracker, [*events[:3], *unrelated, *events[3:]])
    await tracker.flush()

    call = await only_call(store)
    assert call.events is not None
    assert len(call.events) == len(events)
    assert other.uniqueid not in {item.data.get("Uniqueid") for item in call.events}


# --- Odd values from AMI ---------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp", ["1e400", "-1e12", "-1", "nan", "inf", "1e20", "soon", ""]
)
async def test_bad_timestamp_uses_clock(
    tracker: CallTracker, store: CallStore, timestamp: str
) -> None:
    before = datetime.now(UTC)
    feed(
        tracker,
        parse(
            event("Newchannel", 0.0, CALLER_AT_TRUNK),
            with_timestamp(hangup(2.0, CALLER, 16, "Normal Clearing"), 2.0, timestamp),
        ),
    )
    await tracker.flush()
    after = datetime.now(UTC)

    call = await only_call(store)
    assert call.outcome == "abandoned_before_queue"
    assert call.hangup_cause == 16
    assert call.ended_at is not None
    assert before <= call.ended_at <= after
    assert call.wait_seconds is not None
    assert call.wait_seconds >= 0
    assert call.events is not None
    assert [item.kind for item in call.events] == ["Newchannel", "Hangup"]
    assert tracker.invalid_timestamps == 1


async def test_bad_timestamp_logged_once(tracker: CallTracker) -> None:
    events = parse(
        with_timestamp(event("Newchannel", 0.0, CALLER_AT_TRUNK), 0.0, "nan"),
        with_timestamp(queue_event("QueueCallerJoin", 1.0), 1.0, "nan"),
    )

    with capture_logs() as logs:
        feed(tracker, events)
    await tracker.flush()

    warnings = [e for e in logs if e["event"] == "ami_timestamp_invalid_using_clock"]
    assert tracker.invalid_timestamps == 2
    assert len(warnings) == 1
    assert warnings[0]["timestamp"] == "nan"
    assert warnings[0]["event"] == "ami_timestamp_invalid_using_clock"


async def test_nul_in_caller_id_stripped(
    tracker: CallTracker, store: CallStore
) -> None:
    caller = replace(
        CALLER_AT_TRUNK, caller_number="0812\x0034567890", caller_name="Bu\x00di"
    )
    feed(
        tracker,
        parse(
            event("Newchannel", 0.0, caller),
            hangup(2.0, replace(caller, state="Up"), 16, "Normal Clearing"),
        ),
    )
    await tracker.flush()

    call = await only_call(store)
    assert call.caller_number_raw == "081234567890"
    assert call.caller_number == "+6281234567890"
    assert call.caller_name == "Budi"
    assert call.outcome == "abandoned_before_queue"
    assert call.events is not None
    assert len(call.events) == 2
    assert call.events[0].data["CallerIDNum"] == "081234567890"
    assert call.events[0].data["CallerIDName"] == "Budi"


async def test_markup_in_caller_id_kept(
    tracker: CallTracker, store: CallStore
) -> None:
    name = "<script>alert(\"x\")</script> O'Neil & \u00c9lise"
    caller = replace(CALLER_AT_TRUNK, caller_number="0811&PJSIP/op1", caller_name=name)
    feed(tracker, parse(event("Newchannel", 0.0, caller)))
    await tracker.flush()

    call = await only_call(store)
    assert call.caller_name == name
    assert call.caller_number_raw == "0811&PJSIP/op1"
    assert call.caller_number == ""


async def test_invalid_utf8_caller_id_replaced(
    tracker: CallTracker, store: CallStore
) -> None:
    chunk = event("Newchannel", 0.0, replace(CALLER_AT_TRUNK, caller_name="NAME"))
    feed(tracker, parse(chunk.replace(b"NAME", b"A\xed\xa0\x80B\xffC")))
    await tracker.flush()

    call = await only_call(store)
    assert call.caller_name == "A\ufffd\ufffd\ufffdB\ufffdC"


async def test_lone_surrogate_caller_id_replaced(
    tracker: CallTracker, store: CallStore
) -> None:
    # AmiParser replaces undecodable bytes, so a lone surrogate can only come from an
    # Event built in code; the tracker must still store the call.
    (parsed,) = parse(event("Newchannel", 0.0, CALLER_AT_TRUNK))
    headers = tuple(
        (key, "Bu\ud800di" if key == "CallerIDName" else value)
        for key, value in parsed.headers
    )
    tracker.on_event(Event(headers=headers))
    await tracker.flush()

    call = await only_call(store)
    assert call.caller_name == "Bu\ufffddi"
    assert call.events is not None
    assert call.events[0].data["CallerIDName"] == "Bu\ufffddi"


# --- Calls adopted after an AMI gap -------------------------------------------------


async def test_adopted_call_end_leaves_outcome(tracker: CallTracker, store: CallStore) -> None:
    """The answer came before the gap: the end writes the time, not a guessed outcome."""
    # What the controller stored before it died: op1 had answered.
    call_id = await store.upsert_call(
        CALLER_ID, outcome="answered", operator="op1", answered_at=at(6.0),
        arrived_at=at(0.0),
    )
    tracker.adopt_channel({
        "Channel": CALLER.name, "Uniqueid": CALLER_ID, "Linkedid": CALLER_ID,
        "Context": "sigap-emergency", "Duration": "00:00:30",
        "CallerIDNum": "081234567890", "CallerIDName": "Warga",
    })
    feed(tracker, parse(hangup(66.1, CALLER, 16, "Normal Clearing")))
    await tracker.flush()

    call = await store.get_call(call_id)
    assert call is not None
    assert call.outcome == "answered"
    assert call.ended_at == at(66.1)
    assert call.hangup_cause == 16
    assert call.wait_seconds is None
    assert call.talk_seconds is None


async def test_adopted_call_answered_later_recorded(
    tracker: CallTracker, store: CallStore
) -> None:
    """An adopted call that the live events then see answered gets its outcome live."""
    tracker.adopt_channel({
        "Channel": CALLER.name, "Uniqueid": CALLER_ID, "Linkedid": CALLER_ID,
        "Context": "sigap-emergency", "Duration": "00:00:02",
    })
    feed(tracker, parse(
        agent_event("AgentConnect", 6.0, OP1, "op1", ("HoldTime", "5"), ("RingTime", "4")),
        hangup(66.1, CALLER, 16, "Normal Clearing"),
    ))
    await tracker.flush()

    call = await only_call(store)
    assert call.outcome == "answered"
    assert call.operator == "op1"
    assert call.talk_seconds == pytest.approx(60.1)
