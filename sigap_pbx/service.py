"""The controller process: AMI session, call tracker, reconciler, FastAGI and web API.

Nothing here is on a 112 caller's path. Asterisk routes calls with the AstDB values
written by `publish_routes`, and keeps routing on the last values (or the rendered
defaults) whatever happens to this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from sigap_pbx.accounts import AccountService
from sigap_pbx.agencies.callout import CalloutMessage, ReportAcknowledgeLine
from sigap_pbx.agencies.directory import AgencyService
from sigap_pbx.agencies.dispatch import DispatchService
from sigap_pbx.agencies.escalation import EscalationCall, EscalationWatcher
from sigap_pbx.agencies.forwarding import (
    CONSULT_KIND,
    AgencyRoute,
    Consult,
    Forwarder,
    line_target,
)
from sigap_pbx.agencies.reports import ReportService
from sigap_pbx.agencies.webhooks import WebhookSender
from sigap_pbx.agi.server import FastAgiServer
from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.ami.client import AmiClient, AmiError
from sigap_pbx.asterisk.paths import InstancePaths
from sigap_pbx.calls.diversions import DiversionPublisher
from sigap_pbx.calls.reconcile import Reconciler
from sigap_pbx.calls.tracker import CallTracker
from sigap_pbx.config import Config, load_secrets
from sigap_pbx.live import LiveView
from sigap_pbx.members.actions import OperatorActions
from sigap_pbx.members.coverage import CoverageGuard, ShiftInfo
from sigap_pbx.members.health import EndpointHealth
from sigap_pbx.members.missed import MissedCallGuard
from sigap_pbx.members.offers import MemberEventRecorder
from sigap_pbx.members.pauses import PauseTracker, utc_now
from sigap_pbx.members.wrapup import WrapupGuard
from sigap_pbx.operators import OperatorFeatures
from sigap_pbx.roster.membership import MembershipManager, Override, ShiftKey
from sigap_pbx.roster.model import Roster, RosterError
from sigap_pbx.roster.reporter import ShiftReporter
from sigap_pbx.roster.schedule import shift_at
from sigap_pbx.roster.service import RosterService
from sigap_pbx.store import CallStore, Database, MemberStore
from sigap_pbx.store.alarms import AlarmStore
from sigap_pbx.store.dispatch import DispatchNotFound, DispatchStore
from sigap_pbx.store.diversions import DiversionStore
from sigap_pbx.store.errors import (
    DatabaseUnavailable,
    InvalidDatabaseURL,
    MigrationError,
)
from sigap_pbx.store.forwarding import ForwardStore
from sigap_pbx.store.outbox import OutboxStore
from sigap_pbx.store.shifts import ShiftStore
from sigap_pbx.web.access import CALL_STAFF, SUPERVISORS
from sigap_pbx.web.app import create_app
from sigap_pbx.web.feed import Feed
from sigap_pbx.wire.ami import Event
from sigap_pbx.wire.errors import DialStringError

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

HEARTBEAT_KEY = ("sigap/controller", "heartbeat")

# Seconds that "nobody available" or "below minimum" must last before its alarm is
# raised. A busy queue has every operator on a call for moments at a time, and a
# 10 s benchmark at 20 calls/s raised and cleared the alarm 187 times without it.
COVERAGE_HOLD_SECONDS = 5.0

# Events after which the coverage guard looks at the queues again at once, rather
# than at its next one-second pass.
COVERAGE_EVENTS = frozenset({
    "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberStatus", "QueueMemberPause",
    "QueueMemberPenalty", "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon",
})


class StartupError(Exception):
    """Raised when the controller cannot start, with the setting to change."""


class StoredOverrides:
    """The membership manager's view of the roster service: roster and duty overrides."""

    def __init__(self, rosters: RosterService) -> None:
        self.rosters = rosters

    async def roster(self) -> tuple[int, Roster] | None:
        return await self.rosters.current_with_version()

    async def list_overrides(self, key: ShiftKey) -> list[Override]:
        rows = await self.rosters.duty_overrides(key.shift_date, key.shift_name)
        return [Override(row.endpoint, str(row.action), row.at) for row in rows]

    async def add_override(
        self, key: ShiftKey, override: Override, *, actor: str, source: str
    ) -> None:
        await self.rosters.add_duty_override(
            shift_date=key.shift_date,
            shift_name=key.shift_name,
            endpoint=override.endpoint,
            action=override.action,
            actor=actor,
            source=source,
            at=override.at,
        )


