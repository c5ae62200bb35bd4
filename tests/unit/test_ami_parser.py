"""AMI parsing: framing, header forms, chunking and the buffer cap.

Transcripts under transcripts/ are bytes recorded from Asterisk 22.10.1 (see the
README there). Forms that only older versions write are built inline from the format
those versions use.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigap_pbx.wire.ami import AmiParser, Banner, Event, Message, Response, Variable
from sigap_pbx.wire.errors import AmiProtocolError, WireError

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def load(name: str) -> bytes:
    return (TRANSCRIPTS / name).read_bytes()


def parse(data: bytes, **kwargs: int) -> list[Banner | Message]:
    return AmiParser(**kwargs).feed(data)


def parse_in_chunks(data: bytes, cuts: list[int]) -> list[Banner | Message]:
    parser = AmiParser()
    messages: list[Banner | Message] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        messages += parser.feed(data[start:cut])
        start = cut
    return messages


def by_action_id(messages: list[Banner | Message], action_id: str) -> list[Message]:
    return [m for m in messages if isinstance(m, Message) and m.action_id == action_id]


def first_event(messages: list[Banner | Message], name: str) -> Event:
    return next(m for m in messages if isinstance(m, Event) and m.name == name)


# --- Banner and framing --------------------------------------------------------------


def test_banner_gives_protocol_version() -> None:
    messages = parse(load("ami_actions.raw"))

    assert messages[0] == Banner(text="Asterisk Call Manager/11.0.0", version="11.0.0")


def test_banner_only_on_first_line() -> None:
    data = b"Response: Success\r\nMessage: Asterisk Call Manager/1.0 ok\r\n\r\n"

    messages = parse(data)

    assert len(messages) == 1
    assert isinstance(messages[0], Response)


def test_recorded_session_yields_typed_messages_in_order() -> None:
    messages = parse(load("ami_actions.raw"))

    kinds = [(type(m).__name__, m.action_id) for m in messages[1:]]
    responses = [action_id for kind, action_id in kinds if kind == "Response"]
    assert responses == [
        "login-1",
        "queueadd-1",
        "queueadd-2",
        "queuestatus-1",
        "queuesummary-1",
        "command-1",
        "command-2",
        "originate-1",
        "status-1",
        "coreshowchannels-1",
        "hangup-1",
        "logoff-1",
    ]
    assert len(messages) == 1 + 12 + 3 + 2 + 3 + 3 + 3


def test_bare_lf_frames_like_crlf() -> None:
    crlf = load("ami_actions.raw")

    assert parse(crlf.replace(b"\r\n", b"\n")) == parse(crlf)


def test_repeated_empty_lines_between_messages_ignored() -> None:
    data = b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n"

    names = [m.name for m in parse(data) if isinstance(m, Event)]

    assert names == ["A", "B"]


def test_incomplete_message_held_until_empty_line() -> None:
    parser = AmiParser()

    assert parser.feed(b"Event: Hangup\r\nChannel: PJSIP/op1-1\r\n") == []
    messages = parser.feed(b"\r\n")

    assert len(messages) == 1
    assert messages[0].get("Channel") == "PJSIP/op1-1"


def test_block_without_response_or_event_is_plain_message() -> None:
    messages = parse(b"Action: Ping\r\nActionID: x\r\n\r\n")

    assert type(messages[0]) is Message
    assert messages[0].get("Action") == "Ping"


def test_event_with_response_header_stays_event() -> None:
    # OriginateResponse carries a `Response:` header of its own.
    messages = parse(load("ami_events.raw"))

    event = first_event(messages, "OriginateResponse")

    assert isinstance(event, Event)
    assert event.get("Response") == "Success"


# --- Chunking ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ami_actions.raw", "ami_events.raw"])
def test_byte_by_byte_equals_whole(name: str) -> None:
    data = load(name)
    parser = AmiParser()

    messages = []
    for index in range(len(data)):
        messages += parser.feed(data[index : index + 1])

    assert messages == parse(data)


def test_split_at_every_position_of_crlf_reply() -> None:
    data = load("ami_ping_before_login.raw")
    expected = parse(data)

    for cut in range(len(data) + 1):
        assert parse_in_chunks(data, [cut]) == expected, f"split at byte {cut}"


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_chunking_yields_same_messages(data: st.DataObject) -> None:
    raw = data.draw(st.sampled_from([load("ami_actions.raw"), load("ami_events.raw")]))
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))

    assert parse_in_chunks(raw, cuts) == parse(raw)


def test_utf8_character_split_across_feeds_kept() -> None:
    data = "Event: Newchannel\r\nCallerIDName: Jürgen Émile 紧急\r\n\r\n".encode()
    cut = data.index("ü".encode()) + 1
    parser = AmiParser()

    messages = parser.feed(data[:cut]) + parser.feed(data[cut:])

    assert messages[0].get("CallerIDName") == "Jürgen Émile 紧急"


def test_invalid_utf8_replaced_not_raised() -> None:
    messages = parse(b"Event: Newchannel\r\nCallerIDName: bad \xff byte\r\n\r\n")

    assert messages[0].get("CallerIDName") == "bad \ufffd byte"


# --- Header forms --------------------------------------------------------------------


def test_value_keeps_text_after_first_colon() -> None:
    status = by_action_id(parse(load("ami_actions.raw")), "status-1")[1]

    assert status.get("CallerIDName") == "Unit 7: Alpha"


def test_value_strips_exactly_one_space() -> None:
    messages = parse(b"Event: X\r\nA:  two spaces \r\nB:none\r\nC: \r\n\r\n")

    assert messages[0].get("A") == " two spaces "
    assert messages[0].get("B") == "none"
    assert messages[0].get("C") == ""


def test_empty_value_after_colon_is_valid() -> None:
    parser = AmiParser()

    messages = parser.feed(b"Event: RTCPSent\r\nReportBlock:\r\nSSRC: 1\r\n\r\n")

    assert messages[0].get("ReportBlock") == ""
    assert "ReportBlock" in messages[0]
    assert messages[0].extra_lines == ()
    assert parser.extra_line_count == 0


def test_line_without_colon_kept_and_counted() -> None:
    parser = AmiParser()
    data = (
        b"Event: ReceiveSMS\r\nMessage: hello\r\n--END SMS EVENT--\r\n\r\n"
        b"Event: Hangup\r\nChannel: PJSIP/op1-1\r\n\r\n"
    )

    messages = parser.feed(data)

    assert [m.name for m in messages if isinstance(m, Event)] == [
        "ReceiveSMS",
        "Hangup",
    ]
    assert messages[0].extra_lines == ("--END SMS EVENT--",)
    assert messages[0].headers == (("Event", "ReceiveSMS"), ("Message", "hello"))
    assert parser.extra_line_count == 1


def test_line_starting_with_colon_is_extra_line() -> None:
    messages = parse(b"Event: X\r\n: no key\r\n\r\n")

    assert messages[0].extra_lines == (": no key",)


def test_get_ignores_key_case() -> None:
    message = parse(b"Event: X\r\nCallerIDNum: 112\r\n\r\n")[0]

    assert message.get("calleridnum") == "112"
    assert message.get("CALLERIDNUM") == "112"
    assert "callerIDnum" in message
    assert "Missing" not in message
    assert message.get("Missing", "default") == "default"


def test_headers_kept_in_wire_order_with_repeats() -> None:
    # Asterisk 22 built with the test framework repeats `State` in TestEvent.
    event = first_event(parse(load("ami_events.raw")), "TestEvent")

    assert event.getall("State") == ["CallIDChange", "CallIDChange"]
    assert [key for key, _ in event.headers][:4] == [
        "Event",
        "Privilege",
        "Type",
        "State",
    ]


def test_as_dict_keeps_first_value() -> None:
    message = parse(b"Event: X\r\nVariable: A=1\r\nvariable: B=2\r\n\r\n")[0]

    assert message.as_dict() == {"Event": "X", "Variable": "A=1"}


def test_message_is_immutable() -> None:
    message = parse(b"Event: X\r\n\r\n")[0]

    with pytest.raises(dataclasses.FrozenInstanceError):
        message.headers = ()  # type: ignore[misc]


# --- Repeated and variable headers ---------------------------------------------------


def test_status_variables_repeat_in_order() -> None:
    status = by_action_id(parse(load("ami_actions.raw")), "status-1")[1]

    assert status.getall("Variable") == ["SIGAP_CALL_ID=call-0001", "SIGAP_B=x=y"]
    assert status.variables("Variable") == [
        ("SIGAP_CALL_ID", "call-0001"),
        ("SIGAP_B", "x=y"),
    ]


def test_single_header_still_gives_list() -> None:
    status = by_action_id(parse(load("ami_actions.raw")), "status-1")[1]

    assert status.getall("ChanVariable") == ["SIGAP_CALL_ID=call-0001"]
    assert status.variables() == [("SIGAP_CALL_ID", "call-0001")]
    assert status.getall("NoSuchHeader") == []
    assert status.variables("NoSuchHeader") == []


def test_several_chanvariable_and_destchanvariable_kept() -> None:
    data = (
        b"Event: DialBegin\r\n"
        b"ChanVariable: SIGAP_CALL_ID=c1\r\n"
        b"ChanVariable: SIGAP_UNIT=Unit 7: Alpha\r\n"
        b"ChanVariable: EMPTY=\r\n"
        b"DestChanVariable: SIGAP_CALL_ID=c2\r\n"
        b"\r\n"
    )

    event = parse(data)[0]

    assert event.variables() == [
        ("SIGAP_CALL_ID", "c1"),
        ("SIGAP_UNIT", "Unit 7: Alpha"),
        ("EMPTY", ""),
    ]
    assert event.variables("DestChanVariable") == [("SIGAP_CALL_ID", "c2")]


def test_old_chanvariable_form_keeps_channel() -> None:
    # Asterisk 22 still writes this form in OriginateResponse.
    event = first_event(parse(load("ami_events.raw")), "OriginateResponse")

    assert event.getall("ChanVariable") == ["SIGAP_CALL_ID="]
    assert event.variables() == [("SIGAP_CALL_ID", "")]
    assert event.variable_headers() == [
        Variable("SIGAP_CALL_ID", "", "Local/wait@wire-00000001;1")
    ]


def test_current_chanvariable_form_has_no_channel() -> None:
    event = parse(b"Event: X\r\nChanVariable: A=1\r\n\r\n")[0]

    assert event.variable_headers() == [Variable("A", "1", None)]


def test_variable_without_equals_has_empty_value() -> None:
    event = parse(b"Event: X\r\nChanVariable: LONELY\r\n\r\n")[0]

    assert event.variables() == [("LONELY", "")]


def test_pause_reason_then_empty_reason_on_unpause() -> None:
    messages = parse(load("ami_events.raw"))

    pauses = [
        m for m in messages if isinstance(m, Event) and m.name == "QueueMemberPause"
    ]

    assert [(e.get("Paused"), e.get("PausedReason")) for e in pauses] == [
        ("1", "R1"),
        ("0", ""),
    ]
    assert pauses[1].get("Interface") == "Local/member@wire"


# --- Responses -----------------------------------------------------------------------


def test_response_status_and_ok() -> None:
    messages = parse(load("ami_actions.raw"))

    added = by_action_id(messages, "queueadd-1")[0]
    again = by_action_id(messages, "queueadd-2")[0]
    goodbye = by_action_id(messages, "logoff-1")[0]

    assert (added.status, added.ok) == ("Success", True)
    assert (again.status, again.ok) == ("Error", False)
    assert again.message == "Unable to add interface: Already there"
    assert (goodbye.status, goodbye.ok) == ("Goodbye", True)


def test_permission_denied_before_login() -> None:
    messages = parse(load("ami_ping_before_login.raw"))

    reply = messages[1]
    assert isinstance(reply, Response)
    assert reply.ok is False
    assert reply.message == "Permission denied"


def test_starts_list_only_from_eventlist_header() -> None:
    messages = parse(load("ami_actions.raw"))
    will_follow = parse(
        b"Response: Success\r\nActionID: x\r\nMessage: Queue status will follow\r\n\r\n"
    )[0]

    assert by_action_id(messages, "queuestatus-1")[0].starts_list is True
    assert by_action_id(messages, "queueadd-1")[0].starts_list is False
    assert will_follow.starts_list is False


# --- Command output ------------------------------------------------------------------

QUEUE_SHOW_LINES = [
    "sigap-test has 0 calls (max unlimited) in 'ringall' strategy (0s holdtime, "
    "0s talktime), W:0, C:0, A:0, SL:0.0%, SL2:0.0% within 0s",
    "   Members: ",
    "      op1 (Local/member@wire) (ringinuse disabled) (dynamic) (Not in use) has "
    "taken no calls yet (login was 2 secs ago)",
    "   No Callers",
    "",
]


def old_follows_reply(lines: list[str], glue_marker: bool = False) -> bytes:
    """Build the `Response: Follows` reply that Asterisk 13 and older send."""
    body = "\n".join(lines)
    if not glue_marker:
        body += "\n"
    text = (
        "Response: Follows\r\nPrivilege: Command\r\nActionID: command-1\r\n"
        f"{body}--END COMMAND--\r\n\r\n"
    )
    return text.encode()


def test_command_output_lines_since_asterisk_14() -> None:
    reply = by_action_id(parse(load("ami_actions.raw")), "command-1")[0]

    assert reply.output == QUEUE_SHOW_LINES


def test_command_output_old_follows_body() -> None:
    reply = parse(old_follows_reply(QUEUE_SHOW_LINES))[0]

    assert isinstance(reply, Response)
    assert reply.status == "Follows"
    assert reply.ok is True
    assert reply.action_id == "command-1"
    assert reply.output == QUEUE_SHOW_LINES


def test_command_output_same_for_both_forms() -> None:
    lines = ["Name: looks like a header", "", "", "last line"]
    new_form = "Response: Success\r\nActionID: c\r\n"
    new_form += "".join(f"Output: {line}\r\n" for line in lines) + "\r\n"

    old = parse(old_follows_reply(lines))[0]
    new = parse(new_form.encode())[0]

    assert old.output == lines
    assert new.output == lines


def test_follows_marker_glued_to_last_line() -> None:
    reply = parse(old_follows_reply(["No such command 'x'"], glue_marker=True))[0]

    assert reply.output == ["No such command 'x'"]


def test_follows_body_starting_with_empty_line() -> None:
    # The empty line right after the headers is output, not the end of the reply.
    reply = parse(old_follows_reply(["", "Privilege: looks like a header", "x"]))[0]

    assert reply.output == ["", "Privilege: looks like a header", "x"]
    assert reply.getall("Privilege") == ["Command"]


def test_follows_body_lines_are_not_headers() -> None:
    reply = parse(old_follows_reply(["Channel: PJSIP/op1-1", "1 active channel"]))[0]

    assert "Channel" not in reply
    assert reply.output == ["Channel: PJSIP/op1-1", "1 active channel"]


def test_message_after_follows_reply_parsed_normally() -> None:
    data = old_follows_reply(["a", "", "b"]) + b"Event: Hangup\r\nCause: 16\r\n\r\n"

    messages = parse(data)

    assert messages[0].output == ["a", "", "b"]
    assert isinstance(messages[1], Event)
    assert messages[1].get("Cause") == "16"


def test_follows_reply_split_byte_by_byte() -> None:
    data = old_follows_reply(QUEUE_SHOW_LINES)
    parser = AmiParser()

    messages = []
    for index in range(len(data)):
        messages += parser.feed(data[index : index + 1])

    assert messages[0].output == QUEUE_SHOW_LINES


def test_error_reply_to_command_has_output() -> None:
    reply = by_action_id(parse(load("ami_actions.raw")), "command-2")[0]

    assert reply.ok is False
    assert reply.output == [
        "No such command 'no such command' (type 'core show help no such' for "
        "other possible commands)"
    ]


# --- Buffer cap ----------------------------------------------------------------------


def test_message_over_cap_raises_naming_cap() -> None:
    data = b"Event: Big\r\n" + b"Variable: x=" + b"y" * 200 + b"\r\n"

    with pytest.raises(AmiProtocolError, match="max_message_bytes=100"):
        parse(data, max_message_bytes=100)


def test_line_without_newline_over_cap_raises() -> None:
    parser = AmiParser(max_message_bytes=64)
    parser.feed(b"Event: Big\r\nData: " + b"z" * 40)

    with pytest.raises(AmiProtocolError) as raised:
        parser.feed(b"z" * 40)

    assert "max_message_bytes=64" in str(raised.value)
    assert isinstance(raised.value, WireError)


def test_many_small_messages_in_one_feed_under_cap() -> None:
    message = b"Event: Small\r\nUniqueid: 1.1\r\n\r\n"
    parser = AmiParser(max_message_bytes=len(message))

    messages = parser.feed(message * 50)

    assert len(messages) == 50


def test_follows_body_without_end_marker_hits_cap() -> None:
    parser = AmiParser(max_message_bytes=200)
    parser.feed(b"Response: Follows\r\nPrivilege: Command\r\n")

    with pytest.raises(AmiProtocolError, match="max_message_bytes=200"):
        for _ in range(50):
            parser.feed(b"output line\n\n")


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        AmiParser(max_message_bytes=0)
