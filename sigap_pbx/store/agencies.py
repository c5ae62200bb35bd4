"""Agency directory: the agencies that act on reports, their lines and accounts.

An agency (fire, police, health, disaster, public order, ...) is reached two ways: by
phone, through its lines in priority order, and through its app, by webhook and by
the portal accounts of its staff. Below the table models, `AgencyStore` reads and
saves the directory, writing an audit entry in the same transaction as each change.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    false,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.calls import (
    IN_CLAUSE_CHUNK,
    _aware_datetime,
    _bool,
    _key,
    _text,
    _validate_id,
)
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import InvalidFieldValue, StoreError
from sigap_pbx.store.models import Base, _check_in
from sigap_pbx.store.roster import AUDIT_LOG, _audit_row
from sigap_pbx.wire.dialstring import validate_endpoint, validate_number

log = structlog.get_logger(__name__)


class AgencyKind(enum.StrEnum):
    FIRE = "fire"
    POLICE = "police"
    HEALTH = "health"
    DISASTER = "disaster"
    PUBLIC_ORDER = "public_order"
    OTHER = "other"


class LineKind(enum.StrEnum):
    """How a line is dialled: a registered SIP endpoint, or a number on the trunk."""

    ENDPOINT = "endpoint"
    NUMBER = "number"


class Agency(Base):
    """One agency, identified by a short code used in feature codes and the API."""

    __tablename__ = "agencies"
    __table_args__ = (
        CheckConstraint(_check_in("kind", AgencyKind), name="kind"),
        UniqueConstraint("code"),
        UniqueConstraint("dial_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String)
    # One or two digits that pick the agency in operators' feature codes.
    dial_code: Mapped[str | None] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(String)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Shipped sample data with placeholder numbers, to be replaced before use.
    sample: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AgencyLine(Base):
    """One phone line of an agency. Lower priority numbers are tried first."""

    __tablename__ = "agency_lines"
    __table_args__ = (
        CheckConstraint(_check_in("kind", LineKind), name="kind"),
        UniqueConstraint("agency_id", "priority"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE")
    )
    priority: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String)
    # An endpoint name or a dialled number, validated before it is stored.
    target: Mapped[str] = mapped_column(String)
    label: Mapped[str] = mapped_column(String, default="")
    # Local hours when the line is staffed, "HH:MM-HH:MM"; empty means always.
    hours: Mapped[str] = mapped_column(String, default="")
    backup: Mapped[bool] = mapped_column(Boolean, default=False)


class AgencyAccount(Base):
    """A portal account of an agency's staff (sign-in comes with the web accounts)."""

    __tablename__ = "agency_accounts"
    __table_args__ = (UniqueConstraint("username"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE")
    )
    username: Mapped[str] = mapped_column(String)
    display_name: Mapped[str] = mapped_column(String, default="")


# --- Store -------------------------------------------------------------------

AGENCIES: Table = Agency.__table__  # type: ignore[assignment]
AGENCY_LINES: Table = AgencyLine.__table__  # type: ignore[assignment]
AGENCY_ACCOUNTS: Table = AgencyAccount.__table__  # type: ignore[assignment]

# Arbitrary fixed key of the PostgreSQL advisory lock that serialises directory
# saves, so that two saves cannot both give away the same dial code or username.
AGENCY_SAVE_LOCK_KEY = 112_000_004

# An agency code: lower-case letters, digits, '_' and '-', starting with a letter,
# so that it can never be mistaken for a dial code.
CODE_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
CODE_RULE = (
    "1 to 32 characters from a-z, 0-9, '_' and '-', starting with a letter"
    " (for example damkar or psc-119)"
)
DIAL_CODE_PATTERN = re.compile(r"[0-9]{1,2}")
DIAL_CODE_RULE = "1 or 2 digits, written as a quoted string such as \"1\" or \"12\""


class KeepStored(enum.Enum):
    """Marks a value that a save leaves as it is stored."""

    KEEP = "keep"


KEEP = KeepStored.KEEP


class AgencyNotFound(StoreError, LookupError):
    """No agency has the code or dial code asked for."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"agency {key!r} not found, check the code with `sigap agencies list`"
            " or GET /api/agencies"
        )
        self.key = key


class AgencyConflict(StoreError):
    """A dial code or account username that another agency already uses."""

    def __init__(self, message: str, field: str, value: str) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One phone line of an agency, as saved and read back."""

    priority: int
    kind: LineKind
    target: str
    label: str = ""
    hours: str = ""
    backup: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "priority": self.priority,
            "kind": self.kind.value,
            "target": self.target,
            "label": self.label,
            "hours": self.hours,
            "backup": self.backup,
        }


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """One portal account of an agency."""

    username: str
    display_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "display_name": self.display_name}


