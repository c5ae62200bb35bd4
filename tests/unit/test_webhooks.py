"""WebhookSender against a real aiohttp receiver on 127.0.0.1, with a SQLite outbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from sigap_pbx.agencies.webhooks import (
    ALARM_KIND,
    WebhookSender,
    backoff_seconds,
    classify_status,
    encode_payload,
    sign,
    verify,
)
from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.store import Database
from sigap_pbx.store.alarms import AlarmSeverity
from sigap_pbx.store.outbox import OutboxStore
from tests.unit.agency_rows import (
    T0,
    FakeClock,
    add_agency,
    add_outbox,
    add_report,
    outbox_row,
    sample_payload,
)

SECRET = "s3cret-value-xyz"


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    signature_valid: bool


@dataclass
class Receiver:
    """An agency's webhook endpoint: checks signatures and dedupes by delivery id."""

    clock: FakeClock
    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    processed: dict[str, bytes] = field(default_factory=dict)
    # When set, the first request is processed and then held until released.
    hold_first: bool = False
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    delay_seconds: float = 0.0
    extra_headers: dict[str, str] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        valid = verify(
            SECRET,
            body,
            request.headers.get("X-Sigap-Signature", ""),
            request.headers.get("X-Sigap-Timestamp", ""),
            now=self.clock().timestamp(),
        )
        self.requests.append(Received(body, dict(request.headers), valid))
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        status = self.statuses.pop(0) if self.statuses else 200
        key = request.headers["X-Sigap-Delivery"]
        if 200 <= status < 300 and valid and key not in self.processed:
            self.processed[key] = body
        if self.hold_first and len(self.requests) == 1:
            self.held.set()
            await self.release.wait()
        return web.Response(status=status, text="ok" if status < 300 else "receiver error",
                            headers=self.extra_headers)


@dataclass
class Setup:
    db: Database
    store: OutboxStore
    clock: FakeClock
    receiver: Receiver
    url: str
    alarms: AlarmBoard

    def sender(self, **options: object) -> WebhookSender:
        settings: dict[str, object] = {
            "timeout": 2.0,
            "max_attempts": 5,
            "backoff_max": 60.0,
            "alarms": self.alarms,
            "clock": self.clock,
            "jitter": lambda: 0.0,
        }
        settings.update(options)
        return WebhookSender(self.store, **settings)  # type: ignore[arg-type]

    async def message(self, *, url: str | None = None, secret: str | None = SECRET,
                      priority: int = 1) -> tuple[int, int]:
        agency_id = await add_agency(
            self.db, "damkar", webhook_url=self.url if url is None else url,
            webhook_secret=secret,
        )
        report_id = await add_report(self.db, priority=priority)
        message_id = await add_outbox(self.db, report_id, agency_id)
        return report_id, message_id


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    clock = FakeClock()
    receiver = Receiver(clock)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Setup(db, OutboxStore(db), clock, receiver, str(server.make_url("/hook")),
                AlarmBoard(None, clock))
    receiver.release.set()
    await server.close()
    await db.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Signature and schedule -------------------------------------------------------------


def test_signature_covers_timestamp_and_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1796371200." + body, hashlib.sha256).hexdigest()

    assert sign(SECRET, 1796371200, body) == f"sha256={expected}"


def test_verify_rejects_replay_and_tampering() -> None:
    body = b'{"a":1}'
    signature = sign(SECRET, 1000, body)

    assert verify(SECRET, body, signature, "1000", now=1100)
    assert not verify(SECRET, body, signature, "1000", now=1000 + 301)
    assert not verify(SECRET, b'{"a":2}', signature, "1000", now=1000)
    assert not verify("other", body, signature, "1000", now=1000)
    assert not verify(SECRET, body, signature, "1001", now=1000)
    assert not verify(SECRET, body, signature, "-1000", now=1000)


