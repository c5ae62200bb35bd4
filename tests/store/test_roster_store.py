"""RosterStore, AuditStore and RosterService on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from sigap_pbx.roster.io import RosterDocumentError, roster_from_dict, roster_to_dict
from sigap_pbx.roster.model import Role, RosterError
from sigap_pbx.roster.service import (
    ExceptionNotFound,
    OperatorInCrew,
    OperatorNotFound,
    RosterNotFound,
    RosterService,
)
from sigap_pbx.store import Database, InvalidFieldValue
from sigap_pbx.store.roster import (
    AuditStore,
    DutyAction,
    RosterStore,
    RosterVersionConflict,
)
from tests.unit.test_roster_io import sample_config, sample_document

# 2026-12-01 08:00 in Asia/Pontianak (UTC+7), during the early shift.
NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def rosters(db: Database) -> RosterStore:
    return RosterStore(db)


@pytest.fixture
def audit(db: Database) -> AuditStore:
    return AuditStore(db)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def service(db: Database, clock: Clock) -> RosterService:
    return RosterService(db, sample_config(), clock=clock)


async def save(
    rosters: RosterStore, content: dict[str, Any], expected: int | None
) -> int:
    return await rosters.save_version(
        content=content,
        saved_by="test",
        saved_at=NOW,
        coverage_problems=[],
        expected_current_id=expected,
        comment="c",
    )


# --- RosterStore -------------------------------------------------------------


async def test_no_version_saved(rosters: RosterStore) -> None:
    assert await rosters.current_version_id() is None
    assert await rosters.current_version() is None
    assert await rosters.list_versions() == []


async def test_versions_saved_and_read(rosters: RosterStore) -> None:
    first = await save(rosters, {"n": 1}, None)
    second = await save(rosters, {"n": 2}, first)

    current = await rosters.current_version()
    assert await rosters.current_version_id() == second
    assert current is not None
    assert current.id == second
    assert current.content == {"n": 2}
    assert current.saved_at == NOW
    older = await rosters.get_version(first)
    assert older is not None
    assert older.content == {"n": 1}
    assert [v.id for v in await rosters.list_versions()] == [second, first]
    assert [v.id for v in await rosters.list_versions(limit=1)] == [second]
    assert await rosters.get_version(second + 100) is None


async def test_save_writes_audit_entry(rosters: RosterStore, audit: AuditStore) -> None:
    version_id = await rosters.save_version(
        content={"n": 1},
        saved_by="cli:ayu",
        saved_at=NOW,
        coverage_problems=[{"date": "2026-12-01", "shift": "early"}],
        expected_current_id=None,
        audit_detail={"summary": "first"},
    )

    [entry] = await audit.list_entries()
    assert entry.actor == "cli:ayu"
    assert entry.action == "roster.save"
    assert entry.subject == "roster"
    assert entry.detail == {"summary": "first", "version": version_id}


async def test_stale_save_rejected(rosters: RosterStore, audit: AuditStore) -> None:
    first = await save(rosters, {"n": 1}, None)
    await save(rosters, {"n": 2}, first)

    with pytest.raises(RosterVersionConflict, match="another save came first"):
        await save(rosters, {"n": 3}, first)

    assert len(await rosters.list_versions()) == 2
    assert len(await audit.list_entries()) == 2


async def test_concurrent_saves_one_wins(rosters: RosterStore) -> None:
    results = await asyncio.gather(
        *(save(rosters, {"n": n}, None) for n in range(4)), return_exceptions=True
    )

    saved = [r for r in results if isinstance(r, int)]
    assert len(saved) == 1
    assert all(isinstance(r, RosterVersionConflict) for r in results if r not in saved)


async def test_invalid_values_rejected(rosters: RosterStore) -> None:
    with pytest.raises(InvalidFieldValue, match="'saved_by'"):
        await rosters.save_version(
            content={},
            saved_by="",
            saved_at=NOW,
            coverage_problems=[],
            expected_current_id=None,
        )
    with pytest.raises(InvalidFieldValue, match="'limit'"):
        await rosters.list_versions(limit=0)
    assert await rosters.current_version_id() is None


async def test_duty_overrides_per_shift(rosters: RosterStore) -> None:
    day = date(2026, 12, 1)
    for minutes, endpoint, action in ((5, "op1", "logout"), (1, "op2", "login")):
        await rosters.add_duty_override(
            shift_date=day,
            shift_name="early",
            endpoint=endpoint,
            action=action,
            at=NOW + timedelta(minutes=minutes),
            actor=endpoint,
            source="feature_code",
        )
    await rosters.add_duty_override(
        shift_date=day,
        shift_name="late",
        endpoint="op3",
        action="login",
        at=NOW,
        actor="op3",
        source="api",
    )

    early = await rosters.list_duty_overrides(day, "early")

    assert [(o.endpoint, o.action) for o in early] == [
        ("op2", DutyAction.LOGIN),
        ("op1", DutyAction.LOGOUT),
    ]
    assert early[0].to_dict()["shift_date"] == "2026-12-01"
    assert await rosters.list_duty_overrides(day + timedelta(days=1), "early") == []


async def test_duty_override_action_checked(rosters: RosterStore) -> None:
    with pytest.raises(InvalidFieldValue, match="'action'"):
        await rosters.add_duty_override(
            shift_date=date(2026, 12, 1),
            shift_name="early",
            endpoint="op1",
            action="pause",
            at=NOW,
            actor="op1",
            source="api",
        )


# --- AuditStore --------------------------------------------------------------


async def test_audit_filters(audit: AuditStore) -> None:
    rows = [
        ("roster.save", "roster", 0),
        ("roster.save", "roster", 10),
        ("alarm.ack", "alarm/3", 20),
        ("roster_import", "roster", 30),
    ]
    for action, subject, minutes in rows:
        await audit.record(
            actor="a",
            action=action,
            subject=subject,
            detail={"m": minutes},
            at=NOW + timedelta(minutes=minutes),
        )

    async def minutes(**filters: Any) -> list[int]:
        return [e.detail["m"] for e in await audit.list_entries(**filters)]

    assert await minutes() == [30, 20, 10, 0]
    assert await minutes(subject="roster") == [30, 10, 0]
    # "_" is a literal character of the prefix, not a LIKE wildcard.
    assert await minutes(action_prefix="roster.") == [10, 0]
    assert await minutes(action_prefix="roster_") == [30]
    assert await minutes(action="roster.save") == [10, 0]
    assert await minutes(action="roster") == []
    assert await minutes(since=NOW + timedelta(minutes=10)) == [30, 20, 10]
    assert await minutes(until=NOW + timedelta(minutes=10)) == [0]
    assert await minutes(limit=2) == [30, 20]


# --- RosterService -----------------------------------------------------------


async def test_service_without_roster(service: RosterService) -> None:
    assert await service.current() is None
    with pytest.raises(RosterNotFound, match="sigap roster import"):
        await service.duties(date(2026, 12, 1), "early")
    with pytest.raises(RosterNotFound):
        await service.upsert_operator({"endpoint": "op1", "name": "Ayu"}, "test")


async def test_first_save_describes_everything(service: RosterService) -> None:
    result = await service.save(sample_document(), "cli:ayu", "first roster")

    assert result.changed
    assert result.changes["operators_added"][0] == "op1"
    assert result.changes["crews_changed"] == ["A", "B", "C", "D"]
    assert result.changes["pattern_changed"] is True
    assert result.changes["previous_version"] is None
    assert result.changes["comment"] == "first roster"
    assert await service.current() == roster_from_dict(sample_document())
    [entry] = await service.audit_entries(subject="roster")
    assert entry.actor == "cli:ayu"
    assert entry.detail["version"] == result.version_id


async def test_identical_save_stores_nothing(service: RosterService) -> None:
    first = await service.save(sample_document(), "test")

    again = await service.save(sample_document(), "other", "same again")

    assert again.version_id == first.version_id
    assert not again.changed
    assert len(await service.versions()) == 1
    entries = await service.audit_entries(action_prefix="roster.save")
    assert entries[0].detail == {
        "changed": False,
        "summary": "nothing changed",
        "version": first.version_id,
    }
    assert entries[0].actor == "other"


async def test_save_names_changes(service: RosterService) -> None:
    await service.save(sample_document(), "test")
    document = sample_document()
    document["operators"][2]["name"] = "Budi S."
    document["operators"][2]["active"] = False
    document["exceptions"].pop(0)
    document["exceptions"].append(
        {"type": "leave", "endpoint": "op1", "start": "2026-12-20", "end": "2026-12-21"}
    )

    result = await service.save(document, "test")

    assert result.changes["operators_changed"] == {"op3": ["name", "active"]}
    assert result.changes["exceptions_removed"] == [sample_document()["exceptions"][0]]
    assert result.changes["exceptions_added"] == [document["exceptions"][-1]]
    assert "crews_changed" not in result.changes
    assert "pattern_changed" not in result.changes
    assert result.changes["summary"] == (
        "operators changed: op3; 1 exceptions added; 1 exceptions removed"
    )


async def test_coverage_problems_stored(service: RosterService, clock: Clock) -> None:
    document = sample_document()
    # op8 is inactive, so crew D has one counted operator for a minimum of two.
    result = await service.save(document, "test")

    # From 2026-12-01 crew D works early on 12-02 (k=1: (0-1) mod 4 = 3).
    shifts = {(p.shift_date, p.shift_name) for p in result.coverage_problems}
    assert (date(2026, 12, 2), "early") in shifts
    assert all(p.on_duty < p.minimum for p in result.coverage_problems)
    stored = await service.current_version()
    assert stored is not None
    assert {"date": "2026-12-02", "shift": "early", "on_duty": 1, "minimum": 2} in (
        stored.coverage_problems
    )
    dates = {p.shift_date for p in result.coverage_problems}
    assert min(dates) >= date(2026, 12, 1)
    assert max(dates) < date(2026, 12, 1) + timedelta(days=28)


async def test_unconfigured_endpoint_rejected(service: RosterService) -> None:
    document = sample_document()
    document["operators"].append({"endpoint": "op99", "name": "Nobody"})

    with pytest.raises(RosterDocumentError, match="'op99' is not a SIP endpoint"):
        await service.save(document, "test")

    assert await service.current_version_id() is None


async def test_upsert_operator(service: RosterService) -> None:
    await service.save(sample_document(), "test")

    await service.upsert_operator(
        {"endpoint": "oncall1", "name": "Eko", "role": "backup"}, "test"
    )
    result = await service.upsert_operator(
        {"endpoint": "op1", "name": "Ayu L."}, "test"
    )

    roster = await service.current()
    assert roster is not None
    assert [o.endpoint for o in roster.operators][-1] == "oncall1"
    assert roster.operator("oncall1").role is Role.BACKUP  # type: ignore[union-attr]
    assert roster.operator("op1").name == "Ayu L."  # type: ignore[union-attr]
    assert result.changes["operators_changed"] == {
        "op1": ["name", "languages", "skills"]
    }


async def test_remove_operator_in_crew(service: RosterService) -> None:
    await service.save(sample_document(), "test")

    with pytest.raises(OperatorInCrew, match="member of crew 'B'"):
        await service.remove_operator("op4", "test")
    with pytest.raises(OperatorNotFound):
        await service.remove_operator("op99", "test")
    assert len(await service.versions()) == 1


async def test_remove_operator_outside_crews(service: RosterService) -> None:
    await service.save(sample_document(), "test")
    await service.upsert_operator({"endpoint": "oncall1", "name": "Eko"}, "test")

    result = await service.remove_operator("oncall1", "test")

    assert result.changes["operators_removed"] == ["oncall1"]
    roster = await service.current()
    assert roster is not None
    assert roster.operator("oncall1") is None


async def test_add_and_remove_exception(service: RosterService) -> None:
    await service.save(sample_document(), "test")
    leave = {
        "type": "leave",
        "endpoint": "op5",
        "start": "2026-12-24",
        "end": "2026-12-26",
    }

    added = await service.add_exception(leave, "test")
    removed = await service.remove_exception(dict(leave), "test")

    assert added.changes["exceptions_added"] == [leave]
    assert removed.changes["exceptions_removed"] == [leave]
    with pytest.raises(ExceptionNotFound):
        await service.remove_exception(leave, "test")


async def test_invalid_exception_rejected(service: RosterService) -> None:
    await service.save(sample_document(), "test")

    with pytest.raises(
        RosterDocumentError, match=r"exceptions\[3\]: swap on 2026-12-02 'early'"
    ):
        await service.add_exception(
            # Crew D works early on 2026-12-02, so op1 is not on that shift.
            {
                "type": "swap",
                "date": "2026-12-02",
                "shift": "early",
                "out_endpoint": "op1",
                "in_endpoint": "op4",
            },
            "test",
        )


async def test_shift_at_and_duties(service: RosterService) -> None:
    await service.save(sample_document(), "test")

    in_force = await service.shift_at(NOW)
    duties = await service.duties(date(2026, 12, 1), "early")

    assert in_force.shift_date == date(2026, 12, 1)
    assert in_force.shift.name == "early"
    assert in_force.crew == "A"
    assert in_force.start_utc == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    # The sample swaps op7 in for op2 on this shift.
    assert [(d.endpoint, d.role) for d in duties] == [
        ("op1", Role.OPERATOR),
        ("op7", Role.OPERATOR),
    ]


async def test_current_follows_other_writer(db: Database, clock: Clock) -> None:
    writer = RosterService(db, sample_config(), clock=clock)
    reader = RosterService(db, sample_config(), clock=clock)
    await writer.save(sample_document(), "test")
    assert (await reader.current()) is not None
    document = copy.deepcopy(sample_document())
    document["operators"][0]["name"] = "Changed"

    await writer.save(document, "test")

    found = await reader.current_with_version()
    assert found is not None
    assert found[0] == 2
    assert found[1].operator("op1").name == "Changed"  # type: ignore[union-attr]


async def test_concurrent_edits_all_kept(service: RosterService) -> None:
    await service.save(sample_document(), "test")
    leaves = [
        {
            "type": "leave",
            "endpoint": f"op{n}",
            "start": "2026-12-24",
            "end": "2026-12-24",
        }
        for n in (1, 4, 5)
    ]

    await asyncio.gather(*(service.add_exception(leave, "test") for leave in leaves))

    roster = await service.current()
    assert roster is not None
    assert len(roster.exceptions) == 6


async def test_service_duty_override_and_audit(service: RosterService) -> None:
    override_id = await service.add_duty_override(
        shift_date=date(2026, 12, 1),
        shift_name="early",
        endpoint="op1",
        action="logout",
        actor="op1",
        source="feature_code",
    )
    await service.audit("op1", "duty.logout", "op1", {"override": override_id})

    [override] = await service.duty_overrides(date(2026, 12, 1), "early")
    [entry] = await service.audit_entries(subject="op1")
    assert override.at == NOW
    assert entry.at == NOW
    assert entry.detail == {"override": override_id}


async def test_pattern_since_follows_pattern_changes(
    service: RosterService, clock: Clock
) -> None:
    document = sample_document()
    assert await service.pattern_since() is None

    await service.save(document, "test")
    clock.now = NOW + timedelta(hours=1)
    document["operators"][0]["name"] = "Ayu Lestari"
    await service.save(document, "test")
    first = await service.pattern_since()

    clock.now = NOW + timedelta(hours=2)
    document["pattern"]["shifts"][0]["minimum_operators"] = 3
    await service.save(document, "test")
    clock.now = NOW + timedelta(hours=3)
    document["operators"][0]["name"] = "Ayu L."
    await service.save(document, "test")
    changed = await service.pattern_since()

    clock.now = NOW + timedelta(hours=4)
    document["pattern"]["shifts"][0]["minimum_operators"] = 2
    await service.save(document, "test")
    back = await service.pattern_since()

    assert first == NOW
    assert changed == NOW + timedelta(hours=2)
    # The first pattern again starts a new run: the versions between differ.
    assert back == NOW + timedelta(hours=4)


async def test_pattern_since_past_one_page(
    service: RosterService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sigap_pbx.roster.service.MAX_LISTED_VERSIONS", 2)
    document = sample_document()
    document["pattern"]["shifts"][0]["minimum_operators"] = 3
    await service.save(document, "test")
    document = sample_document()
    for hour in range(1, 6):
        clock.now = NOW + timedelta(hours=hour)
        document["operators"][0]["name"] = f"Ayu {hour}"
        await service.save(document, "test")

    assert await service.pattern_since() == NOW + timedelta(hours=1)


async def test_pattern_since_sees_other_writer(
    db: Database, service: RosterService, clock: Clock
) -> None:
    other = RosterService(db, sample_config(), clock=clock)
    document = sample_document()
    await service.save(document, "test")
    assert await service.pattern_since() == NOW

    clock.now = NOW + timedelta(hours=1)
    document["pattern"]["shifts"][0]["minimum_operators"] = 3
    await other.save(document, "test")

    assert await service.pattern_since() == NOW + timedelta(hours=1)


async def test_stored_name_with_control_character_readable(
    rosters: RosterStore, service: RosterService
) -> None:
    document = roster_to_dict(roster_from_dict(sample_document()))
    document["operators"][0]["name"] = "Ayu\x1b[31m"
    await save(rosters, document, None)

    roster = await service.require_current()

    assert roster.operators[0].name == "Ayu\x1b[31m"
    with pytest.raises(RosterDocumentError) as error:
        await service.upsert_operator({"endpoint": "op2", "name": "Agus"}, "test")
    assert error.value.problems[0].startswith(
        "operators[0].name: 'Ayu\\x1b[31m' contains the control character U+001B"
    )


@pytest.mark.parametrize("start", [date(1999, 12, 31), date(2201, 1, 1)])
async def test_shifts_outside_date_range(service: RosterService, start: date) -> None:
    await service.save(sample_document(), "test")

    with pytest.raises(RosterError, match="is out of range, give a date from"):
        await service.shifts(start)


async def test_shifts_crossing_last_date(service: RosterService) -> None:
    await service.save(sample_document(), "test")

    last_day = await service.shifts(date(2200, 12, 31))

    assert len(last_day) == 3
    with pytest.raises(RosterError, match="2201-01-01 is out of range"):
        await service.shifts(date(2200, 12, 31), 2)
