"""AccountService: argon2id hashes, sign-in, rate limits, sessions and their audit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import extract_parameters

from sigap_pbx import accounts
from sigap_pbx.accounts import (
    MAX_FAILURES,
    MAX_FAILURES_PER_ADDRESS,
    MAX_FAILURES_PER_USERNAME,
    SESSION_IDLE,
    SESSION_MAX_AGE,
    AccountError,
    AccountService,
    FailureCounter,
    SignInLimited,
    SignInRejected,
    hash_password,
    token_hash,
)
from sigap_pbx.store import Database
from sigap_pbx.store.accounts import Role

T0 = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}")
    yield db
    await db.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def service(database: Database, clock: FakeClock) -> AccountService:
    service = AccountService(database, clock=clock)
    await service.add_user("spv1", PASSWORD, Role.SUPERVISOR, actor="test")
    return service


async def audit_actions(service: AccountService) -> list[tuple[str, str]]:
    entries = await service.audit.list_entries()
    return sorted((entry.action, entry.actor) for entry in entries)


# --- Hashes -------------------------------------------------------------------------


@pytest.mark.production_hasher
def test_hash_is_argon2id() -> None:
    hashed = hash_password(PASSWORD)
    parameters = extract_parameters(hashed)

    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    # RFC 9106's second recommended option is 64 MiB and 3 passes.
    assert parameters.memory_cost >= 64 * 1024
    assert parameters.time_cost >= 3


def test_hash_verifies_only_its_password() -> None:
    hashed = hash_password(PASSWORD)

    assert accounts._verify(hashed, PASSWORD) is True
    assert accounts._verify(hashed, PASSWORD + "x") is False
    assert accounts._verify("not a hash", PASSWORD) is False


def test_same_password_different_hashes() -> None:
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


@pytest.mark.parametrize("password", ["short", "x" * 1025])
def test_password_length_checked(password: str) -> None:
    with pytest.raises(AccountError, match=f"not {len(password)}"):
        hash_password(password)


# --- Sign-in ------------------------------------------------------------------------


async def test_sign_in_opens_session(service: AccountService) -> None:
    signed_in = await service.sign_in("spv1", PASSWORD, "10.0.0.5")

    assert signed_in.token is not None
    assert signed_in.user.username == "spv1"
    assert signed_in.user.role is Role.SUPERVISOR
    assert signed_in.session.remote == "10.0.0.5"
    assert len(signed_in.session.csrf_token) >= 32
    # The database keeps only the token's SHA-256.
    assert signed_in.session.token_hash == token_hash(signed_in.token)
    assert signed_in.session.token_hash != signed_in.token
    resolved = await service.resolve(signed_in.token)
    assert resolved is not None
    assert resolved.user.username == "spv1"
    assert ("signin", "spv1") in await audit_actions(service)


@pytest.mark.parametrize(
    ("username", "password"),
    [("spv1", "wrong password"), ("nobody", PASSWORD), ("SPV1", PASSWORD), ("", ""),
     ("sp\x00v1", PASSWORD), ("\ud800", PASSWORD)],
)
async def test_sign_in_rejected(
    service: AccountService, username: str, password: str
) -> None:
    with pytest.raises(SignInRejected):
        await service.sign_in(username, password, "10.0.0.5")

    entries = await service.audit.list_entries(action_prefix="signin.failed")
    assert len(entries) == 1
    assert entries[0].actor
    assert entries[0].detail["remote"] == "10.0.0.5"
    assert entries[0].detail["reason"] == "wrong_credentials"


async def test_unknown_token_resolves_to_none(service: AccountService) -> None:
    assert await service.resolve("not-a-session") is None
    assert await service.resolve("x" * 300) is None
    assert await service.resolve("") is None


async def test_disabled_user_rejected(service: AccountService) -> None:
    await service.set_disabled("spv1", True, actor="admin1")

    with pytest.raises(SignInRejected):
        await service.sign_in("spv1", PASSWORD, "10.0.0.5")

    (entry,) = await service.audit.list_entries(action_prefix="signin.failed")
    assert entry.detail["reason"] == "disabled"


# --- Rate limits --------------------------------------------------------------------


async def test_sixth_failure_limited(service: AccountService) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")

    with pytest.raises(SignInLimited) as limited:
        await service.sign_in("spv1", PASSWORD, "10.0.0.5")

    assert 0 < limited.value.retry_after <= accounts.FAILURE_WINDOW + 1
    assert f"wait {limited.value.retry_after} s" in str(limited.value)
    assert ("signin.limited", "spv1") in await audit_actions(service)


async def test_limit_per_username(service: AccountService) -> None:
    for index in range(MAX_FAILURES_PER_USERNAME):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", f"10.0.{index}.1")

    with pytest.raises(SignInLimited):
        await service.sign_in("spv1", PASSWORD, "10.0.100.1")


async def test_typos_lock_only_that_address(service: AccountService) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")

    with pytest.raises(SignInLimited):
        await service.sign_in("spv1", PASSWORD, "10.0.0.5")
    signed_in = await service.sign_in("spv1", PASSWORD, "10.0.0.6")
    assert signed_in.user.username == "spv1"


async def test_limit_per_address(service: AccountService) -> None:
    await service.add_user("spv2", PASSWORD, Role.SUPERVISOR, actor="test")
    for index in range(MAX_FAILURES_PER_ADDRESS):
        with pytest.raises(SignInRejected):
            await service.sign_in(f"guess{index}", "wrong password", "10.0.0.9")

    with pytest.raises(SignInLimited):
        await service.sign_in("spv2", PASSWORD, "10.0.0.9")
    signed_in = await service.sign_in("spv2", PASSWORD, "10.0.0.10")
    assert signed_in.user.username == "spv2"


async def test_parallel_failures_limited(service: AccountService) -> None:
    attempts = [
        service.sign_in("spv1", "wrong password", "10.0.0.5") for _ in range(30)
    ]

    results = await asyncio.gather(*attempts, return_exceptions=True)

    rejected = [r for r in results if isinstance(r, SignInRejected)]
    limited = [r for r in results if isinstance(r, SignInLimited)]
    assert len(rejected) == MAX_FAILURES
    assert len(limited) == 30 - MAX_FAILURES


async def test_limited_flood_audited_once(service: AccountService) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")
    for _ in range(10):
        with pytest.raises(SignInLimited):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")

    entries = await service.audit.list_entries(action_prefix="signin.limited")
    assert len(entries) == 1


async def test_success_clears_username_failures(service: AccountService) -> None:
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")
    await service.sign_in("spv1", PASSWORD, "10.0.0.6")

    with pytest.raises(SignInRejected):
        await service.sign_in("spv1", "wrong password", "10.0.0.7")
    assert (await service.sign_in("spv1", PASSWORD, "10.0.0.8")).token is not None


def test_failures_expire_after_window() -> None:
    counter = FailureCounter(limit=2, window=60.0)
    counter.add("user:a", now=0.0)
    counter.add("user:a", now=10.0)

    # The first failure, at 0 s, leaves the window at 60 s.
    assert counter.retry_after("user:a", now=20.0) == 41
    assert counter.retry_after("user:a", now=59.9) > 0
    assert counter.retry_after("user:a", now=60.0) == 0
    assert counter.retry_after("user:b", now=20.0) == 0


# --- Sessions -----------------------------------------------------------------------


async def test_idle_session_ends(service: AccountService, clock: FakeClock) -> None:
    signed_in = await service.sign_in("spv1", PASSWORD, "10.0.0.5")
    assert signed_in.token is not None

    clock.advance(SESSION_IDLE - timedelta(seconds=1))
    assert await service.resolve(signed_in.token) is not None
    clock.advance(SESSION_IDLE + timedelta(seconds=1))

    assert await service.resolve(signed_in.token) is None
    assert await service.store.get_session(signed_in.session.token_hash) is None


async def test_used_session_ends_at_max_age(
    service: AccountService, clock: FakeClock
) -> None:
    signed_in = await service.sign_in("spv1", PASSWORD, "10.0.0.5")
    assert signed_in.token is not None
    step = SESSION_IDLE / 2
    used = timedelta(0)
    while used + step < SESSION_MAX_AGE:
        clock.advance(step)
        used += step
        assert await service.resolve(signed_in.token) is not None, used

    clock.advance(SESSION_MAX_AGE - used + timedelta(seconds=1))

    assert await service.resolve(signed_in.token) is None


async def test_sign_out_ends_session(service: AccountService) -> None:
    signed_in = await service.sign_in("spv1", PASSWORD, "10.0.0.5")
    assert signed_in.token is not None

    await service.sign_out(signed_in)

    assert await service.resolve(signed_in.token) is None
    assert ("signout", "spv1") in await audit_actions(service)


async def test_password_change_ends_sessions(service: AccountService) -> None:
    first = await service.sign_in("spv1", PASSWORD, "10.0.0.5")
    second = await service.sign_in("spv1", PASSWORD, "10.0.0.6")
    assert first.token is not None
    assert second.token is not None

    await service.set_password("spv1", "another passphrase", actor="admin1")

    assert await service.resolve(first.token) is None
    assert await service.resolve(second.token) is None
    with pytest.raises(SignInRejected):
        await service.sign_in("spv1", PASSWORD, "10.0.0.5")
    assert ("user.password", "admin1") in await audit_actions(service)


async def test_disable_ends_sessions(service: AccountService) -> None:
    signed_in = await service.sign_in("spv1", PASSWORD, "10.0.0.5")
    assert signed_in.token is not None

    await service.set_disabled("spv1", True, actor="admin1")

    assert await service.resolve(signed_in.token) is None
    await service.set_disabled("spv1", False, actor="admin1")
    assert (await service.sign_in("spv1", PASSWORD, "10.0.0.5")).token is not None
    actions = await audit_actions(service)
    assert ("user.disable", "admin1") in actions
    assert ("user.enable", "admin1") in actions


async def test_other_users_sessions_kept(service: AccountService) -> None:
    await service.add_user("spv2", PASSWORD, Role.SUPERVISOR, actor="test")
    other = await service.sign_in("spv2", PASSWORD, "10.0.0.5")
    assert other.token is not None

    await service.set_password("spv1", "another passphrase", actor="admin1")

    assert await service.resolve(other.token) is not None


# --- New users ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "role", "options", "message"),
    [
        ("Budi", "operator", {}, "username 'Budi' is invalid"),
        ("-x", "operator", {}, "username '-x' is invalid"),
        ("x" * 65, "operator", {}, "is invalid"),
        ("budi", "boss", {}, "role 'boss' is invalid: use one of operator"),
        ("damkar1", "agency", {}, "has role agency but no agency code"),
        ("op1", "operator", {"agency_code": "damkar"}, "takes no agency code"),
        ("op1", "operator", {"endpoint": "op1,x"}, "invalid endpoint 'op1,x'"),
        ("op1", "operator", {"display_name": "a\x1b[2Jb"}, "display name"),
        ("op1", "operator", {"display_name": "x" * 81}, "display name"),
    ],
)
async def test_invalid_user_rejected(
    service: AccountService, username: str, role: str, options: dict[str, str],
    message: str,
) -> None:
    with pytest.raises(AccountError) as error:
        await service.add_user(username, PASSWORD, role, actor="test", **options)

    assert message in str(error.value)
    assert [user.username for user in await service.store.list_users()] == ["spv1"]


async def test_failures_outlive_restart(
    database: Database, service: AccountService, clock: FakeClock
) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")
    clock.advance(timedelta(minutes=1))

    restarted = AccountService(database, clock=clock)
    assert await restarted.restore_failures() == MAX_FAILURES

    with pytest.raises(SignInLimited) as limited:
        await restarted.sign_in("spv1", PASSWORD, "10.0.0.5")
    # The window runs from the first failure, a minute before the restart.
    assert limited.value.retry_after <= accounts.FAILURE_WINDOW - 60 + 1
    signed_in = await restarted.sign_in("spv1", PASSWORD, "10.0.0.6")
    assert signed_in.user.username == "spv1"


async def test_restart_keeps_success_clearing(
    database: Database, service: AccountService, clock: FakeClock
) -> None:
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")
    await service.sign_in("spv1", PASSWORD, "10.0.0.5")

    restarted = AccountService(database, clock=clock)
    await restarted.restore_failures()

    # One typo after the restart is not the limit's last try.
    with pytest.raises(SignInRejected):
        await restarted.sign_in("spv1", "wrong password", "10.0.0.5")
    signed_in = await restarted.sign_in("spv1", PASSWORD, "10.0.0.5")
    assert signed_in.user.username == "spv1"


async def test_old_failures_not_restored(
    database: Database, service: AccountService, clock: FakeClock
) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")
    clock.advance(timedelta(seconds=accounts.FAILURE_WINDOW + 1))

    restarted = AccountService(database, clock=clock)

    assert await restarted.restore_failures() == 0
    signed_in = await restarted.sign_in("spv1", PASSWORD, "10.0.0.5")
    assert signed_in.user.username == "spv1"


async def test_limited_flood_not_hiding_failures(
    database: Database, service: AccountService, clock: FakeClock
) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRejected):
            await service.sign_in("spv1", "wrong password", "10.0.0.5")
    # The address, once limited, tries made-up names: each writes a `signin.limited`.
    for index in range(MAX_FAILURES_PER_ADDRESS):
        with contextlib.suppress(SignInRejected, SignInLimited):
            await service.sign_in(f"x{index}", "wrong password", "10.0.0.5")
    for index in range(accounts.RESTORED_FAILURES):
        with pytest.raises(SignInLimited):
            await service.sign_in(f"y{index}", "wrong password", "10.0.0.5")
    clock.advance(timedelta(minutes=1))

    restarted = AccountService(database, clock=clock)
    await restarted.restore_failures()

    with pytest.raises(SignInLimited):
        await restarted.sign_in("spv1", PASSWORD, "10.0.0.5")
