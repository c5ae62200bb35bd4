"""AlarmBoard in memory: one active alarm per kind and subject, logs, listeners."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.store.alarms import AlarmNotFound

T0 = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def board(clock: FakeClock) -> AlarmBoard:
    return AlarmBoard(None, clock)


def test_raise_adds_active_alarm(board: AlarmBoard) -> None:
    board.raise_alarm("long_wait", "operators", "1 caller waiting", detail={"waiting": 1})

    (alarm,) = board.snapshot()
    assert alarm["kind"] == "long_wait"
    assert alarm["subject"] == "operators"
    assert alarm["severity"] == "warning"
    assert alarm["message"] == "1 caller waiting"
    assert alarm["raised_at"] == T0.isoformat()
    assert alarm["detail"] == {"waiting": 1}
    assert alarm["active"] is True
    assert isinstance(alarm["id"], int)


def test_raise_again_updates_but_keeps_raised_at(
    board: AlarmBoard, clock: FakeClock
) -> None:
    first = board.raise_alarm("long_wait", "operators", "1 caller waiting")
    clock.advance(30)

    second = board.raise_alarm("long_wait", "operators", "2 callers waiting")

    assert second is first
    assert len(board.active()) == 1
    assert second.message == "2 callers waiting"
    assert second.raised_at == T0


def test_same_kind_other_subject_is_separate(board: AlarmBoard) -> None:
    board.raise_alarm("endpoint_unreachable", "op1", "op1 down")
    board.raise_alarm("endpoint_unreachable", "op2", "op2 down")

    assert [record.subject for record in board.active("endpoint_unreachable")] == [
        "op1",
        "op2",
    ]


def test_raise_rejects_unknown_severity(board: AlarmBoard) -> None:
    with pytest.raises(ValueError, match="severity 'urgent'"):
        board.raise_alarm("k", "s", "m", severity="urgent")
    assert board.active() == []


def test_raise_rejects_empty_subject(board: AlarmBoard) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        board.raise_alarm("k", "", "m")


def test_clear_ends_alarm(board: AlarmBoard, clock: FakeClock) -> None:
    board.raise_alarm("long_wait", "operators", "1 caller waiting")
    clock.advance(12)

    cleared = board.clear("long_wait", "operators", "no_long_wait")

    assert cleared is not None
    assert cleared.cleared_at == T0 + timedelta(seconds=12)
    assert board.active() == []
    assert board.history(10)[0]["active"] is False


def test_clear_without_alarm_returns_none(board: AlarmBoard) -> None:
    assert board.clear("long_wait", "operators", "no_long_wait") is None


def test_raise_after_clear_is_new_alarm(board: AlarmBoard, clock: FakeClock) -> None:
    first = board.raise_alarm("long_wait", "operators", "waiting")
    board.clear("long_wait", "operators", "no_long_wait")
    clock.advance(60)

    second = board.raise_alarm("long_wait", "operators", "waiting")

    assert second is not first
    assert second.id != first.id
    assert second.raised_at == T0 + timedelta(seconds=60)


def test_logs_raise_and_clear(board: AlarmBoard) -> None:
    with capture_logs() as logs:
        board.raise_alarm("endpoint_unreachable", "op1", "op1 down")
        board.raise_alarm("nobody_available", "operators", "nobody", severity="critical")
        board.clear("endpoint_unreachable", "op1", "reachable")

    raised = [entry for entry in logs if entry["event"] == "alarm_raised"]
    cleared = [entry for entry in logs if entry["event"] == "alarm_cleared"]
    assert [entry["log_level"] for entry in raised] == ["warning", "error"]
    assert raised[0]["kind"] == "endpoint_unreachable"
    assert raised[0]["subject"] == "op1"
    assert raised[0]["message"] == "op1 down"
    assert cleared[0]["log_level"] == "info"
    assert cleared[0]["reason"] == "reachable"


def test_unchanged_raise_is_silent(board: AlarmBoard) -> None:
    changes: list[str] = []
    board.on_change.append(lambda change, alarm: changes.append(change))
    board.raise_alarm("long_wait", "operators", "waiting")

    with capture_logs() as logs:
        board.raise_alarm("long_wait", "operators", "waiting")

    assert logs == []
    assert changes == ["raised"]


def test_listeners_hear_every_change(board: AlarmBoard) -> None:
    heard: list[tuple[str, dict[str, Any]]] = []
    board.on_change.append(lambda change, alarm: heard.append((change, alarm)))

    board.raise_alarm("long_wait", "operators", "1 waiting")
    board.raise_alarm("long_wait", "operators", "2 waiting")
    board.clear("long_wait", "operators", "no_long_wait")

    assert [change for change, _ in heard] == ["raised", "updated", "cleared"]
    assert heard[1][1]["message"] == "2 waiting"


def test_failing_listener_is_logged(board: AlarmBoard) -> None:
    def broken(change: str, alarm: dict[str, Any]) -> None:
        raise RuntimeError("socket closed")

    board.on_change.append(broken)
    with capture_logs() as logs:
        board.raise_alarm("long_wait", "operators", "waiting")

    assert board.get_active("long_wait", "operators") is not None
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
        "alarm_listener_failed"
    ]


async def test_acknowledge_records_actor_and_audits(
    board: AlarmBoard, clock: FakeClock
) -> None:
    audited: list[tuple[str, str, str, dict[str, Any]]] = []

    async def audit(actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        audited.append((actor, action, subject, detail))

    board.audit = audit
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")
    assert record.id is not None
    clock.advance(5)

    result = await board.acknowledge(record.id, "spv1")

    assert result["acknowledged_by"] == "spv1"
    assert result["acknowledged_at"] == (T0 + timedelta(seconds=5)).isoformat()
    assert result["active"] is True
    assert audited == [
        (
            "spv1",
            "alarm.acknowledge",
            f"alarm:{record.id}",
            {"alarm_id": record.id, "kind": "missed_calls", "subject": "op1"},
        )
    ]


async def test_acknowledge_twice_keeps_first(board: AlarmBoard, clock: FakeClock) -> None:
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")
    assert record.id is not None
    await board.acknowledge(record.id, "spv1")
    clock.advance(5)

    again = await board.acknowledge(record.id, "spv2")

    assert again["acknowledged_by"] == "spv1"
    assert again["acknowledged_at"] == T0.isoformat()
    assert again["already_acknowledged_by"] == "spv1"


async def test_first_acknowledge_not_already(board: AlarmBoard) -> None:
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")
    assert record.id is not None

    first = await board.acknowledge(record.id, "spv1")

    assert first["already_acknowledged_by"] is None
    assert "already_acknowledged_by" not in record.to_dict()


async def test_repeated_acknowledge_not_audited(board: AlarmBoard) -> None:
    audited: list[str] = []

    async def audit(actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        audited.append(actor)

    board.audit = audit
    record = board.raise_alarm("missed_calls", "op1", "op1 missed 3")
    assert record.id is not None

    await board.acknowledge(record.id, "spv1")
    with capture_logs() as logs:
        await board.acknowledge(record.id, "spv2")

    assert audited == ["spv1"]
    assert [entry["event"] for entry in logs] == ["alarm_already_acknowledged"]
    assert logs[0]["acknowledged_by"] == "spv1"
    assert logs[0]["actor"] == "spv2"


async def test_acknowledge_cleared_alarm_in_memory(board: AlarmBoard) -> None:
    record = board.raise_alarm("long_wait", "operators", "waiting")
    board.clear("long_wait", "operators", "no_long_wait")
    assert record.id is not None

    result = await board.acknowledge(record.id, "spv1")

    assert result["acknowledged_by"] == "spv1"
    assert result["active"] is False


async def test_acknowledge_unknown_id_raises(board: AlarmBoard) -> None:
    with pytest.raises(AlarmNotFound, match="alarm id 77 not found"):
        await board.acknowledge(77, "spv1")


async def test_acknowledge_rejects_empty_actor(board: AlarmBoard) -> None:
    record = board.raise_alarm("long_wait", "operators", "waiting")
    assert record.id is not None
    with pytest.raises(ValueError, match="actor"):
        await board.acknowledge(record.id, " ")


async def test_failing_audit_still_acknowledges(board: AlarmBoard) -> None:
    async def audit(actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        raise OSError("audit table locked")

    board.audit = audit
    record = board.raise_alarm("long_wait", "operators", "waiting")
    assert record.id is not None

    with capture_logs() as logs:
        result = await board.acknowledge(record.id, "spv1")

    assert result["acknowledged_by"] == "spv1"
    assert "alarm_audit_failed" in [entry["event"] for entry in logs]


def test_clear_never_before_raise(board: AlarmBoard, clock: FakeClock) -> None:
    board.raise_alarm("long_wait", "operators", "waiting")
    clock.advance(-30)

    cleared = board.clear("long_wait", "operators", "no_long_wait")

    assert cleared is not None
    assert cleared.cleared_at == T0


class FlakyStore:
    """Fails the first insert with a connection error, then stores in a list."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.failures_left = 1

    async def insert(self, **values: Any) -> int:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("database restarting")
        row_id = len(self.rows) + 1
        self.rows[row_id] = values
        return row_id

    async def update(self, alarm_id: int, **values: Any) -> None:
        self.rows[alarm_id].update(values)


async def test_writer_retries_and_keeps_order(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    monkeypatch.setattr("sigap_pbx.alarms.FIRST_RETRY_DELAY", 0.001)
    store = FlakyStore()
    board = AlarmBoard(store, clock)  # type: ignore[arg-type]
    writer = asyncio.create_task(board.run_writer())
    try:
        board.raise_alarm("long_wait", "operators", "waiting")
        clock.advance(10)
        board.clear("long_wait", "operators", "no_long_wait")
        with capture_logs() as logs:
            await board.flush(timeout=5)
    finally:
        writer.cancel()

    assert list(store.rows) == [1]
    assert store.rows[1]["cleared_at"] == T0 + timedelta(seconds=10)
    assert "alarm_write_failed_retrying" in [entry["event"] for entry in logs]
