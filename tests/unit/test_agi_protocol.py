"""FastAGI: the environment block, command replies, and formatting commands.

`agi_session.raw` contains the bytes Asterisk 22.10.1 sent to a FastAGI server, and
`agi_session.sent` the commands that server sent, one per line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigap_pbx.wire.agi import (
    DEAD_CHANNEL_COMMANDS,
    MAX_COMMAND_BYTES,
    MAX_COMMAND_WORDS,
    AgiEnvironmentParser,
    AgiHangupNotice,
    AgiReply,
    AgiReplyParser,
    check_reply,
    format_command,
    is_dead_channel_command,
)
from sigap_pbx.wire.errors import (
    AgiDeadChannel,
    AgiEnvironmentError,
    AgiError,
    AgiInvalidCommand,
    AgiUsageError,
    WireError,
)

TRANSCRIPTS = Path(__file__).parent / "transcripts"
SESSION = (TRANSCRIPTS / "agi_session.raw").read_bytes()
SENT_LINES = (TRANSCRIPTS / "agi_session.sent").read_bytes().splitlines(keepends=True)
ENVIRONMENT_END = SESSION.index(b"\n\n") + 2
REPLY_BYTES = SESSION[ENVIRONMENT_END:]


def replies(data: bytes) -> list[AgiReply | AgiHangupNotice]:
    return AgiReplyParser().feed(data)


def reply(line: bytes) -> AgiReply:
    (parsed,) = replies(line)
    assert isinstance(parsed, AgiReply)
    return parsed


# --- Environment ---------------------------------------------------------------------


def test_environment_from_recorded_session() -> None:
    parser = AgiEnvironmentParser()

    environment = parser.feed(SESSION)

    assert environment is not None
    assert environment["agi_network_script"] == "route"
    assert environment["agi_channel"] == "Local/agi@wire-00000002;2"
    assert environment["agi_calleridname"] == "Unit 7: Alpha"
    assert environment["agi_arg_1"] == "arg one"
    assert environment["agi_arg_2"] == "a&b"
    assert environment["agi_arg_3"] == ""
    assert environment["agi_accountcode"] == ""
    assert len(environment) == 25
    assert parser.remaining == REPLY_BYTES
    assert parser.done is True


def test_environment_byte_by_byte() -> None:
    parser = AgiEnvironmentParser()
    data = SESSION[:ENVIRONMENT_END]

    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]

    assert results[:-1] == [None] * (len(data) - 1)
    assert results[-1] == AgiEnvironmentParser().feed(data)
    assert parser.remaining == b""


def test_environment_tolerates_crlf() -> None:
    data = b"agi_network: yes\r\nagi_channel: PJSIP/t-1\r\n\r\n200 result=0\n"
    parser = AgiEnvironmentParser()

    environment = parser.feed(data)

    assert environment == {"agi_network": "yes", "agi_channel": "PJSIP/t-1"}
    assert parser.remaining == b"200 result=0\n"


def test_environment_incomplete_returns_none() -> None:
    parser = AgiEnvironmentParser()

    assert parser.feed(b"agi_network: yes\nagi_channel: PJSIP/t-1\n") is None
    assert parser.done is False


def test_feed_after_done_appends_to_remaining() -> None:
    parser = AgiEnvironmentParser()
    parser.feed(b"agi_network: yes\n\nHANG")

    assert parser.feed(b"UP\n") is None
    assert parser.remaining == b"HANGUP\n"


@pytest.mark.parametrize(
    "line",
    [b"GET / HTTP/1.1", b"agi_channel PJSIP/t-1", b"channel: x", b"AGI_CHANNEL: x"],
)
def test_environment_garbage_rejected(line: bytes) -> None:
    with pytest.raises(AgiEnvironmentError) as raised:
        AgiEnvironmentParser().feed(b"agi_network: yes\n" + line + b"\n\n")

    assert repr(line.decode()) in str(raised.value)


def test_environment_repeated_name_rejected() -> None:
    # A caller ID name with a line break tries to set the script name.
    data = (
        b"agi_network_script: route\nagi_calleridname: x\nagi_network_script: evil\n\n"
    )

    with pytest.raises(AgiEnvironmentError, match="repeats 'agi_network_script'"):
        AgiEnvironmentParser().feed(data)


def test_environment_over_cap_rejected() -> None:
    parser = AgiEnvironmentParser(max_bytes=100)
    parser.feed(b"agi_arg_1: " + b"x" * 60 + b"\n")

    with pytest.raises(AgiEnvironmentError, match="max_bytes=100"):
        parser.feed(b"agi_arg_2: " + b"y" * 60)


def test_environment_exactly_at_cap_accepted() -> None:
    data = b"agi_arg_1: " + b"x" * 20 + b"\n\n"

    assert AgiEnvironmentParser(max_bytes=len(data)).feed(data) == {
        "agi_arg_1": "x" * 20
    }


def test_environment_error_is_agi_error() -> None:
    assert issubclass(AgiEnvironmentError, AgiError)
    assert issubclass(AgiEnvironmentError, WireError)


# --- Replies from the recorded session -----------------------------------------------


def test_recorded_replies_in_order() -> None:
    parsed = replies(REPLY_BYTES)

    summary = [
        "HANGUP" if isinstance(item, AgiHangupNotice) else (item.code, item.result)
        for item in parsed
    ]
    assert summary == [
        (200, "1"),
        (200, "1"),
        (200, "1"),
        (200, "1"),
        (200, "1"),
        (200, "0"),
        (520, ""),
        (510, ""),
        (200, ""),
        (200, "1"),
        (200, "-1"),
        "HANGUP",
        (200, "1"),
        (511, ""),
        (200, "1"),
    ]


def test_variable_value_in_parentheses() -> None:
    parsed = replies(REPLY_BYTES)

    assert parsed[0].data == "call-0002"
    assert parsed[2].data == 'a b"c\\d'


def test_variable_value_with_parenthesis_and_fields() -> None:
    parsed = replies(REPLY_BYTES)

    assert parsed[4].raw == "200 result=1 (x) endpos=5)"
    assert parsed[4].data == "x) endpos=5"
    assert parsed[4].fields == {}


def test_stream_file_endpos_field() -> None:
    parsed = replies(REPLY_BYTES)

    assert parsed[5].fields == {"endpos": "3520"}
    assert parsed[5].data is None


def test_get_data_timeout_has_empty_result() -> None:
    parsed = replies(REPLY_BYTES)

    assert parsed[8].raw == "200 result= (timeout)"
    assert parsed[8].result == ""
    assert parsed[8].data == "timeout"


def test_recorded_usage_block_collected() -> None:
    usage_reply = replies(REPLY_BYTES)[6]

    assert usage_reply.code == 520
    assert usage_reply.usage[0] == "Invalid command syntax.  Proper usage follows:"
    assert usage_reply.usage[-1] == "End of proper usage."
    assert "    <value>FAILED</value>" in usage_reply.usage
    assert len(usage_reply.usage) == 7


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(0, len(REPLY_BYTES)), max_size=30))
def test_any_chunking_yields_same_replies(cuts: list[int]) -> None:
    parser = AgiReplyParser()
    parsed: list[AgiReply | AgiHangupNotice] = []
    start = 0
    for cut in [*sorted(cuts), len(REPLY_BYTES)]:
        parsed += parser.feed(REPLY_BYTES[start:cut])
        start = cut

    assert parsed == replies(REPLY_BYTES)


# --- Out-of-band hangup --------------------------------------------------------------


def test_hangup_before_result_is_a_notice() -> None:
    parsed = replies(b"HANGUP\n200 result=-1 endpos=11360\n")

    assert parsed == [
        AgiHangupNotice(),
        AgiReply(200, "-1", None, {"endpos": "11360"}, "200 result=-1 endpos=11360"),
    ]


def test_hangup_then_result_across_feeds() -> None:
    parser = AgiReplyParser()

    first = parser.feed(b"HANG")
    second = parser.feed(b"UP\n200 resu")
    third = parser.feed(b"lt=-1 endpos=11360\n")

    assert first == []
    assert second == [AgiHangupNotice()]
    assert [r.result for r in third if isinstance(r, AgiReply)] == ["-1"]


def test_hangup_after_result_also_a_notice() -> None:
    # Asterisk 22.10.1 sent the result first and HANGUP after it in the recording.
    parsed = replies(REPLY_BYTES)

    assert isinstance(parsed[10], AgiReply)
    assert parsed[10].fields == {"endpos": "4160"}
    assert isinstance(parsed[11], AgiHangupNotice)


def test_recorded_hangup_before_result() -> None:
    # The channel hung up while the server was idle; Asterisk 22.10.1 wrote HANGUP
    # in front of the reply to the next command.
    data = (TRANSCRIPTS / "agi_dead_channel.raw").read_bytes()
    environment_parser = AgiEnvironmentParser()
    environment_parser.feed(data)

    parsed = replies(environment_parser.remaining)

    assert isinstance(parsed[0], AgiHangupNotice)
    assert [item.code for item in parsed[1:]] == [200, 200, 200, 200, 511]


def test_recorded_dead_channel_commands_still_run() -> None:
    data = (TRANSCRIPTS / "agi_dead_channel.raw").read_bytes()
    sent = (TRANSCRIPTS / "agi_dead_channel.sent").read_bytes().splitlines()
    environment_parser = AgiEnvironmentParser()
    environment_parser.feed(data)
    parsed = [
        r for r in replies(environment_parser.remaining) if isinstance(r, AgiReply)
    ]

    outcomes = dict(zip([line.decode() for line in sent], parsed, strict=True))

    assert check_reply(outcomes["VERBOSE done 1"]).result == "1"
    assert outcomes["GET FULL VARIABLE ${SIGAP_CALL_ID}"].data == "call-0002"
    assert check_reply(outcomes["SET VARIABLE SIGAP_RESULT ok"]).result == "1"
    with pytest.raises(AgiDeadChannel):
        check_reply(outcomes["ANSWER"])


# --- Usage blocks and status codes ---------------------------------------------------


def test_long_usage_block_collected_whole() -> None:
    lines = [f" Usage line {n}: with colons and 200 result=1 text" for n in range(200)]
    data = (
        "520-Invalid command syntax.  Proper usage follows:\n"
        + "\n".join(lines)
        + "\n520 End of proper usage.\n200 result=0\n"
    ).encode()

    parsed = replies(data)

    assert len(parsed) == 2
    assert parsed[0].usage[1:-1] == tuple(lines)
    assert parsed[1].code == 200


def test_usage_block_split_byte_by_byte() -> None:
    data = b"520-Invalid.\nline one\n\nline three\n520 End of proper usage.\n"
    parser = AgiReplyParser()

    parsed = []
    for index in range(len(data)):
        parsed += parser.feed(data[index : index + 1])

    assert len(parsed) == 1
    assert parsed[0].usage == (
        "Invalid.",
        "line one",
        "",
        "line three",
        "End of proper usage.",
    )


def test_single_line_520_has_usage() -> None:
    parsed = reply(b"520 Invalid command syntax.  Proper usage not available.\n")

    assert parsed.code == 520
    assert parsed.usage == ("Invalid command syntax.  Proper usage not available.",)


def test_record_file_data_and_fields() -> None:
    parsed = reply(b"200 result=0 (timeout) endpos=8000\n")

    assert parsed.data == "timeout"
    assert parsed.fields == {"endpos": "8000"}


def test_trying_reply_has_status_100() -> None:
    parsed = reply(b"100 result=0 Trying...\n")

    assert parsed.code == 100
    assert parsed.result == "0"
    assert parsed.data is None
    assert parsed.raw == "100 result=0 Trying..."


@pytest.mark.parametrize("line", [b"garbage\n", b"20 result=1\n", b"2000 result=1\n"])
def test_non_agi_line_rejected(line: bytes) -> None:
    with pytest.raises(AgiError, match="invalid AGI reply line"):
        replies(line)


def test_reply_over_cap_rejected() -> None:
    parser = AgiReplyParser(max_reply_bytes=64)

    with pytest.raises(AgiError, match="max_reply_bytes=64"):
        parser.feed(b"200 result=1 (" + b"v" * 100)


def test_usage_block_over_cap_rejected() -> None:
    parser = AgiReplyParser(max_reply_bytes=100)
    parser.feed(b"520-Invalid command syntax.\n")

    with pytest.raises(AgiError, match="max_reply_bytes=100"):
        for _ in range(20):
            parser.feed(b"more usage text\n")


# --- check_reply ---------------------------------------------------------------------


def test_check_reply_returns_success() -> None:
    parsed = reply(b"200 result=-1 endpos=0\n")

    assert check_reply(parsed) is parsed


def test_dead_channel_raises_agi_dead_channel() -> None:
    dead = replies(REPLY_BYTES)[13]

    with pytest.raises(AgiDeadChannel) as raised:
        check_reply(dead)

    assert "channel gone" in str(raised.value)
    assert raised.value.reply is dead
    assert raised.value.code == 511


def test_invalid_command_raises() -> None:
    with pytest.raises(AgiInvalidCommand) as raised:
        check_reply(replies(REPLY_BYTES)[7])

    assert "510 Invalid or unknown command" in str(raised.value)


def test_usage_error_carries_usage_lines() -> None:
    usage_reply = replies(REPLY_BYTES)[6]

    with pytest.raises(AgiUsageError) as raised:
        check_reply(usage_reply)

    assert raised.value.usage == usage_reply.usage
    assert raised.value.code == 520


def test_unknown_status_raises_agi_error() -> None:
    with pytest.raises(AgiError, match="unexpected AGI status 404"):
        check_reply(reply(b"404 Not here\n"))


# --- format_command ------------------------------------------------------------------


def test_format_command_quotes_empty_argument() -> None:
    data = format_command("STREAM", "FILE", "sigap/greeting", "")

    assert data == b'STREAM FILE sigap/greeting ""\n'


def test_format_command_plain_words() -> None:
    assert format_command("SET", "VARIABLE", "SIGAP_RESULT", "ok") == (
        b"SET VARIABLE SIGAP_RESULT ok\n"
    )


def test_format_command_matches_recorded_quoting() -> None:
    # Asterisk returned `a b"c\d` for the recorded GET VARIABLE, so this quoting
    # round-trips through res_agi's argument splitter.
    data = format_command("SET", "VARIABLE", "SIGAP_QUOTED", 'a b"c\\d')

    assert data == SENT_LINES[1]
    assert b'200 result=1 (a b"c\\d)\n' in REPLY_BYTES


def test_quoted_values_round_trip_through_asterisk() -> None:
    # Each value was set with format_command and read back from Asterisk 22.10.1.
    values = ["back\\slash", 'x"y', "tab\there", "a b", "", "\\", '"', 'q\\"x']
    sent = (TRANSCRIPTS / "agi_quoting.sent").read_bytes().splitlines(keepends=True)
    environment_parser = AgiEnvironmentParser()
    environment_parser.feed((TRANSCRIPTS / "agi_quoting.raw").read_bytes())
    parsed = replies(environment_parser.remaining)

    for index, value in enumerate(values):
        set_line = format_command("SET", "VARIABLE", "SIGAP_QUOTED", value)
        assert sent[2 * index] == set_line, f"value {value!r}"
        assert parsed[2 * index + 1].data == value, f"value {value!r}"


@pytest.mark.parametrize(
    ("word", "encoded"),
    [
        ("tab\there", b'"tab\there"'),
        ('say "hi"', b'"say \\"hi\\""'),
        ('x"y', b'x\\"y'),
        ("back\\slash", b"back\\\\slash"),
        ("Jürgen", "Jürgen".encode()),
    ],
)
def test_format_command_escapes(word: str, encoded: bytes) -> None:
    assert format_command("VERBOSE", word, "1") == b"VERBOSE " + encoded + b" 1\n"


@pytest.mark.parametrize(
    "word", ["ok\nHANGUP", "ok\rEXEC Dial PJSIP/x", "ok\x00", "\n"]
)
def test_format_command_rejects_line_breaks(word: str) -> None:
    with pytest.raises(AgiError) as raised:
        format_command("SET", "VARIABLE", "X", word)

    assert "word 3" in str(raised.value)
    assert repr(word)[:20] in str(raised.value)


def test_format_command_rejects_non_str() -> None:
    with pytest.raises(AgiError, match="not a str"):
        format_command("WAIT", "FOR", "DIGIT", 5000)  # type: ignore[arg-type]


def test_format_command_rejects_empty_call() -> None:
    with pytest.raises(AgiError, match="empty AGI command"):
        format_command()


def test_format_command_length_limit() -> None:
    prefix = "VERBOSE "
    fits = "x" * (MAX_COMMAND_BYTES - len(prefix) - 1)

    assert len(format_command("VERBOSE", fits)) == MAX_COMMAND_BYTES
    with pytest.raises(AgiError, match=f"longer than {MAX_COMMAND_BYTES} bytes"):
        format_command("VERBOSE", fits + "x")


def test_format_command_word_limit() -> None:
    words = ["VERBOSE"] + ["w"] * (MAX_COMMAND_WORDS - 1)

    assert format_command(*words).count(b" ") == MAX_COMMAND_WORDS - 1
    with pytest.raises(AgiError, match=f"has {MAX_COMMAND_WORDS + 1} words"):
        format_command(*words, "w")


# --- Dead-channel commands -----------------------------------------------------------


def test_dead_channel_commands_listed() -> None:
    assert DEAD_CHANNEL_COMMANDS == {
        "GET VARIABLE",
        "SET VARIABLE",
        "VERBOSE",
        "GET FULL VARIABLE",
    }


@pytest.mark.parametrize(
    ("words", "safe"),
    [
        (("GET", "VARIABLE", "SIGAP_CALL_ID"), True),
        (("SET", "VARIABLE", "SIGAP_RESULT", "ok"), True),
        (("verbose", "done", "1"), True),
        (("GET", "FULL", "VARIABLE", "${CHANNEL}"), True),
        (("STREAM", "FILE", "beep", ""), False),
        (("EXEC", "Dial", "PJSIP/op1"), False),
        (("GET",), False),
    ],
)
def test_is_dead_channel_command(words: tuple[str, ...], safe: bool) -> None:
    assert is_dead_channel_command(*words) is safe
