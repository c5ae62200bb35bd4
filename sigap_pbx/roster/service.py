"""The roster in force: saving versions, edits, who is on duty, and the audit log.

`RosterService` is the one way in for the CLI, the web API and the controller. A
save validates the whole roster (including that every endpoint exists in the
site's configuration), checks coverage for the next
``[roster] coverage_check_days`` days, stores a new version and writes an audit
entry that lists what changed, all in one transaction.

Saving content identical to the version in force stores no new version: the
result has ``changed`` false and the id of the version in force, and the audit
log still records the attempt with ``"changed": false``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from sigap_pbx.config import Config
from sigap_pbx.roster.io import (
    exception_from_dict,
    exception_to_dict,
    format_path,
    operator_from_dict,
    roster_from_dict,
    roster_to_dict,
)
from sigap_pbx.roster.model import (
    Operator,
    Roster,
    RosterError,
    RosterException,
    ShiftDef,
)
from sigap_pbx.roster.schedule import (
    CoverageProblem,
    Duty,
    check_coverage,
    on_duty,
    shift_at,
    shift_window,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.roster import (
    AuditEntryView,
    AuditStore,
    DutyOverrideView,
    RosterStore,
    RosterVersionConflict,
    RosterVersionView,
)

log = structlog.get_logger(__name__)

# Times a save reads the version in force again after another save came first.
SAVE_ATTEMPTS = 3
# Versions read per query by `pattern_since`, the maximum that the store lists.
MAX_LISTED_VERSIONS = 1000
# Coverage problems named in the warning logged at a save; the rest are counted.
LOGGED_PROBLEMS = 10
SAVE_ACTION = "roster.save"
# Dates that `shifts` and the date arguments of the CLI and the API accept. Far
# outside this range a shift's start no longer fits in a datetime.
FIRST_DATE = date(2000, 1, 1)
LAST_DATE = date(2200, 12, 31)
NO_ROSTER_HINT = (
    "import one with `sigap roster import FILE.yaml` (docs/examples/roster.yaml is"
    " a sample) or PUT /api/roster"
)


def date_out_of_range(value: date) -> str | None:
    """Return why `value` is outside FIRST_DATE..LAST_DATE, or None when inside."""
    if FIRST_DATE <= value <= LAST_DATE:
        return None
    return (
        f"{value.isoformat()} is out of range, give a date from"
        f" {FIRST_DATE.isoformat()} to {LAST_DATE.isoformat()}"
    )


class RosterNotFound(RosterError, LookupError):
    """No roster version has been saved yet."""

    def __init__(self) -> None:
        super().__init__(f"no roster saved yet: {NO_ROSTER_HINT}")


class OperatorNotFound(RosterError, LookupError):
    """An endpoint names no operator of the roster in force."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(
            f"operator {endpoint!r} not found in the roster in force,"
            " check the endpoint"
        )
        self.endpoint = endpoint


class OperatorInCrew(RosterError):
    """An operator cannot be removed while a crew lists them."""

    def __init__(self, endpoint: str, crew: str) -> None:
        super().__init__(
            f"operator {endpoint!r} is a member of crew {crew!r}, remove them from"
            " the crew first"
        )
        self.endpoint = endpoint
        self.crew = crew


class ExceptionNotFound(RosterError, LookupError):
    """A roster exception to remove is not in the roster in force."""

    def __init__(self, change: RosterException) -> None:
        super().__init__(
            f"exception {exception_to_dict(change)} not found in the roster in force,"
            " copy it exactly from the roster's exceptions"
        )


@dataclass(frozen=True)
class SaveResult:
    """The outcome of a save: the version in force and what the save found."""

    version_id: int
    changed: bool
    coverage_problems: tuple[CoverageProblem, ...]
    # The audit entry's detail: what changed compared with the previous version.
    changes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "changed": self.changed,
            "coverage_problems": [problem_to_dict(p) for p in self.coverage_problems],
            "changes": self.changes,
        }


@dataclass(frozen=True)
class ShiftInForce:
    """The shift running at an instant and the crew that the rotation gives it."""

    shift_date: date
    shift: ShiftDef
    crew: str
    start_utc: datetime
    end_utc: datetime