def test_payload_encoding_is_canonical() -> None:
    first = encode_payload({"b": 1, "a": {"y": "é", "x": [1, 2]}})
    second = encode_payload({"a": {"x": [1, 2], "y": "é"}, "b": 1})

    assert first == second
    assert first == '{"a":{"x":[1,2],"y":"é"},"b":1}'.encode()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "delivered"), (204, "delivered"), (301, "failed"), (400, "failed"),
     (401, "failed"), (408, "retry"), (410, "failed"), (429, "retry"), (500, "retry"),
     (503, "retry")],
)
def test_status_classification(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


def test_backoff_doubles_up_to_maximum() -> None:
    assert backoff_seconds(1, 300, 0.0) == 0.5
    assert backoff_seconds(1, 300, 0.999) == pytest.approx(1.0, abs=0.001)
    assert backoff_seconds(4, 300, 0.0) == 4.0
    assert backoff_seconds(20, 300, 0.0) == 150.0
    assert backoff_seconds(20, 300, 0.999) == pytest.approx(300, abs=0.2)


# Delivery ---------------------------------------------------------------------------


async def test_500_then_200_resends_same_body(setup: Setup) -> None:
    setup.receiver.statuses = [500, 200]
    report_id, message_id = await setup.message()
    sender = setup.sender()

    await sender.deliver_due()
    after_first = await outbox_row(setup.db, message_id)
    setup.clock.advance(1)
    await sender.deliver_due()
    await sender.close()

    assert after_first["status"] == "pending"
    assert after_first["last_error"] == "HTTP 500 Internal Server Error: receiver error"
    assert after_first["next_attempt_at"] == T0 + timedelta(seconds=0.5)
    first, second = setup.receiver.requests
    assert first.signature_valid
    assert second.signature_valid
    assert first.body == second.body
    assert json.loads(first.body) == sample_payload(report_id, 1)
    assert first.headers["X-Sigap-Delivery"] == f"{report_id}:damkar:1"
    assert second.headers["X-Sigap-Delivery"] == first.headers["X-Sigap-Delivery"]
    assert first.headers["X-Sigap-Attempt"] == "1"
    assert second.headers["X-Sigap-Attempt"] == "2"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Sigap-Timestamp"] == str(int(T0.timestamp()))
    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "delivered"
    assert row["attempts"] == 2
    assert row["delivered_at"] == T0 + timedelta(seconds=1)


async def test_retry_waits_for_backoff(setup: Setup) -> None:
    setup.receiver.statuses = [503]
    await setup.message()
    sender = setup.sender()

    await sender.deliver_due()
    claimed_early = await sender.deliver_due()
    await sender.close()

    assert claimed_early == 0
    assert len(setup.receiver.requests) == 1


async def test_stop_mid_delivery_resends_once(setup: Setup) -> None:
    setup.receiver.hold_first = True
    report_id, message_id = await setup.message()
    first_run = setup.sender(poll_seconds=0.05)
    task = asyncio.create_task(first_run.run())
    await asyncio.wait_for(setup.receiver.held.wait(), 5)

    # The receiver has processed the message, but the controller stops before the
    # response arrives.
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await first_run.close()
    leased = await outbox_row(setup.db, message_id)
    restarted = setup.sender()
    claimed_during_lease = await restarted.deliver_due()
    setup.clock.advance(restarted.lease_seconds)
    claimed_after_lease = await restarted.deliver_due()
    await restarted.close()

    assert leased["status"] == "pending"
    assert leased["attempts"] == 1
    assert claimed_during_lease == 0
    assert claimed_after_lease == 1
    first, second = setup.receiver.requests
    assert second.headers["X-Sigap-Delivery"] == first.headers["X-Sigap-Delivery"]
    assert second.body == first.body
    assert second.headers["X-Sigap-Attempt"] == "2"
    assert list(setup.receiver.processed) == [f"{report_id}:damkar:1"]
    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "delivered"
    assert row["attempts"] == 2


async def test_run_delivers_when_notified(setup: Setup) -> None:
    sender = setup.sender(poll_seconds=60)
    task = asyncio.create_task(sender.run())
    await asyncio.sleep(0.05)
    _, message_id = await setup.message()

    # The poll interval is 60 s, so only the notification can start this attempt.
    sender.notify()
    async with asyncio.timeout(5):
        while (await outbox_row(setup.db, message_id))["status"] != "delivered":
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sender.close()

    assert len(setup.receiver.requests) == 1


async def test_400_fails_and_raises_alarm(setup: Setup) -> None:
    setup.receiver.statuses = [400]
    report_id, message_id = await setup.message(priority=1)
    sender = setup.sender()

    await sender.deliver_due()

    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "failed"
    assert row["attempts"] == 1
    assert row["last_error"].startswith("HTTP 400 Bad Request")
    alarm = setup.alarms.get_active(ALARM_KIND, "webhook:damkar")
    assert alarm is not None
    assert alarm.severity is AlarmSeverity.CRITICAL
    assert alarm.detail["outbox_id"] == message_id
    assert f"report {report_id}" in alarm.message

    await setup.store.requeue(message_id, setup.clock())
    await sender.deliver_due()
    await sender.close()

    assert (await outbox_row(setup.db, message_id))["status"] == "delivered"
    assert setup.alarms.get_active(ALARM_KIND, "webhook:damkar") is None


async def test_410_gone_fails_at_once(setup: Setup) -> None:
    setup.receiver.statuses = [410]
    _, message_id = await setup.message(priority=4)
    sender = setup.sender()

    await sender.deliver_due()
    await sender.close()

    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "failed"
    alarm = setup.alarms.get_active(ALARM_KIND, "webhook:damkar")
    assert alarm is not None
    assert alarm.severity is AlarmSeverity.WARNING


async def test_gives_up_after_max_attempts(setup: Setup) -> None:
    setup.receiver.statuses = [503, 503, 503]
    _, message_id = await setup.message()
    sender = setup.sender(max_attempts=2)

    await sender.deliver_due()
    setup.clock.advance(10)
    await sender.deliver_due()
    setup.clock.advance(10)
    claimed_after_giving_up = await sender.deliver_due()
    await sender.close()

    assert claimed_after_giving_up == 0
    assert len(setup.receiver.requests) == 2
    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "failed"
    assert row["last_error"].startswith("gave up after 2 attempts: HTTP 503")
    assert setup.alarms.get_active(ALARM_KIND, "webhook:damkar") is not None


async def test_retry_after_header_sets_wait(setup: Setup) -> None:
    setup.receiver.statuses = [429]
    setup.receiver.extra_headers = {"Retry-After": "30"}
    _, message_id = await setup.message()
    sender = setup.sender()

    await sender.deliver_due()
    await sender.close()

    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "pending"
    assert row["next_attempt_at"] == T0 + timedelta(seconds=30)


async def test_timeout_is_retried(setup: Setup) -> None:
    setup.receiver.delay_seconds = 1.0
    _, message_id = await setup.message()
    sender = setup.sender(timeout=0.2)

    await sender.deliver_due()
    await sender.close()

    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "pending"
    assert row["last_error"] == "timed out after 0.2 s"


async def test_refused_connection_is_retried(setup: Setup) -> None:
    _, message_id = await setup.message(url=f"http://127.0.0.1:{closed_port()}/hook")
    sender = setup.sender()

    await sender.deliver_due()
    await sender.close()

    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "pending"
    assert row["last_error"].startswith("connection failed: ClientConnectorError")


async def test_agency_without_url_sends_nothing(setup: Setup) -> None:
    _, message_id = await setup.message(url="")
    sender = setup.sender()

    await sender.deliver_due()
    await sender.close()

    assert setup.receiver.requests == []
    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "delivered"
    assert row["last_error"] == "no webhook_url"


async def test_missing_secret_is_not_sent_unsigned(setup: Setup) -> None:
    _, message_id = await setup.message(secret=None)
    sender = setup.sender()

    await sender.deliver_due()
    await sender.close()

    assert setup.receiver.requests == []
    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "pending"
    assert "no webhook_secret" in row["last_error"]


async def test_non_http_url_fails(setup: Setup) -> None:
    _, message_id = await setup.message(url="ftp://127.0.0.1/hook")
    sender = setup.sender()

    await sender.deliver_due()
    await sender.close()

    row = await outbox_row(setup.db, message_id)
    assert row["status"] == "failed"
    assert "not an http or https URL" in row["last_error"]


async def test_secret_never_logged(setup: Setup) -> None:
    setup.receiver.statuses = [500, 400]
    await setup.message()
    sender = setup.sender()

    with structlog.testing.capture_logs() as entries:
        await sender.deliver_due()
        setup.clock.advance(5)
        await sender.deliver_due()
    await sender.close()

    # Loggers that earlier tests already used are cached and bypass capture_logs,
    # so only the sender's own entries are certain to be here.
    events = [entry["event"] for entry in entries if entry["event"].startswith("webhook_")]
    assert events == ["webhook_attempt_failed", "webhook_failed"]
    assert all(SECRET not in repr(entry) for entry in entries)
