"""Shift reports, built from the store when each shift ends and kept in `shift_reports`.

`ShiftReporter.run` wakes after each shift end and at least every MAX_SLEEP_SECONDS,
and `run_due` stores a report for every shift that ended in the last
`catch_up_days` days and has none yet. So a controller that was down for a few
shifts writes their reports when it starts again. A stored report is rewritten
only through `store_report(..., replace=True)`, which `sigap shifts build` uses
after a correction.

Each report waits `settle_seconds` after the shift's end, so that calls and
member events of the last seconds have their outcomes before it is built.

With a `pattern_since` provider, `run_due` reports only windows that end after
the roster's shift pattern came into force. Windows of the days before the first
roster, or of the pattern before a change, are then never stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from sigap_pbx.roster.model import Roster, RosterError
from sigap_pbx.roster.reports import ShiftWindow, build_report, pause_seconds
from sigap_pbx.roster.schedule import (
    DEFAULT_TZ,
    boundaries,
    on_duty,
    shift_at,
    shift_window,
)
from sigap_pbx.store.calls import CallStore, CallView
from sigap_pbx.store.members import MemberStore
from sigap_pbx.store.shifts import ShiftReportView, ShiftStore

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
RosterProvider = Callable[[], Awaitable[Roster | None]]
# Returns when the shift pattern in force came into force, or None without a
# roster, such as RosterService.pattern_since.
PatternSinceProvider = Callable[[], Awaitable[datetime | None]]

# Maximum sleep of `run` between two passes, so a changed roster or a clock step
# takes effect within this many seconds.
MAX_SLEEP_SECONDS = 60.0
# Calls read per query while building a report.
CALL_PAGE = 1000


class ShiftReportError(Exception):
    """A report that cannot be built, with the reason and the fix."""


class RosterUnavailable(ShiftReportError):
    """No roster is saved, so shift windows and duties are unknown."""


class ShiftNotFound(ShiftReportError):
    """The roster's shift pattern has no shift of that name."""


