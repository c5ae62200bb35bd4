"""Sans-IO FastAGI: parse the environment block and command replies, format commands.

The FastAGI server feeds the bytes it reads to `AgiEnvironmentParser` until the
environment is complete, then to `AgiReplyParser`, and writes what `format_command`
returns. AGI lines end with LF; a CR before it is tolerated.

Reply lines as res_agi writes them (Asterisk 22):

    200 result=0 endpos=11360
    200 result= (timeout)
    200 result=1 (value of a variable)
    510 Invalid or unknown command
    511 Command Not Permitted on a dead channel or intercept routine
    520-Invalid command syntax.  Proper usage follows:
    ...usage text...
    520 End of proper usage.
    HANGUP

Asterisk writes a bare `HANGUP` line when the channel hangs up (unless the dialplan
sets `AGISIGHUP=no`). Asterisk 22.10.1 was recorded sending it both before and after
the reply to the command in flight, so it is a notice and not a reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sigap_pbx.wire.errors import (
    AgiDeadChannel,
    AgiEnvironmentError,
    AgiError,
    AgiInvalidCommand,
    AgiUsageError,
    truncated_repr,
)

# Commands that Asterisk 22 still runs after the channel hung up and that this project
# relies on to finish the call record. Asterisk 22.10.1 also runs NOOP, DATABASE and
# EXEC on a dead channel, but nothing here needs them after a hangup.
DEAD_CHANNEL_COMMANDS = frozenset(
    {"GET VARIABLE", "SET VARIABLE", "VERBOSE", "GET FULL VARIABLE"}
)

# Asterisk 22.10.1 over FastAGI runs a command line of up to 8192 bytes (its LF
# included) as one command. A longer line is cut after 8191 bytes and the rest runs as
# a second command, as measured with SET VARIABLE lines of growing length.
MAX_COMMAND_BYTES = 8192

# Asterisk 22.10.1 accepts 127 words; from the 128th on it logs "Too many arguments,
# truncating" and drops them.
MAX_COMMAND_WORDS = 127

_DEAD_CHANNEL_LIST = ", ".join(sorted(DEAD_CHANNEL_COMMANDS))
_ENV_KEY = re.compile(r"agi_[A-Za-z0-9_]+")
_STATUS_LINE = re.compile(r"([0-9]{3})(?: (.*))?")
_RESULT = re.compile(r"result=(\S*)(?: (.*))?")
_FIELDS = re.compile(r"(?: [A-Za-z_][A-Za-z0-9_]*=\S*)*")
_FORBIDDEN_IN_WORD = ("\n", "\r", "\x00")
_NEEDS_QUOTES = (" ", "\t")


def is_dead_channel_command(*words: str) -> bool:
    """Return True when the command (given as its words, arguments allowed) is one
    that `DEAD_CHANNEL_COMMANDS` lists as safe after a hangup."""
    upper = [word.upper() for word in words]
    return any(" ".join(upper[:count]) in DEAD_CHANNEL_COMMANDS for count in (1, 2, 3))


class AgiEnvironmentParser:
    """Collect the `agi_<name>: <value>` block that starts a FastAGI session.

    A repeated name is rejected as well as garbage: the values of `agi_arg_N` and
    `agi_calleridname` come from callers, and a line break in one of them would
    otherwise let it add or replace a name such as `agi_network_script`. Bytes after
    the empty line stay in `remaining` for the reply parser.
    """

    def __init__(self, max_bytes: int = 16384) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.remaining = b""
        self.environment: dict[str, str] | None = None
        self._buffer = bytearray()
        self._values: dict[str, str] = {}
        self._consumed = 0

    @property
    def done(self) -> bool:
        """True once the empty line that ends the block has arrived."""
        return self.environment is not None

    def feed(self, data: bytes) -> dict[str, str] | None:
        """Parse `data`; return the environment when this call completed it.

        After completion, further data is appended to `remaining` and None is
        returned.
        """
        if self.done:
            self.remaining += data
            return None
        self._buffer += data
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start:end])
            self._check_size(self._consumed + end + 1)
            start = end + 1
            if line in (b"", b"\r"):
                self.remaining = bytes(self._buffer[start:])
                self.environment = self._values
                return self.environment
            self._add_line(line)
        self._consumed += start
        del self._buffer[:start]
        self._check_size(self._consumed + len(self._buffer))
        return None

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise AgiEnvironmentError(
                f"AGI environment exceeds the cap of max_bytes={self.max_bytes} "
                f"({size} bytes without the closing empty line, last names "
                f"{truncated_repr(list(self._values)[-3:])}); close the connection, "
                f"or raise the cap if the dialplan really passes arguments that long"
            )

    def _add_line(self, raw_line: bytes) -> None:
        line = raw_line.removesuffix(b"\r").decode("utf-8", errors="replace")
        key, colon, value = line.partition(":")
        if not colon or not _ENV_KEY.fullmatch(key):
            raise AgiEnvironmentError(
                f"invalid AGI environment line {truncated_repr(line)}: expected "
                f"'agi_<name>: <value>'; the peer is not Asterisk or a value "
                f"contained a line break, so close the connection"
            )
        if key in self._values:
            raise AgiEnvironmentError(
                f"AGI environment repeats {key!r} (new value {truncated_repr(value)}); "
                f"a dialplan value probably contained a line break, so close the "
                f"connection and let the dialplan continue"
            )
        self._values[key] = value.removeprefix(" ")


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply to an AGI command.

    - `result`: the text after `result=`, empty for 510, 511 and 520.
    - `data`: the text in parentheses after it, such as `timeout` or a variable's
      value, or None.
    - `fields`: the `name=value` pairs after that, such as `endpos`.
    - `usage`: the usage text of a 520 reply, one line per item.
    """

    code: int
    result: str
    data: str | None
    fields: dict[str, str]
    raw: str
    usage: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class AgiHangupNotice:
    """A bare `HANGUP` line: the channel hung up. The reply to the command in flight
    still follows it."""

    raw: str = "HANGUP"


