"""Wallboard snapshots from AMI events: operator states, waits, figures, publishing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sigap_pbx.live import Member
from sigap_pbx.roster.reporter import RosterUnavailable
from sigap_pbx.roster.reports import queue_figures
from sigap_pbx.store.accounts import Role
from sigap_pbx.store.models import CallOutcome
from sigap_pbx.web.wallboard import (
    FEED_KIND,
    OperatorState,
    Wallboard,
    alarm_label,
    alarm_views,
    attach,
    figures_from_report,
    local_timestamps,
    operator_state,
)
from tests.unit.fake_ami import FakeAmiServer, ami_bytes, success, wait_until
from tests.unit.wallboard_fakes import (
    T0,
    FakeController,
    FakeReporter,
    event,
    member_event,
    next_event,
    supervisor_view,
    timestamp,
)

SHIFT = {
    "date": "2026-12-04", "name": "pagi", "crew": "A",
    "start": "2026-12-04T00:00:00+00:00", "end": "2026-12-04T08:00:00+00:00",
    "start_local": "2026-12-04T07:00:00+07:00", "end_local": "2026-12-04T15:00:00+07:00",
    "zone": "Asia/Jakarta", "minimum_operators": 2, "rostered": 3,
}


@pytest.fixture
async def controller():
    controller = FakeController()
    yield controller
    await controller.close()


def operator_row(snapshot: dict[str, Any], endpoint: str) -> dict[str, Any]:
    rows = [row for row in snapshot["operators"] if row["endpoint"] == endpoint]
    assert len(rows) == 1, snapshot["operators"]
    return rows[0]


def queue_of(snapshot: dict[str, Any], name: str = "operators") -> dict[str, Any]:
    return next(queue for queue in snapshot["queues"] if queue["name"] == name)


def synced(controller: FakeController, *events: Any) -> None:
    """Start from an empty QueueStatus, then apply `events` in order."""
    controller.live.reset_from_status([])
    for item in events:
        controller.ami.emit(item)


def answered_call(
    controller: FakeController, endpoint: str, *, arrived: datetime, answered: datetime
) -> None:
    """Emit a trunk call that `endpoint` answered, as the tracker sees it."""
    uniqueid = "1796409216.10"
    leg = {"DestUniqueid": "1796409216.11", "DestChannel": f"PJSIP/{endpoint}-00000002"}
    controller.ami.emit(event(
        "Newchannel", ("Channel", "PJSIP/carrier-00000001"), ("Context", "sigap-trunk-inbound"),
        ("Exten", "112"), ("CallerIDNum", "081234"), ("Uniqueid", uniqueid),
        ("Linkedid", uniqueid), ("Timestamp", timestamp(arrived)),
    ))
    controller.ami.emit(event(
        "AgentCalled", ("Queue", "operators"), ("Uniqueid", uniqueid), ("Linkedid", uniqueid),
        ("Interface", f"PJSIP/{endpoint}"), ("MemberName", endpoint), *leg.items(),
        ("Timestamp", timestamp(arrived)),
    ))
    controller.ami.emit(event(
        "AgentConnect", ("Queue", "operators"), ("Uniqueid", uniqueid), ("Linkedid", uniqueid),
        ("Interface", f"PJSIP/{endpoint}"), ("MemberName", endpoint),
        *leg.items(), ("RingTime", "1"), ("HoldTime", "3"), ("Timestamp", timestamp(answered)),
    ))


# Operator states -------------------------------------------------------------------------


def test_operator_state_rules():
    def member(queue_status: str = "not_in_use", **fields: Any) -> Member:
        return Member(interface="PJSIP/op1", name="op1", status=queue_status, **fields)

    assert operator_state({}) == OperatorState("logged_off")
    assert operator_state({"operators": member()}).state == "available"
    assert operator_state({"operators": member("ringing")}).state == "ringing"
    assert operator_state({"operators": member("in_use")}).state == "on_call"
    assert operator_state({"operators": member(in_call=True)}).state == "on_call"
    assert operator_state({"operators": member("unavailable")}).state == "unreachable"
    assert operator_state({"operators": member("invalid")}).state == "unreachable"
    assert operator_state({"operators": member()}, unreachable=True).state == "unreachable"
    assert operator_state({"operators": member("busy")}, ringing=True).state == "ringing"
    assert operator_state({"operators": member("busy")}).state == "on_call"
    wrapup = member(paused=True, paused_reason="wrapup")
    assert operator_state({"operators": wrapup}) == OperatorState(
        "wrapup", "wrapup", "operators")
    prayer = member(paused=True, paused_reason="prayer")
    assert operator_state({"operators": prayer}) == OperatorState(
        "paused", "prayer", "operators")
    # A pause other than wrap-up outlasts the wrap-up, so it decides.
    both = {"operators": wrapup, "operators-backup": prayer}
    assert operator_state(both) == OperatorState("paused", "prayer", "operators-backup")
    # Paused in one queue only: the other queue still offers calls.
    assert operator_state({"operators": prayer, "operators-backup": member()}).state == (
        "available")
    # The health guard's pause means the phone is unreachable.
    dead = member(paused=True, paused_reason="unreachable")
    assert operator_state({"operators": dead}).state == "unreachable"
    # A call wins over a pause set during it.
    assert operator_state({"operators": member("in_use", paused=True,
                                               paused_reason="break")}).state == "on_call"


async def test_available_and_logged_off(controller):
    synced(controller, member_event("QueueMemberAdded", "op1"))
    snapshot = await Wallboard(controller).snapshot()
    assert operator_row(snapshot, "op1")["state"] == "available"
    assert operator_row(snapshot, "op1")["queues"][0]["queue"] == "operators"
    # op2 is configured but in no queue.
    assert operator_row(snapshot, "op2")["state"] == "logged_off"
    assert operator_row(snapshot, "op2")["queues"] == []

    controller.ami.emit(event("QueueMemberRemoved", ("Queue", "operators"),
                              ("Interface", "PJSIP/op1"), ("MemberName", "op1")))
    snapshot = await Wallboard(controller).snapshot()
    assert operator_row(snapshot, "op1")["state"] == "logged_off"


async def test_ringing_state_from_device(controller):
    synced(controller, member_event("QueueMemberAdded", "op1"),
           member_event("QueueMemberStatus", "op1", status="6"))
    snapshot = await Wallboard(controller).snapshot()
    assert operator_row(snapshot, "op1")["state"] == "ringing"


def agent_event(name: str, endpoint: str, caller: str = "1796409216.20") -> Any:
    return event(name, ("Queue", "operators"), ("Uniqueid", caller), ("Linkedid", caller),
                 ("Interface", f"PJSIP/{endpoint}"), ("MemberName", endpoint),
                 ("DestUniqueid", "1796409216.21"))


async def test_ringing_state_from_offer(controller):
    """With device_state_busy_at = 1 a ringing phone is busy, so the offer decides."""
    board = Wallboard(controller)
    controller.ami.add_event_listener(board.on_event)
    synced(controller, member_event("QueueMemberAdded", "op1"),
           member_event("QueueMemberAdded", "op2"))
    for endpoint in ("op1", "op2"):
        controller.ami.emit(agent_event("AgentCalled", endpoint))
        controller.ami.emit(member_event("QueueMemberStatus", endpoint, status="3"))
    snapshot = await board.snapshot()
    assert operator_row(snapshot, "op1")["state"] == "ringing"
    assert operator_row(snapshot, "op2")["state"] == "ringing"

    # op1 answers: op1 is on the call, and op2 no longer rings for that caller.
    controller.ami.emit(agent_event("AgentConnect", "op1"))
    snapshot = await board.snapshot()
    assert operator_row(snapshot, "op1")["state"] == "on_call"
    controller.ami.emit(member_event("QueueMemberStatus", "op2", status="1"))
    assert operator_row(await board.snapshot(), "op2")["state"] == "available"


async def test_ring_without_answer_ends_ringing(controller):
    board = Wallboard(controller)
    controller.ami.add_event_listener(board.on_event)
    synced(controller, member_event("QueueMemberAdded", "op1"))
    controller.ami.emit(agent_event("AgentCalled", "op1"))
    controller.ami.emit(member_event("QueueMemberStatus", "op1", status="3"))
    controller.ami.emit(agent_event("AgentRingNoAnswer", "op1"))
    # The offer has ended; the device shows busy until its channel hangs up.
    assert operator_row(await board.snapshot(), "op1")["state"] == "on_call"
    controller.ami.emit(member_event("QueueMemberStatus", "op1", status="1"))
    assert operator_row(await board.snapshot(), "op1")["state"] == "available"


async def test_on_call_state_counts_from_answer(controller):
    now = datetime.now(UTC)
    synced(controller, member_event("QueueMemberAdded", "op1"))
    answered_call(controller, "op1", arrived=now - timedelta(seconds=50),
                  answered=now - timedelta(seconds=42))
    controller.ami.emit(member_event("QueueMemberStatus", "op1", status="2", in_call=True))
    row = operator_row(await Wallboard(controller).snapshot(), "op1")
    assert row["state"] == "on_call"
    assert 42 <= row["seconds"] < 42 + 60


async def test_wrapup_state_counts_from_call_end(controller):
    synced(controller, member_event("QueueMemberAdded", "op1"))
    controller.ami.emit(event(
        "AgentComplete", ("Queue", "operators"), ("Interface", "PJSIP/op1"),
        ("MemberName", "op1"), ("DestUniqueid", "1796409216.11"), ("TalkTime", "30"),
    ))
    controller.ami.emit(member_event("QueueMemberPause", "op1", paused=True, reason="wrapup"))
    controller.clock.advance(12)
    row = operator_row(await Wallboard(controller).snapshot(), "op1")
    assert row["state"] == "wrapup"
    assert row["seconds"] == 12.0
    assert row["wrapup_remaining"] == 18.0


async def test_paused_state_has_reason_and_duration(controller):
    synced(controller, member_event("QueueMemberAdded", "op1"))
    controller.ami.emit(member_event("QueueMemberPause", "op1", paused=True, reason="prayer"))
    controller.clock.advance(90)
    row = operator_row(await Wallboard(controller).snapshot(), "op1")
    assert row["state"] == "paused"
    assert row["pause_reason"] == "prayer"
    assert row["seconds"] == 90.0


async def test_unreachable_by_device_state(controller):
    synced(controller, member_event("QueueMemberAdded", "op1"),
           member_event("QueueMemberStatus", "op1", status="5"))
    row = operator_row(await Wallboard(controller).snapshot(), "op1")
    assert row["state"] == "unreachable"


async def test_unreachable_by_contact_status(controller):
    synced(controller, member_event("QueueMemberAdded", "op1"))
    controller.ami.emit(event("ContactStatus", ("EndpointName", "op1"),
                              ("URI", "sip:op1@127.0.0.1:5070"),
                              ("ContactStatus", "Unreachable")))
    row = operator_row(await Wallboard(controller).snapshot(), "op1")
    assert row["state"] == "unreachable"


async def test_state_duration_without_source_counts_from_change(controller):
    synced(controller, member_event("QueueMemberAdded", "op1"))
    board = Wallboard(controller)
    board.observe_states()
    before = time.monotonic()
    controller.ami.emit(member_event("QueueMemberStatus", "op1", status="6"))
    board.observe_states()
    row = operator_row(await board.snapshot(), "op1")
    assert row["state"] == "ringing"
    assert 0 <= row["seconds"] <= time.monotonic() - before + 0.1


# Waiting callers ------------------------------------------------------------------------


async def test_caller_wait_counts_from_arrival(controller):
    now = datetime.now(UTC)
    synced(controller)
    controller.ami.emit(event(
        "Newchannel", ("Channel", "PJSIP/carrier-00000001"), ("Context", "sigap-trunk-inbound"),
        ("Exten", "112"), ("CallerIDNum", "081234"), ("Uniqueid", "1796409216.1"),
        ("Linkedid", "1796409216.1"), ("Timestamp", timestamp(now - timedelta(seconds=30))),
    ))
    for uniqueid, number, name in (("1796409216.1", "081234", "<b>Warga</b>"),
                                   ("1796409216.5", "089999", "")):
        controller.ami.emit(event(
            "QueueCallerJoin", ("Queue", "operators"), ("Uniqueid", uniqueid),
            ("Linkedid", uniqueid), ("Channel", f"PJSIP/carrier-{uniqueid}"),
            ("CallerIDNum", number), ("CallerIDName", name), ("Position", "1"),
        ))
    queue = queue_of(await Wallboard(controller).snapshot())
    assert queue["waiting"] == 2
    first, second = queue["callers"]
    # The tracked call counts from its arrival, 30 s ago, and sorts first.
    assert first["uniqueid"] == "1796409216.1"
    assert first["caller_name"] == "<b>Warga</b>"
    assert 30 <= first["wait_seconds"] < 90
    assert first["queue_seconds"] < 30
    # A call the tracker does not know counts from its queue join.
    assert second["uniqueid"] == "1796409216.5"
    assert second["wait_seconds"] == second["queue_seconds"]
    assert queue["longest_wait"] == first["wait_seconds"]

    controller.ami.emit(event("QueueCallerAbandon", ("Queue", "operators"),
                              ("Uniqueid", "1796409216.1")))
    queue = queue_of(await Wallboard(controller).snapshot())
    assert [caller["uniqueid"] for caller in queue["callers"]] == ["1796409216.5"]


async def test_primary_queue_listed_first(controller):
    synced(controller, member_event("QueueMemberAdded", "op1", queue="aaa-other"),
           member_event("QueueMemberAdded", "op1"))
    snapshot = await Wallboard(controller).snapshot()
    assert [queue["name"] for queue in snapshot["queues"]] == ["operators", "aaa-other"]
    assert queue_of(snapshot)["available"] == 1
    assert queue_of(snapshot)["members"] == 1


# Shift figures -----------------------------------------------------------------------


def stored_call(arrived: datetime, wait: float | None, outcome: str) -> SimpleNamespace:
    answered = arrived + timedelta(seconds=wait) if wait is not None else None
    return SimpleNamespace(arrived_at=arrived, answered_at=answered, wait_seconds=wait,
                           outcome=outcome)


def sample_report() -> dict[str, Any]:
    calls = [
        stored_call(T0, 5, CallOutcome.ANSWERED),
        stored_call(T0, 12, CallOutcome.ANSWERED),
        stored_call(T0, 18, CallOutcome.ANSWERED),
        stored_call(T0, 25, CallOutcome.OVERFLOWED),
        stored_call(T0, None, CallOutcome.ABANDONED_IN_QUEUE),
        stored_call(T0, None, CallOutcome.ABANDONED_BEFORE_QUEUE),
    ]
    return {"shift": SHIFT, "queue": queue_figures(calls)}


def test_figures_from_shift_report():
    figures = figures_from_report(sample_report())
    assert figures["offered"]["value"] == 6
    assert figures["answered"]["value"] == 4
    assert figures["abandoned"]["value"] == 2
    assert figures["within_10"] == {"value": 1, "percent": 16.7}
    assert figures["within_15"] == {"value": 2, "percent": 33.3}
    assert figures["within_20"] == {"value": 3, "percent": 50.0}


async def test_snapshot_has_shift_figures_and_caches_them():
    reporter = FakeReporter(sample_report())
    controller = FakeController(reporter)
    board = Wallboard(controller, figures_cache_seconds=3600)
    first = await board.snapshot()
    second = await board.snapshot()
    assert reporter.calls == 1
    assert first["figures"] == second["figures"]
    assert first["figures"]["offered"]["value"] == 6
    assert first["shift"]["name"] == "pagi"
    assert first["shift"]["crew"] == "A"
    assert first["figures_error"] is None

    board.figures_cache_seconds = 0
    await board.snapshot()
    assert reporter.calls == 2
    await controller.close()


async def test_snapshot_without_roster_reports_error():
    controller = FakeController(FakeReporter(error=RosterUnavailable("no roster is saved")))
    snapshot = await Wallboard(controller).snapshot()
    assert snapshot["figures"] is None
    assert snapshot["shift"] is None
    assert snapshot["figures_error"]["code"] == "roster_missing"
    await controller.close()


async def test_snapshot_lists_alarms_newest_first(controller):
    controller.alarms.raise_alarm("long_wait", "operators", "caller waiting")
    controller.clock.advance(5)
    controller.alarms.raise_alarm("nobody_available", "operators", "nobody",
                                  severity="critical")
    snapshot = await Wallboard(controller).snapshot()
    assert [alarm["kind"] for alarm in snapshot["alarms"]] == [
        "nobody_available", "long_wait"]
    assert all(alarm["id"] is not None for alarm in snapshot["alarms"])


PONTIANAK = ZoneInfo("Asia/Pontianak")


def test_alarm_views_give_local_times():
    alarm = {
        "kind": "report_unacknowledged", "subject": "report:12:damkar",
        "raised_at": "2026-12-04T17:30:00+00:00",
        "message": "damkar has not acknowledged report 12 within 5 min of "
                   "2026-12-04T17:24:59.123456+00:00; call the agency",
    }
    [view] = alarm_views([alarm], PONTIANAK, {"damkar": "Damkar"})
    # Pontianak is UTC+7, so 17:30 UTC is past midnight there.
    assert view["raised_local"] == "2026-12-05T00:30:00+07:00"
    assert view["message_local"] == (
        "damkar has not acknowledged report 12 within 5 min of "
        "2026-12-05 00:24:59 WIB; call the agency"
    )
    assert view["message"] == alarm["message"]
    assert view["label"] == {"key": "report_unacknowledged", "values": {
        "kind": "report_unacknowledged", "subject": "report:12:damkar",
        "report": "12", "agency": "Damkar"}}


def test_local_timestamps_leave_other_text():
    text = "report 2026-12-04 and 12:00 and version 2026-12-04T08:00:00"
    assert local_timestamps(text, PONTIANAK) == text
    assert local_timestamps("at 2026-12-04T08:00:00Z", PONTIANAK) == (
        "at 2026-12-04 15:00:00 WIB")


def test_alarm_label_values():
    def label(kind: str, subject: str, names: dict[str, str] | None = None):
        return alarm_label({"kind": kind, "subject": subject}, names or {})

    # Without a name, the label shows the agency's code.
    assert label("report_unacknowledged", "report:3:sar")["values"]["agency"] == "sar"
    assert label("webhook_failed", "webhook:sar", {"sar": "Basarnas"}) == {
        "key": "webhook_failed",
        "values": {"kind": "webhook_failed", "subject": "webhook:sar",
                   "agency": "Basarnas"}}
    assert label("endpoint_unreachable", "op1") == {
        "key": "endpoint_unreachable",
        "values": {"kind": "endpoint_unreachable", "subject": "op1"}}
    # A subject of another form falls back to the generic label with the raw subject.
    assert label("report_unacknowledged", "report:x")["key"] == "other"


class FakeAgencies:
    """An agency directory whose listing returns `names` or raises `error`."""

    def __init__(self, names: dict[str, str], error: Exception | None = None) -> None:
        self.names = names
        self.error = error
        self.reads = 0

    async def list_agencies(self) -> list[SimpleNamespace]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return [SimpleNamespace(code=code, name=name) for code, name in self.names.items()]


async def test_snapshot_names_agencies_and_caches_names(controller):
    controller.agencies = FakeAgencies({"damkar": "Damkar Pontianak"})
    board = Wallboard(controller)
    snapshot = await board.snapshot()
    assert snapshot["alarms"] == []
    # No alarm names an agency, so the directory is not read.
    assert controller.agencies.reads == 0

    controller.alarms.raise_alarm("report_unacknowledged", "report:4:damkar", "late")
    first = await board.snapshot()
    second = await board.snapshot()
    for snapshot in (first, second):
        [alarm] = snapshot["alarms"]
        assert alarm["label"]["values"]["agency"] == "Damkar Pontianak"
        # T0 is 08:00 UTC, 15:00 in the default zone (Asia/Pontianak).
        assert alarm["raised_local"] == "2026-12-04T15:00:00+07:00"
    assert controller.agencies.reads == 1


async def test_agency_names_failure_shows_codes(controller):
    controller.agencies = FakeAgencies({}, error=RuntimeError("database is locked"))
    controller.alarms.raise_alarm("webhook_failed", "webhook:damkar", "failed")
    board = Wallboard(controller, agency_names_cache_seconds=0)

    snapshot = await board.snapshot()

    [alarm] = snapshot["alarms"]
    assert alarm["label"]["values"]["agency"] == "damkar"
    await board.snapshot()
    assert controller.agencies.reads == 2


# Publishing --------------------------------------------------------------------------


async def test_burst_of_events_publishes_one_snapshot(controller):
    subscription = controller.feed.subscribe(supervisor_view())
    synced(controller)
    board = Wallboard(controller, debounce_seconds=0.05, tick_seconds=3600)
    controller.wallboard = board
    attach(controller)
    controller.ami.emit(member_event("QueueMemberAdded", "op1"))
    controller.ami.emit(member_event("QueueMemberStatus", "op1", status="6"))
    controller.ami.emit(member_event("QueueMemberStatus", "op1", status="2", in_call=True))

    published = await next_event(subscription)
    assert published.kind == FEED_KIND
    assert operator_row(published.data, "op1")["state"] == "on_call"
    # The burst left nothing pending, so no second snapshot follows it.
    assert not board.changed.is_set()
    left = [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]
    assert [e.kind for e in left if e.kind == FEED_KIND] == []
    assert board.published == 1


async def test_state_change_reaches_operator_console(controller):
    console = controller.feed.subscribe(supervisor_view("a", Role.OPERATOR, "op1"))
    other = controller.feed.subscribe(supervisor_view("b", Role.OPERATOR, "op2"))
    synced(controller)
    board = Wallboard(controller, tick_seconds=3600)
    for name in ("QueueMemberAdded", "AgentCalled"):
        controller.live.on_event(member_event(name, "op1"))
        board.on_event(member_event(name, "op1"))

    states = [console.queue.get_nowait().data["state"]
              for _ in range(console.queue.qsize())]
    assert states[-1] == "ringing"
    endpoints = {other.queue.get_nowait().data["endpoint"]
                 for _ in range(other.queue.qsize())}
    assert endpoints <= {"op2"}


async def test_irrelevant_event_publishes_nothing(controller):
    controller.feed.subscribe(supervisor_view())
    board = Wallboard(controller)
    board.on_event(event("Newstate", ("Channel", "PJSIP/op1-00000001")))
    assert not board.changed.is_set()
    board.on_event(member_event("QueueMemberPause", "op1", paused=True, reason="break"))
    assert board.changed.is_set()


async def test_alarm_change_requests_snapshot(controller):
    board = Wallboard(controller)
    controller.wallboard = board
    attach(controller)
    controller.alarms.raise_alarm("long_wait", "operators", "caller waiting")
    assert board.changed.is_set()


async def test_tick_publishes_without_events(controller):
    subscription = controller.feed.subscribe(supervisor_view())
    synced(controller)
    controller.wallboard = Wallboard(controller, tick_seconds=0.01)
    attach(controller)
    first = await next_event(subscription)
    second = await next_event(subscription)
    assert first.kind == second.kind == FEED_KIND
    assert second.data["generated_at"] >= first.data["generated_at"]


async def test_no_subscribers_no_snapshot(controller):
    board = Wallboard(controller)
    await board.publish()
    assert board.published == 0


async def test_operator_feed_users_get_no_snapshot(controller):
    operator = supervisor_view("op", role=Role.OPERATOR)
    subscription = controller.feed.subscribe(operator)
    synced(controller)
    board = Wallboard(controller)
    await board.publish()
    # With only an operator's console open, no snapshot is even built.
    assert board.published == 0
    assert subscription.queue.empty()


# Resync after an AMI reconnect -----------------------------------------------------


def queue_status(paused: bool):
    """Return a QueueStatus reply with op1 in queue operators, paused or not."""

    def reply(action: Any) -> bytes:
        action_id = action.action_id or ""
        return b"".join([
            success(action, "Queue status will follow", ("EventList", "start")),
            ami_bytes(("Event", "QueueParams"), ("Queue", "operators"),
                      ("ActionID", action_id)),
            ami_bytes(("Event", "QueueMember"), ("Queue", "operators"), ("Name", "op1"),
                      ("Location", "PJSIP/op1"), ("StateInterface", "PJSIP/op1"),
                      ("Status", "1"), ("Paused", "1" if paused else "0"),
                      ("PausedReason", "break" if paused else ""),
                      ("ActionID", action_id)),
            ami_bytes(("Event", "QueueStatusComplete"), ("ActionID", action_id),
                      ("EventList", "Complete"), ("ListItems", "2")),
        ])

    return reply


async def test_snapshot_after_each_ami_login_and_gap():
    from sigap_pbx.ami.client import AmiClient

    async with FakeAmiServer() as fake:
        fake.replies["QueueStatus"] = queue_status(paused=False)
        controller = FakeController()
        client = AmiClient("127.0.0.1", fake.port, "sigap", "fake-ami-secret-0123",
                           action_timeout=2, reconnect_max=0.5)
        controller.ami = client  # type: ignore[assignment]

        async def resync() -> None:
            # The controller's own session listener, added before the wallboard's.
            status = await client.action("QueueStatus")
            controller.live.reset_from_status(status.events)
            controller.pauses.reset_from_status(status.events)

        client.add_event_listener(controller.live.on_event)
        client.add_connect_listener(resync)
        client.add_disconnect_listener(controller.live.mark_unsynced)
        subscription = controller.feed.subscribe(supervisor_view())
        controller.wallboard = Wallboard(controller, tick_seconds=3600)
        attach(controller)
        client.start()
        try:
            first = await next_event(subscription)
            assert first.data["synced"] is True
            assert operator_row(first.data, "op1")["state"] == "available"

            # Asterisk restarts: the page hears "not synced" at once, then the
            # state read again from QueueStatus.
            fake.replies["QueueStatus"] = queue_status(paused=True)
            fake.drop()
            gap = await next_event(subscription)
            assert gap.data["synced"] is False
            again = await next_event(subscription)
            assert again.data["synced"] is True
            assert operator_row(again.data, "op1")["state"] == "paused"
            assert operator_row(again.data, "op1")["pause_reason"] == "break"
            await wait_until(lambda: client.sessions == 2)
        finally:
            await client.stop()
            await controller.close()


async def test_session_listener_never_raises(controller):
    board = Wallboard(controller)

    def broken() -> None:
        raise RuntimeError("state unreadable")

    board.observe_states = broken  # type: ignore[method-assign]
    # A raising session listener would end the AMI session, so this one only logs.
    await board.on_session()
    assert board.changed.is_set()
