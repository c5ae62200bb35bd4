"""Reconciler: call records rebuilt from the CEL rows in Asterisk's cel.db.

The rows follow what cel_sqlite3_custom writes for Asterisk 22 with this project's
cel.conf and dialplan: epoch `eventtime`, JSON `eventextra`, and the overflow marks
that CELGenUserEvent(sigap_overflow,<stage>) leaves.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.calls import reconcile
from sigap_pbx.calls.reconcile import CHECKPOINT, Reconciler
from sigap_pbx.store import CallStore, CallView, Database

SCHEMA = (
    "CREATE TABLE cel (AcctId INTEGER PRIMARY KEY, eventtype, eventtime, cidname, "
    "cidnum, cidani, ciddnid, context, exten, channame, appname, appdata, uniqueid, "
    "linkedid, peer, userdeftype, eventextra)"
)
T0 = 1796409216.0
CALLER_NUMBER = "081234567890"


def at(offset: float) -> datetime:
    return datetime.fromtimestamp(T0 + offset, UTC)


class CelFile:
    """A cel.db written row by row, as Asterisk appends it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite3.connect(path) as connection:
            connection.execute(SCHEMA)
        connection.close()

    def add(
        self,
        eventtype: str,
        offset: float,
        channel: str,
        uniqueid: str,
        linkedid: str,
        *,
        context: str = "sigap-emergency",
        exten: str = "s",
        appname: str = "",
        appdata: str = "",
        peer: str = "",
        userdeftype: str = "",
        extra: dict[str, Any] | None = None,
        cidnum: str = CALLER_NUMBER,
    ) -> int:
        """Append one row and return its AcctId."""
        row = (
            eventtype,
            T0 + offset,
            "",
            cidnum,
            cidnum,
            "112",
            context,
            exten,
            channel,
            appname,
            appdata,
            uniqueid,
            linkedid,
            peer,
            userdeftype,
            json.dumps(extra) if extra is not None else "",
        )
        connection = sqlite3.connect(self.path)
        try:
            with connection:
                cursor = connection.execute(
                    "INSERT INTO cel (eventtype, eventtime, cidname, cidnum, cidani, "
                    "ciddnid, context, exten, channame, appname, appdata, uniqueid, "
                    "linkedid, peer, userdeftype, eventextra) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            assert cursor.lastrowid is not None
            return cursor.lastrowid
        finally:
            connection.close()


def hangup_extra(cause: int, source: str, dialstatus: str = "") -> dict[str, Any]:
    return {"hangupcause": cause, "hangupsource": source, "dialstatus": dialstatus}


class Call:
    """Writer of the CEL rows of one 112 call from the carrier trunk."""

    def __init__(self, cel: CelFile, linkedid: str, *, start: float = 0.0) -> None:
        self.cel = cel
        self.linkedid = linkedid
        self.start = start
        self.serial = int(linkedid.split(".")[1])
        self.channel = f"PJSIP/carrier-{self.serial:08x}"

    def caller_row(self, eventtype: str, offset: float, **fields: Any) -> int:
        return self.cel.add(
            eventtype,
            self.start + offset,
            self.channel,
            self.linkedid,
            self.linkedid,
            **fields,
        )

    def channel_row(
        self, eventtype: str, offset: float, channel: str, uniqueid: str, **fields: Any
    ) -> int:
        return self.cel.add(
            eventtype, self.start + offset, channel, uniqueid, self.linkedid, **fields
        )

    def arrive(self) -> int:
        first = self.caller_row(
            "CHAN_START", 0.0, context="sigap-trunk-inbound", exten="112"
        )
        self.caller_row("ANSWER", 0.1, appname="Answer")
        return first

    def enter_queue(
        self, offset: float, queue: str = "operators", wait: int = 30
    ) -> None:
        self.caller_row(
            "APP_START", offset, appname="Queue", appdata=f"{queue},,,,{wait}"
        )

    def answer(
        self,
        offset: float,
        endpoint: str,
        sequence: int,
        app: str = "Queue",
        *,
        peer_recorded: bool = True,
    ) -> None:
        """Write the rows of `endpoint` answering and bridging with the caller;
        `sequence` numbers its channel and uniqueid as Asterisk would."""
        channel = f"PJSIP/{endpoint}-{sequence:08x}"
        uniqueid = f"{self.linkedid.split('.')[0]}.{sequence}"
        self.channel_row(
            "CHAN_START", offset - 4.0, channel, uniqueid, context="sigap-operators"
        )
        self.channel_row(
            "ANSWER", offset - 0.1, channel, uniqueid, context="sigap-operators"
        )
        self.channel_row(
            "BRIDGE_ENTER",
            offset,
            channel,
            uniqueid,
            context="sigap-operators",
            extra={"bridge_id": "b1"},
        )
        self.caller_row(
            "BRIDGE_ENTER",
            offset,
            appname=app,
            appdata="operators,,,,30",
            peer=channel if peer_recorded else "",
            extra={"bridge_id": "b1"},
        )

    def overflow(self, offset: float, stage: str) -> None:
        self.caller_row(
            "sigap_overflow",
            offset,
            appname="CELGenUserEvent",
            appdata=f"sigap_overflow,{stage}",
            userdeftype="sigap_overflow",
            extra={"extra": stage},
        )

    def hang_up(self, offset: float, cause: int = 16, dialstatus: str = "") -> None:
        self.caller_row(
            "HANGUP", offset, extra=hangup_extra(cause, self.channel, dialstatus)
        )
        self.caller_row("CHAN_END", offset + 0.01)

    def end(self, offset: float) -> int:
        return self.caller_row("LINKEDID_END", offset)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallStore]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    yield CallStore(db)
    await db.close()


