"""Rebuild calls the controller missed from the CEL and CDR rows Asterisk writes itself.

Asterisk logs every channel event to LOGDIR/cel.db (cel_sqlite3_custom) whether or not
the controller is running. A pass reads the rows after the last checkpoint and groups
them by linkedid. A call has ended when its LINKEDID_END row is there. For every ended
call that is missing from the store, or still `in_progress` there, the pass writes the
record from those rows, marked `reconciled`. Calls still in progress are left for a later
pass, so the checkpoint never moves past their first row. The reconciler keeps their
rows and reads on from the last row read, so a long call neither holds back the calls
after it nor has its rows read again by every pass. After a restart it reads from the
checkpoint again.

A call whose channels died with Asterisk (a crash, a kill) never gets its LINKEDID_END.
Left alone it would hold the checkpoint and its rows for ever. So a group with no row
for ORPHAN_SECONDS is checked against the channels Asterisk has now; gone in two checks at least
`settle_seconds` apart, it is written as ended at its last row.

Reading is idempotent: a call the live path recorded in full is skipped, and the
store's upsert keeps one record per uniqueid, so a pass may safely repeat rows. That is
also how a deleted or rotated cel.db or cdr.db is handled: when its rows end before the
checkpoint, Asterisk has started numbering from 1 again, and the file is read again
from its first row.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from sigap_pbx.calls.asterisk_db import query_asterisk_db
from sigap_pbx.calls.cdr import (
    build_call_from_cdr,
    cel_linkedids,
    group_by_call,
    read_cdr_rows,
)
from sigap_pbx.calls.numbers import normalise_number
from sigap_pbx.calls.tracker import (
    CALLER_CLEARED_CAUSES,
    INBOUND_CONTEXT,
    endpoint_of,
    unescape_display_name,
)
from sigap_pbx.store import CallOutcome, CallStore

log = structlog.get_logger(__name__)

CHECKPOINT = "cel_rowid"
CDR_CHECKPOINT = "cdr_rowid"
COLUMNS = (
    "AcctId, eventtype, eventtime, cidname, cidnum, context, exten, channame, "
    "appname, appdata, uniqueid, linkedid, peer, userdeftype, eventextra"
)
BATCH_ROWS = 20000
# A group without LINKEDID_END and quiet this long is checked against the live channels.
ORPHAN_SECONDS = 300.0


@dataclass(frozen=True)
class CelRow:
    rowid: int
    eventtype: str
    eventtime: float
    cidname: str
    cidnum: str
    context: str
    exten: str
    channame: str
    appname: str
    appdata: str
    uniqueid: str
    linkedid: str
    peer: str
    userdeftype: str
    eventextra: str

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.eventtime, UTC)

    def extra(self) -> dict[str, Any]:
        try:
            value = json.loads(self.eventextra) if self.eventextra else {}
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


def read_cel_rows(path: Path, after_rowid: int, limit: int = BATCH_ROWS) -> list[CelRow]:
    """Read CEL rows after `after_rowid` (blocking; run it in a thread)."""
    raw_rows = query_asterisk_db(
        path,
        f"SELECT {COLUMNS} FROM cel WHERE AcctId > ? ORDER BY AcctId LIMIT ?",
        (after_rowid, limit),
    )
    rows = []
    for raw in raw_rows:
        values = [("" if value is None else value) for value in raw]
        values[0] = int(values[0])
        values[2] = _epoch(values[2])
        rows.append(CelRow(*[values[0], *map(_text_or_float, values[1:])]))
    return rows


def last_rowid(path: Path, table: str) -> int | None:
    """Return the highest AcctId of `table`, 0 when it is empty, or None when the
    file or the table is missing (blocking; run it in a thread)."""
    assert table in ("cel", "cdr")
    rows = query_asterisk_db(path, f"SELECT max(AcctId) FROM {table}", ())
    if not rows:
        return None
    return int(rows[0][0] or 0)


def row_mark(path: Path, rowid: int) -> tuple[str, float] | None:
    """Return the linkedid and time of one CEL row, or None if there is no such row
    (blocking; run it in a thread)."""
    rows = query_asterisk_db(
        path, "SELECT linkedid, eventtime FROM cel WHERE AcctId = ?", (rowid,)
    )
    if not rows:
        return None
    return str(rows[0][0]), _epoch(rows[0][1])


def _text_or_float(value: Any) -> Any:
    return value if isinstance(value, float) else str(value)


def _epoch(value: Any) -> float:
    """CEL times are epoch seconds (float) or, with another dateformat, a text date."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC).timestamp()


