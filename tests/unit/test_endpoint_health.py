"""EndpointHealth: pause members whose phone is unreachable, and unpause them after.

Events are AMI bytes as Asterisk 22 writes them, parsed with AmiParser. A fake AMI
records the QueuePause actions, and the alarm board keeps its alarms in memory.
"""

from __future__ import annotations

import asyncio

import pytest

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.ami.client import AmiNotConnected
from sigap_pbx.members.health import ALARM_KIND, UNREACHABLE_REASON, EndpointHealth
from sigap_pbx.wire.ami import AmiParser, Completion, Event, Response

OP1 = "PJSIP/op1"


class FakeAmi:
    """Records every action; raises `error` for each one when it is set."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.error: Exception | None = None

    async def action(
        self, name: str, fields: object = (), *, timeout: float | None = None
    ) -> Completion:
        self.actions.append((name, dict(fields)))  # type: ignore[call-overload]
        if self.error is not None:
            raise self.error
        response = Response(headers=(("Response", "Success"), ("ActionID", "1")))
        return Completion(action_id="1", response=response)

    def pauses(self) -> list[dict[str, str]]:
        return [fields for name, fields in self.actions if name == "QueuePause"]


def ami_event(name: str, *headers: tuple[str, str]) -> Event:
    lines = [("Event", name), ("Privilege", "agent,all"), *headers]
    data = b"".join(f"{key}: {value}\r\n".encode() for key, value in lines)
    (event,) = AmiParser().feed(data + b"\r\n")
    assert isinstance(event, Event)
    return event


def member_event(
    name: str,
    queue: str = "operators",
    *,
    status: str = "1",
    paused: bool = False,
    reason: str = "",
    interface: str = OP1,
    member_name: str = "Budi",
) -> Event:
    return ami_event(
        name,
        ("Queue", queue),
        ("MemberName", member_name),
        ("Interface", interface),
        ("StateInterface", interface),
        ("Membership", "dynamic"),
        ("Penalty", "0"),
        ("CallsTaken", "0"),
        ("InCall", "0"),
        ("Status", status),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", reason),
    )


def queue_member(queue: str, *, status: str = "1", paused: bool = False, reason: str = "") -> Event:
    """A QueueMember entry of a QueueStatus list, which names the interface Location."""
    return ami_event(
        "QueueMember",
        ("Queue", queue),
        ("Name", "Budi"),
        ("Location", OP1),
        ("StateInterface", OP1),
        ("Status", status),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", reason),
    )


def contact_status(status: str, uri: str = "sip:op1@127.0.0.1:5070") -> Event:
    return ami_event(
        "ContactStatus",
        ("URI", uri),
        ("ContactStatus", status),
        ("AOR", "op1"),
        ("EndpointName", "op1"),
        ("RoundtripUsec", "0"),
    )


@pytest.fixture
def ami() -> FakeAmi:
    return FakeAmi()


@pytest.fixture
def board() -> AlarmBoard:
    return AlarmBoard(None)


@pytest.fixture
def health(ami: FakeAmi, board: AlarmBoard) -> EndpointHealth:
    return EndpointHealth(ami, board, action_timeout=2)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_unavailable_pauses_in_all_queues(
    health: EndpointHealth, ami: FakeAmi, board: AlarmBoard
) -> None:
    health.on_event(member_event("QueueMemberAdded", "operators"))
    health.on_event(member_event("QueueMemberAdded", "operators-backup"))

    health.on_event(member_event("QueueMemberStatus", "operators", status="5"))
    health.on_event(member_event("QueueMemberStatus", "operators-backup", status="5"))
    await settle()

    assert ami.pauses() == [
        {"Interface": OP1, "Paused": "true", "Reason": UNREACHABLE_REASON}
    ]
    alarm = board.get_active(ALARM_KIND, "op1")
    assert alarm is not None
    assert "device state unavailable" in alarm.message
    assert "Budi" in alarm.message


async def test_invalid_state_pauses(health: EndpointHealth, ami: FakeAmi) -> None:
    health.on_event(member_event("QueueMemberAdded", status="4"))
    await settle()

    assert [fields["Paused"] for fields in ami.pauses()] == ["true"]


async def test_unknown_state_does_not_pause(
    health: EndpointHealth, ami: FakeAmi, board: AlarmBoard
) -> None:
    health.on_event(member_event("QueueMemberAdded", status="0"))
    await settle()

    assert ami.pauses() == []
    assert board.active() == []


async def test_back_unpauses_own_pause(
    health: EndpointHealth, ami: FakeAmi, board: AlarmBoard
) -> None:
    health.on_event(member_event("QueueMemberAdded"))
    health.on_event(member_event("QueueMemberStatus", status="5"))
    await settle()
    health.on_event(
        member_event("QueueMemberPause", status="5", paused=True, reason=UNREACHABLE_REASON)
    )

    health.on_event(
        member_event("QueueMemberStatus", status="1", paused=True, reason=UNREACHABLE_REASON)
    )
    await settle()

    assert ami.pauses()[-1] == {"Interface": OP1, "Paused": "false"}
    assert board.get_active(ALARM_KIND, "op1") is None


async def test_back_keeps_prayer_pause(
    health: EndpointHealth, ami: FakeAmi, board: AlarmBoard
) -> None:
    health.on_event(member_event("QueueMemberAdded"))
    health.on_event(member_event("QueueMemberStatus", status="5"))
    await settle()
    # The operator changes the pause reason while the phone is down.
    health.on_event(member_event("QueueMemberPause", status="5", paused=True, reason="prayer"))

    health.on_event(member_event("QueueMemberStatus", status="1", paused=True, reason="prayer"))
    await settle()

    assert [fields["Paused"] for fields in ami.pauses()] == ["true"]
    assert board.get_active(ALARM_KIND, "op1") is None


async def test_down_does_not_replace_other_pause(
    health: EndpointHealth, ami: FakeAmi, board: AlarmBoard
) -> None:
    health.on_event(member_event("QueueMemberAdded", paused=True, reason="break"))

    health.on_event(member_event("QueueMemberStatus", status="5", paused=True, reason="break"))
    await settle()

    assert ami.pauses() == []
    alarm = board.get_active(ALARM_KIND, "op1")
    assert alarm is not None
    assert alarm.detail["other_pause_reasons"] == ["break"]


async def test_down_pauses_only_unpaused_queues(health: EndpointHealth, ami: FakeAmi) -> None:
    health.on_event(member_event("QueueMemberAdded", "operators"))
    health.on_event(
        member_event("QueueMemberAdded", "operators-backup", paused=True, reason="wrapup")
    )

    health.on_event(member_event("QueueMemberStatus", "operators", status="5"))
    await settle()

    assert ami.pauses() == [
        {
            "Interface": OP1,
            "Paused": "true",
            "Reason": UNREACHABLE_REASON,
            "Queue": "operators",
        }
    ]


async def test_unpaused_while_down_is_paused_again(
    health: EndpointHealth, ami: FakeAmi
) -> None:
    health.on_event(member_event("QueueMemberAdded"))
    health.on_event(member_event("QueueMemberStatus", status="5"))
    await settle()
    health.on_event(
        member_event("QueueMemberPause", status="5", paused=True, reason=UNREACHABLE_REASON)
    )

    health.on_event(member_event("QueueMemberPause", status="5", paused=False))
    await settle()

    assert [fields["Paused"] for fields in ami.pauses()] == ["true", "true"]


async def test_contact_unreachable_pauses_before_device_state(
    health: EndpointHealth, ami: FakeAmi, board: AlarmBoard
) -> None:
    health.on_event(member_event("QueueMemberAdded"))
    health.on_event(contact_status("Reachable"))

    health.on_event(contact_status("Unreachable"))
    await settle()

    assert [fields["Paused"] for fields in ami.pauses()] == ["true"]
    alarm = board.get_active(ALARM_KIND, "op1")
    assert alarm is not None
    assert "SIP contact unreachable" in alarm.message


async def test_contact_removed_pauses(health: EndpointHealth, ami: FakeAmi) -> None:
    health.on_event(member_event("QueueMemberAdded"))

    health.on_event(contact_status("Removed"))
    await settle()

    assert [fields["Paused"] for fields in ami.pauses()] == ["true"]


async def test_new_contact_before_removal_keeps_member(
    health: EndpointHealth, ami: FakeAmi
) -> None:
    # With remove_existing = yes, a phone that registers from a new address gets
    # the new contact created before the old one is removed.
    health.on_event(member_event("QueueMemberAdded"))
    health.on_event(contact_status("Created", uri="sip:op1@127.0.0.1:5071"))

    health.on_event(contact_status("Removed", uri="sip:op1@127.0.0.1:5070"))
    await settle()

    assert ami.pauses() == []


async def test_contact_back_waits_for_device_state(
    health: EndpointHealth, ami: FakeAmi
) -> None:
    health.on_event(member_event("QueueMemberAdded"))
    health.on_event(contact_status("Unreachable"))
    health.on_event(member_event("QueueMemberStatus", status="5"))
    await settle()
    health.on_event(
        member_event("QueueMemberPause", status="5", paused=True, reason=UNREACHABLE_REASON)
    )

    health.on_event(contact_status("Reachable"))
    await settle()
    pauses_after_contact = len(ami.pauses())
    health.on_event(
        member_event("QueueMemberStatus", status="1", paused=True, reason=UNREACHABLE_REASON)
    )
    await settle()

    assert pauses_after_contact == 1
    assert ami.pauses()[-1]["Paused"] == "false"


async def test_failed_pause_is_retried_at_next_event(
    health: EndpointHealth, ami: FakeAmi
) -> None:
    ami.error = AmiNotConnected("AMI is not connected")
    health.on_event(member_event("QueueMemberAdded"))
    health.on_event(member_event("QueueMemberStatus", status="5"))
    await settle()
    ami.error = None

    health.on_event(member_event("QueueMemberStatus", status="5"))
    await settle()

    assert [fields["Paused"] for fields in ami.pauses()] == ["true", "true"]


async def test_removed_member_clears_alarm(
    health: EndpointHealth, board: AlarmBoard
) -> None:
    health.on_event(member_event("QueueMemberAdded", status="5"))
    await settle()

    health.on_event(ami_event("QueueMemberRemoved", ("Queue", "operators"), ("Interface", OP1)))

    assert board.get_active(ALARM_KIND, "op1") is None


async def test_resync_lifts_stale_unreachable_pause(
    health: EndpointHealth, ami: FakeAmi, board: AlarmBoard
) -> None:
    board.raise_alarm(ALARM_KIND, "op1", "restored from the store")

    health.reset_from_status([queue_member("operators", paused=True, reason=UNREACHABLE_REASON)])
    await settle()

    assert ami.pauses() == [{"Interface": OP1, "Paused": "false"}]
    assert board.active(ALARM_KIND) == []


async def test_resync_pauses_down_member(
    health: EndpointHealth, ami: FakeAmi, board: AlarmBoard
) -> None:
    health.reset_from_status([queue_member("operators", status="5")])
    await settle()

    assert [fields["Paused"] for fields in ami.pauses()] == ["true"]
    assert board.get_active(ALARM_KIND, "op1") is not None


async def test_resync_drops_stale_contacts(health: EndpointHealth, ami: FakeAmi) -> None:
    health.on_event(member_event("QueueMemberAdded"))
    health.on_event(contact_status("Unreachable"))
    await settle()

    health.reset_from_status([queue_member("operators", status="1", paused=True, reason=UNREACHABLE_REASON)])
    await settle()

    assert health.contacts == {}
    assert ami.pauses()[-1] == {"Interface": OP1, "Paused": "false"}


async def test_stop_lifts_unreachable_pauses(health: EndpointHealth, ami: FakeAmi) -> None:
    health.on_event(member_event("QueueMemberAdded", "operators"))
    health.on_event(member_event("QueueMemberAdded", "operators-backup", paused=True, reason="break"))
    health.on_event(member_event("QueueMemberStatus", "operators", status="5"))
    await settle()

    await health.stop()

    assert ami.pauses()[-1] == {"Interface": OP1, "Paused": "false", "Queue": "operators"}


async def test_non_pjsip_member_uses_interface_subject(
    health: EndpointHealth, board: AlarmBoard
) -> None:
    health.on_event(member_event("QueueMemberAdded", status="5", interface="Local/101@agents"))
    await settle()

    assert board.get_active(ALARM_KIND, "Local/101@agents") is not None


@pytest.mark.parametrize(
    ("member_name", "phone"), [("op1", "op1"), ("Budi", "op1 of Budi")]
)
async def test_alarm_names_member_once(
    health: EndpointHealth, board: AlarmBoard, member_name: str, phone: str
) -> None:
    health.on_event(member_event("QueueMemberAdded", status="5", member_name=member_name))
    await settle()

    alarm = board.get_active(ALARM_KIND, "op1")
    assert alarm is not None
    assert alarm.message.startswith(
        f"Phone {phone} is unreachable (device state unavailable); "
    )