@dataclass(frozen=True, slots=True)
class AgencySpec:
    """An agency to save. KEEP leaves the stored secret or accounts unchanged."""

    code: str
    name: str
    kind: AgencyKind
    dial_code: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None | KeepStored = KEEP
    active: bool = True
    sample: bool = False
    lines: tuple[LineSpec, ...] = ()
    accounts: tuple[AccountSpec, ...] | KeepStored = KEEP


@dataclass(frozen=True, slots=True)
class AgencyView:
    """One agency with its lines in priority order and its accounts by username."""

    id: int
    code: str
    dial_code: str | None
    name: str
    kind: AgencyKind
    webhook_url: str | None
    webhook_secret: str | None
    active: bool
    sample: bool
    created_at: datetime
    updated_at: datetime
    lines: tuple[LineSpec, ...]
    accounts: tuple[AccountSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values. The webhook secret is never included, only
        whether one is set."""
        return {
            "id": self.id,
            "code": self.code,
            "dial_code": self.dial_code,
            "name": self.name,
            "kind": self.kind.value,
            "webhook_url": self.webhook_url,
            "webhook_secret_set": self.webhook_secret is not None,
            "active": self.active,
            "sample": self.sample,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "lines": [line.to_dict() for line in self.lines],
            "accounts": [account.to_dict() for account in self.accounts],
        }

    def spec(self) -> AgencySpec:
        """Return the stored agency as a spec, with its secret and accounts."""
        return AgencySpec(
            code=self.code,
            name=self.name,
            kind=self.kind,
            dial_code=self.dial_code,
            webhook_url=self.webhook_url,
            webhook_secret=self.webhook_secret,
            active=self.active,
            sample=self.sample,
            lines=self.lines,
            accounts=self.accounts,
        )


@dataclass(frozen=True, slots=True)
class SaveOutcome:
    """What a save did to one agency: "created", "updated" or "unchanged"."""

    code: str
    agency_id: int
    action: str
    # Names of the fields that changed; the secret's value is never listed.
    changed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "id": self.agency_id,
            "action": self.action,
            "changed": list(self.changed),
        }


def validate_line_target(kind: LineKind | str, target: str, field: str) -> str:
    """Check a line's target with the dial-string rules; raise DialStringError."""
    if LineKind(kind) is LineKind.ENDPOINT:
        return validate_endpoint(target, field=field)
    return validate_number(target, field=field)


def _check_spec(spec: AgencySpec) -> None:
    """Check the parts of a spec that reach the database or a dial string.

    The directory's document reader checks all of this with located messages
    first, so these errors only reach a caller that builds specs by hand.
    """
    if not isinstance(spec.code, str) or not CODE_PATTERN.fullmatch(spec.code):
        raise InvalidFieldValue("code", spec.code, CODE_RULE)
    if spec.dial_code is not None and not (
        isinstance(spec.dial_code, str) and DIAL_CODE_PATTERN.fullmatch(spec.dial_code)
    ):
        raise InvalidFieldValue("dial_code", spec.dial_code, DIAL_CODE_RULE)
    _key("name", spec.name)
    AgencyKind(spec.kind)
    if spec.webhook_url is not None:
        _key("webhook_url", spec.webhook_url)
    if isinstance(spec.webhook_secret, str):
        _key("webhook_secret", spec.webhook_secret)
    priorities = [line.priority for line in spec.lines]
    if len(set(priorities)) != len(priorities):
        raise InvalidFieldValue(
            "lines", priorities, "lines with different priorities"
        )
    for index, line in enumerate(spec.lines):
        validate_line_target(line.kind, line.target, f"lines[{index}].target")
    if spec.accounts is not KEEP:
        names = [account.username for account in spec.accounts]
        if len(set(names)) != len(names):
            raise InvalidFieldValue("accounts", names, "accounts with different usernames")
        for account in spec.accounts:
            _key("username", account.username)


def _changed_fields(old: AgencySpec, new: AgencySpec) -> tuple[str, ...]:
    names = (
        "dial_code",
        "name",
        "kind",
        "webhook_url",
        "webhook_secret",
        "active",
        "sample",
        "lines",
        "accounts",
    )
    return tuple(name for name in names if getattr(old, name) != getattr(new, name))


def _resolve(spec: AgencySpec, existing: AgencyView | None) -> AgencySpec:
    """Replace KEEP by the stored value, or by "none" for a new agency."""
    secret = spec.webhook_secret
    accounts = spec.accounts
    if secret is KEEP:
        secret = None if existing is None else existing.webhook_secret
    if accounts is KEEP:
        accounts = () if existing is None else existing.accounts
    return replace(spec, webhook_secret=secret, accounts=accounts)


def insert_audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
    at: datetime,
) -> Any:
    """Return the statement execution that writes one audit entry in `session`'s
    transaction, so the entry commits or rolls back with the change it records."""
    row = _audit_row(actor=actor, action=action, subject=subject, detail=detail, at=at)
    return session.execute(AUDIT_LOG.insert().values(**row))