class AgiReplyParser:
    """Turn the bytes Asterisk sends after the environment into replies.

    A `520-` line starts a usage block that ends at the line starting with `520 `,
    and every line in between is kept. A reply (a usage block included) larger than
    `max_reply_bytes` raises `AgiError`, and so does a line that is not AGI. After
    either error the caller should close the connection.
    """

    def __init__(self, max_reply_bytes: int = 65536) -> None:
        if max_reply_bytes <= 0:
            raise ValueError(
                f"max_reply_bytes must be positive, got {max_reply_bytes!r}"
            )
        self.max_reply_bytes = max_reply_bytes
        self._buffer = bytearray()
        self._usage_lines: list[str] | None = None
        self._usage_bytes = 0

    def feed(self, data: bytes) -> list[AgiReply | AgiHangupNotice]:
        """Parse `data` and return the replies and notices it completed, in order."""
        self._buffer += data
        replies: list[AgiReply | AgiHangupNotice] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            raw_line = bytes(self._buffer[start:end])
            start = end + 1
            reply = self._on_line(raw_line)
            if reply is not None:
                replies.append(reply)
        del self._buffer[:start]
        self._check_size(self._usage_bytes + len(self._buffer))
        return replies

    def _check_size(self, size: int) -> None:
        if size > self.max_reply_bytes:
            raise AgiError(
                f"AGI reply exceeds the cap of max_reply_bytes={self.max_reply_bytes} "
                f"({size} bytes buffered, starting with "
                f"{truncated_repr(self._preview())}); close the connection"
            )

    def _preview(self) -> str:
        if self._usage_lines:
            return self._usage_lines[0]
        return self._buffer[:80].decode("utf-8", errors="replace")

    def _on_line(self, raw_line: bytes) -> AgiReply | AgiHangupNotice | None:
        raw_line = raw_line.removesuffix(b"\r")
        line = raw_line.decode("utf-8", errors="replace")
        if self._usage_lines is not None:
            self._usage_bytes += len(raw_line) + 1
            self._check_size(self._usage_bytes)
            return self._on_usage_line(line)
        self._check_size(len(raw_line) + 1)
        if line == "HANGUP":
            return AgiHangupNotice()
        if line.startswith("520-"):
            self._usage_lines = [line]
            self._usage_bytes = len(raw_line) + 1
            return None
        return _parse_status_line(line)

    def _on_usage_line(self, line: str) -> AgiReply | None:
        assert self._usage_lines is not None
        self._usage_lines.append(line)
        if not (line.startswith("520 ") or line == "520"):
            return None
        lines = self._usage_lines
        self._usage_lines = None
        self._usage_bytes = 0
        usage = (lines[0][4:], *lines[1:-1], lines[-1][4:])
        return AgiReply(520, "", None, {}, "\n".join(lines), usage=usage)


