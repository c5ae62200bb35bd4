"""Call cards of the operator console, from queue events sent by a fake AMI server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from sigap_pbx.ami.client import AmiClient
from sigap_pbx.store.accounts import Role, UserView
from sigap_pbx.web.console import CALLER_TEXT_LIMIT, CallCards, caller_text
from sigap_pbx.web.feed import Feed, Subscription
from sigap_pbx.wire.ami import AmiParser, Event
from tests.unit.fake_ami import SECRET, USERNAME, FakeAmiServer, ami_bytes, wait_until

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
CALLER = "1733390000.11"


def operator(endpoint: str) -> UserView:
    return UserView(
        id=1, username=f"user-{endpoint}", display_name=endpoint, role=Role.OPERATOR,
        agency_code=None, endpoint=endpoint, password_hash="", disabled=False,
        created_at=T0, password_changed_at=T0,
    )


def queue_event(name: str, endpoint: str, *extra: tuple[str, str]) -> bytes:
    return ami_bytes(
        ("Event", name),
        ("Privilege", "agent,all"),
        ("Channel", "PJSIP/carrier-00000001"),
        ("Uniqueid", CALLER),
        ("CallerIDNum", "081234567890"),
        ("CallerIDName", "Warga"),
        ("DestChannel", f"PJSIP/{endpoint}-00000002"),
        ("DestUniqueid", f"1733390000.{endpoint}"),
        ("Queue", "operators"),
        ("Interface", f"PJSIP/{endpoint}"),
        ("MemberName", endpoint),
        *extra,
    )


class Stream:
    """An AMI client connected to a fake server, with call cards and a feed."""

    def __init__(self, fake: FakeAmiServer, client: AmiClient, cards: CallCards,
                 feed: Feed) -> None:
        self.fake = fake
        self.client = client
        self.cards = cards
        self.feed = feed

    async def send(self, data: bytes, *, published: int) -> None:
        self.fake.send(data)
        await wait_until(lambda: self.feed.published >= published)


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    async with FakeAmiServer() as fake:
        client = AmiClient("127.0.0.1", fake.port, USERNAME, SECRET, reconnect_max=0.05)
        feed = Feed()
        cards = CallCards(feed, clock=lambda: T0)
        client.add_event_listener(cards.on_event)
        client.start()
        await client.wait_connected(5)
        yield Stream(fake, client, cards, feed)
        await client.stop()
        # The server's side ends on its own before the fake closes.
        await fake.connections[-1].closed.wait()


def drain(subscription: Subscription) -> list[tuple[str, dict]]:
    events = []
    while not subscription.queue.empty():
        event = subscription.queue.get_nowait()
        assert event is not None
        events.append((event.kind, event.data))
    return events


async def test_ringing_then_connected_then_complete(stream: Stream) -> None:
    op1 = stream.feed.subscribe(operator("op1"))
    op2 = stream.feed.subscribe(operator("op2"))

    await stream.send(queue_event("AgentCalled", "op1"), published=1)
    ringing = stream.cards.card_for("op1")
    ringing_state = ringing.state if ringing else None
    await stream.send(queue_event("AgentConnect", "op1", ("HoldTime", "3")), published=2)
    connected = stream.cards.card_for("op1")
    connected_state = connected.state if connected else None
    await stream.send(queue_event("AgentComplete", "op1", ("TalkTime", "30")), published=3)

    events = drain(op1)
    assert [(kind, data["state"]) for kind, data in events] == [
        ("call.card", "ringing"), ("call.card", "connected"), ("call.card", "ended"),
    ]
    assert events[0][1]["uniqueid"] == CALLER
    assert events[0][1]["caller_number"] == "081234567890"
    assert events[0][1]["caller_name"] == "Warga"
    assert events[0][1]["endpoint"] == "op1"
    assert ringing_state == "ringing"
    assert connected_state == "connected"
    assert stream.cards.card_for("op1") is None
    assert drain(op2) == []


async def test_ring_no_answer_ends_card(stream: Stream) -> None:
    op1 = stream.feed.subscribe(operator("op1"))

    await stream.send(queue_event("AgentCalled", "op1"), published=1)
    await stream.send(queue_event("AgentRingNoAnswer", "op1", ("RingTime", "5")), published=2)

    assert [data["state"] for _, data in drain(op1)] == ["ringing", "ended"]
    assert stream.cards.card_for("op1") is None


async def test_caller_hangup_ends_every_ringing_card(stream: Stream) -> None:
    await stream.send(queue_event("AgentCalled", "op1"), published=1)
    await stream.send(queue_event("AgentCalled", "op2"), published=2)

    await stream.send(
        ami_bytes(("Event", "Hangup"), ("Channel", "PJSIP/carrier-00000001"),
                  ("Uniqueid", CALLER), ("Cause", "16")),
        published=4,
    )

    assert stream.cards.cards == {}


async def test_member_leg_hangup_ends_its_card(stream: Stream) -> None:
    await stream.send(queue_event("AgentCalled", "op1"), published=1)
    await stream.send(queue_event("AgentCalled", "op2"), published=2)

    # op1 answered elsewhere in a ring-all queue: op2's leg is hung up.
    await stream.send(
        ami_bytes(("Event", "Hangup"), ("Channel", "PJSIP/op2-00000002"),
                  ("Uniqueid", "1733390000.op2"), ("Cause", "26")),
        published=3,
    )

    assert set(stream.cards.cards) == {"op1"}


async def test_events_of_other_calls_leave_card(stream: Stream) -> None:
    await stream.send(queue_event("AgentCalled", "op1"), published=1)
    other = queue_event("AgentComplete", "op1").replace(CALLER.encode(), b"1733390000.99")

    stream.fake.send(other)
    await stream.send(queue_event("AgentCalled", "op2"), published=2)

    card = stream.cards.card_for("op1")
    assert card is not None
    assert card.uniqueid == CALLER


async def test_caller_text_is_cleaned_and_capped(stream: Stream) -> None:
    op1 = stream.feed.subscribe(operator("op1"))
    long_name = "<script>" + "x" * 200
    data = queue_event("AgentCalled", "op1").replace(b"Warga", long_name.encode())

    await stream.send(data, published=1)

    (_, card), = drain(op1)
    assert card["caller_name"] == long_name[:CALLER_TEXT_LIMIT]
    assert len(card["caller_name"]) == CALLER_TEXT_LIMIT


def test_caller_text_drops_control_characters() -> None:
    assert caller_text("Wa\x1brga\u2028") == "Warga"
    assert caller_text("<unknown>") == ""
    assert caller_text(None) == ""


async def test_non_pjsip_interface_is_ignored(stream: Stream) -> None:
    data = queue_event("AgentCalled", "op1").replace(b"Interface: PJSIP/op1",
                                                     b"Interface: Local/op1@x")
    stream.fake.send(data)
    await stream.send(queue_event("AgentCalled", "op2"), published=1)

    assert set(stream.cards.cards) == {"op2"}


# --- Cards rebuilt from CoreShowChannels after an AMI login ---------------------------


def show_channel(**headers: str) -> Event:
    data = ami_bytes(("Event", "CoreShowChannel"), *headers.items())
    (parsed,) = AmiParser().feed(data)
    assert isinstance(parsed, Event)
    return parsed


def channels_now() -> list[Event]:
    """op1 talks to one caller; op2 rings for another; spv9 and a trunk leg too."""
    return [
        show_channel(Channel="PJSIP/carrier-00000001", Uniqueid=CALLER, Linkedid=CALLER,
                     Context="sigap-emergency", Application="Queue",
                     ApplicationData="operators,,,,30", BridgeId="b1",
                     CallerIDNum="081234567890", CallerIDName='\\"Warga\\" Satu'),
        show_channel(Channel="PJSIP/op1-00000002", Uniqueid="1733390000.12",
                     Linkedid=CALLER, Context="sigap-operators", BridgeId="b1",
                     ChannelStateDesc="Up", Duration="00:01:05"),
        show_channel(Channel="PJSIP/carrier-00000003", Uniqueid="1733390100.13",
                     Linkedid="1733390100.13", Context="sigap-emergency",
                     Application="Queue", ApplicationData="operators,,,,30",
                     CallerIDNum="0899", CallerIDName="<unknown>"),
        show_channel(Channel="PJSIP/op2-00000004", Uniqueid="1733390100.14",
                     Linkedid="1733390100.13", ChannelStateDesc="Ringing",
                     Duration="00:00:03"),
        # Not a staff phone of this site, and a phone in a call of its own.
        show_channel(Channel="PJSIP/spv9-00000005", Uniqueid="1733390200.15",
                     Linkedid=CALLER, BridgeId="b1"),
        show_channel(Channel="PJSIP/op3-00000006", Uniqueid="1733390300.16",
                     Linkedid="1733390300.16", Context="sigap-operator-feature",
                     ChannelStateDesc="Up"),
    ]


def test_restore_rebuilds_connected_and_ringing_cards() -> None:
    feed = Feed()
    cards = CallCards(feed, clock=lambda: T0)

    cards.restore(channels_now(), {"op1", "op2", "op3"})

    op1 = cards.card_for("op1")
    assert op1 is not None
    assert (op1.state, op1.uniqueid, op1.queue) == ("connected", CALLER, "operators")
    assert (op1.caller_number, op1.caller_name) == ("081234567890", '"Warga" Satu')
    assert op1.since == T0 - timedelta(seconds=65)
    op2 = cards.card_for("op2")
    assert op2 is not None
    assert (op2.state, op2.uniqueid) == ("ringing", "1733390100.13")
    assert cards.card_for("op3") is None
    assert cards.card_for("spv9") is None
    assert feed.published == 2


def test_restore_ends_cards_of_calls_gone() -> None:
    feed = Feed()
    cards = CallCards(feed, clock=lambda: T0)
    cards.restore(channels_now(), {"op1", "op2"})

    # Both calls ended while AMI was away.
    cards.restore([], {"op1", "op2"})

    assert cards.card_for("op1") is None
    assert cards.card_for("op2") is None
    assert feed.published == 4


def test_restore_leaves_unchanged_cards_alone() -> None:
    feed = Feed()
    cards = CallCards(feed, clock=lambda: T0)
    cards.restore(channels_now(), {"op1", "op2"})

    cards.restore(channels_now(), {"op1", "op2"})

    assert feed.published == 2
