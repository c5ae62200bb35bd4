"""Web accounts: argon2 password hashes, sign-in with rate limits, and sessions.

A session lasts at most SESSION_MAX_AGE from sign-in and ends after SESSION_IDLE
without a request. The cookie contains a random token, and the database stores
only its SHA-256, beside the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sigap_pbx.clock import Clock, utc_now
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import (
    AccountStore,
    Role,
    SessionView,
    UserNotFound,
    UserView,
)
from sigap_pbx.store.errors import StoreError
from sigap_pbx.store.roster import AuditStore
from sigap_pbx.wire.dialstring import validate_endpoint
from sigap_pbx.wire.errors import DialStringError

log = structlog.get_logger(__name__)

# An operator's shift is at most 12 hours; a session outlives it by an hour of
# handover, then the user signs in again.
SESSION_MAX_AGE = timedelta(hours=13)
SESSION_IDLE = timedelta(hours=2)
# last_seen_at is written at most this often, so that every request is not a write.
SESSION_TOUCH_EVERY = timedelta(minutes=1)
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MAX_DISPLAY_NAME_LENGTH = 80
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Failed sign-ins allowed in FAILURE_WINDOW: for one username from one client
# address, for one username from all addresses, and for all names from one address.
# The first limit stops one person's typos from locking a colleague out; behind a
# reverse proxy every user shares the proxy's address, hence the higher third one.
MAX_FAILURES = 5
MAX_FAILURES_PER_USERNAME = 20
MAX_FAILURES_PER_ADDRESS = 30
FAILURE_WINDOW = 900.0
# The newest failed sign-ins read back from the audit log at start.
RESTORED_FAILURES = 1000
# Password checks that may run at once. argon2 takes a fraction of a second of CPU
# per check, so they run in a worker thread, off the event loop that also follows
# AMI and serves FastAGI. One at a time leaves the other cores to Asterisk and the
# event loop, and a burst of sign-ins waits in line.
VERIFY_SLOTS = 1

_hasher = PasswordHasher()
# Verified against when a username does not exist, so that the reply takes as long
# as for a wrong password and does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + secrets.token_hex(8))


class AccountError(Exception):
    """A rejected account change or sign-in, with a message for the user."""


class SignInRejected(AccountError):
    def __init__(self) -> None:
        super().__init__("username or password is wrong, or the account is disabled")


class SignInLimited(AccountError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed sign-ins: wait {retry_after} s and try again, or ask an "
            "administrator to check the account"
        )
        self.retry_after = retry_after


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise AccountError(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} "
            f"characters long, not {len(password)}; choose a longer passphrase"
        )


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise AccountError(
            f"username {username!r} is invalid: use 1 to 64 lowercase letters, "
            "digits, '.', '_' or '-', starting with a letter or digit"
        )
    return username


def check_new_user(
    username: str,
    role: Role | str,
    *,
    agency_code: str | None = None,
    endpoint: str | None = None,
    display_name: str | None = None,
) -> Role:
    """Check a new user's name, role, agency, endpoint and display name; return the
    role.

    Raises AccountError naming the bad value, so that `sigap user add` can stop
    before it asks for a password.
    """
    check_username(username)
    role = _role(role)
    if role is Role.AGENCY and not agency_code:
        raise AccountError(
            f"user {username!r} has role agency but no agency code: "
            "give the agency with --agency CODE"
        )
    if role is not Role.AGENCY and agency_code:
        raise AccountError(
            f"user {username!r} has role {role.value}, which takes no agency code; "
            "drop --agency or use role agency"
        )
    if endpoint is not None:
        # The endpoint goes into Originate actions (callbacks, supervisor spying).
        try:
            validate_endpoint(endpoint, field="endpoint")
        except DialStringError as error:
            raise AccountError(str(error)) from None
    if display_name is not None and (
        not 1 <= len(display_name) <= MAX_DISPLAY_NAME_LENGTH
        or not display_name.isprintable()
    ):
        raise AccountError(
            f"display name {display_name[:MAX_DISPLAY_NAME_LENGTH]!r} is invalid: use 1 "
            f"to {MAX_DISPLAY_NAME_LENGTH} printable characters, without line breaks"
        )
    return role


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A user with an open session. `token` is set only right after sign-in."""

    user: UserView
    session: SessionView
    token: str | None = None


