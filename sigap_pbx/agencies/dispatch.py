"""The agencies' side of a dispatch: acknowledgement and status updates.

A dispatch moves forward only, in this order:

    sent → acknowledged → dispatched → en_route → on_scene → resolved | false_alarm

``acknowledged`` is reached only from ``sent``. A later status may skip steps, and a
status reported while the dispatch is still ``sent`` counts as the acknowledgement
too, so a crew that reports ``en_route`` straight away stops the escalation.
``resolved`` and ``false_alarm`` are final. Reporting the current status again
changes nothing, so a retried request is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.members.pauses import Clock, utc_now
from sigap_pbx.store.db import Database
from sigap_pbx.store.dispatch import (
    FINAL_STATUSES,
    DispatchEventView,
    DispatchStore,
    DispatchView,
    StatusChange,
)
from sigap_pbx.store.reports import DispatchStatus

log = structlog.get_logger(__name__)

# Writes one audit row: audit(actor, action, subject, detail).
Audit = Callable[[str, str, str, dict[str, Any]], Awaitable[object]]

# Called with a dispatch after each change of its status.
ChangeListener = Callable[[DispatchView], Awaitable[None]]

UNACKNOWLEDGED_ALARM = "report_unacknowledged"

STATUS_ORDER: dict[DispatchStatus, int] = {
    DispatchStatus.SENT: 0,
    DispatchStatus.ACKNOWLEDGED: 1,
    DispatchStatus.DISPATCHED: 2,
    DispatchStatus.EN_ROUTE: 3,
    DispatchStatus.ON_SCENE: 4,
    DispatchStatus.RESOLVED: 5,
    DispatchStatus.FALSE_ALARM: 5,
}
# How many times a change is retried when another writer changed the dispatch
# between the read and the compare-and-set.
CHANGE_RETRIES = 3


class InvalidTransition(ValueError):
    """A status change that the dispatch's current status does not allow."""

    def __init__(self, dispatch: DispatchView, status: DispatchStatus) -> None:
        if dispatch.final:
            reason = f"{dispatch.status.value} is final"
        elif status is DispatchStatus.ACKNOWLEDGED:
            reason = "only a dispatch in status sent can be acknowledged"
        else:
            reason = "a dispatch only moves forward: " + " → ".join(
                s.value for s in STATUS_ORDER if s is not DispatchStatus.FALSE_ALARM
            ) + " (or false_alarm)"
        super().__init__(
            f"dispatch {dispatch.id} cannot change from {dispatch.status.value} "
            f"to {status.value}: {reason}"
        )
        self.dispatch = dispatch
        self.status = status


def alarm_subject(report_id: int, agency_code: str) -> str:
    """Return the subject of the report_unacknowledged alarm of one dispatch."""
    return f"report:{report_id}:{agency_code}"


def parse_status(value: object) -> DispatchStatus:
    """Return the DispatchStatus named by ``value``. Raises ValueError naming the choices."""
    try:
        return DispatchStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in DispatchStatus if s is not DispatchStatus.SENT)
        raise ValueError(f"invalid dispatch status {value!r}: use one of {allowed}") from None


