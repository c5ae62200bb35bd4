"""AMI actions: formatting, header injection, and correlating replies to actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigap_pbx.wire.ami import (
    ActionTracker,
    AmiParser,
    Banner,
    Completion,
    Event,
    Message,
    Response,
    format_action,
)
from sigap_pbx.wire.errors import AmiProtocolError

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def load(name: str) -> bytes:
    return (TRANSCRIPTS / name).read_bytes()


def parse(data: bytes) -> list[Banner | Message]:
    return AmiParser().feed(data)


def one(data: bytes) -> Message:
    (message,) = parse(data)
    assert isinstance(message, Message)
    return message


def recorded(action_id: str) -> list[Message]:
    """Return the recorded reply and list events of one action, in wire order."""
    return [
        m
        for m in parse(load("ami_actions.raw"))
        if isinstance(m, Message) and m.action_id == action_id
    ]


def unrelated_events() -> list[Event]:
    events = [m for m in parse(load("ami_events.raw")) if isinstance(m, Event)]
    return [e for e in events if e.action_id is None][:6]


# --- format_action -------------------------------------------------------------------


def test_format_action_exact_bytes() -> None:
    data = format_action(
        "QueueAdd",
        "a1",
        {"Queue": "operators", "Interface": "PJSIP/op1", "MemberName": "op1"},
    )

    assert data == (
        b"Action: QueueAdd\r\nActionID: a1\r\nQueue: operators\r\n"
        b"Interface: PJSIP/op1\r\nMemberName: op1\r\n\r\n"
    )


def test_format_action_matches_recorded_login() -> None:
    sent = load("ami_actions.sent")
    login = sent[: sent.index(b"\r\n\r\n") + 4]

    data = format_action(
        "Login",
        "login-1",
        [("Username", "recorder"), ("Secret", "recorder-secret"), ("Events", "off")],
    )

    assert data == login


@pytest.mark.parametrize("key", ["ActionID", "actionid", "ACTIONID", "ActionId"])
def test_caller_actionid_dropped_in_any_case(key: str) -> None:
    data = format_action("Ping", "mine", {key: "theirs"})

    assert data.lower().count(b"actionid") == 1
    assert b"ActionID: mine\r\n" in data
    assert b"theirs" not in data


def test_sequence_value_becomes_repeated_headers() -> None:
    data = format_action(
        "Originate",
        "o1",
        {"Channel": "PJSIP/op1", "Variable": ["SIGAP_A=1", "SIGAP_B=x=y"]},
    )

    message = one(data)
    assert message.getall("Variable") == ["SIGAP_A=1", "SIGAP_B=x=y"]
    assert data.count(b"Variable: ") == 2


def test_pairs_keep_order_and_repeats() -> None:
    data = format_action(
        "Originate", "o1", [("Variable", "A=1"), ("Data", "x"), ("Variable", "B=2")]
    )

    assert [key for key, _ in one(data).headers] == [
        "Action",
        "ActionID",
        "Variable",
        "Data",
        "Variable",
    ]


def test_formatted_action_parses_back() -> None:
    fields = {"Channel": "PJSIP/op1", "CallerID": '"Unit 7: Alpha" <112>', "Data": ""}

    message = one(format_action("Originate", "o1", fields))

    assert message.as_dict() == {"Action": "Originate", "ActionID": "o1", **fields}


def test_non_ascii_value_encoded_as_utf8() -> None:
    data = format_action("Setvar", "s1", {"Value": "Jürgen"})

    assert "Value: Jürgen\r\n".encode() in data


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"Channel": "PJSIP/op1\r\nAction: Originate"}, "'Channel'"),
        ({"Channel": "PJSIP/op1\nExten: 999"}, "'Channel'"),
        ({"Channel": "PJSIP/op1\rX"}, "'Channel'"),
        ({"Channel": "PJSIP/op1\x00"}, "'Channel'"),
        ({"Variable": ["A=1", "B=2\r\nAction: Hangup"]}, "'Variable'"),
        ({"Chan\r\nnel": "x"}, "'Chan\\r\\nnel'"),
        ({"Bad Key": "x"}, "'Bad Key'"),
        ({"Key:": "x"}, "'Key:'"),
        ({"": "x"}, "''"),
    ],
)
def test_injection_in_fields_rejected(fields: dict, named: str) -> None:
    with pytest.raises(AmiProtocolError) as raised:
        format_action("Originate", "o1", fields)

    assert named in str(raised.value)


@pytest.mark.parametrize("name", ["Queue Add", "Ping\r\nAction: Hangup", "", "Q-Add"])
def test_invalid_action_name_rejected(name: str) -> None:
    with pytest.raises(AmiProtocolError, match="invalid action name"):
        format_action(name, "a1")


@pytest.mark.parametrize("action_id", ["a1\r\nAction: Hangup", "a1\n", "a\x00"])
def test_injection_in_action_id_rejected(action_id: str) -> None:
    with pytest.raises(AmiProtocolError, match="'ActionID'"):
        format_action("Ping", action_id)


def test_empty_action_id_rejected() -> None:
    with pytest.raises(AmiProtocolError, match="empty ActionID"):
        format_action("Ping", "")


def test_second_action_header_rejected() -> None:
    with pytest.raises(AmiProtocolError, match="second Action header"):
        format_action("Ping", "a1", {"action": "Hangup"})


@pytest.mark.parametrize("value", [5, None, b"bytes", ["ok", 3]])
def test_non_str_value_rejected(value: object) -> None:
    with pytest.raises(AmiProtocolError, match="'Timeout'"):
        format_action("Originate", "o1", {"Timeout": value})  # type: ignore[dict-item]


def test_malformed_pair_rejected() -> None:
    with pytest.raises(AmiProtocolError, match="pairs"):
        format_action("Ping", "a1", [("Only one",)])  # type: ignore[list-item]


# --- ActionTracker: single replies ---------------------------------------------------


def test_queueadd_single_reply_completes_at_once() -> None:
    tracker = ActionTracker()
    tracker.register("queueadd-1", now=0.0, timeout=5.0)
    (reply,) = recorded("queueadd-1")

    completions, passthrough = tracker.on_message(reply)

    assert completions == [Completion("queueadd-1", reply)]
    assert passthrough is None
    assert "queueadd-1" not in tracker


def test_will_follow_text_without_eventlist_completes_at_once() -> None:
    tracker = ActionTracker()
    tracker.register("q1", now=0.0, timeout=5.0)
    reply = one(
        b"Response: Success\r\nActionID: q1\r\n"
        b"Message: Queue status will follow\r\n\r\n"
    )

    completions, passthrough = tracker.on_message(reply)

    assert [c.action_id for c in completions] == ["q1"]
    assert completions[0].events == []
    assert passthrough is None


def test_error_reply_completes_action() -> None:
    tracker = ActionTracker()
    tracker.register("queueadd-2", now=0.0, timeout=5.0)
    (reply,) = recorded("queueadd-2")

    completions, _ = tracker.on_message(reply)

    assert completions[0].response.ok is False
    assert len(tracker) == 0


# --- ActionTracker: list actions -----------------------------------------------------


def test_list_action_collects_events_until_complete() -> None:
    tracker = ActionTracker()
    tracker.register("queuestatus-1", now=0.0, timeout=5.0)
    reply, params, member, complete = recorded("queuestatus-1")

    results = [tracker.on_message(m) for m in (reply, params, member)]
    completions, passthrough = tracker.on_message(complete)

    assert all(r.completions == [] and r.passthrough is None for r in results)
    assert completions == [
        Completion("queuestatus-1", reply, [params, member], list_complete=complete)
    ]
    assert passthrough is None
    assert complete.get("ListItems") == "2"


def test_list_with_interleaved_unrelated_events() -> None:
    tracker = ActionTracker()
    tracker.register("coreshowchannels-1", now=0.0, timeout=5.0)
    reply, first, second, complete = recorded("coreshowchannels-1")
    noise = unrelated_events()
    stream = [reply, noise[0], first, noise[1], noise[2], second, noise[3], complete]

    passed = []
    completions = []
    for message in stream:
        result = tracker.on_message(message)
        completions += result.completions
        if result.passthrough is not None:
            passed.append(result.passthrough)

    assert passed == noise[:4]
    assert len(completions) == 1
    assert completions[0].events == [first, second]


def test_recorded_session_completes_every_action() -> None:
    tracker = ActionTracker()
    messages = parse(load("ami_actions.raw"))
    action_ids = [m.action_id for m in messages if isinstance(m, Response)]
    for action_id in action_ids:
        tracker.register(action_id, now=0.0, timeout=5.0)

    completed = []
    passed = []
    for message in messages:
        completions, passthrough = tracker.on_message(message)
        completed += [c.action_id for c in completions]
        passed += [passthrough] if passthrough is not None else []

    assert completed == action_ids
    assert passed == [messages[0]]
    assert len(tracker) == 0


def test_hangup_with_regex_is_a_list_action() -> None:
    # Hangup with a /regex/ channel replies with a list of ChannelHungup events.
    tracker = ActionTracker()
    tracker.register("hangup-1", now=0.0, timeout=5.0)

    completions = []
    for message in recorded("hangup-1"):
        completions += tracker.on_message(message).completions

    assert [e.name for e in completions[0].events] == ["ChannelHungup", "ChannelHungup"]


# --- ActionTracker: unknown ids and ordering -----------------------------------------


def test_unknown_actionid_reply_passes_through() -> None:
    tracker = ActionTracker()
    tracker.register("mine", now=0.0, timeout=5.0)
    (stray,) = recorded("queueadd-1")

    completions, passthrough = tracker.on_message(stray)

    assert completions == []
    assert passthrough is stray
    assert "mine" in tracker


def test_unknown_actionid_event_passes_through() -> None:
    tracker = ActionTracker()
    tracker.register("mine", now=0.0, timeout=5.0)
    event = one(b"Event: QueueMember\r\nActionID: someone-else\r\nQueue: q\r\n\r\n")

    completions, passthrough = tracker.on_message(event)

    assert completions == []
    assert passthrough is event
    assert "mine" in tracker


def test_originate_response_after_completion_passes_through() -> None:
    tracker = ActionTracker()
    tracker.register("originate-2", now=0.0, timeout=5.0)
    messages = [
        m
        for m in parse(load("ami_events.raw"))
        if isinstance(m, Message) and m.action_id == "originate-2"
    ]
    reply, originate_response = messages

    first = tracker.on_message(reply)
    second = tracker.on_message(originate_response)

    assert [c.action_id for c in first.completions] == ["originate-2"]
    assert second.completions == []
    assert second.passthrough is originate_response


def test_event_before_list_reply_passes_through() -> None:
    tracker = ActionTracker()
    tracker.register("queuestatus-1", now=0.0, timeout=5.0)
    reply, params, member, complete = recorded("queuestatus-1")

    early = tracker.on_message(params)
    tracker.on_message(reply)
    tracker.on_message(member)
    completions, _ = tracker.on_message(complete)

    assert early.passthrough is params
    assert completions[0].events == [member]


def test_second_reply_for_listing_action_passes_through() -> None:
    tracker = ActionTracker()
    tracker.register("queuestatus-1", now=0.0, timeout=5.0)
    reply = recorded("queuestatus-1")[0]
    tracker.on_message(reply)

    completions, passthrough = tracker.on_message(reply)

    assert completions == []
    assert passthrough is reply


def test_message_without_actionid_passes_through() -> None:
    tracker = ActionTracker()
    tracker.register("a1", now=0.0, timeout=5.0)
    banner = parse(load("ami_actions.raw"))[0]
    event = unrelated_events()[0]

    assert tracker.on_message(banner).passthrough is banner
    assert tracker.on_message(event).passthrough is event
    assert "a1" in tracker


# --- ActionTracker: timeouts and closing ---------------------------------------------


def test_expire_returns_only_overdue_ids() -> None:
    tracker = ActionTracker()
    tracker.register("slow", now=100.0, timeout=5.0)
    tracker.register("fast", now=100.0, timeout=1.0)

    assert tracker.expire(100.5) == []
    assert tracker.expire(101.0) == ["fast"]
    assert "fast" not in tracker
    assert "slow" in tracker
    assert tracker.next_deadline() == 105.0


def test_expire_orders_by_deadline() -> None:
    tracker = ActionTracker()
    tracker.register("b", now=0.0, timeout=3.0)
    tracker.register("a", now=0.0, timeout=2.0)

    assert tracker.expire(10.0) == ["a", "b"]
    assert tracker.next_deadline() is None


def test_late_reply_after_expiry_passes_through() -> None:
    tracker = ActionTracker()
    tracker.register("queueadd-1", now=0.0, timeout=1.0)
    tracker.expire(2.0)
    (reply,) = recorded("queueadd-1")

    completions, passthrough = tracker.on_message(reply)

    assert completions == []
    assert passthrough is reply


def test_list_action_expires_mid_list() -> None:
    tracker = ActionTracker()
    tracker.register("queuestatus-1", now=0.0, timeout=1.0)
    reply, params, _, complete = recorded("queuestatus-1")
    tracker.on_message(reply)
    tracker.on_message(params)

    assert tracker.expire(1.0) == ["queuestatus-1"]
    assert tracker.on_message(complete).passthrough is complete


def test_fail_all_returns_and_forgets_everything() -> None:
    tracker = ActionTracker()
    tracker.register("a", now=0.0, timeout=1.0)
    tracker.register("b", now=0.0, timeout=1.0)

    assert sorted(tracker.fail_all()) == ["a", "b"]
    assert len(tracker) == 0
    assert tracker.fail_all() == []


def test_duplicate_register_rejected() -> None:
    tracker = ActionTracker()
    tracker.register("a", now=0.0, timeout=1.0)

    with pytest.raises(ValueError, match="already pending"):
        tracker.register("a", now=0.0, timeout=1.0)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan")])
def test_non_positive_timeout_rejected(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        ActionTracker().register("a", now=0.0, timeout=timeout)