class AgencyStore:
    """Reads and writes of the agency directory in one Database.

    Every write also writes its audit entry in the same transaction.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- Reading -------------------------------------------------------------

    async def list_agencies(self, *, active: bool | None = None) -> list[AgencyView]:
        """Return agencies ordered by code; `active` filters when given."""
        query = select(AGENCIES).order_by(AGENCIES.c.code)
        if active is not None:
            query = query.where(AGENCIES.c.active == _bool("active", active))
        async with self._db.session(write=False) as session:
            return await self._views(session, query)

    async def get_agency(
        self,
        *,
        code: str | None = None,
        dial_code: str | None = None,
        agency_id: int | None = None,
    ) -> AgencyView | None:
        """Return the agency with this code, dial code or id, or None.

        Pass exactly one of them.
        """
        given = [value for value in (code, dial_code, agency_id) if value is not None]
        if len(given) != 1:
            raise TypeError("get_agency() needs exactly one of code, dial_code, agency_id")
        if code is not None:
            condition = AGENCIES.c.code == _text("code", code)
        elif dial_code is not None:
            condition = AGENCIES.c.dial_code == _text("dial_code", dial_code)
        else:
            condition = AGENCIES.c.id == _validate_id("agency_id", agency_id)
        async with self._db.session(write=False) as session:
            views = await self._views(session, select(AGENCIES).where(condition))
        return views[0] if views else None

    @staticmethod
    async def _views(session: AsyncSession, query: Select[Any]) -> list[AgencyView]:
        rows = (await session.execute(query)).mappings().all()
        ids = [row["id"] for row in rows]
        lines: dict[int, list[LineSpec]] = {}
        accounts: dict[int, list[AccountSpec]] = {}
        for start in range(0, len(ids), IN_CLAUSE_CHUNK):
            chunk = ids[start : start + IN_CLAUSE_CHUNK]
            line_query = (
                select(AGENCY_LINES)
                .where(AGENCY_LINES.c.agency_id.in_(chunk))
                .order_by(AGENCY_LINES.c.priority)
            )
            for line in (await session.execute(line_query)).mappings():
                lines.setdefault(line["agency_id"], []).append(
                    LineSpec(
                        priority=line["priority"],
                        kind=LineKind(line["kind"]),
                        target=line["target"],
                        label=line["label"],
                        hours=line["hours"],
                        backup=bool(line["backup"]),
                    )
                )
            account_query = (
                select(AGENCY_ACCOUNTS)
                .where(AGENCY_ACCOUNTS.c.agency_id.in_(chunk))
                .order_by(AGENCY_ACCOUNTS.c.username)
            )
            for account in (await session.execute(account_query)).mappings():
                accounts.setdefault(account["agency_id"], []).append(
                    AccountSpec(account["username"], account["display_name"])
                )
        return [
            AgencyView(
                id=row["id"],
                code=row["code"],
                dial_code=row["dial_code"],
                name=row["name"],
                kind=AgencyKind(row["kind"]),
                webhook_url=row["webhook_url"],
                webhook_secret=row["webhook_secret"],
                active=bool(row["active"]),
                sample=bool(row["sample"]),
                created_at=row["created_at"],
                updated_at=row["updated_at"],
                lines=tuple(lines.get(row["id"], ())),
                accounts=tuple(accounts.get(row["id"], ())),
            )
            for row in rows
        ]

    # --- Writing -------------------------------------------------------------

    async def save_agencies(
        self, specs: Sequence[AgencySpec], *, actor: str, at: datetime
    ) -> list[SaveOutcome]:
        """Create or replace each agency by code, all in one transaction.

        Lines are replaced whole, and so are accounts unless they are KEEP.
        Agencies that are not in `specs` stay as they are. Raises AgencyConflict,
        and saves nothing, when a dial code or username would belong to two
        agencies. Each agency that changed gets one audit entry.
        """
        _key("actor", actor)
        _aware_datetime("at", at)
        codes = [spec.code for spec in specs]
        if len(set(codes)) != len(codes):
            raise InvalidFieldValue("code", codes, "each agency code once")
        for spec in specs:
            _check_spec(spec)
        async with self._db.session() as session:
            if self._db.dialect == "postgresql":
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": AGENCY_SAVE_LOCK_KEY},
                )
            stored = {view.code: view for view in await self._views(session, select(AGENCIES))}
            resolved = [_resolve(spec, stored.get(spec.code)) for spec in specs]
            self._check_unique(resolved, stored)
            outcomes: list[SaveOutcome] = []
            changed_specs: list[tuple[AgencySpec, AgencyView | None]] = []
            for spec in resolved:
                existing = stored.get(spec.code)
                if existing is not None and existing.spec() == spec:
                    outcomes.append(SaveOutcome(spec.code, existing.id, "unchanged"))
                else:
                    changed_specs.append((spec, existing))
            # Dial codes and accounts are released first, so that two agencies in
            # one save may swap them without tripping the unique constraints.
            for spec, existing in changed_specs:
                if existing is None:
                    continue
                await session.execute(
                    update(AGENCIES)
                    .where(AGENCIES.c.id == existing.id)
                    .values(dial_code=None)
                )
                await session.execute(
                    delete(AGENCY_ACCOUNTS).where(
                        AGENCY_ACCOUNTS.c.agency_id == existing.id
                    )
                )
            for spec, existing in changed_specs:
                outcomes.append(await self._write(session, spec, existing, actor, at))
        for outcome in outcomes:
            if outcome.action != "unchanged":
                log.info(
                    "agency_saved",
                    code=outcome.code,
                    action=outcome.action,
                    changed=list(outcome.changed),
                    actor=actor,
                )
        order = {code: index for index, code in enumerate(codes)}
        return sorted(outcomes, key=lambda outcome: order[outcome.code])

    @staticmethod
    def _check_unique(
        specs: list[AgencySpec], stored: dict[str, AgencyView]
    ) -> None:
        final_specs: dict[str, AgencySpec] = {
            code: view.spec() for code, view in stored.items()
        }
        for spec in specs:
            final_specs[spec.code] = spec
        dial_owner: dict[str, str] = {}
        user_owner: dict[str, str] = {}
        for code, spec in sorted(final_specs.items()):
            if spec.dial_code is not None:
                other = dial_owner.setdefault(spec.dial_code, code)
                if other != code:
                    raise AgencyConflict(
                        f"dial code {spec.dial_code!r} would belong to both {other!r}"
                        f" and {code!r}, give one of them another dial code",
                        "dial_code",
                        spec.dial_code,
                    )
            assert spec.accounts is not KEEP
            for account in spec.accounts:
                other = user_owner.setdefault(account.username, code)
                if other != code:
                    raise AgencyConflict(
                        f"account username {account.username!r} would belong to both"
                        f" {other!r} and {code!r}, give one of them another username",
                        "username",
                        account.username,
                    )

    @staticmethod
    async def _write(
        session: AsyncSession,
        spec: AgencySpec,
        existing: AgencyView | None,
        actor: str,
        at: datetime,
    ) -> SaveOutcome:
        values = {
            "dial_code": spec.dial_code,
            "name": spec.name,
            "kind": spec.kind.value,
            "webhook_url": spec.webhook_url,
            "webhook_secret": spec.webhook_secret,
            "active": spec.active,
            "sample": spec.sample,
            "updated_at": at,
        }
        if existing is None:
            insert = (
                AGENCIES.insert()
                .values(code=spec.code, created_at=at, **values)
                .returning(AGENCIES.c.id)
            )
            agency_id = (await session.execute(insert)).scalar_one()
            action = "created"
            changed: tuple[str, ...] = ()
        else:
            agency_id = existing.id
            await session.execute(
                update(AGENCIES).where(AGENCIES.c.id == agency_id).values(**values)
            )
            await session.execute(
                delete(AGENCY_LINES).where(AGENCY_LINES.c.agency_id == agency_id)
            )
            action = "updated"
            changed = _changed_fields(existing.spec(), spec)
        if spec.lines:
            await session.execute(
                AGENCY_LINES.insert(),
                [{"agency_id": agency_id, **line.to_dict()} for line in spec.lines],
            )
        assert spec.accounts is not KEEP
        if spec.accounts:
            await session.execute(
                AGENCY_ACCOUNTS.insert(),
                [{"agency_id": agency_id, **a.to_dict()} for a in spec.accounts],
            )
        await insert_audit(
            session,
            actor=actor,
            action=f"agency.{'create' if existing is None else 'update'}",
            subject=f"agency:{spec.code}",
            detail={
                "code": spec.code,
                "changed": list(changed),
                "summary": f"agency {spec.code} {action}"
                + (f": {', '.join(changed)} changed" if changed else ""),
            },
            at=at,
        )
        return SaveOutcome(spec.code, agency_id, action, changed)

    async def set_active(
        self, code: str, active: bool, *, actor: str, at: datetime
    ) -> tuple[AgencyView, bool]:
        """Activate or deactivate an agency; return it and whether it changed.

        Raises AgencyNotFound. Only a change writes an audit entry.
        """
        _bool("active", active)
        _key("actor", actor)
        _aware_datetime("at", at)
        async with self._db.session() as session:
            views = await self._views(
                session, select(AGENCIES).where(AGENCIES.c.code == _text("code", code))
            )
            if not views:
                raise AgencyNotFound(code)
            view = views[0]
            if view.active == active:
                return view, False
            await session.execute(
                update(AGENCIES)
                .where(AGENCIES.c.id == view.id)
                .values(active=active, updated_at=at)
            )
            verb = "activate" if active else "deactivate"
            await insert_audit(
                session,
                actor=actor,
                action=f"agency.{verb}",
                subject=f"agency:{code}",
                detail={"code": code, "active": active, "summary": f"agency {code} {verb}d"},
                at=at,
            )
        log.info("agency_active_set", code=code, active=active, actor=actor)
        return replace(view, active=active, updated_at=at), True
