"""Web accounts and their sign-in sessions.

A user has one role. Agency staff also name their agency, and operators and
supervisors name the PJSIP endpoint of their own phone. Sessions are stored by the
SHA-256 of their token, so a copy of the database does not let anyone sign in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from sigap_pbx.store.calls import _aware_datetime, _key
from sigap_pbx.store.db import Database
from sigap_pbx.store.errors import StoreError
from sigap_pbx.store.models import Base


class Role(enum.StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    AGENCY = "agency"
    ADMIN = "admin"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String, unique=True)
    display_name: Mapped[str] = mapped_column(String)
    role: Mapped[str] = mapped_column(String)
    # The agency code for agency staff, NULL for every other role.
    agency_code: Mapped[str | None] = mapped_column(String)
    # The PJSIP endpoint of the user's own phone, for operators and supervisors.
    endpoint: Mapped[str | None] = mapped_column(String)
    password_hash: Mapped[str] = mapped_column(String)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]


class WebSession(Base):
    __tablename__ = "web_sessions"
    __table_args__ = (Index(None, "user_id"),)

    # SHA-256 of the session cookie's value, in hex.
    token_hash: Mapped[str] = mapped_column(String, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE")
    )
    csrf_token: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    remote: Mapped[str] = mapped_column(String)


USERS: Table = User.__table__  # type: ignore[assignment]
WEB_SESSIONS: Table = WebSession.__table__  # type: ignore[assignment]


class UserExists(StoreError):
    def __init__(self, username: str) -> None:
        super().__init__(
            f"user {username!r} already exists: pick another name, or change this "
            "user with `sigap user passwd`, `sigap user disable` or `sigap user enable`"
        )
        self.username = username


class UserNotFound(StoreError, LookupError):
    def __init__(self, username: str) -> None:
        super().__init__(
            f"user {username!r} not found: list the users with `sigap user list`"
        )
        self.username = username


@dataclass(frozen=True, slots=True)
class UserView:
    id: int
    username: str
    display_name: str
    role: Role
    agency_code: str | None
    endpoint: str | None
    password_hash: str
    disabled: bool
    created_at: datetime
    password_changed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the user without the password hash."""
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.value,
            "agency_code": self.agency_code,
            "endpoint": self.endpoint,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SessionView:
    token_hash: str
    user_id: int
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    remote: str


def _user(row: Any) -> UserView:
    return UserView(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        agency_code=row.agency_code,
        endpoint=row.endpoint,
        password_hash=row.password_hash,
        disabled=bool(row.disabled),
        created_at=row.created_at,
        password_changed_at=row.password_changed_at,
    )


class AccountStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_user(
        self,
        *,
        username: str,
        display_name: str,
        role: Role,
        password_hash: str,
        at: datetime,
        agency_code: str | None = None,
        endpoint: str | None = None,
    ) -> UserView:
        values = {
            "username": _key("username", username),
            "display_name": _key("display_name", display_name),
            "role": Role(role).value,
            "agency_code": agency_code,
            "endpoint": endpoint,
            "password_hash": _key("password_hash", password_hash),
            "disabled": False,
            "created_at": _aware_datetime("created_at", at),
            "password_changed_at": at,
        }
        try:
            async with self._db.session() as session:
                await session.execute(USERS.insert().values(**values))
        except IntegrityError:
            raise UserExists(username) from None
        user = await self.get_user(username)
        assert user is not None
        return user

    async def get_user(self, username: str) -> UserView | None:
        async with self._db.session(write=False) as session:
            row = (
                await session.execute(select(USERS).where(USERS.c.username == username))
            ).first()
        return None if row is None else _user(row)

    async def get_user_by_id(self, user_id: int) -> UserView | None:
        async with self._db.session(write=False) as session:
            row = (await session.execute(select(USERS).where(USERS.c.id == user_id))).first()
        return None if row is None else _user(row)

    async def list_users(self) -> list[UserView]:
        async with self._db.session(write=False) as session:
            rows = (await session.execute(select(USERS).order_by(USERS.c.username))).all()
        return [_user(row) for row in rows]

    async def count_users(self, role: Role | None = None) -> int:
        return len([u for u in await self.list_users() if role is None or u.role == role])

    async def update_user(self, username: str, **values: Any) -> UserView:
        """Set the given columns (display_name, role, agency_code, endpoint,
        password_hash, password_changed_at, disabled) of one user."""
        allowed = {
            "display_name", "role", "agency_code", "endpoint",
            "password_hash", "password_changed_at", "disabled",
        }
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"cannot update user columns {sorted(unknown)}")
        if "role" in values:
            values["role"] = Role(values["role"]).value
        async with self._db.session() as session:
            result = await session.execute(
                update(USERS).where(USERS.c.username == username).values(**values)
            )
        if result.rowcount == 0:
            raise UserNotFound(username)
        user = await self.get_user(username)
        assert user is not None
        return user

    async def add_session(
        self, *, token_hash: str, user_id: int, csrf_token: str, at: datetime, remote: str
    ) -> None:
        async with self._db.session() as session:
            await session.execute(
                WEB_SESSIONS.insert().values(
                    token_hash=token_hash,
                    user_id=user_id,
                    csrf_token=csrf_token,
                    created_at=_aware_datetime("created_at", at),
                    last_seen_at=at,
                    remote=remote,
                )
            )

    async def get_session(self, token_hash: str) -> SessionView | None:
        async with self._db.session(write=False) as session:
            row = (
                await session.execute(
                    select(WEB_SESSIONS).where(WEB_SESSIONS.c.token_hash == token_hash)
                )
            ).first()
        if row is None:
            return None
        return SessionView(
            token_hash=row.token_hash,
            user_id=row.user_id,
            csrf_token=row.csrf_token,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            remote=row.remote,
        )

    async def touch_session(self, token_hash: str, at: datetime) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(WEB_SESSIONS)
                .where(WEB_SESSIONS.c.token_hash == token_hash)
                .values(last_seen_at=at)
            )

    async def delete_session(self, token_hash: str) -> None:
        async with self._db.session() as session:
            await session.execute(
                delete(WEB_SESSIONS).where(WEB_SESSIONS.c.token_hash == token_hash)
            )

    async def delete_user_sessions(self, user_id: int) -> int:
        async with self._db.session() as session:
            result = await session.execute(
                delete(WEB_SESSIONS).where(WEB_SESSIONS.c.user_id == user_id)
            )
        return result.rowcount