class FailureCounter:
    """Failed sign-ins per key in a sliding window, in memory.

    Attempts still being checked count as failures until they end, so that many
    parallel requests cannot all pass the limit before the first one fails. After
    a restart, AccountService.restore_failures() refills the counts from the audit
    log's `signin.failed` entries.
    """

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, key: str, now: float | None = None) -> int:
        """Return the seconds until `key` may try again, 0 if it may now."""
        now = time.monotonic() if now is None else now
        times = self._recent(key, now)
        if len(times) + self._pending.get(key, 0) < self.limit:
            return 0
        if len(times) < self.limit:
            # Only attempts under way fill the limit; one of them may yet succeed.
            return 1
        return max(1, int(times[0] + self.window - now) + 1)

    def reserve(self, key: str) -> None:
        self._pending[key] = self._pending.get(key, 0) + 1

    def release(self, key: str) -> None:
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)

    def add(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 100_000:
            # Bound the memory an address-spraying client can take: drop the oldest.
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class AccountService:
    def __init__(self, db: Database, *, clock: Clock = utc_now) -> None:
        self.store = AccountStore(db)
        self.audit = AuditStore(db)
        self.clock = clock
        # Keyed by username and address, by username, and by address.
        self.failures = FailureCounter(MAX_FAILURES)
        self.username_failures = FailureCounter(MAX_FAILURES_PER_USERNAME)
        self.address_failures = FailureCounter(MAX_FAILURES_PER_ADDRESS)
        self._verify_slots = asyncio.Semaphore(VERIFY_SLOTS)
        # When "signin.limited" was last written per key, so that a flood of
        # rejected attempts writes one audit entry per window, not one each.
        self._limited_audited: dict[str, float] = {}

    async def restore_failures(self) -> int:
        """Count again the failed sign-ins of the last window, from the audit log.

        Without this, a restart would give a password guesser the limits' tries
        afresh. Returns how many failures were counted.
        """
        now_wall = self.clock()
        now = time.monotonic()
        since = now_wall - timedelta(seconds=FAILURE_WINDOW)
        # Sign-ins too, because a success clears its name and address's failures.
        # Each action is read on its own, so a flood of one cannot crowd out the other.
        entries = [
            entry
            for action in ("signin.failed", "signin")
            for entry in await self.audit.list_entries(
                action=action, since=since, limit=RESTORED_FAILURES
            )
        ]
        entries.sort(key=lambda entry: (entry.at, entry.id))
        counted = 0
        for entry in entries:
            name = entry.subject.lower()[:64]
            remote = str(entry.detail.get("remote", ""))
            if entry.action == "signin":
                self.failures.clear(f"{name}|{remote}")
            elif entry.action == "signin.failed":
                at = now - max(0.0, (now_wall - entry.at).total_seconds())
                self.failures.add(f"{name}|{remote}", at)
                self.username_failures.add(name, at)
                self.address_failures.add(remote, at)
                counted += 1
        if counted:
            log.info("signin_failures_restored", count=counted)
        return counted

    async def add_user(
        self,
        username: str,
        password: str,
        role: Role | str,
        *,
        display_name: str | None = None,
        agency_code: str | None = None,
        endpoint: str | None = None,
        actor: str = "cli",
    ) -> UserView:
        role = check_new_user(
            username, role, agency_code=agency_code, endpoint=endpoint,
            display_name=display_name,
        )
        user = await self.store.add_user(
            username=username,
            display_name=display_name or username,
            role=role,
            password_hash=hash_password(password),
            at=self.clock(),
            agency_code=agency_code,
            endpoint=endpoint,
        )
        await self._audit(actor, "user.add", username, {
            "role": role.value, "agency_code": agency_code, "endpoint": endpoint,
        })
        return user

    async def set_password(self, username: str, password: str, *, actor: str) -> None:
        user = await self._existing(username)
        await self.store.update_user(
            username, password_hash=hash_password(password), password_changed_at=self.clock()
        )
        # A changed password ends every session of the user, wherever it was open.
        await self.store.delete_user_sessions(user.id)
        await self._audit(actor, "user.password", username, {})

    async def set_disabled(self, username: str, disabled: bool, *, actor: str) -> None:
        user = await self._existing(username)
        await self.store.update_user(username, disabled=disabled)
        if disabled:
            await self.store.delete_user_sessions(user.id)
        await self._audit(actor, "user.disable" if disabled else "user.enable", username, {})

    async def _existing(self, username: str) -> UserView:
        user = await self.store.get_user(username)
        if user is None:
            raise UserNotFound(username)
        return user

    async def sign_in(self, username: str, password: str, remote: str) -> SignedIn:
        """Check the password and open a session, or raise SignInRejected/Limited.

        Failures count per username and address, per username and per address.
        Every attempt is written to the audit log, except repeats of a limited one
        within the window.
        """
        now = time.monotonic()
        name = username.lower()[:64]
        counted = (
            (self.failures, f"{name}|{remote}"),
            (self.username_failures, name),
            (self.address_failures, remote),
        )
        # The name as typed, made storable: it may be empty or contain NUL.
        claimed = _audit_name(username)
        wait = max(counter.retry_after(key, now) for counter, key in counted)
        if wait:
            await self._audit_limited(claimed, f"{name}|{remote}", remote, wait, now)
            raise SignInLimited(wait)

        for counter, key in counted:
            counter.reserve(key)
        try:
            user = (
                await self.store.get_user(username) if USERNAME.fullmatch(username) else None
            )
            async with self._verify_slots:
                valid = await asyncio.to_thread(
                    _verify, user.password_hash if user else _DUMMY_HASH, password
                )
            if user is None or not valid or user.disabled:
                for counter, key in counted:
                    counter.add(key, now)
                await self._audit_quietly(claimed, "signin.failed", claimed, {
                    "remote": remote,
                    "reason": "disabled" if user and valid else "wrong_credentials",
                })
                raise SignInRejected()
        finally:
            for counter, key in counted:
                counter.release(key)

        self.failures.clear(counted[0][1])
        if _hasher.check_needs_rehash(user.password_hash):
            new_hash = await asyncio.to_thread(_hasher.hash, password)
            await self.store.update_user(username, password_hash=new_hash)
        token = secrets.token_urlsafe(32)
        at = self.clock()
        await self.store.add_session(
            token_hash=token_hash(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            at=at,
            remote=remote,
        )
        await self._audit(username, "signin", username, {"remote": remote})
        session = await self.store.get_session(token_hash(token))
        assert session is not None
        return SignedIn(user, session, token)

    async def _audit_limited(
        self, claimed: str, key: str, remote: str, wait: int, now: float
    ) -> None:
        last = self._limited_audited.get(key)
        if last is not None and now - last < FAILURE_WINDOW:
            return
        if len(self._limited_audited) > 10_000:
            self._limited_audited.clear()
        self._limited_audited[key] = now
        await self._audit_quietly(claimed, "signin.limited", claimed, {
            "remote": remote, "retry_after": wait,
        })

    async def _audit_quietly(
        self, actor: str, action: str, subject: str, detail: dict
    ) -> None:
        """Write an audit entry for a rejected sign-in; log rather than raise on failure.

        The sign-in is rejected either way. Raising would turn it into a server error,
        which a flood of bad sign-ins could otherwise cause by keeping the
        database busy.
        """
        try:
            await self._audit(actor, action, subject, detail)
        except StoreError as error:
            log.error("signin_audit_failed", action=action, actor=actor, error=str(error))

    async def resolve(self, token: str) -> SignedIn | None:
        """Return the signed-in user for a session cookie, or None if it has ended."""
        if not token or len(token) > 256:
            return None
        digest = token_hash(token)
        session = await self.store.get_session(digest)
        if session is None:
            return None
        now = self.clock()
        if (now - session.created_at > SESSION_MAX_AGE
                or now - session.last_seen_at > SESSION_IDLE):
            await self.store.delete_session(digest)
            return None
        user = await self.store.get_user_by_id(session.user_id)
        if user is None or user.disabled:
            await self.store.delete_session(digest)
            return None
        if now - session.last_seen_at > SESSION_TOUCH_EVERY:
            await self.store.touch_session(digest, now)
        return SignedIn(user, session)

    async def sign_out(self, signed_in: SignedIn) -> None:
        await self.store.delete_session(signed_in.session.token_hash)
        await self._audit(signed_in.user.username, "signout", signed_in.user.username, {})

    async def _audit(self, actor: str, action: str, subject: str, detail: dict) -> None:
        await self.audit.record(
            actor=actor, action=action, subject=subject, detail=detail, at=self.clock()
        )

    async def record_action(
        self, user: UserView, action: str, subject: str, detail: dict, at: datetime | None = None
    ) -> None:
        """Write one web action of `user` to the audit log."""
        await self.audit.record(
            actor=user.username, action=action, subject=subject, detail=detail,
            at=at or self.clock(),
        )


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise AccountError(
            f"role {value!r} is invalid: use one of "
            + ", ".join(role.value for role in Role)
        ) from None


_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _audit_name(username: str) -> str:
    """Return a sign-in's username as the audit log can store it.

    The store rejects an empty actor, NUL and lone surrogates, and a failed
    sign-in must still be recorded rather than fail with a server error.
    """
    return _UNSTORABLE.sub("\ufffd", username[:64]) or "(empty)"


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