class DispatchService:
    """Acknowledgements, status updates and the portal's lists of dispatches.

    ``alarms`` is the board whose report_unacknowledged alarm is cleared at the
    acknowledgement. The escalation watcher also clears it at its next pass, for a
    dispatch acknowledged without this service. ``change_listeners`` are awaited
    after each status change (the web portal's live update is one). A listener
    that fails is logged and does not fail the change, which is already stored.
    """

    def __init__(
        self,
        db: Database,
        audit: Audit | None = None,
        clock: Clock = utc_now,
        *,
        alarms: AlarmBoard | None = None,
        store: DispatchStore | None = None,
    ) -> None:
        self.store = store if store is not None else DispatchStore(db)
        self.audit = audit
        self.clock = clock
        self.alarms = alarms
        self.change_listeners: list[ChangeListener] = []

    async def get(self, dispatch_id: int) -> DispatchView:
        """Return one dispatch. Raises DispatchNotFound."""
        return await self.store.get(dispatch_id)

    async def find(self, report_id: int, agency_code: str) -> DispatchView:
        """Return the dispatch of a report to an agency. Raises DispatchNotFound."""
        return await self.store.find(report_id, agency_code)

    async def events(self, dispatch_id: int) -> list[DispatchEventView]:
        return await self.store.events(dispatch_id)

    async def list_for_agency(
        self, agency_code: str | None, *, include_final: bool = False, limit: int = 100
    ) -> list[DispatchView]:
        """Return an agency's dispatches (all agencies' for None) for the portal.

        Unacknowledged dispatches come first, then the newest first. Resolved and
        false-alarm dispatches are left out unless ``include_final`` is true.
        """
        return await self.store.list_dispatches(
            agency_code=agency_code, include_final=include_final, limit=limit
        )

    async def acknowledge(
        self, dispatch: int | tuple[int, str], actor: str, note: str = ""
    ) -> DispatchView:
        """Acknowledge a dispatch, by id or by (report id, agency code).

        A dispatch already acknowledged, or further along, is returned unchanged.
        Raises DispatchNotFound.
        """
        return await self.update_status(dispatch, DispatchStatus.ACKNOWLEDGED, actor, note)

    async def update_status(
        self,
        dispatch: int | tuple[int, str],
        status: DispatchStatus | str,
        actor: str,
        note: str = "",
    ) -> DispatchView:
        """Move a dispatch to ``status``, by id or by (report id, agency code).

        Returns the dispatch after the change. Raises ValueError for an unknown
        status, DispatchNotFound, and InvalidTransition for a backward change or a
        change after a final status.
        """
        target = parse_status(status)
        if not actor or not actor.strip():
            raise ValueError(f"invalid actor {actor!r}: name who reports the status")
        for _ in range(CHANGE_RETRIES):
            current = await self._load(dispatch)
            changes = self._changes(current, target, actor.strip(), note)
            if not changes:
                return current
            if await self.store.change_status(
                current.id, expected=current.status, changes=changes
            ):
                updated = await self.store.get(current.id)
                await self._after_change(current, updated, actor.strip(), note)
                return updated
            log.info("dispatch_changed_concurrently", dispatch_id=current.id)
        raise RuntimeError(
            f"dispatch {current.id} changed {CHANGE_RETRIES} times while "
            f"{target.value} was being recorded; send the request again"
        )

    async def _load(self, dispatch: int | tuple[int, str]) -> DispatchView:
        if isinstance(dispatch, tuple):
            report_id, agency_code = dispatch
            return await self.store.find(report_id, agency_code)
        return await self.store.get(dispatch)

    def _changes(
        self, current: DispatchView, target: DispatchStatus, actor: str, note: str
    ) -> list[StatusChange]:
        if target is current.status:
            return []
        if target is DispatchStatus.ACKNOWLEDGED and current.acknowledged_at is not None:
            return []  # a later status already includes the acknowledgement
        if current.status in FINAL_STATUSES or target is DispatchStatus.SENT:
            raise InvalidTransition(current, target)
        if STATUS_ORDER[target] <= STATUS_ORDER[current.status]:
            raise InvalidTransition(current, target)
        now = self.clock()
        changes = []
        if current.status is DispatchStatus.SENT and target is not DispatchStatus.ACKNOWLEDGED:
            # The acknowledgement is implied, and recorded as its own event.
            changes.append(StatusChange(DispatchStatus.ACKNOWLEDGED, now, actor))
        changes.append(StatusChange(target, now, actor, note))
        return changes

    async def _after_change(
        self, before: DispatchView, after: DispatchView, actor: str, note: str
    ) -> None:
        log.info(
            "dispatch_status_changed",
            dispatch_id=after.id,
            report_id=after.report_id,
            agency=after.agency_code,
            status_from=before.status.value,
            status=after.status.value,
            actor=actor,
        )
        if before.status is DispatchStatus.SENT and self.alarms is not None:
            self.alarms.clear(
                UNACKNOWLEDGED_ALARM,
                alarm_subject(after.report_id, after.agency_code),
                "acknowledged",
            )
        await self._audit(
            actor,
            "report.dispatch_acknowledged"
            if after.status is DispatchStatus.ACKNOWLEDGED
            else "report.dispatch_status",
            after,
            {"from": before.status.value, "to": after.status.value, "note": note},
        )
        for listener in list(self.change_listeners):
            try:
                await listener(after)
            except Exception:
                log.exception("dispatch_listener_failed", dispatch_id=after.id)

    async def _audit(
        self, actor: str, action: str, dispatch: DispatchView, detail: dict[str, Any]
    ) -> None:
        if self.audit is None:
            return
        try:
            await self.audit(
                actor,
                action,
                f"report:{dispatch.report_id}",
                {
                    "report_id": dispatch.report_id,
                    "dispatch_id": dispatch.id,
                    "agency": dispatch.agency_code,
                    **detail,
                },
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # The change itself is in dispatch_events, so a failed audit write is
            # logged rather than failing the agency's request.
            log.exception("dispatch_audit_failed", dispatch_id=dispatch.id, actor=actor)
