"""The agency directory store on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sigap_pbx.store import Database
from sigap_pbx.store.agencies import (
    KEEP,
    AccountSpec,
    AgencyConflict,
    AgencyKind,
    AgencyNotFound,
    AgencySpec,
    AgencyStore,
    LineKind,
    LineSpec,
)
from sigap_pbx.store.errors import InvalidFieldValue
from sigap_pbx.store.roster import AuditStore
from sigap_pbx.wire.errors import DialStringError

AT = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


def fire(**changes: object) -> AgencySpec:
    spec = AgencySpec(
        code="damkar",
        name="Dinas Pemadam Kebakaran",
        kind=AgencyKind.FIRE,
        dial_code="1",
        webhook_url="https://damkar.example.org/hook",
        webhook_secret="s3cret-s3cret-s3cret",
        lines=(
            LineSpec(1, LineKind.ENDPOINT, "agency-fire-1", "posko", "07:00-19:00"),
            LineSpec(2, LineKind.NUMBER, "00001111", "piket", "", True),
        ),
        accounts=(AccountSpec("damkar.piket", "Piket"),),
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def police(**changes: object) -> AgencySpec:
    spec = AgencySpec(
        code="polres",
        name="Polres",
        kind=AgencyKind.POLICE,
        dial_code="2",
        lines=(LineSpec(1, LineKind.ENDPOINT, "agency-police-1"),),
        accounts=(AccountSpec("polres.spkt"),),
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


async def test_save_then_read(db: Database) -> None:
    store = AgencyStore(db)

    outcomes = await store.save_agencies([fire(), police()], actor="spv:sari", at=AT)

    assert [(o.code, o.action) for o in outcomes] == [
        ("damkar", "created"),
        ("polres", "created"),
    ]
    agency = await store.get_agency(code="damkar")
    assert agency is not None
    assert agency.dial_code == "1"
    assert agency.lines == fire().lines
    assert agency.accounts == (AccountSpec("damkar.piket", "Piket"),)
    assert agency.webhook_secret == "s3cret-s3cret-s3cret"
    assert agency.created_at == AT
    by_dial = await store.get_agency(dial_code="2")
    assert by_dial is not None and by_dial.code == "polres"
    assert [a.code for a in await store.list_agencies()] == ["damkar", "polres"]


async def test_to_dict_hides_secret(db: Database) -> None:
    store = AgencyStore(db)
    await store.save_agencies([fire()], actor="spv", at=AT)
    agency = await store.get_agency(code="damkar")
    assert agency is not None

    body = agency.to_dict()

    assert "webhook_secret" not in body
    assert body["webhook_secret_set"] is True
    assert "s3cret" not in str(body)


async def test_keep_leaves_secret_and_accounts(db: Database) -> None:
    store = AgencyStore(db)
    await store.save_agencies([fire()], actor="spv", at=AT)

    outcomes = await store.save_agencies(
        [fire(name="Damkar Kota", webhook_secret=KEEP, accounts=KEEP)],
        actor="spv",
        at=LATER,
    )

    assert outcomes[0].action == "updated"
    assert outcomes[0].changed == ("name",)
    agency = await store.get_agency(code="damkar")
    assert agency is not None
    assert agency.webhook_secret == "s3cret-s3cret-s3cret"
    assert agency.accounts == (AccountSpec("damkar.piket", "Piket"),)
    assert agency.updated_at == LATER
    assert agency.created_at == AT


async def test_unchanged_writes_no_audit(db: Database) -> None:
    store = AgencyStore(db)
    await store.save_agencies([fire()], actor="spv", at=AT)

    outcomes = await store.save_agencies([fire()], actor="spv", at=LATER)

    assert outcomes[0].action == "unchanged"
    entries = await AuditStore(db).list_entries(subject="agency:damkar")
    assert [e.action for e in entries] == ["agency.create"]
    assert entries[0].actor == "spv"
    assert "s3cret" not in str(entries[0].detail)


async def test_swap_dial_codes_in_one_save(db: Database) -> None:
    store = AgencyStore(db)
    await store.save_agencies([fire(), police()], actor="spv", at=AT)

    await store.save_agencies(
        [fire(dial_code="2"), police(dial_code="1")], actor="spv", at=LATER
    )

    damkar = await store.get_agency(code="damkar")
    assert damkar is not None and damkar.dial_code == "2"


async def test_dial_code_conflict_saves_nothing(db: Database) -> None:
    store = AgencyStore(db)
    await store.save_agencies([fire()], actor="spv", at=AT)

    with pytest.raises(AgencyConflict) as caught:
        await store.save_agencies(
            [police(name="Polres Baru", dial_code="1")], actor="spv", at=LATER
        )

    assert "dial code '1' would belong to both 'damkar' and 'polres'" in str(
        caught.value
    )
    assert await store.get_agency(code="polres") is None


async def test_username_conflict(db: Database) -> None:
    store = AgencyStore(db)
    await store.save_agencies([fire()], actor="spv", at=AT)

    with pytest.raises(AgencyConflict, match="'damkar.piket' would belong to both"):
        await store.save_agencies(
            [police(accounts=(AccountSpec("damkar.piket"),))], actor="spv", at=LATER
        )


@pytest.mark.parametrize(
    "target", ["112&PJSIP/x", "0812\r\nAction: Originate", "1,2", "", "08 12"]
)
async def test_bad_number_rejected(db: Database, target: str) -> None:
    store = AgencyStore(db)
    spec = fire(lines=(LineSpec(1, LineKind.NUMBER, target),))

    with pytest.raises(DialStringError) as caught:
        await store.save_agencies([spec], actor="spv", at=AT)

    assert "lines[0].target" in str(caught.value)
    assert repr(target) in str(caught.value)
    assert await store.list_agencies() == []


async def test_bad_code_rejected(db: Database) -> None:
    with pytest.raises(InvalidFieldValue, match="starting with a letter"):
        await AgencyStore(db).save_agencies([fire(code="12")], actor="spv", at=AT)


async def test_deactivate(db: Database) -> None:
    store = AgencyStore(db)
    await store.save_agencies([fire(), police()], actor="spv", at=AT)

    view, changed = await store.set_active("damkar", False, actor="spv", at=LATER)
    again, changed_again = await store.set_active("damkar", False, actor="spv", at=LATER)

    assert changed is True
    assert changed_again is False
    assert view.active is False
    assert again.active is False
    assert [a.code for a in await store.list_agencies(active=True)] == ["polres"]
    actions = [e.action for e in await AuditStore(db).list_entries(subject="agency:damkar")]
    assert actions == ["agency.deactivate", "agency.create"]


async def test_deactivate_unknown(db: Database) -> None:
    with pytest.raises(AgencyNotFound, match="'nope' not found"):
        await AgencyStore(db).set_active("nope", False, actor="spv", at=AT)


async def test_lines_replaced_whole(db: Database) -> None:
    store = AgencyStore(db)
    await store.save_agencies([fire()], actor="spv", at=AT)
    new_lines = (LineSpec(5, LineKind.NUMBER, "+6200001234"),)

    outcome = (
        await store.save_agencies([fire(lines=new_lines)], actor="spv", at=LATER)
    )[0]

    assert outcome.changed == ("lines",)
    agency = await store.get_agency(code="damkar")
    assert agency is not None and agency.lines == new_lines