def _parse_status_line(line: str) -> AgiReply:
    status = _STATUS_LINE.fullmatch(line)
    if status is None:
        raise AgiError(
            f"invalid AGI reply line {truncated_repr(line)}: expected 'HANGUP' or a "
            f"3-digit status code; the peer is not speaking AGI, so close the "
            f"connection"
        )
    code = int(status[1])
    rest = status[2] or ""
    if code == 520:
        return AgiReply(520, "", None, {}, line, usage=(rest,))
    result = _RESULT.fullmatch(rest)
    if result is None:
        return AgiReply(code, "", None, {}, line)
    data, fields = _parse_result_tail(result[2] or "")
    return AgiReply(code, result[1], data, fields, line)


def _parse_result_tail(tail: str) -> tuple[str | None, dict[str, str]]:
    """Split what follows `result=<value>` into the parenthesised data and fields.

    The data runs to the last `)`, because a variable's value may itself contain
    parentheses, and only `name=value` pairs may follow it (`endpos=8000` after
    `RECORD FILE`). Anything else, such as `Trying...` after status 100, leaves data
    and fields empty and stays readable in `raw`.
    """
    if tail.startswith("("):
        close = tail.rfind(")")
        if close > 0 and _FIELDS.fullmatch(tail[close + 1 :]):
            return tail[1:close], _split_fields(tail[close + 1 :])
        return None, {}
    if _FIELDS.fullmatch(" " + tail):
        return None, _split_fields(" " + tail)
    return None, {}


def _split_fields(text: str) -> dict[str, str]:
    fields = {}
    for pair in text.split():
        name, _, value = pair.partition("=")
        fields[name] = value
    return fields


def check_reply(reply: AgiReply) -> AgiReply:
    """Return `reply` if its status is 100 or 200; raise the error of its status code
    otherwise.

    A `200 result=-1` is returned, not raised: it means the command failed or the
    channel hung up, and only the caller knows which matters.
    """
    shown = truncated_repr(reply.raw)
    if reply.code in (100, 200):
        return reply
    if reply.code == 510:
        raise AgiInvalidCommand(
            f"Asterisk rejected the AGI command as invalid or unknown (reply {shown}); "
            f"check the command words against 'agi show commands'",
            reply,
        )
    if reply.code == 511:
        raise AgiDeadChannel(
            f"channel gone: Asterisk refused the command on a dead channel (reply "
            f"{shown}); after a hangup send only {_DEAD_CHANNEL_LIST}",
            reply,
        )
    if reply.code == 520:
        raise AgiUsageError(
            f"Asterisk rejected the AGI command's arguments (reply {shown}); fix "
            f"them to match the usage text in this error's `usage`",
            reply,
            usage=reply.usage,
        )
    raise AgiError(
        f"unexpected AGI status {reply.code} (reply {shown}); res_agi sends only "
        f"100, 200, 510, 511 and 520, so close the connection",
        reply,
    )


def format_command(*words: str) -> bytes:
    """Encode one AGI command line from its words.

    Pass the command name as separate words (`"STREAM", "FILE", ...`). A word that is
    empty or contains a space or tab is put in double quotes, and `"` and `\\` are
    escaped everywhere, matching how res_agi splits arguments. LF, CR and NUL are
    rejected: each would end the line and start a second command.
    """
    if not words:
        raise AgiError(
            "empty AGI command: pass the command words, e.g. format_command('ANSWER')"
        )
    if len(words) > MAX_COMMAND_WORDS:
        raise AgiError(
            f"AGI command {truncated_repr(' '.join(words[:3]))} has {len(words)} "
            f"words; Asterisk drops everything after {MAX_COMMAND_WORDS}, so send "
            f"fewer"
        )
    for index, word in enumerate(words):
        _check_word(index, word)
    line = " ".join(_quote_word(word) for word in words) + "\n"
    encoded = line.encode("utf-8")
    if len(encoded) > MAX_COMMAND_BYTES:
        raise AgiError(
            f"AGI command {truncated_repr(line)} is {len(encoded)} bytes; Asterisk "
            f"cuts lines longer than {MAX_COMMAND_BYTES} bytes and runs the rest as "
            f"another command, so shorten the arguments"
        )
    return encoded


def _check_word(index: int, word: str) -> None:
    if not isinstance(word, str):
        raise AgiError(
            f"invalid AGI command word {index}: {truncated_repr(word)} is not a str; "
            f"convert it with str() first"
        )
    for char in _FORBIDDEN_IN_WORD:
        if char in word:
            raise AgiError(
                f"invalid AGI command word {index}: {truncated_repr(word)} contains "
                f"{char!r}, which would end the command and start another; remove "
                f"line breaks and NUL from the value"
            )


def _quote_word(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')
    if word == "" or any(char in word for char in _NEEDS_QUOTES):
        return f'"{escaped}"'
    return escaped