@dataclass(frozen=True)
class ShiftDuties:
    """One shift of one date with who is on duty and its coverage problem, if any."""

    shift_date: date
    shift: ShiftDef
    crew: str
    start_utc: datetime
    end_utc: datetime
    duties: tuple[Duty, ...]
    problem: CoverageProblem | None

    def to_dict(self, zone: ZoneInfo) -> dict[str, Any]:
        """Return JSON-ready values, with the window in local time with its offset."""
        return {
            "date": self.shift_date.isoformat(),
            "shift": self.shift.name,
            "start": self.start_utc.astimezone(zone).isoformat(),
            "end": self.end_utc.astimezone(zone).isoformat(),
            "crew": self.crew,
            "minimum_operators": self.shift.minimum_operators,
            "duties": [
                {"endpoint": d.endpoint, "role": d.role.value, "penalty": d.penalty}
                for d in self.duties
            ],
            "coverage_problem": None if self.problem is None else str(self.problem),
        }


def problem_to_dict(problem: CoverageProblem) -> dict[str, Any]:
    return {
        "date": problem.shift_date.isoformat(),
        "shift": problem.shift_name,
        "on_duty": problem.on_duty,
        "minimum": problem.minimum,
    }


def _by_key(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def describe_changes(
    previous: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> dict[str, Any]:
    """Compare two roster documents and describe the difference for the audit log.

    Only the parts that changed appear, and `summary` is a one-line description.
    """
    empty: dict[str, Any] = {
        "operators": [],
        "crews": [],
        "pattern": None,
        "rotation": None,
        "exceptions": [],
    }
    old = previous or empty
    changes: dict[str, Any] = {}
    summary: list[str] = []

    old_ops, new_ops = (
        _by_key(old["operators"], "endpoint"),
        _by_key(new["operators"], "endpoint"),
    )
    added = [e for e in new_ops if e not in old_ops]
    removed = [e for e in old_ops if e not in new_ops]
    changed = {
        endpoint: [k for k in item if old_ops[endpoint].get(k) != item[k]]
        for endpoint, item in new_ops.items()
        if endpoint in old_ops and old_ops[endpoint] != item
    }
    for key, value, label in (
        ("operators_added", added, "operators added"),
        ("operators_removed", removed, "operators removed"),
        ("operators_changed", changed, "operators changed"),
    ):
        if value:
            changes[key] = value
            summary.append(f"{label}: {', '.join(value)}")

    old_crews, new_crews = _by_key(old["crews"], "name"), _by_key(new["crews"], "name")
    crews = sorted(
        name
        for name in old_crews.keys() | new_crews.keys()
        if old_crews.get(name) != new_crews.get(name)
    )
    if crews:
        changes["crews_changed"] = crews
        summary.append(f"crews changed: {', '.join(crews)}")
    if old["pattern"] != new["pattern"]:
        changes["pattern_changed"] = True
        summary.append("shift pattern changed")
    if old["rotation"] != new["rotation"]:
        changes["rotation_changed"] = True
        summary.append("rotation changed")

    old_exceptions, new_exceptions = old["exceptions"], new["exceptions"]
    exceptions_added = [e for e in new_exceptions if e not in old_exceptions]
    exceptions_removed = [e for e in old_exceptions if e not in new_exceptions]
    if exceptions_added:
        changes["exceptions_added"] = exceptions_added
        summary.append(f"{len(exceptions_added)} exceptions added")
    if exceptions_removed:
        changes["exceptions_removed"] = exceptions_removed
        summary.append(f"{len(exceptions_removed)} exceptions removed")
    changes["changed"] = bool(summary)
    changes["summary"] = "; ".join(summary) or "nothing changed"
    return changes


def configured_endpoints(config: Config) -> frozenset[str]:
    """Return the SIP endpoints that the configuration declares for phones."""
    sip = config.sip
    return frozenset(
        {op.endpoint for op in sip.operators}
        | {sip.supervisor.endpoint, sip.oncall.endpoint}
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RosterService:
    """The roster in force and its history, stored in one Database."""

    def __init__(
        self, db: Database, config: Config, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self._store = RosterStore(db)
        self._audit = AuditStore(db)
        self._config = config
        self._clock = clock
        self._cached: tuple[int, Roster] | None = None
        # (version id in force, pattern_since for it)
        self._pattern_since: tuple[int, datetime] | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The site's time zone, in which shift start times are given."""
        return self._config.roster.zone

    @property
    def known_endpoints(self) -> frozenset[str]:
        return configured_endpoints(self._config)

    def today(self) -> date:
        """Return the site's local date now."""
        return self._clock().astimezone(self.zone).date()

    # --- Reading ---------------------------------------------------------------

    def parse(self, document: Any) -> Roster:
        """Read a roster document and check its endpoints against the configuration.

        Raises RosterDocumentError (a RosterError) with every problem found.
        """
        return roster_from_dict(document, known_endpoints=self.known_endpoints)

    async def current_version_id(self) -> int | None:
        return await self._store.current_version_id()

    async def current_version(self) -> RosterVersionView | None:
        return await self._store.current_version()

    async def version(self, version_id: int) -> RosterVersionView | None:
        return await self._store.get_version(version_id)

    async def versions(self, limit: int = 50) -> list[RosterVersionView]:
        return await self._store.list_versions(limit)

    async def current(self) -> Roster | None:
        """Return the roster in force, or None when none is saved."""
        found = await self.current_with_version()
        return None if found is None else found[1]

    async def current_with_version(self) -> tuple[int, Roster] | None:
        """Return the id and roster of the version in force, read together.

        The parsed roster is kept until a newer version appears, so a call costs
        one small query while the roster is unchanged.
        """
        version_id = await self._store.current_version_id()
        if version_id is None:
            return None
        if self._cached is not None and self._cached[0] == version_id:
            return self._cached
        version = await self._store.current_version()
        if version is None:
            return None
        self._cached = (version.id, self._stored_roster(version))
        return self._cached

    async def require_current(self) -> Roster:
        """Return the roster in force, or raise RosterNotFound."""
        roster = await self.current()
        if roster is None:
            raise RosterNotFound()
        return roster

    @staticmethod
    def _stored_roster(version: RosterVersionView) -> Roster:
        # NOTE: endpoints are not checked against the configuration here, and
        # names not against the rule on control characters and length, so a
        # roster stays readable after an endpoint leaves the configuration or
        # when it was saved before that rule. The next save reports either.
        try:
            return roster_from_dict(
                version.content,
                locate=lambda path: f"version {version.id} {format_path(path)}",
                check_names=False,
            )
        except RosterError as error:
            raise RosterError(
                f"stored roster version {version.id} is invalid ({error}), save a"
                " corrected roster"
            ) from None

    # --- Saving ----------------------------------------------------------------

    def coverage(
        self, roster: Roster, start: date | None = None
    ) -> list[CoverageProblem]:
        """Check the roster from `start` (default today) over coverage_check_days."""
        days = self._config.roster.coverage_check_days
        rotation = roster.rotation
        return check_coverage(
            rotation,
            roster.operators,
            roster.exceptions,
            self.today() if start is None else start,
            days,
        )

    async def save(
        self, roster: Roster | Mapping[str, Any], actor: str, comment: str = ""
    ) -> SaveResult:
        """Validate and store a whole roster as the new version in force.

        Raises RosterDocumentError for an invalid roster. Shifts below their
        minimum do not stop the save: they are stored with the version, logged
        and returned.
        """
        document = roster_to_dict(roster) if isinstance(roster, Roster) else roster
        parsed = self.parse(document)
        return await self._save_with(lambda _: parsed, actor, comment)

    async def upsert_operator(
        self, operator: Operator | Mapping[str, Any], actor: str, comment: str = ""
    ) -> SaveResult:
        """Add an operator, or replace the one with the same endpoint."""
        if not isinstance(operator, Operator):
            operator = operator_from_dict(operator)
        new = operator

        def build(current: Roster) -> Roster:
            operators = list(current.operators)
            for index, existing in enumerate(operators):
                if existing.endpoint == new.endpoint:
                    operators[index] = new
                    break
            else:
                operators.append(new)
            return Roster(tuple(operators), current.rotation, current.exceptions)

        return await self._edit(build, actor, comment)

    async def remove_operator(
        self, endpoint: str, actor: str, comment: str = ""
    ) -> SaveResult:
        """Remove an operator who is in no crew.

        Raises OperatorNotFound, OperatorInCrew, or RosterDocumentError when a
        roster exception still names the operator.
        """

        def build(current: Roster) -> Roster:
            if current.operator(endpoint) is None:
                raise OperatorNotFound(endpoint)
            for crew in current.rotation.crews:
                if endpoint in crew.members:
                    raise OperatorInCrew(endpoint, crew.name)
            document = roster_to_dict(current)
            document["operators"] = [
                o for o in document["operators"] if o["endpoint"] != endpoint
            ]
            return self.parse(document)

        return await self._edit(build, actor, comment)

    async def add_exception(
        self, change: RosterException | Mapping[str, Any], actor: str, comment: str = ""
    ) -> SaveResult:
        """Append a leave, swap or extra cover to the roster's exceptions."""
        if isinstance(change, Mapping):
            change = exception_from_dict(change)
        new = change

        def build(current: Roster) -> Roster:
            document = roster_to_dict(current)
            document["exceptions"].append(exception_to_dict(new))
            return self.parse(document)

        return await self._edit(build, actor, comment)

    async def remove_exception(
        self, change: RosterException | Mapping[str, Any], actor: str, comment: str = ""
    ) -> SaveResult:
        """Remove one exception equal to `change`, or raise ExceptionNotFound."""
        if isinstance(change, Mapping):
            change = exception_from_dict(change)
        old = change

        def build(current: Roster) -> Roster:
            if old not in current.exceptions:
                raise ExceptionNotFound(old)
            exceptions = list(current.exceptions)
            exceptions.remove(old)
            return Roster(current.operators, current.rotation, tuple(exceptions))

        return await self._edit(build, actor, comment)

    async def _edit(
        self, build: Callable[[Roster], Roster], actor: str, comment: str
    ) -> SaveResult:
        def build_from_current(current: Roster | None) -> Roster:
            if current is None:
                raise RosterNotFound()
            return self.parse(roster_to_dict(build(current)))

        return await self._save_with(build_from_current, actor, comment)

    async def _save_with(
        self, build: Callable[[Roster | None], Roster], actor: str, comment: str
    ) -> SaveResult:
        """Build the new roster from the version in force and save it.

        When another save comes between the read and the write, the store
        rejects the write and the change is built again on the newer version.
        """
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            version = await self._store.current_version()
            current = None if version is None else self._stored_roster(version)
            roster = build(current)
            try:
                return await self._save_over(version, roster, actor, comment)
            except RosterVersionConflict as error:
                log.info(
                    "roster_save_conflict",
                    attempt=attempt,
                    expected=error.expected,
                    current=error.current,
                )
                if attempt == SAVE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _save_over(
        self,
        version: RosterVersionView | None,
        roster: Roster,
        actor: str,
        comment: str,
    ) -> SaveResult:
        now = self._clock()
        document = roster_to_dict(roster)
        problems = tuple(self.coverage(roster))
        if version is not None and version.content == document:
            detail = {
                "changed": False,
                "summary": "nothing changed",
                "version": version.id,
            }
            await self._audit.record(
                actor=actor, action=SAVE_ACTION, subject="roster", detail=detail, at=now
            )
            log.info("roster_save_unchanged", version=version.id, actor=actor)
            return SaveResult(version.id, False, problems, detail)

        changes = describe_changes(
            None if version is None else version.content, document
        )
        changes["previous_version"] = None if version is None else version.id
        if comment:
            changes["comment"] = comment
        version_id = await self._store.save_version(
            content=document,
            saved_by=actor,
            saved_at=now,
            comment=comment,
            coverage_problems=[problem_to_dict(p) for p in problems],
            expected_current_id=None if version is None else version.id,
            audit_action=SAVE_ACTION,
            audit_detail=changes,
        )
        self._cached = (version_id, roster)
        log.info(
            "roster_saved", version=version_id, actor=actor, summary=changes["summary"]
        )
        if problems:
            log.warning(
                "roster_coverage_below_minimum",
                version=version_id,
                count=len(problems),
                problems=[str(p) for p in problems[:LOGGED_PROBLEMS]],
            )
        return SaveResult(
            version_id, True, problems, {**changes, "version": version_id}
        )

    # --- Duty --------------------------------------------------------------------

    async def duties(self, shift_date: date, shift_name: str) -> list[Duty]:
        """List who the roster in force puts on a shift (without duty overrides)."""
        roster = await self.require_current()
        return on_duty(
            roster.rotation, roster.operators, roster.exceptions, shift_date, shift_name
        )

    async def shift_at(self, instant_utc: datetime) -> ShiftInForce:
        """Return the shift date, shift and crew in force at an aware instant."""
        roster = await self.require_current()
        shift_date, shift = shift_at(roster.rotation, instant_utc, self.zone)
        start, end = shift_window(
            roster.rotation.pattern, shift.name, shift_date, self.zone
        )
        crew = roster.rotation.crew_on(shift_date, shift.name).name
        return ShiftInForce(shift_date, shift, crew, start, end)

    async def shifts(self, start: date, days: int = 1) -> list[ShiftDuties]:
        """List every shift of `days` dates from `start`, in pattern order per date.

        Raises RosterError when a listed date is outside FIRST_DATE..LAST_DATE.
        """
        problem = date_out_of_range(start) or date_out_of_range(
            start + timedelta(days=max(days - 1, 0))
        )
        if problem is not None:
            raise RosterError(problem)
        roster = await self.require_current()
        return shifts_of(roster, start, days, self.zone)

    async def pattern_since(self) -> datetime | None:
        """Return when the shift pattern in force came into force, or None.

        That is the `saved_at` of the oldest version in the unbroken run of
        versions, from the newest backwards, whose `pattern` equals the newest
        one's. It is None when no roster is saved. The result is cached until a
        newer version is saved.
        """
        version_id = await self._store.current_version_id()
        if version_id is None:
            return None
        if self._pattern_since is not None and self._pattern_since[0] == version_id:
            return self._pattern_since[1]
        since = await self._find_pattern_since()
        if since is not None:
            self._pattern_since = (version_id, since)
        return since

    async def _find_pattern_since(self) -> datetime | None:
        versions = await self._store.list_versions(MAX_LISTED_VERSIONS)
        if not versions:
            return None
        pattern = versions[0].content.get("pattern")
        oldest = versions[0]
        for version in versions:
            if version.content.get("pattern") != pattern:
                return oldest.saved_at
            oldest = version
        if len(versions) < MAX_LISTED_VERSIONS:
            return oldest.saved_at
        # Every listed version has the pattern, so the run may go on further
        # back. Ids can have gaps (a rolled-back insert uses up a PostgreSQL
        # sequence value), so each lower id is read until one differs.
        # NOTE: this costs one query per older version, once per saved version.
        for version_id in range(oldest.id - 1, 0, -1):
            version = await self._store.get_version(version_id)
            if version is None:
                continue
            if version.content.get("pattern") != pattern:
                break
            oldest = version
        return oldest.saved_at

    async def duty_overrides(
        self, shift_date: date, shift_name: str
    ) -> list[DutyOverrideView]:
        return await self._store.list_duty_overrides(shift_date, shift_name)

    async def add_duty_override(
        self,
        *,
        shift_date: date,
        shift_name: str,
        endpoint: str,
        action: str,
        actor: str,
        source: str,
        at: datetime | None = None,
    ) -> int:
        """Store an operator's own log in or log out for the rest of one shift."""
        return await self._store.add_duty_override(
            shift_date=shift_date,
            shift_name=shift_name,
            endpoint=endpoint,
            action=action,
            at=self._clock() if at is None else at,
            actor=actor,
            source=source,
        )

    # --- Audit -------------------------------------------------------------------

    async def audit(
        self, actor: str, action: str, subject: str, detail: dict[str, Any]
    ) -> int:
        """Record one audit entry at the service clock's time."""
        return await self._audit.record(
            actor=actor, action=action, subject=subject, detail=detail, at=self._clock()
        )

    async def audit_entries(
        self,
        *,
        subject: str | None = None,
        action_prefix: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntryView]:
        return await self._audit.list_entries(
            subject=subject,
            action_prefix=action_prefix,
            since=since,
            until=until,
            limit=limit,
        )


def shifts_of(
    roster: Roster, start: date, days: int, zone: ZoneInfo
) -> list[ShiftDuties]:
    """List the shifts of `days` dates from `start` with their duties and coverage."""
    rotation = roster.rotation
    problems = {
        (p.shift_date, p.shift_name): p
        for p in check_coverage(
            rotation, roster.operators, roster.exceptions, start, days
        )
    }
    result = []
    for offset in range(days):
        shift_date = start + timedelta(days=offset)
        for shift in rotation.pattern.shifts:
            window = shift_window(rotation.pattern, shift.name, shift_date, zone)
            duties = on_duty(
                rotation, roster.operators, roster.exceptions, shift_date, shift.name
            )
            result.append(
                ShiftDuties(
                    shift_date,
                    shift,
                    rotation.crew_on(shift_date, shift.name).name,
                    window[0],
                    window[1],
                    tuple(duties),
                    problems.get((shift_date, shift.name)),
                )
            )
    return result
