"""asyncio AMI client: a thin transport over the sans-IO parser in sigap_pbx.wire.ami.

The client logs in, keeps the connection alive with Ping, and reconnects with
exponential backoff and jitter. It calls its listeners when a session starts and ends,
so they can read Asterisk's state again, because a reconnect means events were missed. Before login
succeeds nothing but `Login` is sent. Actions that fail because the connection closed
are never replayed: the caller decides, because `Originate` and friends are not
idempotent.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import structlog

from sigap_pbx.wire.ami import (
    ActionTracker,
    AmiParser,
    Banner,
    Completion,
    Event,
    Message,
    format_action,
)
from sigap_pbx.wire.errors import AmiProtocolError

log = structlog.get_logger(__name__)

EventListener = Callable[[Event], None]
SessionListener = Callable[[], Awaitable[None]]
Fields = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]

PING_INTERVAL = 20.0
CONNECT_TIMEOUT = 5.0
# Seconds before the first reconnect attempt; each failure doubles it, up to
# `reconnect_max`.
FIRST_BACKOFF = 0.5


class AmiError(Exception):
    """Root of the AMI client's errors."""


class AmiNotConnected(AmiError):
    """Raised when an action is sent while no AMI session is logged in."""


class AmiActionTimeout(AmiError):
    """Raised when an action's reply did not arrive within its timeout."""


class AmiActionFailed(AmiError):
    """Raised when Asterisk replied to an action with `Response: Error`."""

    def __init__(self, action: str, completion: Completion) -> None:
        self.completion = completion
        message = completion.response.message or "no message"
        super().__init__(f"AMI action {action} failed: {message}")


class AmiLoginFailed(AmiError):
    """Raised inside the session loop when Asterisk rejects the credentials."""


