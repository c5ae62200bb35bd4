"""A fake Asterisk manager (AMI) server on a loopback port, for client tests.

It writes the bytes Asterisk 22 writes: the banner line, `Response:` blocks with the
action's `ActionID`, and events ending with an empty line. It replies to `Login`,
`Ping`, `QueueAdd` and `QueueStatus` as Asterisk does, rejects every other action sent
before login with `Permission denied`, and records every action it receives, in
order, so a test can check what a client sent and when.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sigap_pbx.wire.ami import AmiParser, Message

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
USERNAME = "sigap"
SECRET = "fake-ami-secret-0123"

# A reply function gets the action and returns the bytes to write, or None to leave
# the action unanswered.
ReplyFunction = Callable[[Message], bytes | None]


def ami_bytes(*headers: tuple[str, str]) -> bytes:
    """Encode one AMI message: `Key: Value` lines with CRLF and an empty line."""
    return b"".join(f"{key}: {value}\r\n".encode() for key, value in headers) + b"\r\n"


def success(action: Message, message: str, *extra: tuple[str, str]) -> bytes:
    return ami_bytes(
        ("Response", "Success"),
        ("ActionID", action.action_id or ""),
        ("Message", message),
        *extra,
    )


def error(action: Message, message: str) -> bytes:
    return ami_bytes(
        ("Response", "Error"),
        ("ActionID", action.action_id or ""),
        ("Message", message),
    )


def queue_status_reply(action: Message) -> bytes:
    """Return the list reply to QueueStatus: one queue with op1 as its member."""
    action_id = action.action_id or ""
    return b"".join(
        [
            success(action, "Queue status will follow", ("EventList", "start")),
            ami_bytes(
                ("Event", "QueueParams"),
                ("Queue", "operators"),
                ("Strategy", "ringall"),
                ("Calls", "0"),
                ("ActionID", action_id),
            ),
            ami_bytes(
                ("Event", "QueueMember"),
                ("Queue", "operators"),
                ("Name", "op1"),
                ("Location", "PJSIP/op1"),
                ("StateInterface", "PJSIP/op1"),
                ("Status", "1"),
                ("Paused", "0"),
                ("PausedReason", ""),
                ("ActionID", action_id),
            ),
            ami_bytes(
                ("Event", "QueueStatusComplete"),
                ("ActionID", action_id),
                ("EventList", "Complete"),
                ("ListItems", "2"),
            ),
        ]
    )


def default_replies() -> dict[str, ReplyFunction]:
    return {
        "Ping": lambda action: success(action, "", ("Ping", "Pong")),
        "QueueAdd": lambda action: success(action, "Added interface to queue"),
        "QueueStatus": queue_status_reply,
    }


@dataclass
class ReceivedAction:
    """One action as the fake received it.

    `connection` is the index of the TCP connection (0 for the first). `logged_in`
    is True when that connection's login had been accepted before the action
    arrived.
    """

    connection: int
    name: str
    message: Message
    logged_in: bool


@dataclass
class FakeConnection:
    index: int
    writer: asyncio.StreamWriter
    logged_in: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeAmiServer:
    """AMI peer for tests; use `async with FakeAmiServer() as fake`.

    - `rejected_logins`: how many logins to reject (then close, as Asterisk does).
    - `login_delay`: seconds to wait before accepting a login; the fake keeps
      reading (and recording) meanwhile.
    - `replies`: reply function per action name; a missing name gets
      `Response: Error` with "Invalid/unknown command", as from Asterisk.
    """

    def __init__(self, *, rejected_logins: int = 0, login_delay: float = 0.0) -> None:
        self.rejected_logins = rejected_logins
        self.login_delay = login_delay
        self.replies = default_replies()
        self.received: list[ReceivedAction] = []
        self.connections: list[FakeConnection] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FakeAmiServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # Inspection ----------------------------------------------------------------

    def names(self, connection: int | None = None) -> list[str]:
        """Return the names of the actions received, on one connection or all."""
        return [
            action.name
            for action in self.received
            if connection is None or action.connection == connection
        ]

    def actions(self, name: str) -> list[ReceivedAction]:
        return [action for action in self.received if action.name == name]

    async def wait_for_action(
        self, name: str, count: int = 1, timeout: float = 5.0
    ) -> ReceivedAction:
        """Wait until `count` actions named `name` arrived; return the last one."""
        await wait_until(lambda: len(self.actions(name)) >= count, timeout)
        return self.actions(name)[count - 1]

    # Control -----------------------------------------------------------------------

    def send(self, data: bytes, connection: int = -1) -> None:
        """Write raw bytes (such as an event) on a connection, the latest by default."""
        self.connections[connection].writer.write(data)

    def drop(self) -> None:
        """Close every open connection, as an Asterisk restart does."""
        for connection in self.connections:
            if not connection.writer.is_closing():
                connection.writer.close()

    # Server side -------------------------------------------------------------------

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = FakeConnection(len(self.connections), writer)
        self.connections.append(connection)
        parser = AmiParser()
        writer.write(BANNER)
        try:
            while data := await reader.read(65536):
                for message in parser.feed(data):
                    if isinstance(message, Message):
                        self._on_action(connection, message)
        except ConnectionError:
            pass
        finally:
            connection.closed.set()
            writer.close()
            self._tasks.discard(task)

    def _on_action(self, connection: FakeConnection, action: Message) -> None:
        name = action.get("Action") or ""
        self.received.append(
            ReceivedAction(connection.index, name, action, connection.logged_in)
        )
        if name == "Login":
            self._start_task(self._login(connection, action))
            return
        if not connection.logged_in:
            connection.writer.write(error(action, "Permission denied"))
            return
        reply = self.replies.get(name)
        data = reply(action) if reply else error(action, "Invalid/unknown command")
        if data is not None:
            connection.writer.write(data)

    async def _login(self, connection: FakeConnection, action: Message) -> None:
        if self.login_delay:
            await asyncio.sleep(self.login_delay)
        if connection.writer.is_closing():
            return
        accepted = action.get("Username") == USERNAME and action.get("Secret") == SECRET
        if self.rejected_logins > 0:
            self.rejected_logins -= 1
            accepted = False
        if not accepted:
            # Asterisk replies to a failed login and then closes the session.
            connection.writer.write(error(action, "Authentication failed"))
            connection.writer.close()
            return
        connection.logged_in = True
        connection.writer.write(success(action, "Authentication accepted"))
        connection.writer.write(
            ami_bytes(
                ("Event", "FullyBooted"),
                ("Privilege", "system,all"),
                ("Status", "Fully Booted"),
            )
        )

    def _start_task(self, coroutine: object) -> None:
        task = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def wait_until(
    condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005
) -> None:
    """Poll `condition` until it is true; raise TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(interval)


def names_before_login(actions: Iterable[ReceivedAction]) -> list[str]:
    """Return the names of actions that arrived before their connection's login."""
    return [action.name for action in actions if not action.logged_in]
