"""Operators' feature codes served over FastAGI: log in (*11) and log out (*12).

The dialplan runs these in a Local channel with a time limit and falls back to
AddQueueMember/RemoveQueueMember itself when the controller does not answer, so a
failure here delays an operator by at most a few seconds and never blocks a caller.
The handler sets SIGAP_RESULT on the channel: `ok`, `rejected` (not an operator of
this site) or `error` (the dialplan then does the action itself).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from sigap_pbx.agi.server import AgiSession
from sigap_pbx.ami.client import AmiActionFailed, AmiClient, AmiError
from sigap_pbx.wire.dialstring import pjsip_interface, validate_endpoint
from sigap_pbx.wire.errors import DialStringError

log = structlog.get_logger(__name__)

# app_queue's replies when the member is already in (or already out of) the queue.
ALREADY_MEMBER = "already there"
NOT_MEMBER = "not there"


class MembershipActions(Protocol):
    async def operator_action(
        self, endpoint: str, action: str, *, actor: str, source: str
    ) -> str: ...


class OperatorFeatures:
    def __init__(
        self,
        ami: AmiClient,
        queue: str,
        operators: set[str],
        timeout: float = 2.0,
        *,
        token: str | None = None,
        membership: MembershipActions | None = None,
        max_age: float | None = None,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.ami = ami
        self.queue = queue
        self.operators = operators
        self.timeout = timeout
        # The dialplan passes this as agi_arg_2. None (tests) skips the check.
        self.token = token
        # With a membership manager, the change is audited and stored as a duty
        # override for the rest of the shift. Without one, only the queue changes.
        self.membership = membership
        # Seconds after which a request is stale: the dialplan has stopped waiting
        # and done the action itself (agi_arg_3 is the request's epoch). None skips
        # the check.
        self.max_age = max_age
        self.wall_clock = wall_clock

    async def login(self, session: AgiSession) -> None:
        await self._run(session, "login")

    async def logout(self, session: AgiSession) -> None:
        await self._run(session, "logout")

    async def _run(self, session: AgiSession, action: str) -> None:
        if self.token is not None and not hmac.compare_digest(
            session.arg(2).encode(), self.token.encode()
        ):
            log.warning("operator_feature_bad_token", action=action, peer_arg=session.arg(1)[:64])
            await session.set_variable("SIGAP_RESULT", "rejected")
            return
        try:
            endpoint = validate_endpoint(session.arg(1), field="agi_arg_1")
        except DialStringError as exc:
            log.warning("operator_feature_invalid_endpoint", error=str(exc))
            await session.set_variable("SIGAP_RESULT", "rejected")
            return
        if self._stale(session):
            log.warning("operator_feature_stale", endpoint=endpoint, action=action,
                        requested=session.arg(3))
            await session.set_variable("SIGAP_RESULT", "stale")
            return
        if endpoint not in self.operators:
            log.warning("operator_feature_rejected", endpoint=endpoint, action=action)
            await session.set_variable("SIGAP_RESULT", "rejected")
            return
        if self.membership is not None:
            result = await self.membership.operator_action(
                endpoint, action, actor=endpoint, source="feature_code"
            )
        else:
            result = await self._queue_change(endpoint, action)
        await session.set_variable("SIGAP_RESULT", result)
        log.info("operator_feature", endpoint=endpoint, action=action, result=result)

    def _stale(self, session: AgiSession) -> bool:
        if self.max_age is None:
            return False
        requested = session.arg(3)
        if not requested.isdigit():
            # A dialplan from before the argument existed: treat it as fresh.
            return False
        return self.wall_clock() - int(requested) > self.max_age

    async def _queue_change(self, endpoint: str, action: str) -> str:
        interface = pjsip_interface(endpoint)
        fields: dict[str, str]
        if action == "login":
            name = "QueueAdd"
            fields = {
                "Queue": self.queue,
                "Interface": interface,
                "MemberName": endpoint,
                "StateInterface": interface,
                "Paused": "false",
            }
            benign = ALREADY_MEMBER
        else:
            name = "QueueRemove"
            fields = {"Queue": self.queue, "Interface": interface}
            benign = NOT_MEMBER
        try:
            await self.ami.action(name, fields, timeout=self.timeout)
        except AmiActionFailed as exc:
            if benign in (exc.completion.response.message or "").lower():
                return "ok"
            log.error("operator_queue_change_failed", action=name, error=str(exc))
            return "error"
        except AmiError as exc:
            log.error("operator_queue_change_failed", action=name, error=str(exc))
            return "error"
        return "ok"