class Controller:
    def __init__(self, config: Config, *, clock: Clock = utc_now) -> None:
        self.config = config
        # Wall clock of the roster, shift reports and alarms. Tests move it to
        # cross a shift boundary; Asterisk's own timers are not affected.
        self.clock = clock
        secrets = load_secrets(config)
        self._agi_token = secrets["agi"]
        self.paths = InstancePaths.for_instance(config.site.instance)
        self.ami = AmiClient(
            config.ami.host,
            config.ami.port,
            config.ami.username,
            secrets["ami"],
            action_timeout=config.ami.action_timeout,
            reconnect_max=config.ami.reconnect_max_seconds,
        )
        self.live = LiveView()
        self.agi = FastAgiServer(
            config.agi.host,
            config.agi.port,
            environment_timeout=config.agi.environment_timeout,
        )
        self.db: Database | None = None
        self.store: CallStore | None = None
        self.tracker: CallTracker | None = None
        self.reconciler: Reconciler | None = None
        self.pauses: PauseTracker | None = None
        self.wrapup = WrapupGuard(
            self.ami, config.queue.wrapup_seconds, action_timeout=config.ami.action_timeout
        )
        self.rosters: RosterService | None = None
        self.membership: MembershipManager | None = None
        self.operator_actions: OperatorActions | None = None
        self.alarms: AlarmBoard | None = None
        self.health_guard: EndpointHealth | None = None
        self.missed: MissedCallGuard | None = None
        self.coverage: CoverageGuard | None = None
        self.member_events: MemberEventRecorder | None = None
        self.shift_reports: ShiftReporter | None = None
        self.agencies: AgencyService | None = None
        self.reports: ReportService | None = None
        self.dispatches: DispatchService | None = None
        self.webhooks: WebhookSender | None = None
        self.escalation: EscalationWatcher | None = None
        self.forwarder: Forwarder | None = None
        self.forward_store: ForwardStore | None = None
        self.accounts: AccountService | None = None
        self.diversions: DiversionPublisher | None = None
        # Live updates for the web pages; components publish, pages subscribe.
        self.feed = Feed()
        self.web_runner: web.AppRunner | None = None
        self.web_port: int | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.started_at = time.time()

    # Start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        try:
            self.db = await Database.open(config.database_url)
        except (DatabaseUnavailable, InvalidDatabaseURL, MigrationError) as exc:
            # A start-up failure, told apart from a crash by `sigap serve`'s exit code.
            raise StartupError(f"[database] {' '.join(str(exc).splitlines())}") from None
        self.store = CallStore(self.db)
        self.tracker = CallTracker(
            self.store,
            primary_queue=config.queue.name,
            country_code=config.site.country_code,
        )
        self.reconciler = Reconciler(
            self.store,
            self.paths.cel_db,
            cdr_path=self.paths.cdr_db,
            country_code=config.site.country_code,
            live_linkedids=self._live_linkedids,
        )
        self._spawn(self.tracker.run_writer(), "store-writer")
        self.pauses = PauseTracker(MemberStore(self.db))
        # Pause intervals left open by an earlier run go on, instead of splitting.
        await self.pauses.restore()
        self._spawn(self.pauses.run_writer(), "pause-writer")
        # Calls that ended while the controller was down are recorded first.
        await self._reconcile("start")

        self.rosters = RosterService(self.db, config, clock=self.clock)
        stored = StoredOverrides(self.rosters)
        self.membership = MembershipManager(
            self.ami,
            self.live,
            stored.roster,
            stored,
            primary_queue=config.queue.name,
            backup_queue=config.queue.backup_name,
            zone=config.roster.zone,
            overlap_seconds=config.roster.handover_overlap_seconds,
            audit=self.rosters.audit,
            clock=self.clock,
            action_timeout=config.ami.action_timeout,
        )
        # Supervisors can be rostered and take calls too, so they log in and pause
        # like operators.
        operators = {op.endpoint for op in config.sip.operators} | {config.sip.supervisor.endpoint}
        timeout = config.ami.action_timeout
        self.alarms = AlarmBoard(AlarmStore(self.db), clock=self.clock,
                                 audit=self.rosters.audit)
        await self.alarms.restore()
        self._spawn(self.alarms.run_writer(), "alarm-writer")
        self.health_guard = EndpointHealth(self.ami, self.alarms, action_timeout=timeout)
        self.missed = MissedCallGuard(
            self.ami, self.alarms, config.queue.missed_calls_pause, action_timeout=timeout
        )
        self.coverage = CoverageGuard(
            self.live, self.alarms, config.queue.name, config.queue.long_wait_alarm_seconds,
            shift_provider=self._current_shift, hold_seconds=COVERAGE_HOLD_SECONDS,
        )
        shift_store = ShiftStore(self.db)
        self.member_events = MemberEventRecorder(shift_store, clock=self.clock)
        self._spawn(self.member_events.run_writer(), "member-event-writer")
        self.shift_reports = ShiftReporter(
            shift_store, MemberStore(self.db), self.store, self.rosters.current,
            zone=config.roster.zone, clock=self.clock,
            pattern_since=self.rosters.pattern_since,
        )
        self.operator_actions = OperatorActions(
            self.ami, self.membership, operators, audit=self.rosters.audit,
            timeout=config.ami.action_timeout,
        )

        self._start_agencies()
        self.diversions = DiversionPublisher(
            self.ami, DiversionStore(self.db), country_code=config.site.country_code,
            clock=self.clock,
        )
        self._spawn(self.diversions.run(), "diversions-republish")
        self.accounts = AccountService(self.db, clock=self.clock)
        await self.accounts.restore_failures()
        if await self.accounts.store.count_users() == 0:
            log.warning(
                "web_no_accounts",
                fix="create the first administrator with "
                "`sigap user add NAME --role admin` (`.venv/bin/sigap` in a source "
                "checkout), then sign in at /login",
            )

        # Listening sockets first: a port in use is a start-up error to report now,
        # before any background task runs.
        features = OperatorFeatures(
            self.ami,
            config.queue.name,
            operators,
            token=self._agi_token,
            membership=self.membership,
            # EPOCH has whole seconds, hence the extra second.
            max_age=config.agi.operator_wait_seconds + 1,
        )
        self.agi.route("operator/login", features.login)
        self.agi.route("operator/logout", features.logout)
        acknowledge_line = ReportAcknowledgeLine(
            self._describe_dispatch, self.dispatches.acknowledge, self.paths,
            token=self._agi_token,
        )
        self.agi.route("report/acknowledge", acknowledge_line.handle,
                       timeout=acknowledge_line.script_seconds())
        await self._listen("agi", config.agi.host, config.agi.port, self.agi.start)
        await self._listen("web", config.web.host, config.web.port, self._start_web)

        self.ami.add_event_listener(self.tracker.on_event)
        self.ami.add_event_listener(self.live.on_event)
        self.ami.add_event_listener(self.pauses.on_event)
        self.ami.add_event_listener(self.wrapup.on_event)
        self.ami.add_event_listener(self.membership.on_event)
        self.ami.add_event_listener(self.health_guard.on_event)
        self.ami.add_event_listener(self.missed.on_event)
        self.ami.add_event_listener(self.member_events.on_event)
        self.ami.add_event_listener(self._evaluate_coverage)
        self.ami.add_event_listener(self.forwarder.on_event)
        self.ami.add_event_listener(self.operator_actions.on_event)
        self.ami.add_connect_listener(self._on_ami_session)
        # Before the live view is marked stale: the members are read from it.
        self.ami.add_disconnect_listener(self.membership.remember_members)
        self.ami.add_disconnect_listener(self.live.mark_unsynced)
        for name in WEB_COMPONENTS:
            importlib.import_module(name).attach(self)
        self.ami.start()

        self._spawn(self._heartbeat_loop(), "astdb-heartbeat")
        self._spawn(self._reconcile_loop(), "reconcile-loop")
        self._spawn(self.membership.run(config.roster.reconcile_seconds), "membership-loop")
        self._spawn(self._coverage_loop(), "coverage-loop")
        self._spawn(self.shift_reports.run(), "shift-reports")
        self._spawn(self.webhooks.run(), "webhook-sender")
        self._spawn(self.escalation.run(), "escalation-watcher")
        self._spawn(self._agency_lines_loop(), "agency-lines")
        log.info(
            "controller_started",
            database=self.db.url,
            ami=f"{config.ami.host}:{config.ami.port}",
            fastagi=f"{config.agi.host}:{self.agi.port}",
            web=f"http://{config.web.host}:{self.web_port}",
        )

    async def stop(self) -> None:
        log.info("controller_stopping")
        if self.ami.connected:
            # The dialplan then skips FastAGI at once instead of waiting out the
            # heartbeat's staleness.
            with contextlib.suppress(AmiError):
                await self.ami.action(
                    "DBDel", {"Family": HEARTBEAT_KEY[0], "Key": HEARTBEAT_KEY[1]}, timeout=1
                )
        await self.agi.stop()
        # Open event streams end first, or the web runner would wait for them.
        self.feed.close()
        if self.web_runner is not None:
            await self.web_runner.cleanup()
            self.web_runner = None
        # Members still in wrap-up are unpaused now rather than left paused.
        await self.wrapup.stop()
        if self.escalation is not None:
            await self.escalation.stop()
        if self.forwarder is not None:
            await self.forwarder.stop()
        if self.health_guard is not None:
            await self.health_guard.stop()
        if self.missed is not None:
            await self.missed.stop()
        await self.ami.stop()
        if self.membership is not None:
            await self.membership.stop()
        if self.operator_actions is not None:
            await self.operator_actions.stop()
        if self.tracker is not None:
            with contextlib.suppress(TimeoutError):
                await self.tracker.flush(timeout=10)
        for writer in (self.pauses, self.member_events, self.alarms):
            if writer is not None:
                with contextlib.suppress(TimeoutError):
                    await writer.flush(timeout=10)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.webhooks is not None:
            await self.webhooks.close()
        if self.db is not None:
            await self.db.close()
        log.info("controller_stopped")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    @staticmethod
    def _task_done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("controller_task_crashed", task=task.get_name(), exc_info=task.exception())

    @staticmethod
    async def _listen(section: str, host: str, port: int, start: Any) -> None:
        try:
            await start()
        except OSError as exc:
            raise StartupError(
                f"[{section}] cannot listen on {host}:{port}: {exc.strerror or exc}; "
                f"stop what uses that port or set another with "
                f"SIGAP_{section.upper()}__PORT"
            ) from None

    async def _start_web(self) -> None:
        app = create_app(self)
        self.web_runner = web.AppRunner(app, access_log=None)
        await self.web_runner.setup()
        web_config = self.config.web
        ssl_context = None
        if web_config.tls_cert is not None and web_config.tls_key is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(web_config.tls_cert, web_config.tls_key)
        site = web.TCPSite(
            self.web_runner, web_config.host, web_config.port, ssl_context=ssl_context
        )
        await site.start()
        server = site._server  # aiohttp exposes no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        self.web_port = sockets[0].getsockname()[1] if sockets else self.config.web.port

    # AMI session hooks ------------------------------------------------------------

    async def _on_ami_session(self) -> None:
        """Run after every AMI login: publish routes, read state again, reconcile.

        A failure here raises, and the AMI client then drops the session and
        reconnects, so the state is read again rather than trusted half-read.
        """
        await self.publish_routes()
        await self.resync()
        # In tasks: a database or roster problem must not end the AMI session,
        # which the live view and the call tracker depend on.
        assert self.membership is not None and self.diversions is not None
        self._spawn(self._logging_failure(self.membership.on_session(),
                                          "membership_session_failed"), "membership-session")
        self._spawn(self._logging_failure(self.diversions.on_session(),
                                          "diversions_publish_failed"), "diversions-session")
        if self.forwarder is not None:
            self._spawn(self._logging_failure(self.forwarder.restore(),
                                              "forwards_restore_failed"), "forwards-restore")
        if self.ami.sessions > 1:
            self._spawn(self._reconcile("ami_reconnect"), "reconcile-after-gap")

    @staticmethod
    async def _logging_failure(work: Awaitable[None], event: str) -> None:
        """Await `work`, and log its failure as `event` instead of raising it."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except AmiError as exc:
            log.warning(event, error=str(exc))
        except Exception:
            log.exception(event)

    async def publish_routes(self) -> None:
        """Write the routing values the dialplan reads with DB() into AstDB."""
        queue = self.config.queue
        sip = self.config.sip
        values = {
            "queue": queue.name,
            "overflow_after": str(queue.overflow_after_seconds),
            "backup_queue": queue.backup_name,
            "backup_wait": str(queue.backup_wait_seconds),
            "supervisor": sip.supervisor.endpoint,
            "supervisor_ring": str(queue.supervisor_ring_seconds),
            "oncall": sip.oncall.endpoint,
            "oncall_ring": str(queue.oncall_ring_seconds),
            "agency_ring": str(self.config.agencies.line_ring_seconds),
        }
        for key, value in values.items():
            await self.ami.action("DBPut", {"Family": "sigap/route", "Key": key, "Val": value})
        await self._beat()

    async def resync(self) -> None:
        """Rebuild the live view and the tracker's open calls from Asterisk's state."""
        status = await self.ami.action("QueueStatus", timeout=10)
        self.live.reset_from_status(status.events)
        assert self.pauses is not None
        self.pauses.reset_from_status(status.events)
        self.wrapup.reset_from_status(status.events)
        assert self.health_guard is not None and self.missed is not None
        self.health_guard.reset_from_status(status.events)
        self.missed.reset_from_status(status.events)
        self._evaluate_coverage(None)
        channels = await self.ami.action("CoreShowChannels", timeout=10)
        assert self.tracker is not None
        live_linkedids = set()
        for event in channels.events:
            entry = event.as_dict()
            live_linkedids.add(entry.get("Linkedid", ""))
            self.tracker.adopt_channel(entry)
        gone = self.tracker.forget_calls_not_in(live_linkedids)
        cards = getattr(self, "call_cards", None)
        if cards is not None:
            cards.restore(channels.events, self._phone_endpoints())
        log.info(
            "ami_state_resynced",
            queues=len(self.live.queues),
            channels=len(channels.events),
            calls_ended_during_gap=len(gone),
        )

    def _phone_endpoints(self) -> set[str]:
        """Return the endpoints of the staff phones that have a console card."""
        sip = self.config.sip
        return {op.endpoint for op in sip.operators} | {
            sip.supervisor.endpoint, sip.oncall.endpoint
        }

    # Agencies ------------------------------------------------------------------------

    def _start_agencies(self) -> None:
        assert self.db is not None
        assert self.rosters is not None
        assert self.alarms is not None
        config = self.config
        self.agencies = AgencyService(self.db, config, clock=self.clock)
        self.reports = ReportService(self.db, config, clock=self.clock)
        self.dispatches = DispatchService(
            self.db, self.rosters.audit, self.clock, alarms=self.alarms
        )
        self.webhooks = WebhookSender.from_config(
            OutboxStore(self.db), config.agencies, alarms=self.alarms, clock=self.clock
        )
        self.forward_store = ForwardStore(self.db)
        self.forwarder = Forwarder(
            self.ami, self._agency_routes, self.forward_store, audit=self.rosters.audit,
            clock=self.clock, action_timeout=config.ami.action_timeout,
            reports_for_call=self.reports.reports_for_call,
            on_consult=self._publish_consult,
        )
        self.escalation = EscalationWatcher(
            DispatchStore(self.db), config.agencies, self.alarms, self._escalation_callout,
            self.clock, audit=self.rosters.audit,
        )

    def _publish_consult(self, state: str, consult: Consult) -> None:
        """Send the state of a consult to the operator's console and to supervisors."""
        data = {"state": state, **consult.to_dict(), "reason": consult.end_reason}
        if consult.operator_endpoint is None:
            # No operator phone to address it to: supervisors and admins only.
            self.feed.publish(CONSULT_KIND, data, roles=SUPERVISORS)
        else:
            self.feed.publish(CONSULT_KIND, data, roles=CALL_STAFF,
                              endpoint=consult.operator_endpoint)

    async def _agency_routes(self) -> list[AgencyRoute]:
        """Return every active agency's lines staffed now, as PJSIP targets."""
        assert self.agencies is not None
        trunk = self.config.sip.trunks[0].name
        routes = []
        for agency in await self.agencies.list_agencies(active=True):
            if not agency.dial_code:
                continue
            targets = []
            for line in self.agencies.lines_for(agency):
                try:
                    targets.append(line_target(str(line.kind), line.target, trunk))
                except DialStringError as exc:
                    log.error("agency_line_invalid", agency=agency.code, error=str(exc))
            routes.append(AgencyRoute(agency.id, agency.code, agency.dial_code, agency.name,
                                      tuple(targets)))
        return routes

    async def publish_agency_lines(self) -> None:
        """Write the agencies' lines into AstDB now, after an edit or a new session."""
        assert self.forwarder is not None
        await self.forwarder.publish()

    async def _agency_lines_loop(self) -> None:
        # Lines have staffed hours, so the published list changes with the time of day.
        while True:
            if self.ami.connected:
                try:
                    await self.publish_agency_lines()
                except asyncio.CancelledError:
                    raise
                except AmiError as exc:
                    log.warning("agency_lines_publish_failed", error=str(exc))
                except Exception:
                    log.exception("agency_lines_publish_failed")
            await asyncio.sleep(60)

    async def _escalation_callout(self, call: EscalationCall) -> None:
        assert self.forwarder is not None
        if call.agency_code not in {r.code for r in self.forwarder.routes.values()}:
            await self.publish_agency_lines()
        await self.forwarder.callout(
            agency=call.agency_code, dispatch_id=call.dispatch_id, report_id=call.report_id
        )

    async def _describe_dispatch(self, dispatch_id: int) -> CalloutMessage | None:
        assert self.dispatches is not None
        try:
            dispatch = await self.dispatches.get(dispatch_id)
        except DispatchNotFound:
            return None
        location = ", ".join(
            part for part in (dispatch.location_text, dispatch.kelurahan, dispatch.kecamatan)
            if part
        )
        return CalloutMessage(
            dispatch_id=dispatch.id, report_id=dispatch.report_id,
            agency_code=dispatch.agency_code, agency_name=dispatch.agency_name,
            category=str(dispatch.category), priority=dispatch.priority, location=location,
        )

    # Coverage ------------------------------------------------------------------------

    def _evaluate_coverage(self, event: Event | None) -> None:
        if self.coverage is not None and (event is None or event.name in COVERAGE_EVENTS):
            self.coverage.evaluate()

    async def _coverage_loop(self) -> None:
        while True:
            await asyncio.sleep(1)
            self._evaluate_coverage(None)

    def _current_shift(self) -> ShiftInfo | None:
        """Return the shift in force from the roster the membership manager last read.

        It runs every second, so it reads the roster held in memory and never the
        database.
        """
        roster = self.membership.roster if self.membership is not None else None
        if roster is None:
            return None
        try:
            shift_date, shift = shift_at(roster.rotation, self.clock(), self.config.roster.zone)
        except RosterError:
            return None
        return ShiftInfo(shift.name, shift.minimum_operators, shift_date)

    # Background loops --------------------------------------------------------------

    async def _beat(self) -> None:
        await self.ami.action(
            "DBPut",
            {"Family": HEARTBEAT_KEY[0], "Key": HEARTBEAT_KEY[1], "Val": str(int(time.time()))},
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.controller.heartbeat_seconds)
            if not self.ami.connected:
                continue
            try:
                await self._beat()
            except AmiError as exc:
                log.warning("heartbeat_failed", error=str(exc))

    async def _reconcile(self, reason: str) -> None:
        assert self.reconciler is not None
        try:
            await self.reconciler.run_pass(reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconcile_failed", reason=reason, cel=str(self.paths.cel_db))

    async def _live_linkedids(self) -> set[str] | None:
        """Return the linkedids of Asterisk's channels now, or None without AMI."""
        if not self.ami.connected:
            return None
        try:
            reply = await self.ami.action("CoreShowChannels", timeout=10)
        except AmiError as exc:
            log.warning("live_channels_unknown", error=str(exc))
            return None
        return {event.as_dict().get("Linkedid", "") for event in reply.events}

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.controller.reconcile_seconds)
            await self._reconcile("periodic")

    def health(self) -> dict[str, Any]:
        tracker = self.tracker
        return {
            "ami_connected": self.ami.connected,
            "database_problem": self.db.file_problem() if self.db is not None else None,
            "ami_sessions": self.ami.sessions,
            "live_view_synced": self.live.synced,
            "calls_in_progress": len(tracker.calls) if tracker else 0,
            "pending_writes": tracker.pending_writes if tracker else 0,
            "reconciled_calls": self.reconciler.reconciled_total if self.reconciler else 0,
            "wrapup_alerts": self.wrapup.alerts_total,
            "alarms_active": len(self.alarms.active()) if self.alarms else 0,
            "member_event_writes": self.member_events.pending_writes if self.member_events else 0,
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Run the controller until `stop` is set."""
    controller = Controller(config)
    try:
        await controller.start()
        await stop.wait()
    finally:
        await controller.stop()


# Modules that feed the web pages. Each has attach(controller), which adds its AMI
# listeners and starts its tasks with controller._spawn (cancelled on stop).
WEB_COMPONENTS: tuple[str, ...] = (
    "sigap_pbx.web.wallboard",
    "sigap_pbx.web.portal_routes",
    "sigap_pbx.web.console",
)
