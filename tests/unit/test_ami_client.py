"""AmiClient against a fake AMI server on a loopback port: login, actions, reconnect."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from sigap_pbx.ami.client import (
    AmiActionFailed,
    AmiActionTimeout,
    AmiClient,
    AmiError,
    AmiNotConnected,
)
from sigap_pbx.wire.ami import Event
from tests.unit.fake_ami import (
    SECRET,
    USERNAME,
    FakeAmiServer,
    ami_bytes,
    error,
    names_before_login,
    queue_status_reply,
    success,
    wait_until,
)

ClientFactory = Callable[..., AmiClient]


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Collect what reaches the loop's exception handler, such as a task exception
    that was never retrieved, and fail the test if anything did."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    gc.collect()
    loop.set_exception_handler(previous)
    assert not errors, f"unhandled errors in the event loop: {errors}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmiServer]:
    async with FakeAmiServer() as server:
        yield server


@pytest.fixture
async def make_client(
    fake: FakeAmiServer, loop_errors: list[dict[str, Any]]
) -> AsyncIterator[ClientFactory]:
    clients: list[AmiClient] = []

    def make(**options: Any) -> AmiClient:
        options.setdefault("action_timeout", 2.0)
        options.setdefault("reconnect_max", 0.05)
        options.setdefault("ping_interval", 30.0)
        client = AmiClient("127.0.0.1", fake.port, USERNAME, SECRET, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.stop()


async def connected(make_client: ClientFactory, **options: Any) -> AmiClient:
    client = make_client(**options)
    client.start()
    await client.wait_connected(5)
    return client


def event_bytes(name: str, *headers: tuple[str, str]) -> bytes:
    return ami_bytes(("Event", name), ("Privilege", "call,all"), *headers)


# --- Login and events ------------------------------------------------------------


async def test_login_then_events_reach_listeners(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    client = make_client()
    events: list[Event] = []
    client.add_event_listener(events.append)
    client.start()
    await client.wait_connected(5)

    fake.send(
        event_bytes(
            "Newchannel",
            ("Channel", "PJSIP/carrier-00000000"),
            ("Uniqueid", "1796409216.0"),
        )
    )
    await wait_until(lambda: any(event.name == "Newchannel" for event in events))

    login = fake.received[0]
    assert login.name == "Login"
    assert login.message.get("Username") == USERNAME
    assert login.message.get("Secret") == SECRET
    assert login.message.get("Events") == "on"
    assert [event.name for event in events] == ["FullyBooted", "Newchannel"]
    assert events[1].get("Channel") == "PJSIP/carrier-00000000"
    assert client.asterisk_version == "Asterisk Call Manager/9.0.0"
    assert client.sessions == 1


async def test_action_before_start_raises(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    client = make_client()

    with pytest.raises(AmiNotConnected, match=f"127.0.0.1:{fake.port}"):
        await client.action("Ping")

    assert fake.received == []


async def test_only_login_before_login_succeeds(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    fake.login_delay = 0.2
    client = make_client(ping_interval=0.01)
    rejected_sends = 0
    stop = asyncio.Event()

    async def keep_sending() -> None:
        # Like a heartbeat loop that does not check `connected` first.
        nonlocal rejected_sends
        while not stop.is_set():
            try:
                await client.send_action("Ping", timeout=1)
            except AmiNotConnected:
                rejected_sends += 1
            await asyncio.sleep(0.005)

    sender = asyncio.create_task(keep_sending())
    client.start()
    await client.wait_connected(5)
    fake.drop()
    await wait_until(lambda: client.sessions == 2)
    await wait_until(lambda: "Ping" in fake.names(connection=1))
    stop.set()
    await sender

    assert names_before_login(fake.received) == ["Login", "Login"]
    assert [action.connection for action in fake.actions("Login")] == [0, 1]
    assert rejected_sends > 0


async def test_failed_login_backs_off_and_retries(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    fake.rejected_logins = 1
    client = make_client(reconnect_max=0.05)

    with capture_logs() as logs:
        client.start()
        await client.wait_connected(5)

    assert [action.connection for action in fake.actions("Login")] == [0, 1]
    assert client.sessions == 1
    failures = [entry for entry in logs if entry["event"] == "ami_login_failed"]
    assert len(failures) == 1
    assert failures[0]["error"] == "Authentication failed"
    delays = [e["delay"] for e in logs if e["event"] == "ami_reconnect_scheduled"]
    assert len(delays) == 1
    # After a rejected login the client waits the maximum backoff, with jitter.
    assert 0.04 <= delays[0] <= 0.06
    assert SECRET not in repr(logs)


# --- Reconnects ---------------------------------------------------------------


async def test_reconnect_after_drop(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    client = make_client(ping_interval=0.02, reconnect_max=0.05)
    sessions_at_connect: list[int] = []
    sessions_at_disconnect: list[int] = []

    async def on_connect() -> None:
        sessions_at_connect.append(client.sessions)

    client.add_connect_listener(on_connect)
    client.add_disconnect_listener(
        lambda: sessions_at_disconnect.append(client.sessions)
    )
    client.start()
    await client.wait_connected(5)
    await wait_until(lambda: "Ping" in fake.names(connection=0))

    with capture_logs() as logs:
        fake.drop()
        await wait_until(lambda: client.sessions == 2)
        await wait_until(lambda: "Ping" in fake.names(connection=1))

    assert sessions_at_connect == [1, 2]
    assert sessions_at_disconnect == [1]
    assert fake.names(connection=1)[0] == "Login"
    ping_tasks = [
        task
        for task in asyncio.all_tasks()
        if task.get_name() == "ami-ping" and not task.done()
    ]
    assert len(ping_tasks) == 1
    events = [entry["event"] for entry in logs]
    assert "ami_session_closed" in events
    assert "ami_connection_lost" in events
    delays = [e["delay"] for e in logs if e["event"] == "ami_reconnect_scheduled"]
    assert len(delays) == 1
    # reconnect_max caps every delay, the first one included (20 % jitter).
    assert delays[0] <= 0.05 * 1.2


async def test_pending_action_fails_on_close(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    fake.replies["Originate"] = lambda action: None
    client = await connected(make_client, action_timeout=5.0)
    originate = asyncio.create_task(
        client.action(
            "Originate",
            {"Channel": "PJSIP/op1", "Application": "Wait", "Data": "1"},
        )
    )
    await fake.wait_for_action("Originate")

    fake.drop()

    with pytest.raises(AmiNotConnected, match="closed"):
        await originate
    await wait_until(lambda: client.sessions == 2)
    await client.action("Ping")
    assert len(fake.actions("Originate")) == 1
    assert fake.names(connection=1) == ["Login", "Ping"]


async def test_connect_listener_action_fails_on_drop(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    fake.replies["QueueStatus"] = lambda action: None
    client = make_client(action_timeout=5.0)
    failures: list[type[AmiError]] = []

    async def read_queue_state() -> None:
        if client.sessions > 1:
            return
        try:
            await client.action("QueueStatus")
        except AmiError as exc:
            failures.append(type(exc))

    client.add_connect_listener(read_queue_state)
    client.start()
    await fake.wait_for_action("QueueStatus")

    fake.drop()
    await wait_until(lambda: client.sessions == 2, timeout=10)

    assert failures == [AmiNotConnected]


# --- Actions ------------------------------------------------------------------


async def test_queueadd_single_reply_completes(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    client = await connected(make_client, action_timeout=2.0)

    completion = await client.action(
        "QueueAdd", {"Queue": "operators", "Interface": "PJSIP/op1"}
    )

    assert completion.response.message == "Added interface to queue"
    assert completion.events == []
    assert completion.list_complete is None
    queue_add = fake.actions("QueueAdd")[0].message
    assert queue_add.get("Interface") == "PJSIP/op1"


async def test_message_text_never_starts_list(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    fake.replies["QueueAdd"] = lambda action: success(action, "Events will follow")
    client = await connected(make_client, action_timeout=2.0)

    completion = await client.action("QueueAdd", {"Queue": "operators"})

    assert completion.response.message == "Events will follow"
    assert completion.events == []


async def test_queuestatus_list_returns_events(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    client = await connected(make_client)
    dispatched: list[Event] = []
    client.add_event_listener(dispatched.append)

    completion = await client.action("QueueStatus")

    assert [event.name for event in completion.events] == ["QueueParams", "QueueMember"]
    assert completion.events[1].get("Name") == "op1"
    assert completion.list_complete is not None
    assert completion.list_complete.get("ListItems") == "2"
    assert dispatched == []


async def test_one_action_id_per_action(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    client = await connected(make_client)

    await client.action("Ping", {"actionid": "caller-chosen-1"})

    ping = fake.actions("Ping")[0].message
    assert len(ping.getall("ActionID")) == 1
    assert ping.action_id != "caller-chosen-1"


async def test_error_response_raises_action_failed(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    fake.replies["QueueAdd"] = lambda action: error(
        action, "Unable to add interface: Already there"
    )
    client = await connected(make_client)
    fields = {"Queue": "operators", "Interface": "PJSIP/op1"}

    with pytest.raises(
        AmiActionFailed, match="QueueAdd failed: .*Already there"
    ) as caught:
        await client.action("QueueAdd", fields)
    completion = await client.send_action("QueueAdd", fields)

    assert caught.value.completion.response.status == "Error"
    assert completion.response.ok is False
    assert completion.response.message == "Unable to add interface: Already there"


async def test_unanswered_action_times_out(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    fake.replies["QueueStatus"] = lambda action: None
    client = await connected(make_client, action_timeout=0.1)
    dispatched: list[Event] = []
    client.add_event_listener(dispatched.append)

    with pytest.raises(AmiActionTimeout, match="QueueStatus got no reply within 0.1 s"):
        await client.action("QueueStatus")
    late = fake.actions("QueueStatus")[0].message
    fake.send(queue_status_reply(late))
    # The fake writes the Ping reply after the late list, so once Ping completes the
    # client has routed the whole list.
    ping = await client.action("Ping")

    assert ping.response.get("Ping") == "Pong"
    assert [
        event.name for event in dispatched if event.action_id == late.action_id
    ] == [
        "QueueParams",
        "QueueMember",
        "QueueStatusComplete",
    ]


async def test_unknown_action_id_completes_nothing(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    fake.replies["QueueStatus"] = lambda action: success(
        action, "Queue status will follow", ("EventList", "start")
    )
    client = await connected(make_client)
    dispatched: list[Event] = []
    client.add_event_listener(dispatched.append)
    status = asyncio.create_task(client.action("QueueStatus"))
    pending = (await fake.wait_for_action("QueueStatus")).message

    fake.send(
        ami_bytes(("Response", "Success"), ("ActionID", "other-7"), ("Message", "x"))
    )
    fake.send(
        ami_bytes(
            ("Event", "QueueMember"),
            ("Queue", "operators"),
            ("Name", "op9"),
            ("ActionID", "other-7"),
        )
    )
    fake.send(
        ami_bytes(
            ("Event", "QueueStatusComplete"),
            ("ActionID", "other-7"),
            ("EventList", "Complete"),
            ("ListItems", "1"),
        )
    )
    await client.action("Ping")

    assert not status.done()
    assert [
        event.get("Name") for event in dispatched if event.name == "QueueMember"
    ] == ["op9"]

    fake.send(
        ami_bytes(
            ("Event", "QueueStatusComplete"),
            ("ActionID", pending.action_id or ""),
            ("EventList", "Complete"),
            ("ListItems", "0"),
        )
    )
    completion = await status

    assert completion.events == []
    assert completion.list_complete is not None
    assert completion.list_complete.get("ListItems") == "0"


async def test_failing_listener_keeps_reader(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    client = await connected(make_client)
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    client.add_event_listener(broken)
    client.add_event_listener(lambda event: seen.append(event.name))

    with capture_logs() as logs:
        fake.send(event_bytes("Newchannel", ("Uniqueid", "1796409216.0")))
        fake.send(event_bytes("Hangup", ("Uniqueid", "1796409216.0")))
        await wait_until(lambda: len(seen) == 2)
    ping = await client.action("Ping")

    assert seen == ["Newchannel", "Hangup"]
    failures = [
        entry for entry in logs if entry["event"] == "ami_event_listener_failed"
    ]
    assert [entry["event_name"] for entry in failures] == ["Newchannel", "Hangup"]
    assert client.connected
    assert ping.response.ok


async def test_line_without_colon_logged_not_fatal(
    fake: FakeAmiServer, make_client: ClientFactory
) -> None:
    client = await connected(make_client)
    events: list[Event] = []
    client.add_event_listener(events.append)

    with capture_logs() as logs:
        fake.send(
            b"Event: ReceiveSMS\r\nPrivilege: call,all\r\n--END SMS EVENT--\r\n\r\n"
        )
        fake.send(event_bytes("Hangup", ("Uniqueid", "1.1")))
        await wait_until(lambda: any(event.name == "Hangup" for event in events))

    assert [event.name for event in events] == ["ReceiveSMS", "Hangup"]
    assert events[0].extra_lines == ("--END SMS EVENT--",)
    warnings = [entry for entry in logs if entry["event"] == "ami_line_without_colon"]
    assert len(warnings) == 1
    assert warnings[0]["lines"] == ["--END SMS EVENT--"]
    assert client.connected


async def test_reconnect_delay_grows_to_maximum(make_client: ClientFactory) -> None:
    # Nothing listens on this port once the probe socket is closed: every connect
    # fails, and each retry waits about twice as long, up to reconnect_max.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    client = AmiClient("127.0.0.1", port, USERNAME, SECRET, reconnect_max=0.4)

    with capture_logs() as logs:
        client.start()
        await wait_until(
            lambda: sum(e["event"] == "ami_reconnect_scheduled" for e in logs) >= 4,
            timeout=10,
        )
        await client.stop()

    delays = [e["delay"] for e in logs if e["event"] == "ami_reconnect_scheduled"][:4]
    # FIRST_BACKOFF (0.5 s) is above reconnect_max here, so every delay is the
    # maximum, with up to 20% jitter either way.
    assert all(0.32 <= delay <= 0.48 for delay in delays), delays
    assert client.connected is False


async def test_reconnect_delay_doubles(make_client: ClientFactory) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    client = AmiClient("127.0.0.1", port, USERNAME, SECRET, reconnect_max=2.0)

    with capture_logs() as logs:
        client.start()
        await wait_until(
            lambda: sum(e["event"] == "ami_reconnect_scheduled" for e in logs) >= 3,
            timeout=10,
        )
        await client.stop()

    delays = [e["delay"] for e in logs if e["event"] == "ami_reconnect_scheduled"][:3]
    # 0.5, 1.0, 2.0 s, each with up to 20% jitter.
    assert 0.4 <= delays[0] <= 0.6, delays
    assert 0.8 <= delays[1] <= 1.2, delays
    assert 1.6 <= delays[2] <= 2.4, delays
