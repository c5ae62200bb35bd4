"""Queue membership that follows the roster, against a simulated app_queue."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from sigap_pbx.ami.client import AmiActionFailed
from sigap_pbx.live import LiveView
from sigap_pbx.roster.membership import (
    FALLBACK_FAMILY,
    MembershipManager,
    Override,
    ShiftKey,
    placements_for_shift,
    shifts_in_force,
)
from sigap_pbx.roster.model import (
    Crew,
    Operator,
    Role,
    Roster,
    Rotation,
    ShiftDef,
    ShiftPattern,
    Swap,
)
from sigap_pbx.roster.schedule import DEFAULT_TZ
from sigap_pbx.wire.ami import AmiParser, Completion, Event, Response

PRIMARY = "operators"
BACKUP = "operators-backup"
DAY = date(2026, 12, 4)


def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=DEFAULT_TZ).astimezone(UTC)


def make_roster(exceptions: tuple[Any, ...] = ()) -> Roster:
    operators = tuple(
        Operator(f"op{n}", f"Operator {n}", role=Role.BACKUP if n % 2 == 0 else Role.OPERATOR)
        for n in range(1, 9)
    ) + (Operator("spv1", "Supervisor", role=Role.SUPERVISOR),)
    pattern = ShiftPattern(
        "three-eights",
        (
            ShiftDef("early", time(7), 8, 1),
            ShiftDef("late", time(15), 8, 1),
            ShiftDef("night", time(23), 8, 1),
        ),
    )
    crews = (
        Crew("A", ("op1", "op2")),
        Crew("B", ("op3", "op4", "spv1")),
        Crew("C", ("op5", "op6")),
        Crew("D", ("op7", "op8")),
    )
    # On 4 December (three days after the anchor) early is B, late C, night D.
    rotation = Rotation(pattern, crews, date(2026, 12, 1))
    return Roster(operators, rotation, exceptions)


def ami_event(name: str, **headers: str) -> Event:
    lines = [("Event", name), *headers.items()]
    data = b"".join(f"{key}: {value}\r\n".encode() for key, value in lines)
    (event,) = AmiParser().feed(data + b"\r\n")
    assert isinstance(event, Event)
    return event


def completion(message: str, ok: bool = True, events: list[Event] | None = None) -> Completion:
    response = Response(
        headers=(("Response", "Success" if ok else "Error"), ("ActionID", "1"),
                 ("Message", message))
    )
    return Completion(action_id="1", response=response, events=events or [])


class FakeAsterisk:
    """app_queue and AstDB as far as the manager uses them.

    Queue actions change the members and send the member events to the live view
    and the manager, as Asterisk sends them before its reply.
    """

    def __init__(self, live: LiveView) -> None:
        self.live = live
        self.listeners: list[Any] = [live.on_event]
        self.members: dict[tuple[str, str], dict[str, str]] = {}
        self.astdb: dict[tuple[str, str], str] = {}
        self.actions: list[tuple[str, dict[str, str]]] = []
        # CoreStatus's start time; a restart changes it.
        self.started = ("2026-12-04", "08:00:00")

    def emit(self, name: str, **headers: str) -> None:
        event = ami_event(name, **headers)
        for listener in self.listeners:
            listener(event)

    def member_event(self, name: str, queue: str, interface: str, **extra: str) -> None:
        state = self.members.get((queue, interface), {})
        self.emit(
            name,
            Queue=queue,
            Interface=interface,
            MemberName=interface.split("/")[1],
            StateInterface=interface,
            Penalty=state.get("Penalty", "0"),
            Status=extra.pop("Status", state.get("Status", "1")),
            Paused="0",
            InCall=extra.pop("InCall", state.get("InCall", "0")),
            **extra,
        )

    def add_by_hand(self, queue: str, endpoint: str, penalty: int = 0) -> None:
        interface = f"PJSIP/{endpoint}"
        self.members[(queue, interface)] = {"Penalty": str(penalty)}
        self.member_event("QueueMemberAdded", queue, interface)

    def set_in_call(self, queue: str, endpoint: str, in_call: bool) -> None:
        interface = f"PJSIP/{endpoint}"
        state = self.members[(queue, interface)]
        state["InCall"] = "1" if in_call else "0"
        state["Status"] = "2" if in_call else "1"
        self.member_event("QueueMemberStatus", queue, interface)

    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> Completion:
        fields = dict(fields or {})
        self.actions.append((name, fields))
        if name == "QueueAdd":
            key = (fields["Queue"], fields["Interface"])
            if key in self.members:
                raise AmiActionFailed(name, completion("Unable to add interface: Already there",
                                                       ok=False))
            self.members[key] = {"Penalty": fields.get("Penalty", "0")}
            self.member_event("QueueMemberAdded", *key)
        elif name == "QueueRemove":
            key = (fields["Queue"], fields["Interface"])
            if key not in self.members:
                raise AmiActionFailed(name, completion(
                    "Unable to remove interface: Not there", ok=False))
            self.member_event("QueueMemberRemoved", *key)
            del self.members[key]
        elif name == "QueuePenalty":
            key = (fields["Queue"], fields["Interface"])
            self.members[key]["Penalty"] = fields["Penalty"]
            self.member_event("QueueMemberPenalty", *key)
        elif name == "DBPut":
            self.astdb[(fields["Family"], fields["Key"])] = fields["Val"]
        elif name == "DBGet":
            value = self.astdb.get((fields["Family"], fields["Key"]))
            if value is None:
                raise AmiActionFailed(name, completion("Database entry not found", ok=False))
            return completion("Result will follow", events=[ami_event(
                "DBGetResponse", Family=fields["Family"], Key=fields["Key"], Val=value)])
        elif name == "DBGetTree":
            family = fields["Family"]
            items = [
                ami_event("DBGetTreeResponse", Key=f"/{fam}/{key}", Val=val)
                for (fam, key), val in self.astdb.items()
                if fam == family
            ]
            if not items:
                raise AmiActionFailed(name, completion("Database entry not found", ok=False))
            return completion("Result will follow", events=items)
        elif name == "DBDel":
            self.astdb.pop((fields["Family"], fields["Key"]), None)
        elif name == "CoreStatus":
            response = Response(headers=(
                ("Response", "Success"), ("ActionID", "1"), ("CoreStartupDate", self.started[0]),
                ("CoreStartupTime", self.started[1]),
            ))
            return Completion(action_id="1", response=response)
        return completion("ok")

    def restart(self) -> None:
        """Restart with persistentmembers = no: every queue is empty."""
        self.members.clear()
        self.live.reset_from_status([])
        self.started = (self.started[0], "09:00:00")

    def queue(self, queue: str) -> dict[str, int]:
        """Return endpoint -> penalty of one queue."""
        return {
            interface.split("/")[1]: int(state["Penalty"])
            for (name, interface), state in self.members.items()
            if name == queue
        }


class MemoryOverrides:
    def __init__(self) -> None:
        self.rows: list[tuple[ShiftKey, Override, str, str]] = []

    async def list_overrides(self, key: ShiftKey) -> list[Override]:
        return [override for k, override, _, _ in self.rows if k == key]

    async def add_override(
        self, key: ShiftKey, override: Override, *, actor: str, source: str
    ) -> None:
        self.rows.append((key, override, actor, source))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Setup:
    def __init__(self, roster: Roster | None, now: datetime, overlap: int = 300) -> None:
        self.live = LiveView()
        self.live.reset_from_status([])
        self.asterisk = FakeAsterisk(self.live)
        self.roster: Roster | None = roster
        self.version = 1
        self.overrides = MemoryOverrides()
        self.clock = Clock(now)
        self.audit: list[tuple[str, str, str, dict[str, Any]]] = []
        self.overlap = overlap
        self.manager = self.new_manager()

    def new_manager(self) -> MembershipManager:
        async def provider() -> tuple[int, Roster] | None:
            return None if self.roster is None else (self.version, self.roster)

        async def audit(actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
            self.audit.append((actor, action, subject, detail))

        manager = MembershipManager(
            self.asterisk, self.live, provider, self.overrides,
            primary_queue=PRIMARY, backup_queue=BACKUP, zone=DEFAULT_TZ,
            overlap_seconds=self.overlap, audit=audit, clock=self.clock,
        )
        self.asterisk.listeners = [self.live.on_event, manager.on_event]
        return manager


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_placements_use_role_penalties() -> None:
    placements = placements_for_shift(make_roster(), ShiftKey(DAY, "early"), [], PRIMARY, BACKUP)
    assert {(q, e): p.penalty for (q, e), p in placements.items()} == {
        (PRIMARY, "op3"): 0,
        (PRIMARY, "op4"): 5,
        (PRIMARY, "spv1"): 10,
        (BACKUP, "op4"): 0,
        (BACKUP, "spv1"): 10,
    }


def test_overlap_adds_incoming_shift() -> None:
    roster = make_roster()
    overlap = timedelta(minutes=5)
    current, keys = shifts_in_force(roster, local(DAY, 14, 54, 59), DEFAULT_TZ, overlap)
    assert keys == [ShiftKey(DAY, "early")]
    current, keys = shifts_in_force(roster, local(DAY, 14, 55), DEFAULT_TZ, overlap)
    assert current == ShiftKey(DAY, "early")
    assert keys == [ShiftKey(DAY, "early"), ShiftKey(DAY, "late")]


def test_night_shift_is_one_window_across_midnight() -> None:
    roster = make_roster()
    before, _ = shifts_in_force(roster, local(DAY, 23, 30), DEFAULT_TZ, timedelta(0))
    after, _ = shifts_in_force(roster, local(DAY + timedelta(days=1), 6, 59), DEFAULT_TZ,
                               timedelta(0))
    assert before == after == ShiftKey(DAY, "night")


def test_logout_override_removes_both_queues() -> None:
    overrides = [Override("op4", "logout", local(DAY, 8))]
    placements = placements_for_shift(
        make_roster(), ShiftKey(DAY, "early"), overrides, PRIMARY, BACKUP
    )
    assert (PRIMARY, "op4") not in placements
    assert (BACKUP, "op4") not in placements


def test_latest_override_wins() -> None:
    overrides = [
        Override("op4", "login", local(DAY, 9)),
        Override("op4", "logout", local(DAY, 8)),
    ]
    placements = placements_for_shift(
        make_roster(), ShiftKey(DAY, "early"), overrides, PRIMARY, BACKUP
    )
    assert placements[(PRIMARY, "op4")].penalty == 5


async def test_first_pass_adds_shift_in_force() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    plan = await setup.manager.reconcile("test")
    assert plan is not None
    assert setup.asterisk.queue(PRIMARY) == {"op3": 0, "op4": 5, "spv1": 10}
    assert setup.asterisk.queue(BACKUP) == {"op4": 0, "spv1": 10}
    assert setup.asterisk.astdb[("sigap/roster", "applied_shift")] == "2026-12-04/early"


async def test_first_pass_keeps_members_added_by_hand() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    setup.asterisk.add_by_hand(PRIMARY, "op7")
    await setup.manager.reconcile("test")
    assert "op7" in setup.asterisk.queue(PRIMARY)


async def test_boundary_swaps_crews_exactly() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    setup.asterisk.add_by_hand(PRIMARY, "op1")

    setup.clock.now = local(DAY, 14, 56)
    await setup.manager.reconcile("test")
    # Overlap: both crews, and the member added by hand, until 15:00.
    assert setup.asterisk.queue(PRIMARY) == {
        "op1": 0, "op3": 0, "op4": 5, "spv1": 10, "op5": 0, "op6": 5,
    }

    setup.clock.now = local(DAY, 15, 0, 1)
    plan = await setup.manager.reconcile("test")
    assert plan is not None and plan.boundary
    assert setup.asterisk.queue(PRIMARY) == {"op5": 0, "op6": 5}
    assert setup.asterisk.queue(BACKUP) == {"op6": 0}
    assert setup.asterisk.astdb[("sigap/roster", "applied_shift")] == "2026-12-04/late"


async def test_member_on_call_leaves_after_call() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    setup.asterisk.set_in_call(PRIMARY, "op3", True)

    setup.clock.now = local(DAY, 15, 0, 1)
    plan = await setup.manager.reconcile("test")
    assert plan is not None
    assert [m.endpoint for m in plan.deferred] == ["op3"]
    assert "op3" in setup.asterisk.queue(PRIMARY)
    assert "op4" not in setup.asterisk.queue(PRIMARY)
    # The boundary is not done while op3 is still to leave.
    assert setup.asterisk.astdb[("sigap/roster", "applied_shift")] == "2026-12-04/early"

    # A member added by hand after the boundary is not swept out with the old crew.
    setup.asterisk.add_by_hand(PRIMARY, "op1")
    setup.asterisk.set_in_call(PRIMARY, "op3", False)
    await setup.manager.reconcile("test")
    assert "op3" not in setup.asterisk.queue(PRIMARY)
    assert "op1" in setup.asterisk.queue(PRIMARY)
    assert setup.asterisk.astdb[("sigap/roster", "applied_shift")] == "2026-12-04/late"


async def test_call_end_wakes_manager() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    setup.asterisk.set_in_call(PRIMARY, "op3", True)
    setup.clock.now = local(DAY, 15, 0, 1)
    await setup.manager.reconcile("test")
    runner = asyncio.create_task(setup.manager.run(interval=3600))
    try:
        await settle()
        setup.asterisk.set_in_call(PRIMARY, "op3", False)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if "op3" not in setup.asterisk.queue(PRIMARY):
                break
        assert "op3" not in setup.asterisk.queue(PRIMARY)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_operator_logout_holds_for_shift() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    result = await setup.manager.operator_action("op3", "logout", actor="op3",
                                                 source="feature_code")
    assert result == "ok"
    await setup.manager.reconcile("test")
    assert "op3" not in setup.asterisk.queue(PRIMARY)
    assert setup.audit[-1][:3] == ("op3", "member.logout", "op3")
    (key, override, actor, source) = setup.overrides.rows[-1]
    assert key == ShiftKey(DAY, "early")
    assert (override.action, actor, source) == ("logout", "op3", "feature_code")

    # The next shift of op3's crew puts it back.
    setup.clock.now = local(DAY + timedelta(days=1), 16)
    await setup.manager.reconcile("test")
    assert "op3" in setup.asterisk.queue(PRIMARY)


async def test_login_outside_roster_lasts_one_shift() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    await setup.manager.operator_action("op1", "login", actor="api", source="api")
    await setup.manager.reconcile("test")
    assert setup.asterisk.queue(PRIMARY)["op1"] == 0

    setup.clock.now = local(DAY, 15, 0, 1)
    await setup.manager.reconcile("test")
    assert "op1" not in setup.asterisk.queue(PRIMARY)


async def test_removal_by_hand_is_kept() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    setup.asterisk.member_event("QueueMemberRemoved", PRIMARY, "PJSIP/op3")
    del setup.asterisk.members[(PRIMARY, "PJSIP/op3")]
    await settle()
    await setup.manager.reconcile("test")
    assert "op3" not in setup.asterisk.queue(PRIMARY)
    assert [row[3] for row in setup.overrides.rows] == ["asterisk"]


async def test_own_changes_are_not_overrides() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    setup.clock.now = local(DAY, 15, 0, 1)
    await setup.manager.reconcile("test")
    await settle()
    assert setup.overrides.rows == []


async def test_roster_edit_takes_effect_mid_shift() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    setup.roster = make_roster((Swap(DAY, "early", "op3", "op5"),))
    setup.version = 2
    await setup.manager.reconcile("test")
    assert "op3" not in setup.asterisk.queue(PRIMARY)
    assert setup.asterisk.queue(PRIMARY)["op5"] == 0


async def test_role_change_updates_penalty() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    roster = make_roster()
    operators = tuple(
        Operator("op3", "Operator 3", role=Role.BACKUP) if o.endpoint == "op3" else o
        for o in roster.operators
    )
    setup.roster = Roster(operators, roster.rotation)
    await setup.manager.reconcile("test")
    assert setup.asterisk.queue(PRIMARY)["op3"] == 5
    assert setup.asterisk.queue(BACKUP)["op3"] == 0


async def test_restart_keeps_boundary_state() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    setup.asterisk.add_by_hand(PRIMARY, "op1")

    # A new controller mid-shift: the boundary is done, so op1 stays.
    setup.manager = setup.new_manager()
    await setup.manager.on_session()
    assert "op1" in setup.asterisk.queue(PRIMARY)

    # A controller that was down across 15:00 still carries out the boundary.
    setup.manager = setup.new_manager()
    setup.clock.now = local(DAY, 16)
    await setup.manager.on_session()
    assert setup.asterisk.queue(PRIMARY) == {"op5": 0, "op6": 5}


async def test_asterisk_restart_restores_members_and_overrides() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    await setup.manager.operator_action("op1", "login", actor="op1", source="feature_code")
    await setup.manager.operator_action("op4", "logout", actor="op4", source="feature_code")
    # Asterisk restarts with persistentmembers = no: every queue is empty.
    setup.asterisk.members.clear()
    setup.live.reset_from_status([])
    await setup.manager.on_session()
    assert setup.asterisk.queue(PRIMARY) == {"op1": 0, "op3": 0, "spv1": 10}
    assert setup.asterisk.queue(BACKUP) == {"spv1": 10}


async def test_dialplan_fallback_is_imported() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    epoch = int(local(DAY, 11).timestamp())
    setup.asterisk.astdb[(FALLBACK_FAMILY, "op3")] = f"logout,{epoch}"
    setup.asterisk.members.pop((PRIMARY, "PJSIP/op3"))
    setup.live.reset_from_status([])
    for (queue, interface), _ in list(setup.asterisk.members.items()):
        setup.asterisk.member_event("QueueMemberStatus", queue, interface)

    setup.manager = setup.new_manager()
    setup.clock.now = local(DAY, 12)
    await setup.manager.on_session()
    assert "op3" not in setup.asterisk.queue(PRIMARY)
    assert (FALLBACK_FAMILY, "op3") not in setup.asterisk.astdb
    (key, override, actor, source) = setup.overrides.rows[-1]
    assert (override.action, override.at, source) == ("logout", local(DAY, 11),
                                                      "dialplan_fallback")


async def test_members_without_roster_survive_asterisk_restart() -> None:
    setup = Setup(None, local(DAY, 10))
    await setup.manager.on_session()
    await setup.manager.operator_action("op1", "login", actor="op1", source="feature_code")
    setup.asterisk.add_by_hand(PRIMARY, "spv1", penalty=10)

    setup.manager.remember_members()
    setup.asterisk.restart()
    await setup.manager.on_session()

    assert setup.asterisk.queue(PRIMARY) == {"op1": 0, "spv1": 10}


async def test_members_not_restored_without_restart() -> None:
    setup = Setup(None, local(DAY, 10))
    await setup.manager.on_session()
    await setup.manager.operator_action("op1", "login", actor="op1", source="feature_code")
    setup.manager.remember_members()
    # An AMI gap only: op1 logged out meanwhile through the dialplan's fallback.
    setup.asterisk.members.clear()
    setup.live.reset_from_status([])

    await setup.manager.on_session()

    assert setup.asterisk.queue(PRIMARY) == {}


async def test_roster_not_overridden_after_restart() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.on_session()
    setup.asterisk.add_by_hand(PRIMARY, "op7")
    setup.manager.remember_members()
    setup.asterisk.restart()

    await setup.manager.on_session()

    # The roster decides: the member added by hand is not put back.
    assert setup.asterisk.queue(PRIMARY) == {"op3": 0, "op4": 5, "spv1": 10}


async def test_invalid_roster_changes_nothing() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    # A swap naming someone not on the shift fails when the shift is computed.
    setup.roster = make_roster((Swap(DAY, "early", "op1", "op2"),))
    before = dict(setup.asterisk.members)
    assert await setup.manager.reconcile("test") is None
    assert setup.asterisk.members == before
    assert "op1" in (setup.manager.last_error or "")


async def test_no_roster_changes_nothing() -> None:
    setup = Setup(None, local(DAY, 10))
    setup.asterisk.add_by_hand(PRIMARY, "op1")
    assert await setup.manager.reconcile("test") is None
    assert [name for name, _ in setup.asterisk.actions] == []


async def test_unsynced_view_changes_nothing() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    setup.live.mark_unsynced()
    assert await setup.manager.reconcile("test") is None
    assert setup.asterisk.members == {}


async def test_operator_action_rejects_bad_endpoint() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    with pytest.raises(ValueError, match="endpoint"):
        await setup.manager.operator_action("op1,x", "login", actor="api", source="api")


def renamed_roster(base: Roster) -> Roster:
    """The same crews with the shifts renamed and started 30 minutes later."""
    pattern = ShiftPattern(
        "renamed",
        (
            ShiftDef("pagi", time(7, 30), 8, 1),
            ShiftDef("siang", time(15, 30), 8, 1),
            ShiftDef("malam", time(23, 30), 8, 1),
        ),
    )
    rotation = Rotation(pattern, base.rotation.crews, base.rotation.anchor)
    return Roster(base.operators, rotation, base.exceptions)


async def test_renaming_edit_is_no_boundary() -> None:
    setup = Setup(make_roster(), local(DAY, 10))
    await setup.manager.reconcile("test")
    setup.asterisk.add_by_hand(PRIMARY, "op1")
    await setup.manager.operator_action("op4", "logout", actor="op4", source="feature_code")
    await setup.manager.operator_action("op7", "login", actor="op7", source="feature_code")

    setup.roster = renamed_roster(make_roster())
    setup.version = 2
    plan = await setup.manager.reconcile("test")
    assert plan is not None
    assert not plan.boundary
    # The member added by hand stays, and both overrides still hold.
    assert setup.asterisk.queue(PRIMARY) == {"op1": 0, "op3": 0, "spv1": 10, "op7": 0}
    assert setup.asterisk.astdb[("sigap/roster", "applied_shift")] == "2026-12-04/pagi"

    # The renamed shift's real end is still a boundary.
    setup.clock.now = local(DAY, 15, 30, 1)
    plan = await setup.manager.reconcile("test")
    assert plan is not None and plan.boundary
    assert setup.asterisk.queue(PRIMARY) == {"op5": 0, "op6": 5}


async def test_edit_across_real_boundary_is_boundary() -> None:
    setup = Setup(make_roster(), local(DAY, 14, 50))
    await setup.manager.reconcile("test")
    setup.asterisk.add_by_hand(PRIMARY, "op1")
    # Time passes the old pattern's 15:00 boundary while the edit is saved.
    setup.clock.now = local(DAY, 15, 40)
    setup.roster = renamed_roster(make_roster())
    setup.version = 2
    plan = await setup.manager.reconcile("test")
    assert plan is not None and plan.boundary
    assert "op1" not in setup.asterisk.queue(PRIMARY)