def _elapsed(first: CelRow, last: CelRow) -> float:
    """Seconds between two rows, never negative (CEL times can repeat or step back)."""
    return max(0.0, last.eventtime - first.eventtime)


def _answering_bridge(rows: list[CelRow], caller: str) -> tuple[CelRow | None, str]:
    """Return the caller's first BRIDGE_ENTER and the channel that shared its bridge.

    Asterisk 22.10 often leaves `peer` empty in both BRIDGE_ENTER rows of a two-party
    bridge, so the other party is found by the bridge_id in eventextra instead.
    """
    for row in rows:
        if row.uniqueid != caller or row.eventtype != "BRIDGE_ENTER":
            continue
        if row.peer:
            return row, row.peer
        bridge_id = row.extra().get("bridge_id")
        for other in rows:
            if (
                other.eventtype == "BRIDGE_ENTER"
                and other.uniqueid != caller
                and bridge_id is not None
                and other.extra().get("bridge_id") == bridge_id
            ):
                return row, other.channame
    return None, ""


def build_call(rows: list[CelRow], country_code: str) -> tuple[str, dict[str, Any]] | None:
    """Return (uniqueid, fields) for one finished call's rows, or None if not a 112 call."""
    start = next(
        (r for r in rows if r.eventtype == "CHAN_START" and r.context == INBOUND_CONTEXT),
        None,
    )
    if start is None:
        return None
    caller = start.uniqueid
    mine = [r for r in rows if r.uniqueid == caller]
    fields: dict[str, Any] = {
        "linkedid": start.linkedid,
        "channel": start.channame,
        "caller_number": normalise_number(start.cidnum, country_code),
        "caller_number_raw": start.cidnum,
        "caller_name": unescape_display_name(start.cidname),
        "trunk": endpoint_of(start.channame) or "",
        "dialled_number": start.exten,
        "arrived_at": start.at,
        "reconciled": True,
    }
    queue_start = next((r for r in mine if r.eventtype == "APP_START" and r.appname == "Queue"), None)
    if queue_start is not None:
        fields["queued_at"] = queue_start.at
        fields["queue"] = queue_start.appdata.split(",", 1)[0]
    stage = None
    for row in mine:
        if row.eventtype in ("USER_DEFINED", "sigap_overflow") and row.userdeftype == "sigap_overflow":
            candidate = str(row.extra().get("extra", ""))
            if candidate in ("backup", "supervisor", "oncall"):
                stage = candidate
    answered, peer = _answering_bridge(rows, caller)
    hangup = next((r for r in mine if r.eventtype == "HANGUP"), None)
    cause = None
    if hangup is not None:
        fields["ended_at"] = hangup.at
        cause = hangup.extra().get("hangupcause")
        fields["hangup_cause"] = int(cause) if isinstance(cause, int | str) and str(cause).isdigit() else None
    if stage is not None:
        fields["overflow_stage"] = stage
    if answered is not None:
        who = endpoint_of(peer)
        fields["answered_at"] = answered.at
        fields["wait_seconds"] = _elapsed(start, answered)
        if stage is None or stage == "backup":
            fields["operator"] = who
            fields["operator_interface"] = f"PJSIP/{who}" if who else None
        if stage is not None:
            fields["answered_by"] = who
        if hangup is not None:
            fields["talk_seconds"] = _elapsed(answered, hangup)
        fields["outcome"] = CallOutcome.ANSWERED if stage is None else CallOutcome.OVERFLOWED
    else:
        if hangup is not None:
            fields["wait_seconds"] = _elapsed(start, hangup)
        if stage is not None:
            fields["outcome"] = CallOutcome.OVERFLOWED
        elif queue_start is not None:
            fields["outcome"] = CallOutcome.ABANDONED_IN_QUEUE
        elif cause is None or int(cause) in CALLER_CLEARED_CAUSES:
            fields["outcome"] = CallOutcome.ABANDONED_BEFORE_QUEUE
        else:
            fields["outcome"] = CallOutcome.FAILED
    return caller, {k: v for k, v in fields.items() if v is not None}