@pytest.fixture
def cel(tmp_path: Path) -> CelFile:
    return CelFile(tmp_path / "cel.db")


@pytest.fixture
def reconciler(store: CallStore, cel: CelFile) -> Reconciler:
    # The rows are timed around T0, so no settling delay: it is tested on its own.
    return Reconciler(store, cel.path, country_code="62", settle_seconds=0)


async def stored(store: CallStore, linkedid: str) -> CallView:
    call = await store.get_call(uniqueid=linkedid)
    assert call is not None
    return call


def answered(cel: CelFile, linkedid: str = "1796409216.0", start: float = 0.0) -> Call:
    call = Call(cel, linkedid, start=start)
    call.arrive()
    call.enter_queue(0.2)
    call.answer(5.1, "op1", call.serial + 1)
    call.hang_up(65.2, dialstatus="ANSWER")
    call.end(65.3)
    return call


# --- Reconstruction ---------------------------------------------------------------


async def test_answered_call_rebuilt(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    answered(cel)

    written = await reconciler.run_pass("test")

    call = await stored(store, "1796409216.0")
    assert written == 1
    assert call.outcome == "answered"
    assert call.reconciled is True
    assert call.operator == "op1"
    assert call.operator_interface == "PJSIP/op1"
    assert call.queue == "operators"
    assert call.arrived_at == at(0.0)
    assert call.queued_at == at(0.2)
    assert call.answered_at == at(5.1)
    assert call.ended_at == at(65.2)
    assert call.wait_seconds == pytest.approx(5.1)
    assert call.talk_seconds == pytest.approx(60.1)
    assert call.hangup_cause == 16
    assert call.caller_number == "+6281234567890"
    assert call.caller_number_raw == CALLER_NUMBER
    assert call.trunk == "carrier"
    assert call.dialled_number == "112"
    assert call.channel == "PJSIP/carrier-00000000"


async def test_rebuilt_call_timeline(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    answered(cel)

    await reconciler.run_pass("test")

    call = await stored(store, "1796409216.0")
    assert call.events is not None
    assert {item.source for item in call.events} == {"cel"}
    kinds = [item.kind for item in call.events]
    assert kinds[0] == "CHAN_START"
    assert kinds[-1] == "LINKEDID_END"
    assert kinds.count("BRIDGE_ENTER") == 2
    assert "HANGUP" in kinds
    assert "CHAN_START" in kinds
    assert kinds.count("CHAN_START") == 1


async def test_abandoned_call_rebuilt(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    call = Call(cel, "1796409216.0")
    call.arrive()
    call.enter_queue(0.2)
    call.channel_row(
        "CHAN_START",
        0.3,
        "PJSIP/op1-00000001",
        "1796409216.1",
        context="sigap-operators",
    )
    call.channel_row(
        "HANGUP",
        12.0,
        "PJSIP/op1-00000001",
        "1796409216.1",
        extra=hangup_extra(16, "PJSIP/carrier-00000000"),
    )
    call.hang_up(12.0)
    call.end(12.1)

    await reconciler.run_pass("test")

    stored_call = await stored(store, "1796409216.0")
    assert stored_call.outcome == "abandoned_in_queue"
    assert stored_call.answered_at is None
    assert stored_call.operator is None
    assert stored_call.wait_seconds == pytest.approx(12.0)
    assert stored_call.reconciled is True


async def test_abandoned_before_queue_rebuilt(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    call = Call(cel, "1796409216.0")
    call.arrive()
    call.hang_up(1.5)
    call.end(1.6)

    await reconciler.run_pass("test")

    stored_call = await stored(store, "1796409216.0")
    assert stored_call.outcome == "abandoned_before_queue"
    assert stored_call.queued_at is None
    assert stored_call.wait_seconds == pytest.approx(1.5)


async def test_overflowed_call_rebuilt(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    call = Call(cel, "1796409216.0")
    call.arrive()
    call.enter_queue(0.2)
    call.overflow(30.3, "backup")
    call.enter_queue(30.4, queue="operators-backup", wait=20)
    call.overflow(50.5, "supervisor")
    call.caller_row(
        "APP_START", 50.6, appname="Dial", appdata="PJSIP/spv1,20,m(sigap-ring)"
    )
    call.answer(58.0, "spv1", 3, app="Dial")
    call.hang_up(118.0, dialstatus="ANSWER")
    call.end(118.1)

    await reconciler.run_pass("test")

    stored_call = await stored(store, "1796409216.0")
    assert stored_call.outcome == "overflowed"
    assert stored_call.overflow_stage == "supervisor"
    assert stored_call.answered_by == "spv1"
    assert stored_call.operator is None
    assert stored_call.queue == "operators"
    assert stored_call.answered_at == at(58.0)
    assert stored_call.wait_seconds == pytest.approx(58.0)
    assert stored_call.talk_seconds == pytest.approx(60.0)
    assert stored_call.events is not None
    assert [item.kind for item in stored_call.events].count("USER_DEFINED") == 2


async def test_overflow_without_answer_rebuilt(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    call = Call(cel, "1796409216.0")
    call.arrive()
    call.enter_queue(0.2)
    call.overflow(30.3, "backup")
    call.enter_queue(30.4, queue="operators-backup", wait=20)
    call.hang_up(40.0)
    call.end(40.1)

    await reconciler.run_pass("test")

    stored_call = await stored(store, "1796409216.0")
    assert stored_call.outcome == "overflowed"
    assert stored_call.overflow_stage == "backup"
    assert stored_call.answered_at is None
    assert stored_call.wait_seconds == pytest.approx(40.0)


@pytest.mark.parametrize("cause", [0, 34])
async def test_failed_call_rebuilt(
    reconciler: Reconciler, store: CallStore, cel: CelFile, cause: int
) -> None:
    call = Call(cel, "1796409216.0")
    call.arrive()
    call.hang_up(0.4, cause=cause)
    call.end(0.5)

    await reconciler.run_pass("test")

    stored_call = await stored(store, "1796409216.0")
    assert stored_call.outcome == "failed"
    assert stored_call.hangup_cause == cause


async def test_other_context_not_a_call(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    last = 0
    for eventtype in ("CHAN_START", "ANSWER", "HANGUP", "CHAN_END", "LINKEDID_END"):
        last = cel.add(
            eventtype,
            1.0,
            "PJSIP/op1-00000005",
            "1796409300.7",
            "1796409300.7",
            context="sigap-operators",
            exten="*11",
            cidnum="op1",
        )

    written = await reconciler.run_pass("test")

    assert written == 0
    assert await store.count_calls() == 0
    assert await store.get_checkpoint(CHECKPOINT) == str(last)


async def test_missing_cel_file_writes_nothing(
    store: CallStore, tmp_path: Path
) -> None:
    reconciler = Reconciler(store, tmp_path / "absent" / "cel.db")

    written = await reconciler.run_pass("test")

    assert written == 0
    assert await store.get_checkpoint(CHECKPOINT) is None


# --- Checkpoint and idempotence -----------------------------------------------


async def test_unfinished_call_skipped(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    first = answered(cel)
    unfinished = Call(cel, "1796409300.5", start=84.0)
    unfinished_first_row = unfinished.arrive()
    unfinished.enter_queue(0.2)

    written = await reconciler.run_pass("test")

    assert written == 1
    assert (await stored(store, first.linkedid)).outcome == "answered"
    assert await store.get_call(uniqueid=unfinished.linkedid) is None
    assert await store.get_checkpoint(CHECKPOINT) == str(unfinished_first_row - 1)


async def test_unfinished_call_done_later(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    unfinished = Call(cel, "1796409300.5")
    unfinished.arrive()
    unfinished.enter_queue(0.2)
    answered(cel, "1796409216.9", start=1.0)
    await reconciler.run_pass("test")

    unfinished.hang_up(20.0)
    last = unfinished.end(20.1)
    written = await reconciler.run_pass("test")

    call = await stored(store, unfinished.linkedid)
    assert written == 1
    assert call.outcome == "abandoned_in_queue"
    assert await store.get_checkpoint(CHECKPOINT) == str(last)


async def test_second_pass_writes_nothing(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    answered(cel)
    unfinished = Call(cel, "1796409300.5", start=84.0)
    unfinished.arrive()
    await reconciler.run_pass("test")
    before = await stored(store, "1796409216.0")
    checkpoint = await store.get_checkpoint(CHECKPOINT)

    written = await reconciler.run_pass("test")

    after = await stored(store, "1796409216.0")
    assert written == 0
    assert after == before
    assert await store.get_checkpoint(CHECKPOINT) == checkpoint
    assert reconciler.reconciled_total == 1


async def test_final_live_record_left_alone(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    await store.upsert_call(
        "1796409216.0",
        arrived_at=at(0.0),
        answered_at=at(5.0),
        ended_at=at(9.0),
        operator="op2",
        wait_seconds=5.0,
        outcome="answered",
    )
    before = await stored(store, "1796409216.0")
    answered(cel)

    written = await reconciler.run_pass("test")

    after = await stored(store, "1796409216.0")
    assert written == 0
    assert after == before
    assert after.operator == "op2"
    assert after.reconciled is False


async def test_live_record_without_end_completed(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    # The live path recorded the answer, then died before writing the hangup.
    await store.upsert_call(
        "1796409216.0",
        arrived_at=at(0.0),
        answered_at=at(5.0),
        operator="op2",
        wait_seconds=5.0,
        outcome="answered",
    )
    answered(cel)

    written = await reconciler.run_pass("test")

    after = await stored(store, "1796409216.0")
    assert written == 1
    assert after.ended_at is not None
    assert after.hangup_cause == 16
    assert after.talk_seconds is not None
    assert after.operator == "op2"
    assert after.outcome == "answered"
    assert after.reconciled is True


async def test_in_progress_live_record_completed(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    # The live path saw the call arrive and join the queue, then lost AMI.
    await store.upsert_call(
        "1796409216.0",
        linkedid="1796409216.0",
        arrived_at=at(0.05),
        queued_at=at(0.25),
        queue="operators",
        caller_number="+6281234567890",
    )
    answered(cel)

    written = await reconciler.run_pass("test")

    call = await stored(store, "1796409216.0")
    assert written == 1
    assert call.outcome == "answered"
    assert call.arrived_at == at(0.05)
    assert call.queued_at == at(0.25)
    assert call.answered_at == at(5.1)
    assert call.ended_at == at(65.2)
    assert call.operator == "op1"
    assert call.hangup_cause == 16


async def test_in_progress_live_record_marked(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    await store.upsert_call(
        "1796409216.0", linkedid="1796409216.0", arrived_at=at(0.05)
    )
    answered(cel)

    await reconciler.run_pass("test")

    call = await stored(store, "1796409216.0")
    assert call.reconciled is True


async def test_answer_found_without_peer(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    """Asterisk 22 often leaves BRIDGE_ENTER's peer empty; the bridge id still links
    the caller to the operator."""
    call = Call(cel, "1796409300.0")
    call.arrive()
    call.enter_queue(0.2)
    call.answer(3.0, "op2", call.serial + 1, peer_recorded=False)
    call.hang_up(10.0, dialstatus="ANSWER")
    call.end(10.1)

    assert await reconciler.run_pass("test") == 1

    rebuilt = await stored(store, "1796409300.0")
    assert rebuilt.outcome == "answered"
    assert rebuilt.operator == "op2"
    assert rebuilt.answered_at == at(3.0)


async def test_recent_end_left_for_later(store: CallStore, cel: CelFile) -> None:
    now = datetime.now(UTC).timestamp()
    # The call ends about 35 s before now.
    call = answered(cel, start=now - T0 - 100)
    reconciler = Reconciler(store, cel.path, country_code="62", settle_seconds=60)

    assert await reconciler.run_pass("test") == 0
    assert await store.get_call(uniqueid=call.linkedid) is None
    assert await store.get_checkpoint(CHECKPOINT) is None

    reconciler.settle_seconds = 0
    assert await reconciler.run_pass("test") == 1


# --- Calls Asterisk never ended ----------------------------------------------------


class Channels:
    """Live linkedids as AMI reports them, and the number of requests for them."""

    def __init__(self, live: set[str] | None) -> None:
        self.live = live
        self.requests = 0

    async def __call__(self) -> set[str] | None:
        self.requests += 1
        return self.live


def crashed_call(cel: CelFile) -> tuple[Call, int]:
    """A caller in the queue when Asterisk died, after one finished call: no HANGUP
    and no LINKEDID_END."""
    answered(cel, "1796409216.9")
    call = Call(cel, "1796409300.5", start=100.0)
    first = call.arrive()
    call.enter_queue(0.2)
    return call, first


async def test_call_without_end_written_once_gone_twice(
    store: CallStore, cel: CelFile
) -> None:
    crashed, _ = crashed_call(cel)
    later = answered(cel, "1796409400.7", start=200.0)
    channels = Channels(set())
    reconciler = Reconciler(
        store, cel.path, country_code="62", settle_seconds=0.2, live_linkedids=channels
    )

    # First sight: gone, but one check is not enough.
    assert await reconciler.run_pass("test") == 2
    assert await store.get_call(uniqueid=crashed.linkedid) is None
    assert (await stored(store, later.linkedid)).outcome == "answered"

    await asyncio.sleep(0.25)
    assert await reconciler.run_pass("test") == 1

    call = await stored(store, crashed.linkedid)
    assert call.outcome == "abandoned_in_queue"
    assert call.reconciled is True
    # The queue entry is the last row Asterisk wrote for it.
    assert call.ended_at == at(100.2)
    assert channels.requests == 2
    # The checkpoint is free again: it is at the last row read.
    last_row = sqlite3.connect(cel.path).execute("SELECT max(AcctId) FROM cel").fetchone()[0]
    assert await store.get_checkpoint(CHECKPOINT) == str(last_row)


async def test_call_with_live_channel_kept_open(store: CallStore, cel: CelFile) -> None:
    crashed, first = crashed_call(cel)
    channels = Channels({crashed.linkedid})
    reconciler = Reconciler(
        store, cel.path, country_code="62", settle_seconds=0, live_linkedids=channels
    )

    for _ in range(3):
        await reconciler.run_pass("test")

    assert channels.requests == 3
    assert await store.get_call(uniqueid=crashed.linkedid) is None
    assert await store.get_checkpoint(CHECKPOINT) == str(first - 1)


async def test_call_kept_open_while_channels_unknown(store: CallStore, cel: CelFile) -> None:
    crashed, first = crashed_call(cel)
    channels = Channels(None)
    reconciler = Reconciler(
        store, cel.path, country_code="62", settle_seconds=0, live_linkedids=channels
    )

    await reconciler.run_pass("test")
    await reconciler.run_pass("test")

    assert await store.get_call(uniqueid=crashed.linkedid) is None
    assert await store.get_checkpoint(CHECKPOINT) == str(first - 1)


async def test_recent_rows_not_checked_against_channels(
    store: CallStore, cel: CelFile
) -> None:
    now = datetime.now(UTC).timestamp()
    call = Call(cel, "1796409300.5", start=now - T0 - 30)
    call.arrive()
    call.enter_queue(0.2)
    channels = Channels(set())
    reconciler = Reconciler(
        store, cel.path, country_code="62", settle_seconds=0, live_linkedids=channels
    )

    await reconciler.run_pass("test")
    await reconciler.run_pass("test")

    assert channels.requests == 0
    assert await store.get_call(uniqueid=call.linkedid) is None


async def test_call_cut_by_batch_end_not_orphan(
    store: CallStore, cel: CelFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch starts at a call Asterisk never ended, so the checkpoint stays put.
    crashed = Call(cel, "1796409300.5", start=100.0)
    crashed.arrive()
    crashed.enter_queue(0.2)
    # Ended long ago, but its last row falls after the end of the batch.
    later = answered(cel, "1796409400.7", start=200.0)
    rows = sqlite3.connect(cel.path).execute("SELECT count(*) FROM cel").fetchone()[0]
    # The batch ends before the caller's HANGUP, CHAN_END and LINKEDID_END rows.
    batch = rows - 3
    monkeypatch.setattr(reconcile, "BATCH_ROWS", batch)
    monkeypatch.setattr(
        reconcile, "read_cel_rows", functools.partial(reconcile.read_cel_rows, limit=batch)
    )
    reconciler = Reconciler(
        store, cel.path, country_code="62", settle_seconds=0.2, live_linkedids=Channels(set())
    )

    await reconciler.run_pass("test")
    await asyncio.sleep(0.25)
    await reconciler.run_pass("test")

    assert (await stored(store, crashed.linkedid)).outcome == "abandoned_in_queue"
    call = await stored(store, later.linkedid)
    assert call.outcome == "answered"
    assert call.ended_at == at(200.0 + 65.2)


async def test_long_call_does_not_hold_later_calls(
    store: CallStore, cel: CelFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ended call, then one still going on (its rows are recent, so it is not an
    # orphan), and more than two batches of ended calls after it.
    answered(cel, "1796409200.0", start=-100.0)
    now = datetime.now(UTC).timestamp()
    long_call = Call(cel, "1796409300.5", start=now - T0 - 5)
    first_row = long_call.arrive()
    long_call.enter_queue(0.2)
    later = [answered(cel, f"1796409400.{n}", start=float(n)) for n in range(6)]
    batch = 10
    reads: list[int] = []

    def counted_read(path: Path, after_rowid: int, limit: int = batch) -> list:
        reads.append(after_rowid)
        return original(path, after_rowid, limit=batch)

    original = reconcile.read_cel_rows
    monkeypatch.setattr(reconcile, "BATCH_ROWS", batch)
    monkeypatch.setattr(reconcile, "read_cel_rows", counted_read)
    reconciler = Reconciler(store, cel.path, country_code="62", settle_seconds=0,
                            live_linkedids=Channels({long_call.linkedid}))

    written = await reconciler.run_pass("test")

    assert written == len(later) + 1
    for call in later:
        assert (await stored(store, call.linkedid)).outcome == "answered"
    assert await store.get_call(uniqueid=long_call.linkedid) is None
    assert await store.get_checkpoint(CHECKPOINT) == str(first_row - 1)

    # The next pass reads on from the last row read, not from the checkpoint.
    last_read = reads[-1]
    reads.clear()
    long_call.hang_up(4.0)
    last = long_call.end(4.1)
    assert await reconciler.run_pass("test") == 1
    assert reads[0] >= last_read > first_row
    assert (await stored(store, long_call.linkedid)).outcome == "abandoned_in_queue"
    assert await store.get_checkpoint(CHECKPOINT) == str(last)


async def test_moved_checkpoint_reads_from_it_again(
    store: CallStore, cel: CelFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows kept from a pass are dropped when the stored checkpoint is not the one
    that pass left, as after a restore of the database."""
    answered(cel, "1796409200.0", start=-100.0)
    unfinished = Call(cel, "1796409300.5")
    unfinished.arrive()
    unfinished.enter_queue(0.2)
    reconciler = Reconciler(store, cel.path, country_code="62", settle_seconds=0)
    await reconciler.run_pass("test")
    assert await store.get_checkpoint(CHECKPOINT) != "0"
    reads: list[int] = []
    original = reconcile.read_cel_rows

    def counted_read(path: Path, after_rowid: int, limit: int = reconcile.BATCH_ROWS) -> list:
        reads.append(after_rowid)
        return original(path, after_rowid, limit)

    monkeypatch.setattr(reconcile, "read_cel_rows", counted_read)
    await store.set_checkpoint(CHECKPOINT, "0")
    unfinished.hang_up(20.0)
    unfinished.end(20.1)

    assert await reconciler.run_pass("test") == 1
    assert reads[0] == 0


async def test_replaced_cel_file_read_from_start(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    for serial in range(3):
        answered(cel, f"1796409216.{serial}", start=float(serial))
    assert await reconciler.run_pass("first") == 3
    checkpoint = int(await store.get_checkpoint(CHECKPOINT) or 0)

    # Someone rotates cel.db: the next call's rows are numbered from 1 again.
    cel.path.unlink()
    rotated = CelFile(cel.path)
    later = answered(rotated, "1796409900.7", start=500.0)

    assert await reconciler.run_pass("after rotation") == 1
    assert (await stored(store, later.linkedid)).outcome == "answered"
    assert int(await store.get_checkpoint(CHECKPOINT) or 0) < checkpoint


async def test_replaced_cel_file_grown_past_last_row_read(
    reconciler: Reconciler, store: CallStore, cel: CelFile
) -> None:
    """The new file already has more rows than the old one had when it is first read
    again: the row at the last position read is another one, so it is read from 1."""
    answered(cel, "1796409216.0", start=0.0)
    assert await reconciler.run_pass("first") == 1

    cel.path.unlink()
    rotated = CelFile(cel.path)
    later = [answered(rotated, f"1796409900.{n}", start=500.0 + n) for n in range(2)]

    assert await reconciler.run_pass("after rotation") == 2
    for call in later:
        assert (await stored(store, call.linkedid)).outcome == "answered"
