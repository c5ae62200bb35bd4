"""Sans-IO AMI: parse the bytes Asterisk sends, format actions, correlate replies.

Nothing here touches a socket or an event loop. The asyncio client feeds every chunk
it reads to `AmiParser.feed`, writes the bytes that `format_action` returns, and lets
an `ActionTracker` decide which reply completes which pending action. Because of that,
every byte-level case is a plain unit test.

Framing follows the manager protocol as Asterisk 22 writes it: a message is a block of
`Key: Value` lines ending with an empty line, lines end with CRLF, and the first line
of a connection is the banner `Asterisk Call Manager/<version>` with no empty line
after it. Before Asterisk 14, the reply to `Action: Command` is a `Response: Follows`
block whose raw CLI output may contain empty lines and ends with `--END COMMAND--`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sigap_pbx.wire.errors import AmiProtocolError, truncated_repr

EOL = "\r\n"
BANNER_PREFIX = "Asterisk Call Manager"
END_COMMAND = "--END COMMAND--"

# `Response:` values that report success. `Goodbye` is the reply to `Logoff`, and
# `Follows` the reply to `Command` before Asterisk 14.
OK_STATUSES = frozenset({"Success", "Follows", "Goodbye"})

# Some messages write the channel into the key, such as OriginateResponse in Asterisk
# 22.10.1: `ChanVariable(Local/wait@wire-00000001;1): SIGAP_CALL_ID=`. The key is
# stored as `ChanVariable` and the channel beside it.
_QUALIFIED_KEY = re.compile(r"([A-Za-z]+Variable)\((.*)\)")

# Headers that manager.c writes between `Response: Follows` and the raw command output
# before Asterisk 14. Any other line there is already output, even if it has a colon.
_FOLLOWS_HEADER_KEYS = frozenset({"privilege", "actionid"})

_ACTION_NAME = re.compile(r"[A-Za-z0-9]+")
_FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_FORBIDDEN_IN_VALUE = ("\r", "\n", "\x00")


class Variable(NamedTuple):
    """One `name=value` pair from a variable header such as `ChanVariable`.

    `channel` is the channel written into the key by the old `ChanVariable(<channel>)`
    form, and None for the current form.
    """

    name: str
    value: str
    channel: str | None


@dataclass(frozen=True, slots=True)
class Message:
    """One AMI message: its headers in wire order and any lines without a colon.

    Lookups ignore the case of the key, as Asterisk does. `header_channels` is aligned
    with `headers` and is None except for the old `ChanVariable(<channel>)` form.
    """

    headers: tuple[tuple[str, str], ...] = ()
    extra_lines: tuple[str, ...] = ()
    header_channels: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.header_channels and self.headers:
            object.__setattr__(self, "header_channels", (None,) * len(self.headers))
        if len(self.header_channels) != len(self.headers):
            raise ValueError(
                f"header_channels has {len(self.header_channels)} items but headers "
                f"has {len(self.headers)}; pass one channel (or None) per header"
            )

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return the first value of `key`, or `default` if the header is absent."""
        wanted = key.lower()
        for name, value in self.headers:
            if name.lower() == wanted:
                return value
        return default

    def getall(self, key: str) -> list[str]:
        """Return every value of `key` in wire order; a header that appears once or
        not at all still gives a list."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        wanted = key.lower()
        return any(name.lower() == wanted for name, _ in self.headers)

    def variable_headers(self, key: str = "ChanVariable") -> list[Variable]:
        """Split every value of `key` at its first `=`, keeping the channel of the
        old `ChanVariable(<channel>)` form. A value without `=` is a name with an
        empty value."""
        wanted = key.lower()
        found = []
        for (name, value), channel in zip(
            self.headers, self.header_channels, strict=True
        ):
            if name.lower() == wanted:
                var_name, _, var_value = value.partition("=")
                found.append(Variable(var_name, var_value, channel))
        return found

    def variables(self, key: str = "ChanVariable") -> list[tuple[str, str]]:
        """Return `(name, value)` for every value of `key`, split at the first `=`.

        `DestChanVariable` and the `Variable` headers of `Status` work the same way.
        """
        return [(var.name, var.value) for var in self.variable_headers(key)]

    def as_dict(self) -> dict[str, str]:
        """Return the first value of each header, keyed as on the wire, for logs."""
        result: dict[str, str] = {}
        seen: set[str] = set()
        for name, value in self.headers:
            if name.lower() not in seen:
                seen.add(name.lower())
                result[name] = value
        return result

    @property
    def action_id(self) -> str | None:
        """The `ActionID` header, present on replies and on events of a list."""
        return self.get("ActionID")


@dataclass(frozen=True, slots=True)
class Event(Message):
    """A message with an `Event` header."""

    @property
    def name(self) -> str:
        """The `Event` header, such as `QueueMemberPause`."""
        return self.get("Event") or ""

    @property
    def completes_list(self) -> bool:
        """True for the event with `EventList: Complete` that ends a list action."""
        return (self.get("EventList") or "").lower() == "complete"


@dataclass(frozen=True, slots=True)
class Response(Message):
    """A message with a `Response` header: the reply to one action.

    `body` is the raw output of a `Response: Follows` reply (Asterisk 13 and older).
    """

    body: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """The `Response` header: `Success`, `Error`, `Follows` or `Goodbye`."""
        return self.get("Response") or ""

    @property
    def ok(self) -> bool:
        """True when the status reports success."""
        return self.status in OK_STATUSES

    @property
    def message(self) -> str | None:
        """The free-text `Message` header; never used to decide protocol state."""
        return self.get("Message")

    @property
    def output(self) -> list[str]:
        """Lines of CLI output from `Action: Command`, in order, empty lines included.

        Asterisk 14 and later send one `Output:` header per line; older versions send
        a `Response: Follows` raw body. Both forms give the same list.
        """
        if self.status == "Follows":
            return list(self.body)
        return self.getall("Output")

    @property
    def starts_list(self) -> bool:
        """True only when the reply carries `EventList: start`, so events follow.

        The `Message` text (for example "will follow") is never consulted, because
        the text of some single replies, such as the one to `QueueAdd`, is similar.
        """
        return (self.get("EventList") or "").lower() == "start"


@dataclass(frozen=True, slots=True)
class Banner:
    """The greeting line, such as `Asterisk Call Manager/9.0.0`.

    `version` is the AMI protocol version, not the Asterisk version.
    """

    text: str
    version: str


def _split_header(line: str) -> tuple[str, str, str | None] | None:
    """Split a header line into key, value and the channel of a qualified key.

    Everything after the first colon is the value, minus exactly one leading space,
    so `CallerIDName: Unit 7: <NAME>` keeps its second colon. Returns None for a line
    with no colon or with nothing before it.
    """
    key, colon, value = line.partition(":")
    if not colon or not key:
        return None
    value = value.removeprefix(" ")
    qualified = _QUALIFIED_KEY.fullmatch(key)
    if qualified:
        return qualified[1], value, qualified[2]
    return key, value, None


class _MessageBuilder:
    """Collect the lines of one message until its empty line arrives."""

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.channels: list[str | None] = []
        self.extra_lines: list[str] = []
        self.body: list[str] = []
        self.byte_count = 0

    @property
    def is_empty(self) -> bool:
        return not (self.headers or self.extra_lines or self.body)

    def add_header_line(self, line: str) -> bool:
        """Store a header line; return False when it had no colon and went to
        `extra_lines` instead."""
        parts = _split_header(line)
        if parts is None:
            self.extra_lines.append(line)
            return False
        key, value, channel = parts
        self.headers.append((key, value))
        self.channels.append(channel)
        return True

    def build(self) -> Message:
        kind = _message_kind(self.headers)
        common = {
            "headers": tuple(self.headers),
            "extra_lines": tuple(self.extra_lines),
            "header_channels": tuple(self.channels),
        }
        if kind == "response":
            return Response(body=tuple(self.body), **common)
        if kind == "event":
            return Event(**common)
        return Message(**common)


def _message_kind(headers: list[tuple[str, str]]) -> str | None:
    """Return "response" or "event" from the first header that decides it.

    Asterisk writes `Response` or `Event` first, but scanning keeps a message typed
    even if a proxy reorders its headers.
    """
    for key, _ in headers:
        lowered = key.lower()
        if lowered in ("response", "event"):
            return lowered
    return None


# Parser states for the body of `Response: Follows` (Asterisk 13 and older).
_HEADERS = "headers"
_FOLLOWS_HEADERS = "follows-headers"
_FOLLOWS_BODY = "follows-body"
_FOLLOWS_TRAILER = "follows-trailer"


class AmiParser:
    """Turn the bytes of one AMI connection into `Banner`, `Event` and `Response`.

    Framing is on complete lines only: a line is decoded (UTF-8, invalid bytes
    replaced) once its newline has arrived, so a character split across two reads is
    never lost. CRLF and bare LF both end a line. A block without `Response` or
    `Event` comes back as a plain `Message` so the caller can log it.

    Lines without a colon never raise: they are kept in `Message.extra_lines` and
    counted in `extra_line_count`. One message larger than `max_message_bytes`
    raises `AmiProtocolError`, and the caller should drop the connection, because the
    parser does not resynchronise after that.
    """

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        if max_message_bytes <= 0:
            raise ValueError(
                f"max_message_bytes must be positive, got {max_message_bytes!r}"
            )
        self.max_message_bytes = max_message_bytes
        self.extra_line_count = 0
        self._buffer = bytearray()
        self._message = _MessageBuilder()
        self._state = _HEADERS
        self._at_first_line = True

    def feed(self, data: bytes) -> list[Banner | Message]:
        """Parse `data` and return the messages it completed, in wire order."""
        self._buffer += data
        messages: list[Banner | Message] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            raw_line = bytes(self._buffer[start:end])
            start = end + 1
            parsed = self._on_line(raw_line)
            if parsed is not None:
                messages.append(parsed)
        del self._buffer[:start]
        self._check_size(len(self._buffer))
        return messages

    def _check_size(self, pending_bytes: int) -> None:
        size = self._message.byte_count + pending_bytes
        if size > self.max_message_bytes:
            raise AmiProtocolError(
                f"AMI message exceeds the cap of max_message_bytes="
                f"{self.max_message_bytes} ({size} bytes buffered, starting with "
                f"{truncated_repr(self._preview())}); drop the connection, or raise "
                f"the cap if this Asterisk really sends messages that large"
            )

    def _preview(self) -> str:
        if self._message.headers:
            key, value = self._message.headers[0]
            return f"{key}: {value}"
        return self._buffer[:80].decode("utf-8", errors="replace")

    def _on_line(self, raw_line: bytes) -> Banner | Message | None:
        raw_line = raw_line.removesuffix(b"\r")
        line = raw_line.decode("utf-8", errors="replace")
        if self._at_first_line:
            self._at_first_line = False
            if line.startswith(BANNER_PREFIX):
                return _banner(line)
        self._message.byte_count += len(raw_line) + 1
        self._check_size(0)
        if self._state == _HEADERS:
            return self._on_header_line(line)
        if self._state == _FOLLOWS_HEADERS:
            return self._on_follows_header_line(line)
        if self._state == _FOLLOWS_BODY:
            self._on_follows_body_line(line)
            return None
        return self._on_header_line(line)

    def _on_header_line(self, line: str) -> Message | None:
        if line == "":
            return self._finish_message()
        starts_message = self._message.is_empty
        self._add_header_line(line)
        if starts_message and _is_follows(line):
            self._state = _FOLLOWS_HEADERS
        return None

    def _on_follows_header_line(self, line: str) -> None:
        key, colon, _ = line.partition(":")
        if colon and key.lower() in _FOLLOWS_HEADER_KEYS:
            self._add_header_line(line)
            return
        self._state = _FOLLOWS_BODY
        self._on_follows_body_line(line)

    def _on_follows_body_line(self, line: str) -> None:
        # manager.c appends the marker right after the raw output, so output without
        # a final newline ends in `...last line--END COMMAND--`.
        if line.endswith(END_COMMAND):
            output = line[: -len(END_COMMAND)]
            if output:
                self._message.body.append(output)
            self._state = _FOLLOWS_TRAILER
            return
        self._message.body.append(line)

    def _add_header_line(self, line: str) -> None:
        if not self._message.add_header_line(line):
            self.extra_line_count += 1

    def _finish_message(self) -> Message | None:
        builder = self._message
        self._message = _MessageBuilder()
        self._state = _HEADERS
        if builder.is_empty:
            return None
        return builder.build()


def _is_follows(line: str) -> bool:
    parts = _split_header(line)
    if parts is None:
        return False
    key, value, _ = parts
    return key.lower() == "response" and value == "Follows"


def _banner(line: str) -> Banner:
    _, _, version = line.rpartition("/")
    return Banner(text=line, version=version.strip())


FieldValue = str | Sequence[str]
Fields = Mapping[str, FieldValue] | Iterable[tuple[str, FieldValue]]


def format_action(name: str, action_id: str, fields: Fields = ()) -> bytes:
    """Encode one action as bytes ready to write to the AMI socket.

    Exactly one `ActionID` goes out: a caller-supplied key spelled `ActionID` in any
    case is dropped and `action_id` wins, because two IDs would let a reply complete
    the wrong action. A sequence value becomes one header per item (several
    `Variable:` lines for `Originate`). CR, LF and NUL are rejected in every name and
    value, because they would end the header and inject another.
    """
    _check_action_name(name)
    _check_value("ActionID", action_id)
    if not action_id:
        raise AmiProtocolError(
            f"empty ActionID for action {name!r}; pass a unique non-empty action id"
        )
    lines = [f"Action: {name}", f"ActionID: {action_id}"]
    for key, value in _iter_fields(fields):
        if key.lower() == "actionid":
            continue
        _check_field_name(name, key)
        for item in _field_values(key, value):
            _check_value(key, item)
            lines.append(f"{key}: {item}")
    return (EOL.join(lines) + EOL + EOL).encode("utf-8")


def _iter_fields(fields: Fields) -> Iterator[tuple[str, FieldValue]]:
    if isinstance(fields, Mapping):
        yield from fields.items()
        return
    for pair in fields:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise AmiProtocolError(
                f"invalid action field {truncated_repr(pair)}: pass (name, value) "
                f"pairs or a mapping"
            )
        yield pair


def _field_values(key: str, value: FieldValue) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return list(value)
    raise AmiProtocolError(
        f"invalid value for action field {key!r}: {truncated_repr(value)}; pass a str "
        f"or a list of str (convert numbers with str())"
    )


def _check_action_name(name: str) -> None:
    if not isinstance(name, str) or not _ACTION_NAME.fullmatch(name):
        raise AmiProtocolError(
            f"invalid action name {truncated_repr(name)}: only letters and digits "
            f"are allowed; use the name as the Asterisk manual spells it, such as "
            f"'QueueAdd'"
        )


def _check_field_name(action: str, key: object) -> None:
    if not isinstance(key, str) or not _FIELD_NAME.fullmatch(key):
        raise AmiProtocolError(
            f"invalid field name {truncated_repr(key)} in action {action!r}: use "
            f"letters, digits, '_' and '-' only, starting with a letter or digit"
        )
    if key.lower() == "action":
        raise AmiProtocolError(
            f"field {key!r} in action {action!r} would send a second Action header; "
            f"pass the action name as the first argument only"
        )


def _check_value(key: str, value: str) -> None:
    if not isinstance(value, str):
        raise AmiProtocolError(
            f"invalid value for {key!r}: {truncated_repr(value)} is not a str; "
            f"convert it with str() first"
        )
    for char in _FORBIDDEN_IN_VALUE:
        if char in value:
            raise AmiProtocolError(
                f"invalid value for {key!r}: {truncated_repr(value)} contains "
                f"{char!r}, which would end the header and inject another; remove "
                f"line breaks and NUL from the value"
            )


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished action: its reply and, for a list action, the events of the list.

    `list_complete` is the event with `EventList: Complete` that ended the list (it
    carries counters such as `ListItems`); it is not repeated in `events`.
    """

    action_id: str
    response: Response
    events: list[Event] = field(default_factory=list)
    list_complete: Event | None = None


