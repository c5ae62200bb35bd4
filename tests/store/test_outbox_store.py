"""OutboxStore claims, leases and outcomes on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from sigap_pbx.agencies.webhooks import encode_payload
from sigap_pbx.store import Database, InvalidFieldValue
from sigap_pbx.store.outbox import OutboxMessageNotFound, OutboxStore
from tests.unit.agency_rows import T0, add_agency, add_outbox, add_report, outbox_row

LEASE = 25.0


@pytest.fixture
def outbox(db: Database) -> OutboxStore:
    return OutboxStore(db)


async def seed(db: Database, *, url: str | None = "http://127.0.0.1:9/hook") -> tuple[int, int]:
    agency_id = await add_agency(db, "damkar", webhook_url=url, webhook_secret="s3cret")
    report_id = await add_report(db, priority=2)
    return agency_id, report_id


async def test_claim_takes_due_pending_rows(db: Database, outbox: OutboxStore) -> None:
    agency_id, report_id = await seed(db)
    due = await add_outbox(db, report_id, agency_id, version=1)
    later = T0 + timedelta(minutes=1)
    await add_outbox(db, report_id, agency_id, version=2, next_attempt_at=later)
    await add_outbox(db, report_id, agency_id, version=3, status="delivered")

    claimed = await outbox.claim_due(T0, lease_seconds=LEASE, limit=10)

    assert [message.id for message in claimed] == [due]
    message = claimed[0]
    assert message.attempt == 1
    assert message.agency_code == "damkar"
    assert message.priority == 2
    assert message.webhook_url == "http://127.0.0.1:9/hook"
    assert message.webhook_secret == "s3cret"
    assert message.delivery_id == f"{report_id}:damkar:1"
    row = await outbox_row(db, due)
    assert row["attempts"] == 1
    assert row["next_attempt_at"] == T0 + timedelta(seconds=LEASE)
    assert row["status"] == "pending"


async def test_claimed_row_waits_for_lease_end(db: Database, outbox: OutboxStore) -> None:
    agency_id, report_id = await seed(db)
    message_id = await add_outbox(db, report_id, agency_id)
    await outbox.claim_due(T0, lease_seconds=LEASE, limit=10)

    during_lease = await outbox.claim_due(
        T0 + timedelta(seconds=LEASE - 1), lease_seconds=LEASE, limit=10
    )
    after_lease = await outbox.claim_due(
        T0 + timedelta(seconds=LEASE), lease_seconds=LEASE, limit=10
    )

    assert during_lease == []
    assert [message.id for message in after_lease] == [message_id]
    assert after_lease[0].attempt == 2


async def test_stale_claim_cannot_record_outcome(db: Database, outbox: OutboxStore) -> None:
    agency_id, report_id = await seed(db)
    message_id = await add_outbox(db, report_id, agency_id)
    [stale] = await outbox.claim_due(T0, lease_seconds=LEASE, limit=10)
    [fresh] = await outbox.claim_due(
        T0 + timedelta(seconds=LEASE), lease_seconds=LEASE, limit=10
    )

    stale_recorded = await outbox.schedule_retry(stale, T0 + timedelta(hours=1), "HTTP 500")
    fresh_recorded = await outbox.mark_delivered(fresh, T0 + timedelta(seconds=LEASE + 1))

    assert stale_recorded is False
    assert fresh_recorded is True
    row = await outbox_row(db, message_id)
    assert row["status"] == "delivered"
    assert row["attempts"] == 2
    assert row["delivered_at"] == T0 + timedelta(seconds=LEASE + 1)


async def test_concurrent_claims_share_no_row(db: Database, outbox: OutboxStore) -> None:
    agency_id, report_id = await seed(db)
    ids = {await add_outbox(db, report_id, agency_id, version=v) for v in range(1, 9)}

    batches = await asyncio.gather(
        *(outbox.claim_due(T0, lease_seconds=LEASE, limit=8) for _ in range(4))
    )

    claimed = [message.id for batch in batches for message in batch]
    assert sorted(claimed) == sorted(ids)


async def test_payload_encodes_to_same_bytes(db: Database, outbox: OutboxStore) -> None:
    agency_id, report_id = await seed(db)
    payload = {
        "z": 1,
        "report": {"description": "Kebakaran di pasar — lantai 2", "latitude": -6.175392},
        "a": [1.5, None, True],
    }
    await add_outbox(db, report_id, agency_id, payload=payload)

    [message] = await outbox.claim_due(T0, lease_seconds=LEASE, limit=1)

    assert encode_payload(message.payload) == encode_payload(payload)


async def test_retry_and_failure_are_recorded(db: Database, outbox: OutboxStore) -> None:
    agency_id, report_id = await seed(db)
    message_id = await add_outbox(db, report_id, agency_id)
    [first] = await outbox.claim_due(T0, lease_seconds=LEASE, limit=1)
    await outbox.schedule_retry(first, T0 + timedelta(seconds=2), "HTTP 503")

    retry_row = await outbox_row(db, message_id)
    [second] = await outbox.claim_due(T0 + timedelta(seconds=2), lease_seconds=LEASE, limit=1)
    await outbox.mark_failed(second, "gave up")

    assert retry_row["status"] == "pending"
    assert retry_row["last_error"] == "HTTP 503"
    assert retry_row["next_attempt_at"] == T0 + timedelta(seconds=2)
    failed_row = await outbox_row(db, message_id)
    assert failed_row["status"] == "failed"
    assert failed_row["last_error"] == "gave up"
    assert await outbox.claim_due(T0 + timedelta(days=1), lease_seconds=LEASE, limit=1) == []


async def test_requeue_resets_failed_message(db: Database, outbox: OutboxStore) -> None:
    agency_id, report_id = await seed(db)
    failed = await add_outbox(db, report_id, agency_id, status="failed", attempts=12)
    delivered = await add_outbox(db, report_id, agency_id, version=2, status="delivered")
    later = T0 + timedelta(hours=2)

    view = await outbox.requeue(failed, later)
    unchanged = await outbox.requeue(delivered, later)

    assert view.status == "pending"
    assert view.attempts == 0
    assert view.next_attempt_at == later
    assert unchanged.status == "delivered"
    with pytest.raises(OutboxMessageNotFound):
        await outbox.requeue(failed + 100, later)


async def test_list_filters_and_counts(db: Database, outbox: OutboxStore) -> None:
    agency_id, report_id = await seed(db)
    other_id = await add_agency(db, "polisi", kind="police")
    await add_outbox(db, report_id, agency_id, version=1, status="delivered")
    newest = await add_outbox(
        db, report_id, agency_id, version=2, created_at=T0 + timedelta(seconds=5)
    )
    await add_outbox(db, report_id, other_id, version=1, status="failed")

    pending = await outbox.list_messages(status="pending")
    damkar = await outbox.list_messages(agency_code="damkar")
    counts = await outbox.count_by_status()

    assert [view.id for view in pending] == [newest]
    assert [view.version for view in damkar] == [2, 1]
    assert counts == {"pending": 1, "delivered": 1, "failed": 1}
    assert "payload" not in damkar[0].to_dict()
    assert damkar[0].to_dict()["delivery_id"] == f"{report_id}:damkar:2"
    with pytest.raises(InvalidFieldValue):
        await outbox.list_messages(status="sent")
