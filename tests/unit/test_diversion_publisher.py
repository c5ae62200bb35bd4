"""Diversion flags published to AstDB for the emergency dialplan, through a fake AMI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigap_pbx.ami.client import AmiActionFailed, AmiClient, AmiNotConnected
from sigap_pbx.calls.diversions import DiversionPublisher, published_numbers
from sigap_pbx.store import Database
from sigap_pbx.store.diversions import DiversionStore
from tests.unit.fake_ami import SECRET, USERNAME, FakeAmiServer, error, success

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    fake: FakeAmiServer
    publisher: DiversionPublisher
    store: DiversionStore
    clock: Clock

    def astdb_actions(self) -> list[tuple[str, str, str, str]]:
        """Return (action, family, key, value) of every AstDB action received."""
        return [
            (a.name, a.message.get("Family") or "", a.message.get("Key") or "",
             a.message.get("Val") or "")
            for a in self.fake.received
            if a.name.startswith("DB")
        ]

    async def flag(self, number: str, action: str, hours: float = 2) -> int:
        view = await self.store.add(
            number=number, action=action, reason="five prank calls", set_by="spv1",
            set_at=self.clock(), until=self.clock() + timedelta(hours=hours),
        )
        return view.id


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    async with FakeAmiServer() as fake:
        fake.replies["DBPut"] = lambda action: success(action, "Updated database successfully")
        fake.replies["DBDel"] = lambda action: success(action, "Key deleted successfully")
        fake.replies["DBDelTree"] = lambda action: error(action, "Database entry not found")
        client = AmiClient("127.0.0.1", fake.port, USERNAME, SECRET, reconnect_max=0.05)
        clock = Clock()
        store = DiversionStore(db)
        publisher = DiversionPublisher(client, store, country_code="62", clock=clock)
        client.start()
        await client.wait_connected(5)
        yield Rig(fake, publisher, store, clock)
        await client.stop()
        await fake.connections[-1].closed.wait()
    await db.close()


def test_national_number_published_in_each_form() -> None:
    assert published_numbers("+6281234567890", "62") == [
        "6281234567890", "006281234567890", "081234567890",
    ]
    # A foreign number has no national form here.
    assert published_numbers("+6591234567", "62") == ["6591234567", "006591234567"]
    # A short code is published as stored.
    assert published_numbers("110", "62") == ["110"]


async def test_session_clears_then_writes_flags(rig: Rig) -> None:
    await rig.flag("+6281234567890", "warning")
    await rig.flag("+6281200000000", "low_priority", hours=30)

    assert await rig.publisher.on_session() is None

    until_warning = str(int((T0 + timedelta(hours=2)).timestamp()))
    until_low = str(int((T0 + timedelta(hours=30)).timestamp()))
    actions = rig.astdb_actions()
    assert actions[0] == ("DBDelTree", "sigap/divert", "", "")
    assert sorted(actions[1:]) == sorted([
        ("DBPut", "sigap/divert/6281234567890", "warning", until_warning),
        ("DBPut", "sigap/divert/006281234567890", "warning", until_warning),
        ("DBPut", "sigap/divert/081234567890", "warning", until_warning),
        ("DBPut", "sigap/divert/6281200000000", "low_priority", until_low),
        ("DBPut", "sigap/divert/006281200000000", "low_priority", until_low),
        ("DBPut", "sigap/divert/081200000000", "low_priority", until_low),
    ])


async def test_lifted_flag_deleted_after_puts(rig: Rig) -> None:
    kept = await rig.flag("+6281200000000", "warning")
    lifted = await rig.flag("+6281234567890", "low_priority")
    await rig.publisher.on_session()
    before = len(rig.astdb_actions())

    await rig.store.lift(lifted, by="spv1", at=T0 + timedelta(minutes=5))
    rig.clock.now = T0 + timedelta(minutes=5)
    assert await rig.publisher.publish() == 3

    actions = rig.astdb_actions()[before:]
    names = [action[0] for action in actions]
    # No clearing of the whole family: the flag kept is never missing.
    assert "DBDelTree" not in names
    assert names == ["DBPut"] * 3 + ["DBDel"] * 3
    assert {a[1] for a in actions if a[0] == "DBDel"} == {
        "sigap/divert/6281234567890", "sigap/divert/006281234567890",
        "sigap/divert/081234567890",
    }
    assert kept


async def test_expired_flag_not_published(rig: Rig) -> None:
    await rig.flag("+6281234567890", "warning", hours=1)
    rig.clock.now = T0 + timedelta(hours=1, seconds=1)

    await rig.publisher.on_session()

    assert [a[0] for a in rig.astdb_actions()] == ["DBDelTree"]


async def test_two_flags_of_a_number_keep_later_end(rig: Rig) -> None:
    await rig.flag("+6281234567890", "warning", hours=1)
    await rig.flag("+6281234567890", "warning", hours=5)

    await rig.publisher.on_session()

    until = str(int((T0 + timedelta(hours=5)).timestamp()))
    puts = [a for a in rig.astdb_actions() if a[0] == "DBPut"]
    assert len(puts) == 3
    assert {a[3] for a in puts} == {until}


async def test_publish_without_ami_raises(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    try:
        client = AmiClient("127.0.0.1", 9, USERNAME, SECRET)
        store = DiversionStore(db)
        await store.add(number="+6281234567890", action="warning", reason="pranks",
                        set_by="spv1", set_at=datetime.now(UTC),
                        until=datetime.now(UTC) + timedelta(hours=1))
        publisher = DiversionPublisher(client, store, country_code="62")
        with pytest.raises(AmiNotConnected):
            await asyncio.wait_for(publisher.publish(), 5)
    finally:
        await db.close()


async def test_failed_lift_retried_by_republish(rig: Rig) -> None:
    lifted = await rig.flag("+6281234567890", "low_priority")
    await rig.publisher.on_session()
    await rig.store.lift(lifted, by="spv1", at=T0 + timedelta(minutes=5))
    rig.clock.now = T0 + timedelta(minutes=5)
    rig.fake.replies["DBDel"] = lambda action: error(action, "Failed to delete entry")

    with pytest.raises(AmiActionFailed):
        await rig.publisher.publish()

    rig.fake.replies["DBDel"] = lambda action: success(action, "Key deleted successfully")
    before = len(rig.astdb_actions())
    republish = asyncio.create_task(rig.publisher.run(interval=0.05))
    try:
        async with asyncio.timeout(5):
            while len([a for a in rig.astdb_actions()[before:] if a[0] == "DBDel"]) < 3:
                await asyncio.sleep(0.02)
    finally:
        republish.cancel()
        await asyncio.gather(republish, return_exceptions=True)
    deleted = {a[1] for a in rig.astdb_actions()[before:] if a[0] == "DBDel"}
    assert deleted == {"sigap/divert/6281234567890", "sigap/divert/006281234567890",
                       "sigap/divert/081234567890"}


async def test_missing_key_counts_as_deleted(rig: Rig) -> None:
    lifted = await rig.flag("+6281234567890", "warning")
    await rig.publisher.on_session()
    await rig.store.lift(lifted, by="spv1", at=T0 + timedelta(minutes=5))
    rig.clock.now = T0 + timedelta(minutes=5)
    rig.fake.replies["DBDel"] = lambda action: error(action, "Database entry not found")

    assert await rig.publisher.publish() == 0
    before = len(rig.astdb_actions())
    assert await rig.publisher.publish() == 0
    # Nothing is left to delete.
    assert rig.astdb_actions()[before:] == []
