"""FastAGI server: a thin asyncio transport over the sans-IO parser in sigap_pbx.wire.agi.

It serves only steps where a controller failure is harmless because the dialplan has
a fallback (operators' feature codes today). Each connection is bounded: the
environment block must arrive within `environment_timeout`, every command reply within
`command_timeout`, and a whole script within `script_timeout`. A port probe, garbage or
a half-sent environment costs one short-lived task and one log line, rate-limited so
that a flood of them cannot flood the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from sigap_pbx.wire.agi import (
    AgiEnvironmentParser,
    AgiHangupNotice,
    AgiReply,
    AgiReplyParser,
    check_reply,
    format_command,
)
from sigap_pbx.wire.errors import AgiEnvironmentError, AgiError

log = structlog.get_logger(__name__)

AgiHandler = Callable[["AgiSession"], Awaitable[None]]


class AgiSession:
    """One FastAGI connection after its environment block arrived."""

    def __init__(
        self,
        env: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: AgiReplyParser,
        command_timeout: float,
    ) -> None:
        self.env = env
        self._reader = reader
        self._writer = writer
        self._parser = parser
        self._pending: list[AgiReply] = []
        self.command_timeout = command_timeout
        self.hung_up = False

    @property
    def script(self) -> str:
        return self.env.get("agi_network_script", "")

    def arg(self, index: int) -> str:
        return self.env.get(f"agi_arg_{index}", "")

    async def command(self, *words: str, timeout: float | None = None) -> AgiReply:
        """Send one command and return its reply; raise AgiError for 510/511/520.

        `timeout` replaces the session's command timeout for a command that lasts,
        such as playing a message or waiting for a digit.
        """
        self._writer.write(format_command(*words))
        await self._writer.drain()
        limit = self.command_timeout if timeout is None else timeout
        try:
            reply = await asyncio.wait_for(self._next_reply(), limit)
        except TimeoutError:
            raise AgiError(
                f"AGI command {' '.join(words[:2])} got no reply within {limit:g} s"
            ) from None
        return check_reply(reply)

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET", "VARIABLE", name, value)

    async def _next_reply(self) -> AgiReply:
        while not self._pending:
            data = await self._reader.read(4096)
            if not data:
                raise ConnectionResetError("Asterisk closed the FastAGI connection")
            self._accept(self._parser.feed(data))
        return self._pending.pop(0)

    def _accept(self, items: list[AgiReply | AgiHangupNotice]) -> None:
        for item in items:
            if isinstance(item, AgiHangupNotice):
                # The channel hung up; the reply to the command in flight still
                # follows, so keep reading.
                self.hung_up = True
            else:
                self._pending.append(item)


class _RateLimitedLog:
    """Log a kind of connection problem at most once per `interval` seconds."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, **fields: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.interval) < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        log.warning(kind, suppressed_since_last=suppressed, **fields)


class FastAgiServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        environment_timeout: float = 2.0,
        command_timeout: float = 2.0,
        script_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.environment_timeout = environment_timeout
        self.command_timeout = command_timeout
        self.script_timeout = script_timeout
        self._routes: dict[str, tuple[AgiHandler, float]] = {}
        self._server: asyncio.Server | None = None
        self._problems = _RateLimitedLog()
        self.connections = 0
        self._sessions: set[asyncio.Task[None]] = set()
        self.rejected_connections = 0

    def route(self, script: str, handler: AgiHandler, *, timeout: float | None = None) -> None:
        """Serve `agi://host:port/<script>` with `handler`, within `timeout` seconds
        (the server's script timeout when None)."""
        self._routes[script.strip("/")] = (
            handler, self.script_timeout if timeout is None else timeout
        )

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("fastagi_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Python 3.11's wait_closed() does not wait for open connections: end the
        # sessions still running (a call-out waiting for a digit, say) here.
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = writer.get_extra_info("peername")
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            env_parser = AgiEnvironmentParser()
            env = await asyncio.wait_for(
                self._read_environment(reader, env_parser), self.environment_timeout
            )
            if env is None:
                self.rejected_connections += 1
                self._problems.warning("fastagi_closed_before_environment", peer=str(peer))
                return
            parser = AgiReplyParser()
            session = AgiSession(env, reader, writer, parser, self.command_timeout)
            # A HANGUP may arrive in the same read as the environment.
            session._accept(parser.feed(env_parser.remaining))
            await self._dispatch(session)
        except TimeoutError:
            self.rejected_connections += 1
            self._problems.warning(
                "fastagi_environment_timeout", peer=str(peer), timeout=self.environment_timeout
            )
        except AgiEnvironmentError as exc:
            self.rejected_connections += 1
            self._problems.warning("fastagi_environment_invalid", peer=str(peer), error=str(exc))
        except AgiError as exc:
            # Raised for bytes after the environment block that are not AGI replies.
            self.rejected_connections += 1
            self._problems.warning("fastagi_reply_invalid", peer=str(peer), error=str(exc))
        except (ConnectionError, OSError) as exc:
            self._problems.warning("fastagi_connection_error", peer=str(peer), error=str(exc))
        except asyncio.CancelledError:
            # Only stop() cancels a session. Ending normally keeps asyncio's stream
            # callback from reporting the cancellation as an error.
            log.info("fastagi_session_cancelled", peer=str(peer))
        finally:
            writer.close()
            if task is not None:
                self._sessions.discard(task)

    async def _read_environment(
        self, reader: asyncio.StreamReader, parser: AgiEnvironmentParser
    ) -> dict[str, str] | None:
        while True:
            data = await reader.read(4096)
            if not data:
                return None
            env = parser.feed(data)
            if env is not None:
                return env

    async def _dispatch(self, session: AgiSession) -> None:
        script = session.script.strip("/")
        handler, script_timeout = self._routes.get(script, (None, self.script_timeout))
        with structlog.contextvars.bound_contextvars(
            agi_script=script,
            uniqueid=session.env.get("agi_uniqueid"),
            channel=session.env.get("agi_channel"),
        ):
            if handler is None:
                log.warning("fastagi_unknown_script", known=sorted(self._routes))
                return
            started = time.perf_counter()
            try:
                await asyncio.wait_for(handler(session), script_timeout)
            except TimeoutError:
                log.error("fastagi_script_timeout", timeout=script_timeout)
            except AgiError as exc:
                log.warning("fastagi_command_failed", error=str(exc))
            except OSError:
                raise  # _serve logs connection errors, rate-limited
            except Exception:
                log.exception("fastagi_script_failed")
            else:
                log.info(
                    "fastagi_script_done",
                    milliseconds=round((time.perf_counter() - started) * 1000, 2),
                )
