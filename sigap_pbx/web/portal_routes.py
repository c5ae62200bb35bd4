"""The agency portal page and its live events.

GET /portal lists an agency's dispatches through GET /api/dispatches and
GET /api/reports, and acknowledges and updates them through the dispatch API.
Agency staff see their own agency only. Supervisors and admins pick any agency
or all of them.

`attach` is a web component (see WEB_COMPONENTS in sigap_pbx.service): it
publishes `dispatch.new` when a report is sent to an agency and
`dispatch.updated` after each status change, both to that agency's staff and to
supervisors and admins. Dispatches made by another process, such as the
`sigap reports dispatch` command, are found by OutsideDispatches, which reads
the recent dispatches every OUTSIDE_POLL_SECONDS while a page is open.
The page also reloads its list every RELOAD_SECONDS, for status changes made
elsewhere.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from sigap_pbx.agencies.dispatch import STATUS_ORDER
from sigap_pbx.agencies.reports import LABELS_ID
from sigap_pbx.clock import Clock, utc_now
from sigap_pbx.store.accounts import Role
from sigap_pbx.store.dispatch import DispatchView
from sigap_pbx.store.reports import DispatchOutcome, DispatchStatus
from sigap_pbx.web import i18n
from sigap_pbx.web.access import AGENCY_STAFF, route, user_of
from sigap_pbx.web.app import CONTROLLER
from sigap_pbx.web.history_routes import labels as call_labels
from sigap_pbx.web.pages import language_of, render

if TYPE_CHECKING:
    from sigap_pbx.service import Controller

log = structlog.get_logger(__name__)

# The page reloads its list this often, to catch changes that published no event.
RELOAD_SECONDS = 60
# How often the controller looks for dispatches another process made, how far back
# its first look goes, and how far each look goes back before the previous one.
OUTSIDE_POLL_SECONDS = 5.0
OUTSIDE_LOOKBACK_SECONDS = 120.0
OUTSIDE_OVERLAP_SECONDS = 60.0

i18n.register({
    "portal.title": ("Portal instansi", "Agency portal"),
    "portal.agency": ("Instansi", "Agency"),
    "portal.all_agencies": ("Semua instansi", "All agencies"),
    "portal.include_final": (
        "Tampilkan yang selesai", "Show resolved and false alarms"
    ),
    # {count} is the number of new reports not acknowledged yet.
    "portal.new_report": (
        "Laporan baru yang belum diterima: {count}. Klik untuk menutup.",
        "New reports not yet acknowledged: {count}. Click to dismiss.",
    ),
    "portal.empty": ("Tidak ada laporan.", "No reports."),
    "portal.loading": ("Memuat…", "Loading…"),
    "portal.failed": ("Gagal: {message}", "Failed: {message}"),
    "portal.report": ("Laporan", "Report"),
    "portal.priority": ("Prioritas", "Priority"),
    "portal.category": ("Kategori", "Category"),
    "portal.location": ("Lokasi", "Location"),
    "portal.description": ("Keterangan", "Description"),
    "portal.people": ("Orang terlibat", "People involved"),
    "portal.sent_at": ("Dikirim", "Sent"),
    "portal.since_sent": ("Sejak dikirim", "Since sent"),
    "portal.status": ("Status", "Status"),
    "portal.acknowledge": ("Terima", "Acknowledge"),
    "portal.save_status": ("Simpan status", "Save status"),
    "portal.note": ("Catatan (opsional)", "Note (optional)"),
    "portal.acknowledged_by": ("Diterima oleh {name}", "Acknowledged by {name}"),
    "portal.age": ("umur {age}", "age {age}"),
    "portal.unacknowledged": ("Belum diterima", "Not acknowledged"),
    "portal.no_agency": (
        "Akun Anda belum terhubung ke instansi. Hubungi administrator.",
        "Your account has no agency. Ask an administrator to set one.",
    ),
})

# English labels of the dispatch statuses. The Indonesian ones are in LABELS_ID.
STATUS_LABELS_EN = {
    "sent": "Sent",
    "acknowledged": "Acknowledged",
    "dispatched": "Unit dispatched",
    "en_route": "En route",
    "on_scene": "On scene",
    "resolved": "Resolved",
    "false_alarm": "False alarm",
}
PERSON_FIELD_LABELS = {
    "name": ("nama", "name"),
    "role": ("peran", "role"),
    "gender": ("jenis kelamin", "gender"),
    "condition": ("kondisi", "condition"),
    "note": ("catatan", "note"),
}


def event_data(view: DispatchView) -> dict[str, Any]:
    """Return the data of a dispatch.new or dispatch.updated event."""
    return view.to_dict()


class OutsideDispatches:
    """The announcer of dispatches this server did not make, such as the command's.

    Each check reads the dispatches sent since a little before the previous check,
    because another process's dispatch may commit a moment after its `sent_at`. It
    publishes `dispatch.new` for those still waiting to be acknowledged that were
    not published yet. The first check after a start, or after a time with no agency
    page open, looks back OUTSIDE_LOOKBACK_SECONDS, so a dispatch made while the
    controller restarted is announced too. While no agency page is open, nothing is
    read.
    """

    def __init__(self, store: Any, feed: Any, clock: Clock = utc_now) -> None:
        self.store = store
        self.feed = feed
        self.clock = clock
        # When the last check read the store; None before the first one.
        self.read_at: datetime | None = None
        # Dispatches published already, by id, with their sent_at.
        self._published: dict[int, datetime] = {}

    def mark_announced(self, view: DispatchView) -> None:
        """Note a dispatch this server published itself, so no check repeats it."""
        self._published[view.id] = view.sent_at

    async def check(self) -> int:
        """Publish the new outside dispatches; return how many were published."""
        if not self.feed.has_subscribers(AGENCY_STAFF):
            self.read_at = None
            return 0
        now = self.clock()
        start = self.read_at or now - timedelta(seconds=OUTSIDE_LOOKBACK_SECONDS)
        since = start - timedelta(seconds=OUTSIDE_OVERLAP_SECONDS)
        views = await self.store.list_waiting_since(since)
        self.read_at = now
        published = 0
        for view in views:
            if view.id in self._published:
                continue
            self.feed.publish("dispatch.new", event_data(view), roles=AGENCY_STAFF,
                              agency=view.agency_code)
            self._published[view.id] = view.sent_at
            published += 1
        self._published = {
            key: sent_at for key, sent_at in self._published.items() if sent_at >= since
        }
        return published

    async def run(self, interval: float = OUTSIDE_POLL_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outside_dispatch_check_failed")


def attach(controller: Controller) -> None:
    """Publish feed events for new dispatches and dispatch status changes."""
    reports = controller.reports
    dispatches = controller.dispatches
    if reports is None or dispatches is None:
        log.warning("portal_events_not_attached", reason="agency services not started")
        return
    feed = controller.feed
    outside = OutsideDispatches(dispatches.store, feed, getattr(controller, "clock", utc_now))
    controller.outside_dispatches = outside
    controller._spawn(outside.run(), "outside-dispatches")

    async def announce_dispatch(outcome: DispatchOutcome) -> None:
        for code in outcome.sent:
            view = await dispatches.find(outcome.report_id, code)
            outside.mark_announced(view)
            feed.publish("dispatch.new", event_data(view), roles=AGENCY_STAFF, agency=code)

    async def announce_change(view: DispatchView) -> None:
        feed.publish(
            "dispatch.updated", event_data(view), roles=AGENCY_STAFF, agency=view.agency_code
        )

    reports.dispatch_listeners.append(announce_dispatch)
    dispatches.change_listeners.append(announce_change)


def _status_labels(lang: str) -> dict[str, str]:
    if lang == "en":
        return dict(STATUS_LABELS_EN)
    return dict(LABELS_ID["dispatch_status"])


async def portal_page(request: web.Request) -> web.Response:
    user = user_of(request)
    lang = language_of(request)
    english = lang == "en"
    agencies: list[dict[str, str]] = []
    service = getattr(request.app[CONTROLLER], "agencies", None)
    if user.role is not Role.AGENCY and service is not None:
        agencies = [
            {"code": agency.code, "name": agency.name}
            for agency in await service.list_agencies()
        ]
    page_data = {
        "agency": user.agency_code if user.role is Role.AGENCY else None,
        "can_choose_agency": user.role is not Role.AGENCY,
        "statuses": [s.value for s in STATUS_ORDER if s is not DispatchStatus.SENT],
        "status_order": {s.value: order for s, order in STATUS_ORDER.items()},
        "labels": {
            "status": _status_labels(lang),
            "category": call_labels(lang)["category"],
            "person": {key: pair[1 if english else 0] for key, pair in PERSON_FIELD_LABELS.items()},
        },
        "messages": {
            key.removeprefix("portal."): i18n.translate(key, lang)
            for key in i18n.MESSAGES
            if key.startswith("portal.")
        },
        "reload_seconds": RELOAD_SECONDS,
    }
    return render(
        request,
        "portal.html",
        agencies=agencies,
        missing_agency=user.role is Role.AGENCY and not user.agency_code,
        page_data=page_data,
    )


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/portal", portal_page, AGENCY_STAFF)
