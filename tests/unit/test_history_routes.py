"""The call history page, the /api/calls filters and the CSV export, on SQLite."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.store import CallStore, Database
from sigap_pbx.store.reports import ReportStore
from sigap_pbx.web.history_routes import CSV_COLUMNS, escape_cell
from tests.web_auth import SignedInClient, signed_in_client

BASE = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)


@dataclass
class FakeController:
    store: CallStore


@dataclass
class History:
    controller: FakeController
    db: Database
    ids: dict[str, int]
    clients: list[SignedInClient]

    async def client(self, role: str = "operator", **options: Any) -> SignedInClient:
        if role == "operator":
            options.setdefault("endpoint", "op1")
        client = await signed_in_client(self.controller, role, db=self.db, **options)
        self.clients.append(client)
        return client


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[History]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'history.db'}")
    store = CallStore(db)
    ids = {
        "fire": await store.upsert_call(
            "3.0", arrived_at=BASE, caller_number="0811", caller_number_raw="+62811",
            caller_name="=HYPERLINK(\"http://x\")", queue="operators",
            outcome="answered", operator="op1", operator_interface="PJSIP/op1",
            wait_seconds=4.0, talk_seconds=60.0,
        ),
        "prank": await store.upsert_call(
            "3.1", arrived_at=BASE + timedelta(minutes=1), caller_number="0812",
            caller_name="@SUM(A1)", outcome="answered", operator="op2",
            operator_interface="PJSIP/op2",
        ),
        "lost": await store.upsert_call(
            "3.2", arrived_at=BASE + timedelta(minutes=2), caller_number="-0813",
            caller_name="\tTab\rReturn", outcome="abandoned_in_queue",
        ),
    }
    reports = ReportStore(db)
    for uniqueid, category, call_type in (
        ("3.0", "fire", "emergency"),
        ("3.1", "other", "prank"),
    ):
        await reports.create_report(
            {"category": category, "call_type": call_type, "priority": 1},
            actor="op1",
            at=BASE,
            call_uniqueid=uniqueid,
        )
    result = History(FakeController(store), db, ids, [])
    yield result
    for client in result.clients:
        await client.close()
    await db.close()


async def call_ids(client: SignedInClient, query: str) -> list[int]:
    response = await client.get(f"/api/calls?{query}")
    assert response.status == 200
    return [call["id"] for call in (await response.json())["calls"]]


async def csv_rows(client: SignedInClient, query: str = "") -> list[dict[str, str]]:
    response = await client.get(f"/api/calls.csv?{query}")
    assert response.status == 200
    assert response.content_type == "text/csv"
    text = await response.text()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("operator=op1", ["fire"]),
        ("operator=op2", ["prank"]),
        ("category=fire", ["fire"]),
        ("call_type=prank", ["prank"]),
        ("category=other&call_type=prank", ["prank"]),
        ("outcome=abandoned_in_queue", ["lost"]),
        ("number=%2B62811", ["fire"]),
        ("operator=&category=&call_type=", ["lost", "prank", "fire"]),
        ("since=2026-12-04T08:01:00%2B07:00", ["lost", "prank"]),
    ],
)
async def test_calls_filtered(
    history: History, query: str, expected: list[str]
) -> None:
    client = await history.client()

    ids = await call_ids(client, query)

    assert ids == [history.ids[name] for name in expected]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("operator=op%201", "operator 'op 1'"),
        ("category=banjir", "category='banjir'"),
        ("call_type=urgent", "call_type='urgent'"),
        ("outcome=lost", "outcome='lost'"),
    ],
)
async def test_invalid_filter_named(history: History, query: str, named: str) -> None:
    client = await history.client()

    for path in ("/api/calls", "/api/calls.csv"):
        response = await client.get(f"{path}?{query}")
        body = await response.json()

        assert response.status == 400
        assert body["error"]["code"] == "invalid_parameter"
        assert named in body["error"]["message"]


async def test_calls_show_reports_and_operator(history: History) -> None:
    client = await history.client()

    body = await (await client.get("/api/calls?category=fire")).json()

    [call] = body["calls"]
    assert call["answering_endpoint"] == "op1"
    assert [(r["category"], r["call_type"]) for r in call["reports"]] == [
        ("fire", "emergency")
    ]


async def test_csv_has_header_and_rows(history: History) -> None:
    client = await history.client()

    rows = await csv_rows(client)

    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [row["uniqueid"] for row in rows] == ["3.2", "3.1", "3.0"]
    fire = rows[2]
    assert fire["operator"] == "op1"
    assert fire["categories"] == "fire"
    assert fire["call_types"] == "emergency"
    assert fire["talk_seconds"] == "60.0"
    assert fire["arrived_at"] == BASE.isoformat()


async def test_csv_escapes_formula_cells(history: History) -> None:
    client = await history.client()

    rows = {row["uniqueid"]: row for row in await csv_rows(client)}

    assert rows["3.0"]["caller_name"] == "'=HYPERLINK(\"http://x\")"
    assert rows["3.0"]["caller_number_raw"] == "'+62811"
    assert rows["3.1"]["caller_name"] == "'@SUM(A1)"
    assert rows["3.2"]["caller_number"] == "'-0813"
    assert rows["3.2"]["caller_name"] == "'\tTab\rReturn"
    assert rows["3.1"]["caller_number"] == "0812"


async def test_csv_applies_filters(history: History) -> None:
    client = await history.client()

    rows = await csv_rows(client, "call_type=prank")
    none = await csv_rows(client, "category=health")

    assert [row["uniqueid"] for row in rows] == ["3.1"]
    assert none == []


async def test_csv_reads_past_one_batch(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sigap_pbx.web.history_routes.CSV_BATCH", 2)
    client = await history.client()

    rows = await csv_rows(client)

    assert [row["uniqueid"] for row in rows] == ["3.2", "3.1", "3.0"]
    assert rows[1]["categories"] == "other"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+62811", "'+62811"),
        ("-5", "'-5"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("0811", "0811"),
        ("a=b", "a=b"),
        (None, ""),
        (12, "12"),
    ],
)
def test_escape_cell(value: object, expected: str) -> None:
    assert escape_cell(value) == expected


async def test_agency_cannot_read_history(history: History) -> None:
    client = await history.client("agency", agency="damkar")

    csv_response = await client.get("/api/calls.csv")
    page = await client.get("/history", allow_redirects=False)

    assert csv_response.status == 403
    assert page.status == 403


async def test_history_page_has_form(history: History) -> None:
    client = await history.client()

    response = await client.get("/history")
    text = await response.text()

    assert response.status == 200
    assert 'id="history-form"' in text
    for name in ("number", "since", "until", "operator", "outcome", "category", "call_type"):
        assert f'name="{name}"' in text
    assert 'id="history-results"' in text
    assert 'id="history-csv"' in text
    assert "Riwayat panggilan" in text