class Correlation(NamedTuple):
    """The outcome of `ActionTracker.on_message` for one message.

    `passthrough` is the message itself when it matched no pending action, and the
    caller dispatches it as an ordinary event. It is None when the message completed
    an action or joined the list of one.
    """

    completions: list[Completion]
    passthrough: Banner | Message | None


@dataclass
class _PendingAction:
    deadline: float
    response: Response | None = None
    events: list[Event] = field(default_factory=list)


class ActionTracker:
    """Match replies and list events to pending actions by `ActionID`.

    An action completes on its reply, unless the reply carries `EventList: start`.
    Such a list action completes on the event with `EventList: Complete`, and collects
    the events with its `ActionID` in between. A message whose `ActionID` matches
    nothing pending is passed through and never completes another action. Times are
    seconds on whatever monotonic clock the caller uses.
    """

    def __init__(self) -> None:
        self._pending: dict[str, _PendingAction] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._pending

    def register(self, action_id: str, *, now: float, timeout: float) -> None:
        """Start tracking `action_id`; it expires `timeout` seconds after `now`."""
        if action_id in self._pending:
            raise ValueError(
                f"action id {truncated_repr(action_id)} is already pending; generate "
                f"a unique id per action"
            )
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        self._pending[action_id] = _PendingAction(deadline=now + timeout)

    def on_message(self, message: Banner | Message) -> Correlation:
        """Route one parsed message to its pending action or pass it through."""
        if isinstance(message, Response):
            return self._on_response(message)
        if isinstance(message, Event):
            return self._on_event(message)
        return Correlation([], message)

    def _on_response(self, response: Response) -> Correlation:
        action_id = response.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        if action_id is None or pending is None or pending.response is not None:
            return Correlation([], response)
        if response.starts_list:
            pending.response = response
            return Correlation([], None)
        del self._pending[action_id]
        return Correlation([Completion(action_id, response)], None)

    def _on_event(self, event: Event) -> Correlation:
        action_id = event.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        # An event before the reply (or for a single-reply action, such as the
        # OriginateResponse of an async Originate) belongs to no list.
        if action_id is None or pending is None or pending.response is None:
            return Correlation([], event)
        if event.completes_list:
            del self._pending[action_id]
            completion = Completion(
                action_id, pending.response, pending.events, list_complete=event
            )
            return Correlation([completion], None)
        pending.events.append(event)
        return Correlation([], None)

    def next_deadline(self) -> float | None:
        """Return the earliest deadline, so the caller knows when to call `expire`."""
        if not self._pending:
            return None
        return min(pending.deadline for pending in self._pending.values())

    def expire(self, now: float) -> list[str]:
        """Forget and return the ids whose deadline is at or before `now`, earliest
        first."""
        expired = sorted(
            (pending.deadline, action_id)
            for action_id, pending in self._pending.items()
            if pending.deadline <= now
        )
        for _, action_id in expired:
            del self._pending[action_id]
        return [action_id for _, action_id in expired]

    def fail_all(self) -> list[str]:
        """Forget and return every pending id, for a closed connection."""
        action_ids = list(self._pending)
        self._pending.clear()
        return action_ids
