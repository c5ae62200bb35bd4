"""Exceptions of the wire layer.

`WireError` is the root, so the asyncio client and the FastAGI server can catch every
protocol fault in one clause. Each message shows the offending value (truncated) and
the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sigap_pbx.wire.agi import AgiReply

REPR_LIMIT = 80


def truncated_repr(value: object, limit: int = REPR_LIMIT) -> str:
    """Return `repr(value)` cut to `limit` characters, so a huge peer value cannot
    flood a log line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


class WireError(Exception):
    """Root of every error raised while parsing or formatting AMI and AGI bytes."""


class AmiProtocolError(WireError):
    """AMI bytes that cannot be parsed or an action that must not be sent."""


class DialStringError(WireError, ValueError):
    """A value that must not reach a `Dial()` string, an AGI `EXEC` or an
    `Originate` because it contains characters outside the allowed set."""


class AgiError(WireError):
    """AGI bytes that cannot be parsed, a command that must not be sent, or an AGI
    status code that reports a failed command."""

    code: int | None = None

    def __init__(self, message: str, reply: AgiReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class AgiEnvironmentError(AgiError):
    """An AGI environment block with a line that is not `agi_<name>: <value>`, a
    repeated name, or more bytes than the cap."""


class AgiInvalidCommand(AgiError):
    """Status 510: Asterisk does not know the command."""

    code = 510


class AgiDeadChannel(AgiError):
    """Status 511: the channel is gone (hung up), so only the commands that Asterisk
    permits on a dead channel still work."""

    code = 511


class AgiUsageError(AgiError):
    """Status 520: Asterisk rejected the arguments and sent the command's usage text,
    kept in `usage` one line per item."""

    code = 520

    def __init__(
        self, message: str, reply: AgiReply | None = None, usage: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, reply)
        self.usage = usage
