"""Coarse call records from Asterisk's CDR, for calls that left no CEL rows at all.

CEL is the main safety net because it has every step of a call. A CDR row still exists
when CEL does not, for example when cel.db was lost or CEL logging was off. From it the
reconciler can rebuild arrival, answer by Asterisk, end, the caller, the trunk and,
for a queue call, the operator's channel. The dialled number is not in the CDR (its
`dst` is `s` after the dialplan's Goto), so such records leave it empty.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sigap_pbx.calls.asterisk_db import query_asterisk_db
from sigap_pbx.calls.numbers import normalise_number
from sigap_pbx.calls.tracker import endpoint_of, unescape_display_name
from sigap_pbx.store import CallOutcome

CDR_COLUMNS = (
    "AcctId, start, answer, end, clid, src, dcontext, channel, dstchannel, lastapp, "
    "lastdata, billsec, disposition, uniqueid, linkedid"
)
# Contexts a 112 caller's channel is in when its CDR is written.
EMERGENCY_CONTEXTS = ("sigap-emergency", "sigap-trunk-inbound")


@dataclass(frozen=True)
class CdrRow:
    rowid: int
    start: datetime | None
    answer: datetime | None
    end: datetime | None
    clid: str
    src: str
    dcontext: str
    channel: str
    dstchannel: str
    lastapp: str
    lastdata: str
    billsec: float
    disposition: str
    uniqueid: str
    linkedid: str


def _time(value: Any) -> datetime | None:
    """CDR times are epoch floats, or text in the root's local time zone, which is UTC."""
    if value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def read_cdr_rows(path: Path, after_rowid: int, limit: int = 20000) -> list[CdrRow]:
    """Read CDR rows after `after_rowid` (blocking; run it in a thread)."""
    raw_rows = query_asterisk_db(
        path,
        f"SELECT {CDR_COLUMNS} FROM cdr WHERE AcctId > ? ORDER BY AcctId LIMIT ?",
        (after_rowid, limit),
    )
    rows = []
    for raw in raw_rows:
        text = ["" if value is None else str(value) for value in raw]
        rows.append(
            CdrRow(
                rowid=int(raw[0]),
                start=_time(raw[1]),
                answer=_time(raw[2]),
                end=_time(raw[3]),
                clid=text[4],
                src=text[5],
                dcontext=text[6],
                channel=text[7],
                dstchannel=text[8],
                lastapp=text[9],
                lastdata=text[10],
                billsec=float(raw[11] or 0),
                disposition=text[12],
                uniqueid=text[13],
                linkedid=text[14],
            )
        )
    return rows


def cel_linkedids(path: Path, linkedids: list[str], after_rowid: int = 0) -> set[str]:
    """Return which of `linkedids` have a CEL row after `after_rowid` (blocking; run
    it in a thread)."""
    found: set[str] = set()
    # In chunks, under SQLite's limit of bound parameters.
    for start in range(0, len(linkedids), 500):
        chunk = linkedids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        rows = query_asterisk_db(
            path,
            f"SELECT DISTINCT linkedid FROM cel WHERE AcctId > ? AND linkedid IN ({marks})",
            (after_rowid, *chunk),
        )
        found.update(str(row[0]) for row in rows)
    return found


def _caller_name(clid: str) -> str:
    """Return the name part of a CDR clid such as `"Warga" <0812...>`."""
    if clid.startswith('"') and '" <' in clid:
        return unescape_display_name(clid[1 : clid.rindex('" <')])
    return ""


def group_by_call(rows: list[CdrRow]) -> dict[str, list[CdrRow]]:
    """Group the rows of 112 callers' channels by linkedid."""
    calls: dict[str, list[CdrRow]] = defaultdict(list)
    for row in rows:
        if row.dcontext in EMERGENCY_CONTEXTS and row.uniqueid == row.linkedid:
            calls[row.linkedid].append(row)
    return calls


def build_call_from_cdr(
    rows: list[CdrRow], country_code: str
) -> tuple[str, dict[str, Any]]:
    """Return (uniqueid, fields) for one call's CDR rows, marked reconciled."""
    first = rows[0]
    starts = [r.start for r in rows if r.start is not None]
    ends = [r.end for r in rows if r.end is not None]
    fields: dict[str, Any] = {
        "linkedid": first.linkedid,
        "channel": first.channel,
        "caller_number": normalise_number(first.src, country_code),
        "caller_number_raw": first.src,
        "caller_name": _caller_name(first.clid),
        "trunk": endpoint_of(first.channel) or "",
        "arrived_at": min(starts) if starts else None,
        "ended_at": max(ends) if ends else None,
        "reconciled": True,
    }
    queue_rows = [r for r in rows if r.lastapp == "Queue"]
    if queue_rows:
        fields["queue"] = queue_rows[0].lastdata.split(",", 1)[0]
    answered = next((r for r in queue_rows if r.dstchannel and r.billsec > 0), None)
    if answered is not None:
        operator = endpoint_of(answered.dstchannel)
        fields["operator"] = operator
        fields["operator_interface"] = f"PJSIP/{operator}" if operator else None
        fields["outcome"] = CallOutcome.ANSWERED
    elif any(r.lastapp == "Dial" for r in rows):
        fields["outcome"] = CallOutcome.OVERFLOWED
    elif queue_rows:
        fields["outcome"] = CallOutcome.ABANDONED_IN_QUEUE
    else:
        fields["outcome"] = CallOutcome.ABANDONED_BEFORE_QUEUE
    return first.uniqueid, {k: v for k, v in fields.items() if v is not None}