class AmiClient:
    """One long-lived AMI session with automatic reconnection."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        action_timeout: float = 5.0,
        reconnect_max: float = 10.0,
        ping_interval: float = PING_INTERVAL,
    ) -> None:
        self.host = host
        self.port = port
        self._username = username
        self._secret = secret
        self.action_timeout = action_timeout
        self.reconnect_max = reconnect_max
        self.ping_interval = ping_interval
        self._event_listeners: list[EventListener] = []
        self._connect_listeners: list[SessionListener] = []
        self._disconnect_listeners: list[Callable[[], None]] = []
        self._ids = itertools.count(1)
        self._prefix = f"sigap-{random.getrandbits(32):08x}-"
        self._tracker = ActionTracker()
        self._futures: dict[str, asyncio.Future[Completion]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._logged_in = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.sessions = 0
        self.asterisk_version: str | None = None

    # Listeners -------------------------------------------------------------------

    def add_event_listener(self, listener: EventListener) -> None:
        """Call `listener(event)` for every event; it must not block."""
        self._event_listeners.append(listener)

    def add_connect_listener(self, listener: SessionListener) -> None:
        """Await `listener()` after every successful login, in order of adding."""
        self._connect_listeners.append(listener)

    def add_disconnect_listener(self, listener: Callable[[], None]) -> None:
        self._disconnect_listeners.append(listener)

    # Lifecycle ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._logged_in.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._logged_in.wait(), timeout)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ami-session")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # Actions -----------------------------------------------------------------------

    async def action(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> Completion:
        """Send one action and return its completion; raise on error or timeout.

        A `Response: Error` raises `AmiActionFailed`; use `send_action` to get the
        completion whatever the response.
        """
        completion = await self.send_action(name, fields, timeout=timeout)
        if not completion.response.ok:
            raise AmiActionFailed(name, completion)
        return completion

    async def send_action(
        self, name: str, fields: Fields = (), *, timeout: float | None = None
    ) -> Completion:
        if not self._logged_in.is_set() or self._writer is None:
            raise AmiNotConnected(
                f"AMI action {name} not sent: no AMI session with "
                f"{self.host}:{self.port} is logged in"
            )
        return await self._send(self._writer, name, fields, timeout)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        name: str,
        fields: Fields,
        timeout: float | None,
    ) -> Completion:
        timeout = self.action_timeout if timeout is None else timeout
        action_id = f"{self._prefix}{next(self._ids)}"
        payload = format_action(name, action_id, fields)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._tracker.register(action_id, now=time.monotonic(), timeout=timeout)
        self._futures[action_id] = future
        try:
            writer.write(payload)
            await writer.drain()
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise AmiActionTimeout(
                f"AMI action {name} got no reply within {timeout:g} s"
            ) from None
        except ConnectionError as exc:
            raise AmiNotConnected(f"AMI action {name} not sent: {exc}") from None
        finally:
            self._futures.pop(action_id, None)
            # Forget actions whose deadline passed; a reply arriving later is then
            # dispatched as an ordinary event and completes nothing.
            self._tracker.expire(time.monotonic())

    # Session loop --------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = min(FIRST_BACKOFF, self.reconnect_max)
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._session()
            except AmiLoginFailed as exc:
                log.error(
                    "ami_login_failed",
                    host=self.host,
                    port=self.port,
                    username=self._username,
                    error=str(exc),
                    fix="check [ami] username and secret against manager_site.conf; "
                    "run 'sigap render-config' and reload Asterisk",
                )
                backoff = self.reconnect_max
            except (OSError, TimeoutError, AmiProtocolError, AmiError) as exc:
                log.warning(
                    "ami_connection_lost",
                    host=self.host,
                    port=self.port,
                    error=f"{type(exc).__name__}: {exc}",
                )
            if time.monotonic() - started > 30:
                backoff = min(FIRST_BACKOFF, self.reconnect_max)
            delay = backoff * random.uniform(0.8, 1.2)
            log.info("ami_reconnect_scheduled", delay=round(delay, 2))
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.reconnect_max)

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
        )
        parser = AmiParser()
        reader_task = asyncio.create_task(self._read(reader, parser), name="ami-reader")
        ping_task: asyncio.Task[None] | None = None
        try:
            login = await self._send(
                writer,
                "Login",
                {"Username": self._username, "Secret": self._secret, "Events": "on"},
                self.action_timeout,
            )
            if not login.response.ok:
                raise AmiLoginFailed(login.response.message or "rejected")
            self._writer = writer
            self._logged_in.set()
            self.sessions += 1
            log.info("ami_logged_in", host=self.host, port=self.port, session=self.sessions)
            for listener in self._connect_listeners:
                await self._call_connect_listener(listener)
            ping_task = asyncio.create_task(self._keepalive(), name="ami-ping")
            await reader_task
        finally:
            was_logged_in = self._logged_in.is_set()
            self._logged_in.clear()
            self._writer = None
            for task in (ping_task, reader_task):
                if task is None:
                    continue
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    # Retrieve the reader's error (the one that closed the
                    # connection) so that asyncio does not log it as never retrieved.
                    task.exception()
            self._fail_pending()
            writer.close()
            if was_logged_in:
                log.warning("ami_session_closed", host=self.host, port=self.port)
                for listener in self._disconnect_listeners:
                    listener()

    async def _call_connect_listener(self, listener: SessionListener) -> None:
        """Run one session listener; if it fails, end the session so it runs again.

        Listeners read Asterisk's state after a login. A view built from a failed
        read cannot be trusted, so the client reconnects (with backoff) and the
        listeners run again on the new session.
        """
        try:
            await listener()
        except asyncio.CancelledError:
            raise
        except AmiActionFailed as exc:
            # Common right after Asterisk starts, before app_queue has loaded
            # ("Invalid/unknown command: QueueStatus"): no traceback, just retry.
            log.warning("ami_connect_listener_failed", listener=repr(listener), error=str(exc))
            raise AmiError(f"session set-up failed: {exc}") from exc
        except Exception as exc:
            log.exception("ami_connect_listener_failed", listener=repr(listener))
            raise AmiError(f"session set-up failed: {type(exc).__name__}: {exc}") from exc

    async def _read(self, reader: asyncio.StreamReader, parser: AmiParser) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("Asterisk closed the AMI connection")
                for message in parser.feed(data):
                    self._route(message)
        finally:
            # No reply can arrive any more, so fail the waiting actions now, even
            # those sent by a connect listener before `_session` gets the error.
            self._fail_pending()

    def _route(self, message: Banner | Message) -> None:
        if isinstance(message, Banner):
            self.asterisk_version = message.text
            return
        if message.extra_lines:
            log.warning("ami_line_without_colon", lines=list(message.extra_lines)[:5])
        completions, passthrough = self._tracker.on_message(message)
        for completion in completions:
            future = self._futures.get(completion.action_id)
            if future is not None and not future.done():
                future.set_result(completion)
        if isinstance(passthrough, Event):
            for listener in self._event_listeners:
                try:
                    listener(passthrough)
                except Exception:
                    log.exception(
                        "ami_event_listener_failed", event_name=passthrough.name
                    )

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await self.send_action("Ping")
            except AmiActionTimeout:
                log.warning("ami_ping_timeout", host=self.host, port=self.port)
                if self._writer is not None:
                    self._writer.close()
                return
            except AmiNotConnected:
                return

    def _fail_pending(self) -> None:
        self._tracker.fail_all()
        for action_id, future in list(self._futures.items()):
            if not future.done():
                future.set_exception(
                    AmiNotConnected(
                        f"AMI connection closed before the reply to action {action_id}"
                    )
                )
                # Mark the exception retrieved: the waiter may have gone already.
                future.exception()
