"""LiveView (queue members and waiting callers, rebuilt from QueueStatus and kept
from AMI events) and the web API that serves it with the call records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from sigap_pbx.live import LiveView
from sigap_pbx.store import CallStore, Database
from sigap_pbx.wire.ami import AmiParser, Event
from tests.web_auth import signed_in_client

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def recorded_events(name: str) -> list[Event]:
    data = (TRANSCRIPTS / name).read_bytes()
    return [message for message in AmiParser().feed(data) if isinstance(message, Event)]


def queue_status_events() -> list[Event]:
    """Return the recorded QueueStatus list without its Complete event, as
    `Completion.events` contains it."""
    return [
        event
        for event in recorded_events("ami_actions.raw")
        if event.action_id == "queuestatus-1" and not event.completes_list
    ]


def event(name: str, *headers: tuple[str, str]) -> Event:
    return Event(headers=(("Event", name), ("Privilege", "agent,all"), *headers))


def member_added(interface: str, name: str) -> Event:
    return event(
        "QueueMemberAdded",
        ("Queue", "operators"),
        ("MemberName", name),
        ("Interface", interface),
        ("StateInterface", interface),
        ("Membership", "dynamic"),
        ("Penalty", "0"),
        ("CallsTaken", "0"),
        ("InCall", "0"),
        ("Status", "1"),
        ("Paused", "0"),
        ("PausedReason", ""),
    )


def caller_event(name: str, uniqueid: str, number: str) -> Event:
    return event(
        name,
        ("Channel", "PJSIP/carrier-00000000"),
        ("CallerIDNum", number),
        ("Uniqueid", uniqueid),
        ("Linkedid", uniqueid),
        ("Queue", "operators"),
        ("Position", "1"),
        ("Count", "1"),
    )


def members(view: LiveView, queue: str) -> dict[str, dict[str, object]]:
    snapshot = view.snapshot()
    (found,) = [q for q in snapshot["queues"] if q["name"] == queue]
    return {member["interface"]: member for member in found["members"]}


def callers(view: LiveView, queue: str) -> list[str]:
    snapshot = view.snapshot()
    (found,) = [q for q in snapshot["queues"] if q["name"] == queue]
    return [caller["uniqueid"] for caller in found["callers"]]


def test_reset_from_recorded_status() -> None:
    view = LiveView()

    view.reset_from_status(queue_status_events())

    assert view.synced is True
    assert members(view, "sigap-test") == {
        "Local/member@wire": {
            "interface": "Local/member@wire",
            "name": "op1",
            "status": "not_in_use",
            "paused": False,
            "paused_reason": "",
            "in_call": False,
        }
    }
    assert callers(view, "sigap-test") == []


def test_reset_replaces_old_state() -> None:
    view = LiveView()
    view.on_event(member_added("PJSIP/op9", "op9"))

    view.reset_from_status(queue_status_events())

    assert [queue["name"] for queue in view.snapshot()["queues"]] == ["sigap-test"]


def test_reset_reads_waiting_callers() -> None:
    view = LiveView()
    entry = event(
        "QueueEntry",
        ("Queue", "operators"),
        ("Position", "1"),
        ("Channel", "PJSIP/carrier-00000000"),
        ("Uniqueid", "1796409216.0"),
        ("CallerIDNum", "081234567890"),
        ("Wait", "12"),
    )

    view.reset_from_status([event("QueueParams", ("Queue", "operators")), entry])

    (queue,) = view.snapshot()["queues"]
    (caller,) = queue["callers"]
    assert caller["uniqueid"] == "1796409216.0"
    assert caller["caller_number"] == "081234567890"
    assert caller["waiting_seconds"] >= 12.0


def test_member_added_paused_removed() -> None:
    view = LiveView()
    view.reset_from_status([event("QueueParams", ("Queue", "operators"))])

    view.on_event(member_added("PJSIP/op1", "op1"))
    added = members(view, "operators")["PJSIP/op1"]
    view.on_event(
        event(
            "QueueMemberPause",
            ("Queue", "operators"),
            ("MemberName", "op1"),
            ("Interface", "PJSIP/op1"),
            ("Status", "1"),
            ("Paused", "1"),
            ("PausedReason", "break"),
        )
    )
    paused = members(view, "operators")["PJSIP/op1"]
    view.on_event(
        event(
            "QueueMemberRemoved",
            ("Queue", "operators"),
            ("MemberName", "op1"),
            ("Interface", "PJSIP/op1"),
        )
    )

    assert added["name"] == "op1"
    assert added["status"] == "not_in_use"
    assert added["paused"] is False
    assert paused["paused"] is True
    assert paused["paused_reason"] == "break"
    assert members(view, "operators") == {}


def test_recorded_pause_then_unpause() -> None:
    view = LiveView()
    view.reset_from_status(queue_status_events())
    pauses = [
        e for e in recorded_events("ami_events.raw") if e.name == "QueueMemberPause"
    ]

    view.on_event(pauses[0])
    paused = members(view, "sigap-test")["Local/member@wire"]
    view.on_event(pauses[1])
    unpaused = members(view, "sigap-test")["Local/member@wire"]

    assert len(pauses) == 2
    assert paused["paused"] is True
    assert paused["paused_reason"] == "R1"
    assert unpaused["paused"] is False
    assert unpaused["paused_reason"] == ""


def test_member_status_changes() -> None:
    view = LiveView()
    view.on_event(member_added("PJSIP/op1", "op1"))

    view.on_event(
        event(
            "QueueMemberStatus",
            ("Queue", "operators"),
            ("MemberName", "op1"),
            ("Interface", "PJSIP/op1"),
            ("Status", "6"),
            ("InCall", "0"),
        )
    )

    assert members(view, "operators")["PJSIP/op1"]["status"] == "ringing"


def test_caller_join_and_leave() -> None:
    view = LiveView()
    view.reset_from_status([event("QueueParams", ("Queue", "operators"))])

    view.on_event(caller_event("QueueCallerJoin", "1796409216.0", "081234567890"))
    view.on_event(caller_event("QueueCallerJoin", "1796409300.4", "081298765432"))
    joined = callers(view, "operators")
    view.on_event(caller_event("QueueCallerLeave", "1796409216.0", "081234567890"))
    after_leave = callers(view, "operators")
    view.on_event(caller_event("QueueCallerAbandon", "1796409300.4", "081298765432"))

    assert joined == ["1796409216.0", "1796409300.4"]
    assert after_leave == ["1796409300.4"]
    assert callers(view, "operators") == []


def test_unsynced_after_disconnect() -> None:
    view = LiveView()
    view.reset_from_status(queue_status_events())

    view.mark_unsynced()

    assert view.snapshot()["synced"] is False
    assert view.synced_at is not None


# --- Web API ------------------------------------------------------------------

WIB = timezone(timedelta(hours=7))


class FakeController:
    """The attributes of the controller that the web app reads."""

    def __init__(self, store: CallStore, live: LiveView) -> None:
        self.store = store
        self.live = live
        self.ami_connected = True
        self.database_problem: str | None = None

    def health(self) -> dict[str, Any]:
        return {
            "ami_connected": self.ami_connected,
            "database_problem": self.database_problem,
            "ami_sessions": 1,
            "live_view_synced": self.live.synced,
            "calls_in_progress": 0,
            "pending_writes": 0,
            "reconciled_calls": 0,
            "uptime_seconds": 1.0,
        }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallStore]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    yield CallStore(db)
    await db.close()


@pytest.fixture
async def controller(store: CallStore) -> FakeController:
    return FakeController(store, LiveView())


@pytest.fixture
async def api(controller: FakeController) -> AsyncIterator[TestClient]:
    client = await signed_in_client(controller, "supervisor")
    yield client
    await client.close()


@pytest.fixture
async def call_ids(store: CallStore) -> dict[str, int]:
    """Store three calls an hour apart and return their ids by outcome."""
    answered = await store.upsert_call(
        "1796409216.0",
        arrived_at=datetime(2026, 12, 4, 7, 0, tzinfo=WIB),
        caller_number="+6281234567890",
        caller_number_raw="081234567890",
        operator="op1",
        outcome="answered",
    )
    await store.upsert_leg(
        answered, "1796409216.1", member_name="op1", outcome="answered"
    )
    abandoned = await store.upsert_call(
        "1796412816.0",
        arrived_at=datetime(2026, 12, 4, 8, 0, tzinfo=WIB),
        caller_number="+6281111111111",
        outcome="abandoned_in_queue",
    )
    in_progress = await store.upsert_call(
        "1796416416.0", arrived_at=datetime(2026, 12, 4, 9, 0, tzinfo=WIB)
    )
    return {
        "answered": answered,
        "abandoned_in_queue": abandoned,
        "in_progress": in_progress,
    }


async def get_json(
    api: TestClient, path: str, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    response = await api.get(path, params=params)
    assert response.content_type == "application/json"
    return response.status, await response.json()


async def test_calls_listed_newest_first(
    api: TestClient, call_ids: dict[str, int]
) -> None:
    status, body = await get_json(api, "/api/calls")

    assert status == 200
    assert body["total"] == 3
    assert body["limit"] == 50
    assert body["offset"] == 0
    assert [call["id"] for call in body["calls"]] == [
        call_ids["in_progress"],
        call_ids["abandoned_in_queue"],
        call_ids["answered"],
    ]
    answered = body["calls"][2]
    assert answered["arrived_at"] == "2026-12-04T00:00:00+00:00"
    assert [leg["member_name"] for leg in answered["legs"]] == ["op1"]
    assert answered["events"] is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"outcome": "answered"}, ["answered"]),
        ({"number": "081234567890"}, ["answered"]),
        ({"number": "+6281111111111"}, ["abandoned_in_queue"]),
        ({"since": "2026-12-04T08:00:00+07:00"}, ["in_progress", "abandoned_in_queue"]),
        ({"until": "2026-12-04T01:00:00+00:00"}, ["answered"]),
        ({"limit": "1", "offset": "1"}, ["abandoned_in_queue"]),
    ],
    ids=["outcome", "raw-number", "number", "since", "until", "page"],
)
async def test_calls_filtered(
    api: TestClient,
    call_ids: dict[str, int],
    params: dict[str, str],
    expected: list[str],
) -> None:
    status, body = await get_json(api, "/api/calls", params)

    assert status == 200
    assert [call["id"] for call in body["calls"]] == [call_ids[key] for key in expected]


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"limit": "abc"}, "limit='abc'"),
        ({"limit": "0"}, "limit='0'"),
        ({"limit": "501"}, "limit='501'"),
        ({"limit": "\u00b2"}, "limit='\u00b2'"),
        ({"offset": "-1"}, "offset='-1'"),
        ({"outcome": "lost"}, "outcome='lost'"),
        ({"since": "2026-12-04T07:00:00"}, "since='2026-12-04T07:00:00'"),
        ({"until": "yesterday"}, "until='yesterday'"),
    ],
    ids=[
        "limit-text",
        "limit-zero",
        "limit-too-large",
        "limit-superscript",
        "offset-negative",
        "outcome-unknown",
        "since-naive",
        "until-text",
    ],
)
async def test_bad_parameter_rejected(
    api: TestClient, params: dict[str, str], shown: str
) -> None:
    status, body = await get_json(api, "/api/calls", params)

    assert status == 400
    assert body["error"]["code"] == "invalid_parameter"
    assert shown in body["error"]["message"]


async def test_outcome_error_lists_allowed(api: TestClient) -> None:
    _, body = await get_json(api, "/api/calls", {"outcome": "lost"})

    assert "answered, abandoned_before_queue" in body["error"]["message"]


async def test_call_by_id(api: TestClient, call_ids: dict[str, int]) -> None:
    status, body = await get_json(api, f"/api/calls/{call_ids['answered']}")

    assert status == 200
    assert body["uniqueid"] == "1796409216.0"
    assert body["outcome"] == "answered"
    assert body["events"] == []


@pytest.mark.parametrize("call_id", ["999", "99999999999999999999999"])
async def test_missing_call_404(
    api: TestClient, call_ids: dict[str, int], call_id: str
) -> None:
    status, body = await get_json(api, f"/api/calls/{call_id}")

    assert status == 404
    assert body["error"]["code"] == "call_not_found"
    assert call_id in body["error"]["message"]


@pytest.mark.parametrize("call_id", ["abc", "\u00b2", "-1"])
async def test_bad_call_id_400(api: TestClient, call_id: str) -> None:
    status, body = await get_json(api, f"/api/calls/{call_id}")

    assert status == 400
    assert body["error"]["code"] == "invalid_parameter"
    assert repr(call_id) in body["error"]["message"]


async def test_unknown_route_json_404(api: TestClient) -> None:
    status, body = await get_json(api, "/api/nothing")

    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert "/api/nothing" in body["error"]["message"]


async def test_wrong_method_json_405(api: TestClient) -> None:
    response = await api.post("/api/calls")
    body = await response.json()

    assert response.status == 405
    assert body["error"]["code"] == "method_not_allowed"


async def test_live_endpoint_serves_snapshot(
    api: TestClient, controller: FakeController
) -> None:
    controller.live.reset_from_status(queue_status_events())

    status, body = await get_json(api, "/api/live")

    assert status == 200
    assert body["synced"] is True
    assert [queue["name"] for queue in body["queues"]] == ["sigap-test"]


async def test_health_503_without_ami(
    api: TestClient, controller: FakeController
) -> None:
    healthy_status, healthy = await get_json(api, "/api/health")
    controller.ami_connected = False
    down_status, down = await get_json(api, "/api/health")

    assert healthy_status == 200
    assert healthy["ami_connected"] is True
    assert down_status == 503
    assert down["ami_connected"] is False


async def test_health_503_when_database_file_gone(
    api: TestClient, controller: FakeController
) -> None:
    controller.database_problem = "database file /x/sigap.db was deleted while running"
    status, body = await get_json(api, "/api/health")

    assert status == 503
    assert body["database_problem"].startswith("database file /x/sigap.db was deleted")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:8080",
        "127.0.0.2:8080",
        "localhost",
        "LocalHost:8080",
        "[::1]",
        "[::1]:8080",
    ],
)
async def test_loopback_host_allowed(api: TestClient, host: str) -> None:
    response = await api.get("/api/live", headers={"Host": host})

    assert response.status == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.evil.example",
        "localhost.evil.example:8080",
        "0.0.0.0:8080",
        "10.0.0.1",
        "[::2]:8080",
        "[127.0.0.1]",
        "::1",
        "localhost:http",
        "",
    ],
)
async def test_foreign_host_rejected(
    api: TestClient, call_ids: dict[str, int], host: str
) -> None:
    response = await api.get("/api/calls", headers={"Host": host})
    body = await response.json()

    assert response.status == 421
    assert response.content_type == "application/json"
    assert body["error"]["code"] == "host_not_allowed"
    assert repr(host) in body["error"]["message"]
    assert "calls" not in body


async def test_missing_host_rejected(api: TestClient) -> None:
    # aiohttp's client always sends Host, so this request is written by hand.
    reader, writer = await asyncio.open_connection(api.host, api.port)
    writer.write(b"GET /api/live HTTP/1.0\r\n\r\n")
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 421 ")
    assert json.loads(body)["error"]["code"] == "host_not_allowed"
    assert "(missing)" in json.loads(body)["error"]["message"]


async def test_foreign_host_before_routing(api: TestClient) -> None:
    response = await api.get("/api/nothing", headers={"Host": "evil.example"})
    body = await response.json()

    assert response.status == 421
    assert body["error"]["code"] == "host_not_allowed"


async def test_foreign_host_logged_once(api: TestClient) -> None:
    with capture_logs() as logs:
        for _ in range(3):
            await api.get("/api/live", headers={"Host": "evil.example"})

    rejections = [e for e in logs if e["event"] == "web_request_host_rejected"]
    assert len(rejections) == 1
    assert rejections[0]["host"] == "evil.example"
    assert rejections[0]["path"] == "/api/live"
