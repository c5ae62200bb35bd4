"""The agency portal page and its live events, with two agencies on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.agencies.directory import AgencyService
from sigap_pbx.agencies.dispatch import DispatchService
from sigap_pbx.agencies.reports import ReportService
from sigap_pbx.config import Config
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import Role, UserView
from sigap_pbx.store.reports import DispatchOutcome
from sigap_pbx.web import portal_routes
from sigap_pbx.web.access import SESSION_COOKIE
from sigap_pbx.web.feed import Event, Feed, Subscription
from sigap_pbx.web.i18n import LANG_COOKIE
from tests.unit.agency_rows import FakeClock, add_report
from tests.web_auth import SignedInClient, signed_in_client

NOW = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)


@dataclass
class FakeController:
    agencies: AgencyService
    reports: ReportService
    dispatches: DispatchService
    feed: Feed = field(default_factory=Feed)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    outside_dispatches: portal_routes.OutsideDispatches | None = None
    clock: Any = None

    def _spawn(self, coro: Any, name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))


@dataclass
class Portal:
    controller: FakeController
    db: Database
    clients: list[SignedInClient] = field(default_factory=list)

    async def client(self, role: str, **options: Any) -> SignedInClient:
        client = await signed_in_client(self.controller, role, db=self.db, **options)
        self.clients.append(client)
        return client


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[Portal]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'portal.db'}")
    config = Config()
    clock = FakeClock()
    agencies = AgencyService(db, config, clock=lambda: NOW)
    await agencies.upsert({"code": "damkar", "name": "Damkar Kota", "kind": "fire"}, "spv")
    await agencies.upsert({"code": "polisi", "name": "Polres Kota", "kind": "police"}, "spv")
    controller = FakeController(
        agencies,
        ReportService(db, config, clock=clock),
        DispatchService(db, clock=clock),
        clock=clock,
    )
    result = Portal(controller, db)
    yield result
    for task in controller.tasks:
        task.cancel()
    await asyncio.gather(*controller.tasks, return_exceptions=True)
    for client in result.clients:
        await client.close()
    await db.close()


def user(role: Role, agency: str | None = None, name: str = "someone") -> UserView:
    return UserView(
        id=1,
        username=name,
        display_name=name,
        role=role,
        agency_code=agency,
        endpoint=None,
        password_hash="",
        disabled=False,
        created_at=NOW,
        password_changed_at=NOW,
    )


def drain(subscription: Subscription) -> list[Event]:
    events = []
    while not subscription.queue.empty():
        event = subscription.queue.get_nowait()
        assert event is not None
        events.append(event)
    return events


async def test_dispatch_publishes_to_its_agency(portal: Portal) -> None:
    controller = portal.controller
    portal_routes.attach(controller)  # type: ignore[arg-type]
    damkar = controller.feed.subscribe(user(Role.AGENCY, "damkar"))
    polisi = controller.feed.subscribe(user(Role.AGENCY, "polisi"))
    supervisor = controller.feed.subscribe(user(Role.SUPERVISOR))
    operator = controller.feed.subscribe(user(Role.OPERATOR))
    report_id = await add_report(portal.db, priority=2)

    await controller.reports.dispatch(report_id, ["damkar"], "op1")

    [event] = drain(damkar)
    assert event.kind == "dispatch.new"
    assert event.data["report_id"] == report_id
    assert event.data["agency_code"] == "damkar"
    assert event.data["priority"] == 2
    assert event.data["status"] == "sent"
    assert drain(polisi) == []
    assert [e.kind for e in drain(supervisor)] == ["dispatch.new"]
    assert drain(operator) == []


async def test_status_change_publishes_update(portal: Portal) -> None:
    controller = portal.controller
    portal_routes.attach(controller)  # type: ignore[arg-type]
    report_id = await add_report(portal.db)
    await controller.reports.dispatch(report_id, ["damkar", "polisi"], "op1")
    damkar = controller.feed.subscribe(user(Role.AGENCY, "damkar"))
    polisi = controller.feed.subscribe(user(Role.AGENCY, "polisi"))

    view = await controller.dispatches.acknowledge((report_id, "damkar"), "damkar-1")
    await controller.dispatches.acknowledge((report_id, "damkar"), "damkar-1")

    [event] = drain(damkar)
    assert event.kind == "dispatch.updated"
    assert event.data["id"] == view.id
    assert event.data["status"] == "acknowledged"
    assert drain(polisi) == []


async def test_repeated_dispatch_publishes_nothing(portal: Portal) -> None:
    controller = portal.controller
    portal_routes.attach(controller)  # type: ignore[arg-type]
    report_id = await add_report(portal.db)
    await controller.reports.dispatch(report_id, ["damkar"], "op1")
    damkar = controller.feed.subscribe(user(Role.AGENCY, "damkar"))

    outcome = await controller.reports.dispatch(report_id, ["damkar"], "op1")

    assert outcome.already_sent == ("damkar",)
    assert drain(damkar) == []


async def test_failing_listener_keeps_dispatch(portal: Portal) -> None:
    controller = portal.controller
    heard: list[DispatchOutcome] = []

    async def broken(outcome: DispatchOutcome) -> None:
        raise RuntimeError("listener broke")

    async def working(outcome: DispatchOutcome) -> None:
        heard.append(outcome)

    controller.reports.dispatch_listeners.extend([broken, working])
    report_id = await add_report(portal.db)

    outcome = await controller.reports.dispatch(report_id, ["polisi"], "op1")

    assert outcome.sent == ("polisi",)
    assert heard == [outcome]
    stored = await controller.dispatches.find(report_id, "polisi")
    assert stored.status.value == "sent"


async def test_page_for_agency_staff(portal: Portal) -> None:
    client = await portal.client("agency", agency="damkar")

    response = await client.get("/portal")
    text = await response.text()

    assert response.status == 200
    assert 'id="dispatches"' in text
    assert 'id="new-report-alert"' in text
    assert 'data-count="0"' in text
    assert "Portal instansi" in text
    assert 'id="agency-filter"' not in text
    assert '"agency": "damkar"' in text


async def test_page_in_english(portal: Portal) -> None:
    client = await portal.client("agency", agency="damkar")

    cookie = f"{SESSION_COOKIE}={client.session_token}; {LANG_COOKIE}=en"
    response = await client.get("/portal", headers={"Cookie": cookie})

    assert response.status == 200
    assert "Agency portal" in await response.text()


async def test_page_lets_supervisor_choose_agency(portal: Portal) -> None:
    client = await portal.client("supervisor")

    text = await (await client.get("/portal")).text()

    assert 'id="agency-filter"' in text
    assert '<option value="damkar">Damkar Kota (damkar)</option>' in text
    assert '<option value="polisi">Polres Kota (polisi)</option>' in text


async def test_page_rejects_operator(portal: Portal) -> None:
    client = await portal.client("operator", endpoint="op1")

    response = await client.get("/portal")

    assert response.status == 403


async def test_outside_dispatch_announced(portal: Portal) -> None:
    """A dispatch made by another process (the command) reaches the open pages."""
    controller = portal.controller
    portal_routes.attach(controller)  # type: ignore[arg-type]
    outside = controller.outside_dispatches
    assert outside is not None
    damkar = controller.feed.subscribe(user(Role.AGENCY, "damkar"))
    polisi = controller.feed.subscribe(user(Role.AGENCY, "polisi"))
    earlier = await add_report(portal.db)
    await controller.reports.dispatch(earlier, ["polisi"], "op1")
    drain(polisi)
    # Announced by this server already: no check repeats it.
    assert await outside.check() == 0

    # The command writes through services of its own, which tell this feed nothing.
    controller.clock.advance(5)
    other_process = ReportService(portal.db, Config(), clock=controller.clock)
    report_id = await add_report(portal.db)
    await other_process.dispatch(report_id, ["damkar"], "cli")
    assert drain(damkar) == []

    assert await outside.check() == 1
    [event] = drain(damkar)
    assert event.kind == "dispatch.new"
    assert event.data["report_id"] == report_id
    assert drain(polisi) == []
    # Announced once only.
    controller.clock.advance(5)
    assert await outside.check() == 0


async def test_dispatch_during_restart_announced(portal: Portal) -> None:
    """A dispatch made while the controller was down is announced after its start."""
    controller = portal.controller
    other_process = ReportService(portal.db, Config(), clock=controller.clock)
    report_id = await add_report(portal.db)
    await other_process.dispatch(report_id, ["damkar"], "cli")
    controller.clock.advance(30)
    portal_routes.attach(controller)  # type: ignore[arg-type]
    outside = controller.outside_dispatches
    assert outside is not None
    damkar = controller.feed.subscribe(user(Role.AGENCY, "damkar"))

    assert await outside.check() == 1
    [event] = drain(damkar)
    assert event.data["report_id"] == report_id


async def test_late_commit_still_announced(portal: Portal) -> None:
    """A dispatch that commits after a check that began later than its sent_at."""
    controller = portal.controller
    portal_routes.attach(controller)  # type: ignore[arg-type]
    outside = controller.outside_dispatches
    assert outside is not None
    damkar = controller.feed.subscribe(user(Role.AGENCY, "damkar"))
    sent_at_clock = FakeClock(controller.clock.now)
    controller.clock.advance(10)
    assert await outside.check() == 0

    other_process = ReportService(portal.db, Config(), clock=sent_at_clock)
    report_id = await add_report(portal.db)
    await other_process.dispatch(report_id, ["damkar"], "cli")
    controller.clock.advance(5)

    assert await outside.check() == 1
    assert [e.data["report_id"] for e in drain(damkar)] == [report_id]


async def test_own_dispatch_not_announced_twice(portal: Portal) -> None:
    controller = portal.controller
    portal_routes.attach(controller)  # type: ignore[arg-type]
    outside = controller.outside_dispatches
    assert outside is not None
    damkar = controller.feed.subscribe(user(Role.AGENCY, "damkar"))
    assert await outside.check() == 0
    report_id = await add_report(portal.db)

    await controller.reports.dispatch(report_id, ["damkar"], "op1")

    assert [e.kind for e in drain(damkar)] == ["dispatch.new"]
    assert await outside.check() == 0
    assert drain(damkar) == []


async def test_acknowledged_outside_dispatch_not_announced(portal: Portal) -> None:
    controller = portal.controller
    portal_routes.attach(controller)  # type: ignore[arg-type]
    outside = controller.outside_dispatches
    assert outside is not None
    other_process = ReportService(portal.db, Config(), clock=controller.clock)
    handled = await add_report(portal.db)
    await other_process.dispatch(handled, ["damkar"], "cli")
    await controller.dispatches.acknowledge((handled, "damkar"), "damkar-1")
    damkar = controller.feed.subscribe(user(Role.AGENCY, "damkar"))

    assert await outside.check() == 0
    assert drain(damkar) == []


async def test_outside_dispatches_not_read_without_pages(portal: Portal) -> None:
    controller = portal.controller
    portal_routes.attach(controller)  # type: ignore[arg-type]
    outside = controller.outside_dispatches
    assert outside is not None
    report_id = await add_report(portal.db)
    await ReportService(portal.db, Config(), clock=controller.clock).dispatch(
        report_id, ["damkar"], "cli"
    )

    assert await outside.check() == 0
    assert outside.read_at is None
