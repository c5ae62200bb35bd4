"""Reconciliation from CDR rows, for calls that left no CEL rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sigap_pbx.calls.reconcile import CDR_CHECKPOINT, Reconciler
from sigap_pbx.store import CallStore, Database

# The columns cdr_sqlite3_custom creates from asterisk-config/cdr_sqlite3_custom.conf.
CDR_SCHEMA = (
    "CREATE TABLE cdr (AcctId INTEGER PRIMARY KEY, start, answer, end, clid, src, dst, "
    "dcontext, channel, dstchannel, lastapp, lastdata, duration, billsec, disposition, "
    "uniqueid, linkedid, peeraccount, sequence)"
)
CEL_SCHEMA = (
    "CREATE TABLE cel (AcctId INTEGER PRIMARY KEY, eventtype, eventtime, cidname, cidnum, "
    "cidani, ciddnid, context, exten, channame, appname, appdata, uniqueid, linkedid, "
    "peer, userdeftype, eventextra)"
)
ANSWERED = (
    "2026-12-04 18:37:50", "2026-12-04 18:37:50", "2026-12-04 18:37:53",
    '"Warga <b>Dua</b>" <081234567890>', "081234567890", "s", "sigap-emergency",
    "PJSIP/carrier-00000004", "PJSIP/op1-00000005", "Queue", "operators,,,,30", 3, 3,
    "ANSWERED", "1796409470.6", "1796409470.6", "", 7,
)
OVERFLOWED = (
    "2026-12-04 18:56:53", "2026-12-04 18:56:53", "2026-12-04 18:57:18", '"X" <0812555>',
    "0812555", "s", "sigap-emergency", "PJSIP/carrier-00000000", "", "Dial",
    "PJSIP/spv1,20,m(sigap-ring)", 25, 25, "ANSWERED", "1796410613.0", "1796410613.0", "", 0,
)
ABANDONED_IN_QUEUE = (
    "2026-12-04 19:00:00", "2026-12-04 19:00:00", "2026-12-04 19:00:04", '"" <0812777>',
    "0812777", "s", "sigap-emergency", "PJSIP/carrier-00000009", "", "Queue",
    "operators,,,,30", 4, 4, "ANSWERED", "1796410800.9", "1796410800.9", "", 9,
)
OPERATOR_FEATURE = (
    "2026-12-04 19:01:00", "2026-12-04 19:01:00", "2026-12-04 19:01:02", '"" <op1>', "op1",
    "s", "sigap-operator-feature", "PJSIP/op1-0000000a", "", "Hangup", "", 2, 2,
    "ANSWERED", "1796410860.10", "1796410860.10", "", 10,
)


def write_cdr(path: Path, *rows: tuple) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(CDR_SCHEMA)
        for row in rows:
            connection.execute(
                "INSERT INTO cdr (start, answer, end, clid, src, dst, dcontext, channel, "
                "dstchannel, lastapp, lastdata, duration, billsec, disposition, uniqueid, "
                "linkedid, peeraccount, sequence) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )


@pytest.fixture
async def store(tmp_path: Path):
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/sigap.db")
    yield CallStore(db)
    await db.close()


async def test_answered_call_rebuilt_from_cdr(tmp_path: Path, store: CallStore):
    write_cdr(tmp_path / "cdr.db", ANSWERED)
    reconciler = Reconciler(store, tmp_path / "cel.db", cdr_path=tmp_path / "cdr.db")

    assert await reconciler.run_pass("test") == 1

    call = await store.get_call(uniqueid="1796409470.6")
    assert call is not None
    assert call.reconciled is True
    assert call.outcome == "answered"
    assert call.operator == "op1"
    assert call.caller_number == "+6281234567890"
    assert call.caller_name == "Warga <b>Dua</b>"
    assert call.trunk == "carrier"
    assert call.queue == "operators"
    assert call.arrived_at == datetime(2026, 12, 4, 18, 37, 50, tzinfo=UTC)
    assert call.ended_at == datetime(2026, 12, 4, 18, 37, 53, tzinfo=UTC)
    assert [event.source for event in call.events] == ["cdr"]


async def test_outcomes_from_cdr(tmp_path: Path, store: CallStore):
    write_cdr(tmp_path / "cdr.db", OVERFLOWED, ABANDONED_IN_QUEUE, OPERATOR_FEATURE)
    reconciler = Reconciler(store, tmp_path / "cel.db", cdr_path=tmp_path / "cdr.db")

    assert await reconciler.run_pass("test") == 2

    overflowed = await store.get_call(uniqueid="1796410613.0")
    abandoned = await store.get_call(uniqueid="1796410800.9")
    assert overflowed is not None and abandoned is not None
    assert overflowed.outcome == "overflowed"
    assert abandoned.outcome == "abandoned_in_queue"
    assert await store.get_call(uniqueid="1796410860.10") is None
    assert await store.get_checkpoint(CDR_CHECKPOINT) == "3"


async def test_cdr_skips_call_known_to_cel(tmp_path: Path, store: CallStore):
    write_cdr(tmp_path / "cdr.db", ANSWERED)
    with sqlite3.connect(tmp_path / "cel.db") as connection:
        connection.execute(CEL_SCHEMA)
        # CEL has a row for the call but not its end yet: CEL reconciles it later.
        connection.execute(
            "INSERT INTO cel (eventtype, eventtime, context, exten, channame, uniqueid, "
            "linkedid) VALUES ('CHAN_START', 1796409470.6, 'sigap-trunk-inbound', '112', "
            "'PJSIP/carrier-00000004', '1796409470.6', '1796409470.6')"
        )
    reconciler = Reconciler(store, tmp_path / "cel.db", cdr_path=tmp_path / "cdr.db")

    assert await reconciler.run_pass("test") == 0
    assert await store.get_call(uniqueid="1796409470.6") is None


async def test_second_cdr_pass_writes_nothing(tmp_path: Path, store: CallStore):
    write_cdr(tmp_path / "cdr.db", ANSWERED, OVERFLOWED)
    reconciler = Reconciler(store, tmp_path / "cel.db", cdr_path=tmp_path / "cdr.db")

    assert await reconciler.run_pass("first") == 2
    assert await reconciler.run_pass("second") == 0
    assert await store.count_calls() == 2


async def test_replaced_cdr_file_read_from_start(tmp_path: Path, store: CallStore):
    write_cdr(tmp_path / "cdr.db", ANSWERED, OVERFLOWED, ABANDONED_IN_QUEUE)
    reconciler = Reconciler(store, tmp_path / "cel.db", cdr_path=tmp_path / "cdr.db")
    assert await reconciler.run_pass("first") == 3
    assert await store.get_checkpoint(CDR_CHECKPOINT) == "3"

    # The file is rotated: the next call's row is numbered 1 again.
    (tmp_path / "cdr.db").unlink()
    later = (*ABANDONED_IN_QUEUE[:14], "1796411000.3", "1796411000.3", "", 11)
    write_cdr(tmp_path / "cdr.db", later)

    assert await reconciler.run_pass("after rotation") == 1
    assert await store.get_call(uniqueid="1796411000.3") is not None
    assert await store.get_checkpoint(CDR_CHECKPOINT) == "1"
