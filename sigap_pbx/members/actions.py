"""Operator actions through the API: log in, log out, pause with a reason, unpause.

The same actions exist as feature codes on the operators' phones (see
dialplans/sigap-operators.conf). Log in and log out go through the membership
manager, so they hold for the rest of the shift. Pauses are sent as QueuePause
without a queue, which app_queue applies to every queue the member is in. Every
action is audited, including the feature-code pauses, which the dialplan announces
with a SigapOperatorAction user event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from sigap_pbx.ami.client import AmiActionFailed, AmiError
from sigap_pbx.wire.ami import Event
from sigap_pbx.wire.dialstring import pjsip_interface, validate_endpoint
from sigap_pbx.wire.errors import DialStringError

log = structlog.get_logger(__name__)

# Reasons an operator may pause for, with the Indonesian label the console shows.
# The feature codes *21 to *25 use the same reasons, in this order.
PAUSE_REASONS: dict[str, str] = {
    "break": "istirahat",
    "prayer": "sholat",
    "toilet": "toilet",
    "briefing": "briefing",
    "training": "pelatihan",
}

Audit = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


class OperatorActionError(Exception):
    """An action that cannot be done, with a stable code for the API."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class Membership(Protocol):
    async def operator_action(
        self, endpoint: str, action: str, *, actor: str, source: str
    ) -> str: ...


class AmiActions(Protocol):
    async def action(
        self, name: str, fields: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> Any: ...


class OperatorActions:
    def __init__(
        self,
        ami: AmiActions,
        membership: Membership,
        operators: set[str],
        *,
        audit: Audit | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.ami = ami
        self.membership = membership
        self.operators = operators
        self.audit = audit
        self.timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def _endpoint(self, endpoint: str) -> str:
        try:
            endpoint = validate_endpoint(endpoint, field="endpoint")
        except DialStringError as exc:
            raise OperatorActionError("invalid_endpoint", str(exc)) from None
        if endpoint not in self.operators:
            known = ", ".join(sorted(self.operators))
            raise OperatorActionError(
                "operator_not_found",
                f"endpoint {endpoint!r} is not an operator of this site, use one of {known}"
                " or add it under [sip] operators in the config",
                404,
            )
        return endpoint

    async def login(self, endpoint: str, actor: str) -> None:
        await self._membership(endpoint, "login", actor)

    async def logout(self, endpoint: str, actor: str) -> None:
        await self._membership(endpoint, "logout", actor)

    async def _membership(self, endpoint: str, action: str, actor: str) -> None:
        endpoint = self._endpoint(endpoint)
        result = await self.membership.operator_action(endpoint, action, actor=actor, source="api")
        if result != "ok":
            raise OperatorActionError(
                "asterisk_unavailable",
                f"{action} of {endpoint!r} failed because Asterisk did not accept the"
                " queue change; check that Asterisk runs (GET /api/health) and retry",
                503,
            )

    async def pause(self, endpoint: str, reason: str, actor: str) -> None:
        endpoint = self._endpoint(endpoint)
        if reason not in PAUSE_REASONS:
            raise OperatorActionError(
                "invalid_reason",
                f"pause reason {reason!r} is invalid, use one of {', '.join(PAUSE_REASONS)}",
            )
        await self._queue_pause(endpoint, True, reason)
        await self._audit(actor, "member.pause", endpoint, {"source": "api", "reason": reason})

    async def unpause(self, endpoint: str, actor: str) -> None:
        endpoint = self._endpoint(endpoint)
        await self._queue_pause(endpoint, False, "")
        await self._audit(actor, "member.unpause", endpoint, {"source": "api"})

    async def _queue_pause(self, endpoint: str, paused: bool, reason: str) -> None:
        fields = {"Interface": pjsip_interface(endpoint), "Paused": "true" if paused else "false"}
        if reason:
            fields["Reason"] = reason
        try:
            await self.ami.action("QueuePause", fields, timeout=self.timeout)
        except AmiActionFailed as exc:
            message = exc.completion.response.message or ""
            if "not found" in message.lower():
                raise OperatorActionError(
                    "not_a_member",
                    f"endpoint {endpoint!r} is in no queue, log it in first",
                    409,
                ) from None
            raise OperatorActionError(
                "asterisk_rejected", f"Asterisk rejected QueuePause: {message}", 502
            ) from None
        except AmiError as exc:
            raise OperatorActionError(
                "asterisk_unavailable",
                f"QueuePause of {endpoint!r} failed: {exc}; check GET /api/health and retry",
                503,
            ) from None
        log.info("operator_pause_changed", endpoint=endpoint, paused=paused, reason=reason)

    def on_event(self, event: Event) -> None:
        """Audit the pauses operators make with feature codes."""
        if event.name != "UserEvent" or event.get("UserEvent") != "SigapOperatorAction":
            return
        endpoint = event.get("Endpoint") or ""
        action = event.get("Action") or ""
        if action not in ("pause", "unpause") or not endpoint:
            return
        detail: dict[str, Any] = {"source": "feature_code"}
        if action == "pause":
            detail["reason"] = event.get("Reason") or ""
        task = asyncio.ensure_future(self._audit(endpoint, f"member.{action}", endpoint, detail))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Wait for audit entries being written, then cancel any left."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _audit(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        if self.audit is None:
            return
        try:
            await self.audit(actor, action, subject, detail)
        except Exception:
            log.exception("audit_write_failed", action=action, subject=subject)