class ShiftNotStarted(ShiftReportError):
    """The shift window starts after the time given."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class ShiftReporter:
    """Builds shift reports from the store and keeps one per ended shift."""

    def __init__(
        self,
        shift_store: ShiftStore,
        member_store: MemberStore,
        call_store: CallStore,
        roster_provider: RosterProvider,
        *,
        zone: ZoneInfo = DEFAULT_TZ,
        clock: Clock = utc_now,
        catch_up_days: int = 7,
        settle_seconds: float = 60.0,
        pattern_since: PatternSinceProvider | None = None,
    ) -> None:
        if catch_up_days < 1:
            raise ValueError(
                f"catch_up_days {catch_up_days} is below 1, use 1 or more days"
            )
        if settle_seconds < 0:
            raise ValueError(
                f"settle_seconds {settle_seconds} is negative, use 0 or more seconds"
            )
        self.shift_store = shift_store
        self.member_store = member_store
        self.call_store = call_store
        self.roster_provider = roster_provider
        self.pattern_since = pattern_since
        self.zone = zone
        self.clock = clock
        self.catch_up = timedelta(days=catch_up_days)
        self.settle = timedelta(seconds=settle_seconds)
        self.reports_stored = 0
        self._roster_missing_logged = False

    # Windows ------------------------------------------------------------------------

    async def _roster(self) -> Roster:
        roster = await self.roster_provider()
        if roster is None:
            raise RosterUnavailable(
                "no roster is saved, so shift windows are unknown; save a roster "
                "with `sigap roster` first"
            )
        return roster

    def window(self, roster: Roster, shift_date: date, shift_name: str) -> ShiftWindow:
        """Return the window of a shift, with its crew and minimum from the roster."""
        pattern = roster.rotation.pattern
        try:
            shift = pattern.shift(shift_name)
        except RosterError as error:
            raise ShiftNotFound(str(error)) from None
        start, end = shift_window(pattern, shift.name, shift_date, self.zone)
        return ShiftWindow(
            shift_date=shift_date,
            shift_name=shift.name,
            start=start,
            end=end,
            zone=self.zone,
            crew=roster.rotation.crew_on(shift_date, shift.name).name,
            minimum_operators=shift.minimum_operators,
        )

    def ended_windows(self, roster: Roster, now: datetime) -> list[ShiftWindow]:
        """List the shifts that ended in (now - catch_up_days, now - settle], oldest first."""
        newest_end = now - self.settle
        oldest_end = now - self.catch_up
        # No shift is longer than 24 hours, so every window that ends in the range
        # starts at most a day before it.
        starts = boundaries(
            roster.rotation, oldest_end - timedelta(days=1), newest_end, self.zone
        )
        windows = []
        for start in starts:
            window = self.window(roster, start.shift_date, start.shift.name)
            if oldest_end < window.end <= newest_end:
                windows.append(window)
        return windows

    # Building -----------------------------------------------------------------------

    async def build(
        self, shift_date: date, shift_name: str, now: datetime | None = None
    ) -> dict[str, Any]:
        """Build the report of one shift from the store, without storing it.

        A shift in progress gets its figures up to ``now``. Raises
        RosterUnavailable, ShiftNotFound, ShiftNotStarted, or ShiftReportError
        when the roster's exceptions for the shift are invalid.
        """
        now = self.clock() if now is None else now
        roster = await self._roster()
        window = self._started_window(roster, shift_date, shift_name, now)
        return await self._build(roster, window, now)

    def _started_window(
        self, roster: Roster, shift_date: date, shift_name: str, now: datetime
    ) -> ShiftWindow:
        window = self.window(roster, shift_date, shift_name)
        if now < window.start:
            raise ShiftNotStarted(
                f"shift {window.shift_name!r} on {shift_date} starts at "
                f"{window.start.astimezone(self.zone).isoformat()}, after "
                f"{now.astimezone(self.zone).isoformat()}; ask for a shift that has "
                "started"
            )
        return window

    async def _build(
        self, roster: Roster, window: ShiftWindow, now: datetime
    ) -> dict[str, Any]:
        try:
            duties = on_duty(
                roster.rotation,
                roster.operators,
                roster.exceptions,
                window.shift_date,
                window.shift_name,
            )
        except RosterError as error:
            raise ShiftReportError(
                f"duties of shift {window.shift_name!r} on {window.shift_date} are "
                f"unknown: {error}"
            ) from None
        figures = await self.shift_store.member_figures(window.start, window.end, now=now)
        pauses = await self.member_store.list_pauses(
            since=window.start, until=window.end
        )
        calls = await self._calls(window.start, window.end)
        return build_report(
            window,
            duties=duties,
            operators=roster.operators,
            member_figures=figures,
            pauses=pause_seconds(pauses, window.start, window.end, now),
            calls=calls,
            generated_at=now,
        )

    async def _calls(self, since: datetime, until: datetime) -> list[CallView]:
        calls: dict[int, CallView] = {}
        offset = 0
        while True:
            page = await self.call_store.list_calls(
                since=since, until=until, limit=CALL_PAGE, offset=offset
            )
            for call in page:
                calls[call.id] = call
            if len(page) < CALL_PAGE:
                return list(calls.values())
            offset += CALL_PAGE

    async def report_now(self, now: datetime | None = None) -> dict[str, Any]:
        """Build the report of the shift in progress at ``now``, without storing it."""
        now = self.clock() if now is None else now
        roster = await self._roster()
        try:
            shift_date, shift = shift_at(roster.rotation, now, self.zone)
        except RosterError as error:
            raise ShiftNotFound(str(error)) from None
        return await self._build(roster, self.window(roster, shift_date, shift.name), now)

    async def store_report(
        self,
        shift_date: date,
        shift_name: str,
        now: datetime | None = None,
        *,
        replace: bool = True,
    ) -> tuple[dict[str, Any], bool]:
        """Build one shift's report and store it; return it and whether it was written.

        With ``replace`` false, a report already stored is kept and False is
        returned. Raises what `build` raises.
        """
        now = self.clock() if now is None else now
        roster = await self._roster()
        window = self._started_window(roster, shift_date, shift_name, now)
        return await self._store(roster, window, now, replace=replace)

    async def _store(
        self, roster: Roster, window: ShiftWindow, now: datetime, *, replace: bool
    ) -> tuple[dict[str, Any], bool]:
        content = await self._build(roster, window, now)
        written = await self.shift_store.save_report(
            window.shift_date,
            window.shift_name,
            started_at=window.start,
            ended_at=window.end,
            crew=window.crew,
            content=content,
            created_at=now,
            replace=replace,
        )
        if written:
            self.reports_stored += 1
            log.info(
                "shift_report_stored",
                shift_date=window.shift_date.isoformat(),
                shift=window.shift_name,
                replaced=replace,
                arrived=content["queue"]["arrived"],
                complete=content["complete"],
            )
        return content, written

    # Periodic work ------------------------------------------------------------------

    async def run_due(self, now: datetime | None = None) -> list[tuple[date, str]]:
        """Store a report for each ended shift that has none; return those stored.

        Only shifts that ended in the last `catch_up_days` days, and at least
        `settle_seconds` ago, are considered, and with a `pattern_since`
        provider only those that ended after the shift pattern came into
        force. A shift whose report fails is logged and skipped, and the next
        pass tries it again.
        """
        now = self.clock() if now is None else now
        since = await self._pattern_since()
        roster = await self.roster_provider()
        if roster is None:
            if not self._roster_missing_logged:
                log.warning("shift_reports_waiting_for_roster")
                self._roster_missing_logged = True
            return []
        self._roster_missing_logged = False
        if await self._pattern_since() != since:
            # The pattern changed between the two reads, so `roster` may have
            # the other pattern. The next pass reads both again.
            log.info("shift_reports_pattern_changed_during_pass")
            return []
        windows = [
            window
            for window in self.ended_windows(roster, now)
            if since is None or window.end > since
        ]
        if not windows:
            return []
        stored = await self.shift_store.report_keys(
            since=windows[0].shift_date, until=windows[-1].shift_date + timedelta(days=1)
        )
        written = []
        for window in windows:
            key = (window.shift_date, window.shift_name)
            if key in stored:
                continue
            try:
                _, was_written = await self._store(roster, window, now, replace=False)
            except ShiftReportError as error:
                log.error(
                    "shift_report_failed",
                    shift_date=window.shift_date.isoformat(),
                    shift=window.shift_name,
                    error=str(error),
                )
                continue
            if was_written:
                written.append(key)
        return written

    async def _pattern_since(self) -> datetime | None:
        if self.pattern_since is None:
            return None
        return await self.pattern_since()

    async def seconds_to_next_pass(self, now: datetime | None = None) -> float:
        """Return the seconds until the next report is due, at most MAX_SLEEP_SECONDS.

        A report is due `settle_seconds` after its shift ends.
        """
        now = self.clock() if now is None else now
        roster = await self.roster_provider()
        if roster is None:
            return MAX_SLEEP_SECONDS
        # A window ends when the next one starts, so the next start after
        # now - settle gives the next end that a pass must follow.
        starts = boundaries(
            roster.rotation, now - self.settle, now + timedelta(days=1), self.zone
        )
        for start in starts:
            due = start.start_utc + self.settle
            if due > now:
                return min(max((due - now).total_seconds(), 0.0), MAX_SLEEP_SECONDS)
        return MAX_SLEEP_SECONDS

    async def run(self) -> None:
        """Call `run_due` after each shift end and at least every MAX_SLEEP_SECONDS."""
        log.info(
            "shift_reporter_started",
            catch_up_days=self.catch_up.days,
            settle_seconds=self.settle.total_seconds(),
        )
        while True:
            delay = MAX_SLEEP_SECONDS
            try:
                await self.run_due()
                delay = await self.seconds_to_next_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shift_report_pass_failed")
            await asyncio.sleep(delay)

    # Stored reports -----------------------------------------------------------------

    async def get_report(self, shift_date: date, shift_name: str) -> ShiftReportView | None:
        return await self.shift_store.get_report(shift_date, shift_name)

    async def list_reports(
        self, since: date | None = None, until: date | None = None, limit: int = 50
    ) -> list[ShiftReportView]:
        return await self.shift_store.list_reports(since=since, until=until, limit=limit)
