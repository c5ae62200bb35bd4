"""The wallboard against the real Asterisk: a supervisor listens in on a call."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.integration.stack import Stack, running_controller

SUPERVISOR_PHONE = "spv1"


@contextlib.asynccontextmanager
async def supervisor_session(controller: Any, endpoint: str) -> AsyncIterator[Any]:
    """Yield a client session signed in as a supervisor whose own phone is `endpoint`."""
    username = f"itest-spv-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    await controller.accounts.add_user(username, password, "supervisor",
                                       endpoint=endpoint, actor="itest")
    signed_in = await controller.accounts.sign_in(username, password, "127.0.0.1")
    headers = {
        "Cookie": f"sigap_session={signed_in.token}",
        "X-CSRF-Token": signed_in.session.csrf_token,
    }
    async with aiohttp.ClientSession(headers=headers) as session:
        session.user = signed_in.user  # type: ignore[attr-defined]
        yield session


async def spy_channels(controller: Any) -> list[dict[str, str]]:
    response = await controller.ami.action("CoreShowChannels", timeout=10)
    channels = [event.as_dict() for event in response.events]
    return [channel for channel in channels if channel.get("Application") == "ChanSpy"]


def operator_state(snapshot: dict[str, Any], endpoint: str) -> str:
    return next(row["state"] for row in snapshot["operators"] if row["endpoint"] == endpoint)


async def test_supervisor_listens_to_answered_call(clean_stack: Stack, config, caller_number):
    stack = clean_stack
    async with running_controller(config) as controller:
        await stack.start_phone("op1")
        await stack.start_phone(SUPERVISOR_PHONE)
        stack.add_member("op1")
        base = f"http://127.0.0.1:{controller.web_port}"
        call = asyncio.create_task(stack.call(caller_number, hold_ms=15000))
        try:
            async with supervisor_session(controller, SUPERVISOR_PHONE) as session:

                async def op1_on_call() -> bool:
                    async with session.get(f"{base}/api/wallboard") as response:
                        assert response.status == 200
                        return operator_state(await response.json(), "op1") == "on_call"

                await Stack.wait_for(op1_on_call, 20, "op1 on a call on the wallboard")
                page = controller.feed.subscribe(session.user)

                async with session.post(f"{base}/api/wallboard/spy",
                                        json={"endpoint": "op1", "mode": "listen"}) as response:
                    body = await response.json()
                    assert response.status == 202, body
                assert body["supervisor_endpoint"] == SUPERVISOR_PHONE

            # The supervisor's phone rings, answers after 1 s, and runs ChanSpy.
            async def spying() -> bool:
                return any(channel.get("ChannelStateDesc") == "Up"
                           for channel in await spy_channels(controller))

            await Stack.wait_for(spying, 15, "ChanSpy running on the supervisor's phone")
            (spy,) = await spy_channels(controller)
            assert spy["Channel"].startswith(f"PJSIP/{SUPERVISOR_PHONE}-")
            # The page hears that the phone answered.
            result_event = await asyncio.wait_for(_spy_result(page), 10)
            assert result_event.data["answered"] is True
            assert result_event.data["endpoint"] == "op1"
            assert spy["Context"] == "sigap-supervisor-spy"
            assert spy["ApplicationData"] == "PJSIP/op1-,qE"
            # app_chanspy logs the channel it attached to, at verbose level.
            attached = re.compile(
                rf"Attaching spy channel {re.escape(spy['Channel'])} to PJSIP/op1-"
            )
            log_path = stack.paths.host / "log" / "messages.log"
            await Stack.wait_for(
                lambda: attached.search(log_path.read_text(errors="replace")), 10,
                "app_chanspy attached to op1's channel",
            )

            result = await call
            assert result.ok, result.errors
            # With option E, ChanSpy ends when the operator's call ends.
            await Stack.wait_for(lambda: _no_spy(controller), 15, "ChanSpy ended with the call")
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call


async def _spy_result(page: Any) -> Any:
    while True:
        event = await page.queue.get()
        if event is not None and event.kind == "spy.result":
            return event


async def _no_spy(controller: Any) -> bool:
    return not await spy_channels(controller)


async def test_spy_rejects_operator_not_configured(clean_stack: Stack, config):
    async with running_controller(config) as controller:
        base = f"http://127.0.0.1:{controller.web_port}"
        async with (
            supervisor_session(controller, SUPERVISOR_PHONE) as session,
            session.post(f"{base}/api/wallboard/spy",
                         json={"endpoint": "op7", "mode": "barge"}) as response,
        ):
            assert response.status == 404
            error = (await response.json())["error"]
        assert error["code"] == "operator_not_found"
        assert not await spy_channels(controller)