# Seconds after a call's LINKEDID_END before a pass may write it. Under load the
# tracker's final writes for a call can lag its end by a few seconds.
SETTLE_SECONDS = 10.0


class Reconciler:
    """Run reconciliation passes; only one pass runs at a time."""

    def __init__(
        self,
        store: CallStore,
        cel_path: Path,
        *,
        cdr_path: Path | None = None,
        country_code: str = "62",
        settle_seconds: float = SETTLE_SECONDS,
        live_linkedids: Callable[[], Awaitable[set[str] | None]] | None = None,
        orphan_seconds: float = ORPHAN_SECONDS,
    ) -> None:
        self.store = store
        self.settle_seconds = settle_seconds
        # Returns the linkedids of Asterisk's channels now, or None while AMI is down,
        # and then no group is taken for an orphan.
        self.live_linkedids = live_linkedids
        self.orphan_seconds = orphan_seconds
        # linkedid -> monotonic time it was first seen with no live channel.
        self._gone_since: dict[str, float] = {}
        # The groups still open after the last batch, with their rows, and the last
        # row read. The checkpoint stays at the first row of the oldest open group,
        # so a long call would otherwise make every pass read its rows again and
        # keep the calls after it waiting for its end.
        self._open: dict[str, list[CelRow]] = {}
        self._read_to: int | None = None
        # The linkedid and time of the row at `_read_to`: a different row there means
        # the file was replaced and has grown past that row again.
        self._read_mark: tuple[str, float] | None = None
        # The checkpoint stored with that state: any other value means it is stale.
        self._read_checkpoint: int | None = None
        self.cel_path = cel_path
        self.cdr_path = cdr_path
        self.country_code = country_code
        self._lock = asyncio.Lock()
        self.reconciled_total = 0

    def unsettled_calls(self) -> int:
        """Return how many calls the last pass read as ended but left for a later one,
        because their end is younger than `settle_seconds`."""
        return sum(
            1 for group in self._open.values()
            if any(row.eventtype == "LINKEDID_END" for row in group)
        )

    async def run_pass(self, reason: str) -> int:
        """Reconcile every finished call after the checkpoint; return how many were written."""
        async with self._lock:
            written = 0
            while True:
                batch_written, more = await self._one_batch()
                written += batch_written
                if not more:
                    break
            if self.cdr_path is not None:
                written += await self._cdr_pass()
            if written:
                log.warning("calls_reconciled", count=written, reason=reason)
            else:
                log.debug("reconcile_pass_clean", reason=reason)
            self.reconciled_total += written
            return written

    async def _cdr_pass(self) -> int:
        """Write coarse records from CDR for ended calls that have no CEL rows at all."""
        assert self.cdr_path is not None
        after = int(await self.store.get_checkpoint(CDR_CHECKPOINT) or 0)
        rows = await asyncio.to_thread(read_cdr_rows, self.cdr_path, after)
        if not rows and await self._file_replaced(self.cdr_path, "cdr", after):
            await self.store.set_checkpoint(CDR_CHECKPOINT, "0")
            rows = await asyncio.to_thread(read_cdr_rows, self.cdr_path, 0)
        if not rows:
            return 0
        calls = group_by_call(rows)
        in_cel = await asyncio.to_thread(cel_linkedids, self.cel_path, list(calls))
        written = 0
        for linkedid, call_rows in calls.items():
            if linkedid in in_cel:
                continue
            uniqueid, fields = build_call_from_cdr(call_rows, self.country_code)
            if await self.store.get_call(uniqueid=uniqueid) is not None:
                continue
            call_id = await self.store.upsert_call(uniqueid, **fields)
            await self.store.add_events(call_id, [
                {
                    "at": row.end or row.start or datetime.now(UTC),
                    "source": "cdr",
                    "kind": "CDR",
                    "dedupe_key": f"cdr:{row.rowid}",
                    "data": {
                        "application": row.lastapp,
                        "data": row.lastdata,
                        "peer": row.dstchannel,
                        "disposition": row.disposition,
                        "billsec": row.billsec,
                    },
                }
                for row in call_rows
            ])
            log.warning("call_reconciled_from_cdr", uniqueid=uniqueid, outcome=str(fields["outcome"]))
            written += 1
        await self.store.set_checkpoint(CDR_CHECKPOINT, str(rows[-1].rowid))
        return written

    async def _one_batch(self) -> tuple[int, bool]:
        after = int(await self.store.get_checkpoint(CHECKPOINT) or 0)
        if self._read_to is None or self._read_checkpoint != after:
            self._open = {}
            self._read_to = after
            self._read_mark = None
        if self._read_mark is not None and self._read_to:
            mark = await asyncio.to_thread(row_mark, self.cel_path, self._read_to)
            if mark is not None and mark != self._read_mark:
                log.warning(
                    "asterisk_file_replaced", path=str(self.cel_path), row=self._read_to,
                    fix="nothing to do: its rows are read again from the start; calls "
                        "already recorded are skipped",
                )
                await self.store.set_checkpoint(CHECKPOINT, "0")
                self._read_to = None
                self._read_mark = None
                self._open = {}
                return 0, True
        rows = await asyncio.to_thread(read_cel_rows, self.cel_path, self._read_to)
        if not rows and await self._file_replaced(self.cel_path, "cel", self._read_to):
            await self.store.set_checkpoint(CHECKPOINT, "0")
            self._read_to = None
            self._read_mark = None
            self._open = {}
            return 0, True
        if not rows and not self._open:
            return 0, False
        by_linkedid: dict[str, list[CelRow]] = defaultdict(list)
        for linkedid, group in self._open.items():
            by_linkedid[linkedid].extend(group)
        for row in rows:
            by_linkedid[row.linkedid].append(row)
        # A call that ended moments ago is left to the live path, because its last
        # writes may still be queued. A later pass takes it if they never come.
        now = datetime.now(UTC).timestamp()
        settled_before = now - self.settle_seconds
        finished = {
            linkedid
            for linkedid, group in by_linkedid.items()
            if any(
                r.eventtype == "LINKEDID_END" and r.at.timestamp() <= settled_before
                for r in group
            )
        }
        quiet = [
            linkedid
            for linkedid, group in by_linkedid.items()
            if linkedid not in finished
            and not any(r.eventtype == "LINKEDID_END" for r in group)
            and group[-1].eventtime <= now - self.orphan_seconds
        ]
        full_batch = len(rows) >= BATCH_ROWS
        if quiet and full_batch:
            # A call cut by the batch's end has its later rows, and maybe its end,
            # in the next batch: it is not an orphan.
            later = await asyncio.to_thread(cel_linkedids, self.cel_path, quiet, rows[-1].rowid)
            quiet = [linkedid for linkedid in quiet if linkedid not in later]
        orphans = await self._orphans(quiet)
        written = 0
        for linkedid in sorted(finished | orphans, key=lambda lid: by_linkedid[lid][0].rowid):
            written += await self._reconcile_call(
                by_linkedid[linkedid], orphan=linkedid in orphans
            )
        finished |= orphans
        self._open = {lid: group for lid, group in by_linkedid.items() if lid not in finished}
        if rows:
            self._read_to = rows[-1].rowid
            self._read_mark = (rows[-1].linkedid, rows[-1].eventtime)
        if self._open:
            checkpoint = min(group[0].rowid for group in self._open.values()) - 1
        else:
            checkpoint = self._read_to
        if checkpoint > after:
            await self.store.set_checkpoint(CHECKPOINT, str(checkpoint))
        self._read_checkpoint = max(checkpoint, after)
        return written, full_batch

    @staticmethod
    async def _file_replaced(path: Path, table: str, read_to: int) -> bool:
        """Tell whether the file's rows now end before the last row read: someone
        deleted or rotated it, and Asterisk numbers the new rows from 1 again."""
        if read_to <= 0:
            return False
        last = await asyncio.to_thread(last_rowid, path, table)
        if last is None or last >= read_to:
            return False
        log.warning(
            "asterisk_file_replaced", path=str(path), last_rowid=last, checkpoint=read_to,
            fix="nothing to do: its rows are read again from the start; calls already "
                "recorded are skipped",
        )
        return True

    async def _orphans(self, quiet: list[str]) -> set[str]:
        """Return the quiet groups whose channels are gone, twice, `settle_seconds` apart.

        The second check keeps a call that ended during this pass, whose LINKEDID_END
        was not yet written when the rows were read, from being taken for an orphan.
        """
        if not quiet or self.live_linkedids is None:
            self._gone_since.clear()
            return set()
        live = await self.live_linkedids()
        if live is None:
            return set()
        clock = asyncio.get_running_loop().time()
        orphans = set()
        still_gone = {}
        for linkedid in quiet:
            if linkedid in live:
                continue
            since = self._gone_since.get(linkedid, clock)
            still_gone[linkedid] = since
            if clock - since >= self.settle_seconds:
                orphans.add(linkedid)
        self._gone_since = {k: v for k, v in still_gone.items() if k not in orphans}
        return orphans

    async def _reconcile_call(self, rows: list[CelRow], *, orphan: bool = False) -> int:
        built = build_call(rows, self.country_code)
        if built is None:
            return 0
        uniqueid, fields = built
        if orphan:
            # Asterisk never wrote the end: the last row is the last thing known.
            fields.setdefault("ended_at", rows[-1].at)
            log.warning(
                "call_reconciled_without_end", uniqueid=uniqueid, last_row=rows[-1].rowid,
                fix="Asterisk stopped without hanging this call up; check its log for a crash",
            )
        existing = await self.store.get_call(uniqueid=uniqueid)
        if existing is not None:
            live_outcome = existing.outcome != CallOutcome.IN_PROGRESS
            # A call the live path finished has its talk or wait time. One it adopted
            # after a gap and saw end has neither, so its times come from CEL.
            timed = existing.talk_seconds is not None or existing.wait_seconds is not None
            if live_outcome and existing.ended_at is not None and timed:
                return 0
            # The live path saw part of the call (a controller killed mid-call, or
            # before its last writes): keep what it recorded and fill the rest. An
            # outcome it already decided is kept.
            replaceable = {"ended_at", "reconciled"}
            if not live_outcome:
                replaceable.add("outcome")
            fields = {
                k: v
                for k, v in fields.items()
                if getattr(existing, k, None) is None or k in replaceable
            }
        call_id = await self.store.upsert_call(uniqueid, **fields)
        # One statement for the whole timeline: a catch-up after a long gap writes
        # thousands of calls, and a commit per row made that minutes on SQLite.
        await self.store.add_events(call_id, [
            {
                "at": row.at,
                "source": "cel",
                "kind": row.eventtype if row.eventtype != "sigap_overflow" else "USER_DEFINED",
                "dedupe_key": f"cel:{row.rowid}",
                "data": {
                    "channel": row.channame,
                    "application": row.appname,
                    "data": row.appdata,
                    "peer": row.peer,
                    "extra": row.eventextra,
                },
            }
            for row in rows
            if row.uniqueid == uniqueid or row.eventtype in ("BRIDGE_ENTER", "ANSWER")
        ])
        log.info("call_reconciled", uniqueid=uniqueid, outcome=str(fields.get("outcome")))
        return 1
