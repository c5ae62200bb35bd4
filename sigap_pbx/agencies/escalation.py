"""The escalation watcher: reports that an agency has not acknowledged in time.

Each agency has ``acknowledge_minutes[priority - 1]`` minutes from ``sent_at`` to
acknowledge a report. When that passes, the watcher escalates: it records the
escalation on the dispatch, raises a ``report_unacknowledged`` alarm for the
supervisors, writes an audit entry, and calls the callout, which rings the agency's
line with a recorded message. The escalation repeats each time the same number of
minutes has passed since the last one, up to ``max_escalations``. After that only
the alarm stays, until the dispatch is acknowledged and the alarm is cleared.

The escalation count and time are stored on the dispatch, so a restarted controller
continues the schedule instead of starting it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from sigap_pbx.agencies.dispatch import UNACKNOWLEDGED_ALARM, Audit, alarm_subject
from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.config import AgenciesConfig
from sigap_pbx.members.pauses import Clock, utc_now
from sigap_pbx.store.alarms import AlarmSeverity
from sigap_pbx.store.dispatch import DispatchStore, DispatchView

log = structlog.get_logger(__name__)

CHECK_SECONDS = 15.0
MAX_ESCALATIONS = 3
AUDIT_ACTOR = "escalation"


@dataclass(frozen=True, slots=True)
class EscalationCall:
    """Report, agency and escalation number of one call-out about an unacknowledged report.

    The callout looks up the agency's lines itself, by ``agency_id`` or
    ``agency_code``. ``escalation`` counts from 1.
    """

    dispatch_id: int
    report_id: int
    report_version: int
    priority: int
    category: str
    agency_id: int
    agency_code: str
    agency_name: str
    sent_at: datetime
    escalation: int
    max_escalations: int


# Rings the agency's lines about one report. It may take as long as the lines
# ring; the watcher runs it in its own task, at most one per dispatch at a time.
Callout = Callable[[EscalationCall], Awaitable[object]]


class EscalationWatcher:
    """Escalates unacknowledged dispatches every ``check_seconds``.

    ``callout`` None raises the alarms without calling anyone.
    """

    def __init__(
        self,
        store: DispatchStore,
        config: AgenciesConfig,
        alarms: AlarmBoard,
        callout: Callout | None,
        clock: Clock = utc_now,
        *,
        audit: Audit | None = None,
        check_seconds: float = CHECK_SECONDS,
        max_escalations: int = MAX_ESCALATIONS,
    ) -> None:
        self.store = store
        self.acknowledge_minutes = list(config.acknowledge_minutes)
        self.alarms = alarms
        self.callout = callout
        self.clock = clock
        self.audit = audit
        self.check_seconds = check_seconds
        self.max_escalations = max_escalations
        # Callouts still ringing, by dispatch id.
        self._callouts: dict[int, asyncio.Task[None]] = {}

    def deadline_minutes(self, priority: int) -> int:
        """Return the minutes a report of ``priority`` (1 to 4) may stay unacknowledged."""
        return self.acknowledge_minutes[min(max(priority, 1), 4) - 1]

    async def run(self) -> None:
        """Check every ``check_seconds`` until cancelled."""
        log.info("escalation_watcher_started", check_seconds=self.check_seconds)
        try:
            while True:
                try:
                    await self.check()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("escalation_check_failed")
                await asyncio.sleep(self.check_seconds)
        finally:
            log.info("escalation_watcher_stopped")

    async def stop(self) -> None:
        """Cancel the callouts still running."""
        tasks = list(self._callouts.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def check(self) -> list[EscalationCall]:
        """Escalate every dispatch that is due, and clear alarms of acknowledged ones.

        Returns the escalations started in this pass.
        """
        now = self.clock()
        unacknowledged = await self.store.list_unacknowledged()
        started = []
        for dispatch in unacknowledged:
            call = await self._check_one(dispatch, now)
            if call is not None:
                started.append(call)
        self._clear_acknowledged(unacknowledged)
        return started

    async def _check_one(self, dispatch: DispatchView, now: datetime) -> EscalationCall | None:
        interval = timedelta(minutes=self.deadline_minutes(dispatch.priority))
        if now - dispatch.sent_at < interval:
            return None

        repeat_due = dispatch.escalated_at is None or now - dispatch.escalated_at >= interval
        if (
            dispatch.escalations >= self.max_escalations
            or not repeat_due
            or dispatch.id in self._callouts
        ):
            # Raised again so that the alarm stays while the dispatch waits. The
            # board writes nothing for an unchanged alarm.
            if dispatch.escalations > 0:
                self._raise_alarm(dispatch, dispatch.escalations)
            return None
        marked = await self.store.mark_escalated(
            dispatch.id, at=now, expected_escalations=dispatch.escalations
        )
        if not marked:
            # Acknowledged, or escalated by another watcher, since the read.
            return None

        call = self._call_of(dispatch, dispatch.escalations + 1)
        log.warning(
            "report_escalated",
            dispatch_id=dispatch.id,
            report_id=dispatch.report_id,
            agency=dispatch.agency_code,
            priority=dispatch.priority,
            escalation=call.escalation,
            minutes_since_sent=round((now - dispatch.sent_at).total_seconds() / 60, 1),
        )
        self._raise_alarm(dispatch, call.escalation)
        await self._audit(call)

        if self.callout is not None:
            task = asyncio.create_task(
                self._run_callout(call), name=f"escalation-callout-{dispatch.id}"
            )
            self._callouts[dispatch.id] = task
            task.add_done_callback(lambda _: self._callouts.pop(dispatch.id, None))
        return call

    def _call_of(self, dispatch: DispatchView, escalation: int) -> EscalationCall:
        return EscalationCall(
            dispatch_id=dispatch.id,
            report_id=dispatch.report_id,
            report_version=dispatch.report_version,
            priority=dispatch.priority,
            category=dispatch.category,
            agency_id=dispatch.agency_id,
            agency_code=dispatch.agency_code,
            agency_name=dispatch.agency_name,
            sent_at=dispatch.sent_at,
            escalation=escalation,
            max_escalations=self.max_escalations,
        )

    async def _run_callout(self, call: EscalationCall) -> None:
        assert self.callout is not None
        try:
            await self.callout(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "escalation_callout_failed",
                dispatch_id=call.dispatch_id,
                agency=call.agency_code,
                escalation=call.escalation,
            )

    def _raise_alarm(self, dispatch: DispatchView, escalations: int) -> None:
        minutes = self.deadline_minutes(dispatch.priority)
        calls = (
            f"its line was called {escalations} of {self.max_escalations} times"
            if self.callout is not None
            else "no callout is configured, so nobody was called"
        )
        severity = AlarmSeverity.CRITICAL if dispatch.priority <= 2 else AlarmSeverity.WARNING
        self.alarms.raise_alarm(
            UNACKNOWLEDGED_ALARM,
            alarm_subject(dispatch.report_id, dispatch.agency_code),
            f"{dispatch.agency_code} has not acknowledged report {dispatch.report_id} "
            f"(priority {dispatch.priority}, {dispatch.category}) within {minutes} min "
            f"of {dispatch.sent_at.isoformat()}; {calls}; call the agency",
            severity,
            {
                "dispatch_id": dispatch.id,
                "report_id": dispatch.report_id,
                "agency": dispatch.agency_code,
                "priority": dispatch.priority,
                "escalations": escalations,
            },
        )

    def _clear_acknowledged(self, unacknowledged: list[DispatchView]) -> None:
        waiting = {alarm_subject(d.report_id, d.agency_code) for d in unacknowledged}
        for record in self.alarms.active(UNACKNOWLEDGED_ALARM):
            if record.subject not in waiting:
                self.alarms.clear(UNACKNOWLEDGED_ALARM, record.subject, "acknowledged")

    async def _audit(self, call: EscalationCall) -> None:
        if self.audit is None:
            return
        detail: dict[str, Any] = {
            "report_id": call.report_id,
            "dispatch_id": call.dispatch_id,
            "agency": call.agency_code,
            "priority": call.priority,
            "escalation": call.escalation,
        }
        try:
            await self.audit(
                AUDIT_ACTOR, "report.escalated", f"report:{call.report_id}", detail
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("escalation_audit_failed", dispatch_id=call.dispatch_id)
