"""Operators' log-in and log-out feature codes with a stub AMI client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sigap_pbx.agi.server import FastAgiServer
from sigap_pbx.ami.client import (
    AmiActionFailed,
    AmiActionTimeout,
    AmiError,
    AmiNotConnected,
)
from sigap_pbx.operators import OperatorFeatures
from sigap_pbx.wire.ami import Completion, Response


def completion(status: str, message: str) -> Completion:
    response = Response(
        headers=(("Response", status), ("ActionID", "stub-1"), ("Message", message))
    )
    return Completion("stub-1", response)


class StubAmi:
    """Record every action and reply with `outcome`, a Completion or an error."""

    def __init__(self, outcome: Completion | AmiError | None = None) -> None:
        self.outcome = outcome or completion("Success", "Added interface to queue")
        self.actions: list[tuple[str, dict[str, str], float | None]] = []

    async def action(
        self, name: str, fields: Any = (), *, timeout: float | None = None
    ) -> Completion:
        self.actions.append((name, dict(fields), timeout))
        if isinstance(self.outcome, AmiError):
            raise self.outcome
        if not self.outcome.response.ok:
            raise AmiActionFailed(name, self.outcome)
        return self.outcome


class StubSession:
    """The part of AgiSession that the features use."""

    def __init__(self, arg_1: str) -> None:
        self.env = {"agi_network_script": "operator/login", "agi_arg_1": arg_1}
        self.variables: dict[str, str] = {}

    def arg(self, index: int) -> str:
        return self.env.get(f"agi_arg_{index}", "")

    async def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value


def features(ami: StubAmi) -> OperatorFeatures:
    return OperatorFeatures(ami, "operators", {"op1", "op2"}, timeout=2.0)  # type: ignore[arg-type]


async def test_login_adds_member() -> None:
    ami = StubAmi()
    session = StubSession("op1")

    await features(ami).login(session)  # type: ignore[arg-type]

    assert session.variables == {"SIGAP_RESULT": "ok"}
    assert ami.actions == [
        (
            "QueueAdd",
            {
                "Queue": "operators",
                "Interface": "PJSIP/op1",
                "MemberName": "op1",
                "StateInterface": "PJSIP/op1",
                "Paused": "false",
            },
            2.0,
        )
    ]


async def test_logout_removes_member() -> None:
    ami = StubAmi(completion("Success", "Removed interface from queue"))
    session = StubSession("op2")

    await features(ami).logout(session)  # type: ignore[arg-type]

    assert session.variables == {"SIGAP_RESULT": "ok"}
    assert ami.actions == [
        ("QueueRemove", {"Queue": "operators", "Interface": "PJSIP/op2"}, 2.0)
    ]


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ("login", "Unable to add interface: Already there"),
        ("logout", "Unable to remove interface: Not there"),
    ],
)
async def test_repeat_counts_as_ok(feature: str, message: str) -> None:
    ami = StubAmi(completion("Error", message))
    session = StubSession("op1")

    await getattr(features(ami), feature)(session)

    assert session.variables == {"SIGAP_RESULT": "ok"}
    assert len(ami.actions) == 1


@pytest.mark.parametrize(
    "outcome",
    [
        AmiNotConnected("AMI action QueueAdd not sent: no AMI session is logged in"),
        AmiActionTimeout("AMI action QueueAdd got no reply within 2 s"),
        completion("Error", "Unable to add interface to queue: No such queue"),
    ],
    ids=["not-connected", "timeout", "no-such-queue"],
)
async def test_ami_failure_sets_error(outcome: Completion | AmiError) -> None:
    ami = StubAmi(outcome)
    session = StubSession("op1")

    await features(ami).login(session)  # type: ignore[arg-type]

    assert session.variables == {"SIGAP_RESULT": "error"}
    assert len(ami.actions) == 1


async def test_unknown_endpoint_rejected() -> None:
    ami = StubAmi()
    session = StubSession("spv1")

    await features(ami).login(session)  # type: ignore[arg-type]

    assert session.variables == {"SIGAP_RESULT": "rejected"}
    assert ami.actions == []


@pytest.mark.parametrize(
    "arg_1",
    [
        "op1&PJSIP/evil",
        "op1,1",
        "op1\nagi_network_script: other",
        "op1;2",
        "${EXTEN}",
        "",
    ],
    ids=["ampersand", "comma", "newline", "semicolon", "expression", "empty"],
)
async def test_injection_rejected(arg_1: str) -> None:
    ami = StubAmi()
    session = StubSession(arg_1)

    await features(ami).login(session)  # type: ignore[arg-type]

    assert session.variables == {"SIGAP_RESULT": "rejected"}
    assert ami.actions == []


async def test_login_over_fastagi() -> None:
    ami = StubAmi()
    server = FastAgiServer("127.0.0.1", 0, environment_timeout=1.0)
    server.route("operator/login", features(ami).login)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"agi_network: yes\n"
            b"agi_network_script: operator/login\n"
            b"agi_channel: Local/s@sigap-agi-runner-00000002;2\n"
            b"agi_uniqueid: 1796409568.5\n"
            b"agi_arg_1: op1\n"
            b"\n"
        )
        command = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.write(b"200 result=1\n")
        rest = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
    finally:
        await server.stop()

    assert command == b"SET VARIABLE SIGAP_RESULT ok\n"
    assert rest == b""
    assert [name for name, _, _ in ami.actions] == ["QueueAdd"]


@pytest.mark.parametrize("given", ["", "wrong-token", "s3cret-token-x", "s3cret-toke"])
async def test_wrong_token_rejected(given: str) -> None:
    """A local process that is not Asterisk does not know the dialplan's token."""
    ami = StubAmi()
    session = StubSession("op1")
    session.env["agi_arg_2"] = given
    guarded = OperatorFeatures(ami, "operators", {"op1"}, token="s3cret-token")  # type: ignore[arg-type]

    await guarded.logout(session)  # type: ignore[arg-type]

    assert session.variables == {"SIGAP_RESULT": "rejected"}
    assert ami.actions == []


async def test_right_token_accepted() -> None:
    ami = StubAmi(completion("Success", "Removed interface from queue"))
    session = StubSession("op1")
    session.env["agi_arg_2"] = "s3cret-token"
    guarded = OperatorFeatures(ami, "operators", {"op1"}, token="s3cret-token")  # type: ignore[arg-type]

    await guarded.logout(session)  # type: ignore[arg-type]

    assert session.variables == {"SIGAP_RESULT": "ok"}
    assert [name for name, _, _ in ami.actions] == ["QueueRemove"]


@pytest.mark.parametrize(
    ("age", "result", "actions"),
    [(2, "ok", ["QueueRemove"]), (5, "ok", ["QueueRemove"]), (6, "stale", [])],
)
async def test_stale_request_ignored(age: int, result: str, actions: list[str]) -> None:
    """A request the dialplan stopped waiting for is not carried out late."""
    ami = StubAmi(completion("Success", "Removed interface from queue"))
    session = StubSession("op1")
    session.env["agi_arg_3"] = str(1_796_400_000 - age)
    checked = OperatorFeatures(  # type: ignore[arg-type]
        ami, "operators", {"op1"}, max_age=5, wall_clock=lambda: 1_796_400_000.0
    )

    await checked.logout(session)  # type: ignore[arg-type]

    assert session.variables == {"SIGAP_RESULT": result}
    assert [name for name, _, _ in ami.actions] == actions
