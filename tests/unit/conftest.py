"""Unit-test settings: a cheap argon2id hasher for the accounts that tests create.

The production hasher (argon2-cffi's default: 64 MiB, 3 passes) takes most of a
second per hash on a busy machine, and most web tests sign in a user or several.
A test marked `production_hasher` keeps the real one.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type

from sigap_pbx import accounts

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "production_hasher: hash passwords with the production argon2 settings"
    )


@pytest.fixture(autouse=True)
def fast_password_hasher(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if request.node.get_closest_marker("production_hasher") is None:
        monkeypatch.setattr(accounts, "_hasher", FAST_HASHER)
