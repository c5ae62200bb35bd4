"""Callbacks of abandoned calls: the Originate sent and the outcome recorded from
the events of a fake AMI server."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigap_pbx.ami.client import AmiClient
from sigap_pbx.store import CallStore, Database
from sigap_pbx.store.callbacks import CallbackStore
from sigap_pbx.web.console import CallbackDialer, CallbackRejected
from sigap_pbx.web.feed import Feed
from sigap_pbx.wire.ami import Message
from tests.unit.fake_ami import (
    SECRET,
    USERNAME,
    FakeAmiServer,
    ami_bytes,
    error,
    success,
)

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


@dataclass
class Rig:
    fake: FakeAmiServer
    dialer: CallbackDialer
    store: CallbackStore
    call_id: int

    async def outcome(self, attempt_id: int, expected: str) -> None:
        async def current() -> str:
            (attempt,) = [a for a in await self.store.list_attempts(self.call_id)
                          if a.id == attempt_id]
            return attempt.outcome

        async with asyncio.timeout(5):
            while await current() != expected:
                await asyncio.sleep(0.01)

    def send(self, *headers: tuple[str, str]) -> None:
        self.fake.send(ami_bytes(*headers))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    call_id = await CallStore(db).upsert_call(
        "1733390000.5", caller_number="+6281234567890", caller_number_raw="081234567890",
        outcome="abandoned_in_queue", arrived_at=T0,
    )
    async with FakeAmiServer() as fake:
        fake.replies["Originate"] = lambda action: success(
            action, "Originate successfully queued"
        )
        client = AmiClient("127.0.0.1", fake.port, USERNAME, SECRET, reconnect_max=0.05)
        store = CallbackStore(db)
        dialer = CallbackDialer(client, store, Feed(), trunk="carrier",
                                presented_number="112", clock=lambda: T0)
        dialer.cel_grace = 0
        client.add_event_listener(dialer.on_event)
        writer = asyncio.create_task(dialer.run_writer())
        client.start()
        await client.wait_connected(5)
        yield Rig(fake, dialer, store, call_id)
        await dialer.flush()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await client.stop()
        await fake.connections[-1].closed.wait()
    await db.close()


async def start(rig: Rig, number: str = "081234567890") -> dict:
    return await rig.dialer.start(call_id=rig.call_id, number=number, username="ani",
                                  endpoint="op1")


async def test_originate_rings_operator_then_dials(rig: Rig) -> None:
    result = await start(rig)

    action = (await rig.fake.wait_for_action("Originate")).message
    assert action.get("Channel") == "PJSIP/op1"
    assert action.get("Context") == "sigap-callback"
    assert action.get("Exten") == "s"
    assert action.get("Async") == "true"
    assert action.get("ChannelId") == result["uniqueid"]
    variables = dict(item.split("=", 1) for item in action.get("Variable").split(","))
    assert variables == {
        "SIGAP_CALLBACK_ATTEMPT": str(result["attempt_id"]),
        "SIGAP_CALLBACK_NUMBER": "081234567890",
        "SIGAP_CALLBACK_TRUNK": "carrier",
        "SIGAP_CALLBACK_PRESENTED": "112",
    }
    (attempt,) = await rig.store.list_attempts(rig.call_id)
    assert attempt.outcome == "calling"
    assert attempt.username == "ani"
    assert attempt.endpoint == "op1"
    assert attempt.uniqueid == result["uniqueid"]


async def test_caller_answered_is_recorded(rig: Rig) -> None:
    result = await start(rig)
    action = await rig.fake.wait_for_action("Originate")

    rig.send(("Event", "OriginateResponse"), ("ActionID", action.message.action_id or ""),
             ("Response", "Success"), ("Channel", "PJSIP/op1-0000000a"),
             ("Uniqueid", result["uniqueid"]))
    rig.send(("Event", "UserEvent"), ("UserEvent", "SigapCallback"),
             ("Attempt", str(result["attempt_id"])), ("DialStatus", "ANSWER"))
    rig.send(("Event", "Hangup"), ("Channel", "PJSIP/op1-0000000a"),
             ("Uniqueid", result["uniqueid"]), ("Cause", "16"))

    await rig.outcome(result["attempt_id"], "answered")
    await rig.dialer.flush()
    (attempt,) = await rig.store.list_attempts(rig.call_id)
    assert attempt.channel == "PJSIP/op1-0000000a"
    assert attempt.ended_at == T0
    assert rig.dialer.attempts == {}
    assert await rig.store.pending_callbacks() == []


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("NOANSWER", "no_answer"), ("BUSY", "busy"), ("CHANUNAVAIL", "failed"),
     ("CONGESTION", "failed"), ("CANCEL", "cancelled")],
)
async def test_dial_status_sets_outcome(rig: Rig, status: str, outcome: str) -> None:
    result = await start(rig)

    rig.send(("Event", "UserEvent"), ("UserEvent", "SigapCallback"),
             ("Attempt", str(result["attempt_id"])), ("DialStatus", status))
    rig.send(("Event", "Hangup"), ("Uniqueid", result["uniqueid"]), ("Cause", "16"))

    await rig.outcome(result["attempt_id"], outcome)
    pending = await rig.store.pending_callbacks()
    assert [item.call_id for item in pending] == [rig.call_id]


async def test_operator_phone_not_answering(rig: Rig) -> None:
    # The Hangup of the operator's channel may come before the failed
    # OriginateResponse, and both may arrive with the action's reply.
    def reply(action: Message) -> bytes:
        return success(action, "Originate successfully queued") + ami_bytes(
            ("Event", "Hangup"), ("Uniqueid", action.get("ChannelId") or ""),
            ("Cause", "19"),
        ) + ami_bytes(
            ("Event", "OriginateResponse"), ("ActionID", action.action_id or ""),
            ("Response", "Failure"), ("Reason", "3"), ("Uniqueid", "<null>"),
        )

    rig.fake.replies["Originate"] = reply
    result = await start(rig)

    await rig.outcome(result["attempt_id"], "operator_no_answer")
    assert rig.dialer.attempts == {}


async def test_failed_originate_response_alone(rig: Rig) -> None:
    def reply(action: Message) -> bytes:
        return success(action, "Originate successfully queued") + ami_bytes(
            ("Event", "OriginateResponse"), ("ActionID", action.action_id or ""),
            ("Response", "Failure"), ("Reason", "0"),
        )

    rig.fake.replies["Originate"] = reply
    result = await start(rig)

    await rig.outcome(result["attempt_id"], "operator_no_answer")


async def test_rejected_originate_records_failure(rig: Rig) -> None:
    rig.fake.replies["Originate"] = lambda action: error(action, "Extension does not exist.")

    with pytest.raises(CallbackRejected) as raised:
        await start(rig)

    assert raised.value.code == "asterisk_rejected"
    (attempt,) = await rig.store.list_attempts(rig.call_id)
    await rig.outcome(attempt.id, "failed")


@pytest.mark.parametrize(
    "number", ["", "12", "0812 3456", "0812&PJSIP/op2", "*21#", "+", "0" * 21, "0812\r\n"]
)
async def test_invalid_number_sends_nothing(rig: Rig, number: str) -> None:
    with pytest.raises(CallbackRejected) as raised:
        await start(rig, number)

    assert raised.value.code == "invalid_number"
    assert rig.fake.actions("Originate") == []
    assert await rig.store.list_attempts(rig.call_id) == []


async def test_events_of_other_channels_change_nothing(rig: Rig) -> None:
    result = await start(rig)

    rig.send(("Event", "Hangup"), ("Uniqueid", "1733390000.77"), ("Cause", "16"))
    rig.send(("Event", "UserEvent"), ("UserEvent", "SigapCallback"),
             ("Attempt", "999"), ("DialStatus", "ANSWER"))
    rig.send(("Event", "UserEvent"), ("UserEvent", "SigapCallback"),
             ("Attempt", str(result["attempt_id"])), ("DialStatus", "BUSY"))

    await rig.outcome(result["attempt_id"], "busy")
    assert result["uniqueid"] in rig.dialer.attempts


def test_invalid_trunk_rejected() -> None:
    with pytest.raises(ValueError):
        CallbackDialer(object(), object(), Feed(), trunk="carrier&x",  # type: ignore[arg-type]
                       presented_number="112")


# --- Attempts left `calling` by an earlier run or an AMI gap -----------------------


def channels_reply(*uniqueids: str):
    """Return a CoreShowChannels reply function listing channels with `uniqueids`."""

    def reply(action: Message) -> bytes:
        action_id = action.action_id or ""
        events = [
            ami_bytes(("Event", "CoreShowChannel"), ("Uniqueid", uniqueid),
                      ("Linkedid", uniqueid), ("Channel", "PJSIP/op1-00000001"),
                      ("ActionID", action_id))
            for uniqueid in uniqueids
        ]
        return b"".join([
            success(action, "Channels will follow", ("EventList", "start")),
            *events,
            ami_bytes(("Event", "CoreShowChannelsComplete"), ("ActionID", action_id),
                      ("EventList", "Complete"), ("ListItems", str(len(uniqueids)))),
        ])

    return reply


def write_cel(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """Write CEL rows of (uniqueid, eventtype, userdeftype, eventextra)."""
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS cel (AcctId INTEGER PRIMARY KEY, uniqueid, "
            "eventtype, userdeftype, eventextra)"
        )
        connection.executemany(
            "INSERT INTO cel (uniqueid, eventtype, userdeftype, eventextra) VALUES (?, ?, ?, ?)",
            rows,
        )
    connection.close()


async def left_calling(rig: Rig, uniqueid: str, *, started_at: datetime = T0) -> int:
    """Insert an attempt as an earlier run left it: `calling`, unknown to the dialer."""
    return await rig.store.insert_attempt(
        call_id=rig.call_id, caller_number="081234567890", username="ani",
        endpoint="op1", started_at=started_at, uniqueid=uniqueid,
    )


@pytest.mark.parametrize(
    ("rows", "outcome"),
    [
        ([("CHAN_START", "", ""), ("ANSWER", "", ""),
          ("USER_DEFINED", "sigap_callback", '{"extra":"ANSWER"}'), ("HANGUP", "", "")],
         "answered"),
        ([("CHAN_START", "", ""), ("ANSWER", "", ""),
          ("USER_DEFINED", "sigap_callback", '{"extra":"BUSY"}')], "busy"),
        ([("CHAN_START", "", ""), ("ANSWER", "", ""),
          ("USER_DEFINED", "sigap_callback", '{"extra":"CHANUNAVAIL"}')], "failed"),
        ([("CHAN_START", "", ""), ("HANGUP", "", "")], "operator_no_answer"),
        ([("CHAN_START", "", ""), ("ANSWER", "", ""), ("HANGUP", "", "")], "cancelled"),
        # Gone from Asterisk with no trace in CEL.
        ([], "failed"),
    ],
)
async def test_attempt_left_calling_settled_from_cel(
    rig: Rig, tmp_path: Path, rows: list, outcome: str
) -> None:
    cel = tmp_path / "cel.db"
    write_cel(cel, [("sigap-callback-old", *row) for row in rows]
              + [("sigap-callback-other", "HANGUP", "", "")])
    attempt_id = await left_calling(rig, "sigap-callback-old")
    rig.fake.replies["CoreShowChannels"] = channels_reply()
    rig.dialer.cel_path = cel

    assert await rig.dialer.settle_unfinished() == 1

    await rig.outcome(attempt_id, outcome)
    (attempt,) = await rig.store.list_attempts(rig.call_id)
    assert attempt.ended_at is not None


async def test_attempt_with_live_channel_followed_again(rig: Rig, tmp_path: Path) -> None:
    cel = tmp_path / "cel.db"
    write_cel(cel, [("sigap-callback-old", "CHAN_START", "", ""),
                    ("sigap-callback-old", "ANSWER", "", "")])
    attempt_id = await left_calling(rig, "sigap-callback-old")
    rig.fake.replies["CoreShowChannels"] = channels_reply("sigap-callback-old")
    rig.dialer.cel_path = cel

    assert await rig.dialer.settle_unfinished() == 0
    await rig.dialer.flush()
    (attempt,) = await rig.store.list_attempts(rig.call_id)
    assert attempt.outcome == "calling"

    # Its events are followed again: the operator hangs up before the caller answers.
    rig.send(("Event", "Hangup"), ("Uniqueid", "sigap-callback-old"),
             ("Channel", "PJSIP/op1-00000001"))
    await rig.outcome(attempt_id, "cancelled")


async def test_settling_waits_when_channels_unknown(rig: Rig, tmp_path: Path) -> None:
    attempt_id = await left_calling(rig, "sigap-callback-old")
    rig.fake.replies["CoreShowChannels"] = lambda action: error(action, "Permission denied")
    rig.dialer.cel_path = tmp_path / "absent.db"

    assert await rig.dialer.settle_unfinished() == 0
    await rig.dialer.flush()
    (attempt,) = await rig.store.list_attempts(rig.call_id)
    assert attempt.id == attempt_id
    assert attempt.outcome == "calling"


async def test_attempt_ended_live_meanwhile_kept(rig: Rig, tmp_path: Path) -> None:
    result = await start(rig)
    uniqueid, attempt_id = result["uniqueid"], result["attempt_id"]
    cel = tmp_path / "cel.db"
    # CEL has the channel's start only: its later rows lag behind.
    write_cel(cel, [(uniqueid, "CHAN_START", "", "")])
    rig.dialer.cel_path = cel
    rig.dialer.clock = lambda: T0 + timedelta(minutes=2)
    empty = channels_reply()

    def reply(action: Message) -> bytes:
        # The live result and Hangup arrive while settling waits for the channels.
        return (ami_bytes(("Event", "UserEvent"), ("UserEvent", "SigapCallback"),
                          ("Attempt", str(attempt_id)), ("DialStatus", "ANSWER"))
                + ami_bytes(("Event", "Hangup"), ("Uniqueid", uniqueid), ("Cause", "16"))
                + empty(action))

    rig.fake.replies["CoreShowChannels"] = reply
    writes: list[dict] = []
    update = rig.store.update_attempt

    async def recording(attempt: int, **fields: object):  # type: ignore[no-untyped-def]
        writes.append(fields)
        return await update(attempt, **fields)

    rig.store.update_attempt = recording  # type: ignore[method-assign]

    assert await rig.dialer.settle_unfinished() == 0
    await rig.dialer.flush()

    (attempt,) = await rig.store.list_attempts(rig.call_id)
    assert attempt.outcome == "answered"
    assert len([fields for fields in writes if "ended_at" in fields]) == 1


async def test_lagging_cel_read_again(rig: Rig, tmp_path: Path) -> None:
    cel = tmp_path / "cel.db"
    write_cel(cel, [("sigap-callback-old", "CHAN_START", "", ""),
                    ("sigap-callback-old", "ANSWER", "", "")])
    attempt_id = await left_calling(rig, "sigap-callback-old")
    rig.fake.replies["CoreShowChannels"] = channels_reply()
    rig.dialer.cel_path = cel
    rig.dialer.cel_grace = 0.3

    async def rows_arrive() -> None:
        await asyncio.sleep(0.1)
        write_cel(cel, [("sigap-callback-old", "USER_DEFINED", "sigap_callback",
                         '{"extra":"NOANSWER"}'),
                        ("sigap-callback-old", "HANGUP", "", "")])

    writer = asyncio.create_task(rows_arrive())
    assert await rig.dialer.settle_unfinished() == 1
    await writer

    await rig.outcome(attempt_id, "no_answer")
