"""Calling an abandoned caller back from the console, against the real Asterisk.

The operator's SIPp phone answers the controller's Originate, and a SIPp UAS on
the carrier's address receives the INVITE to the caller's number.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp

from sigap_pbx.store.callbacks import CallbackOutcome, CallbackStore
from sigap_pbx.web.console import callback_cel_rows, outcome_from_cel
from tests.integration.stack import (
    CARRIER_IP,
    Stack,
    next_port,
    render_default,
    render_with_outbound_trunk,
    running_controller,
    start_carrier_uas,
)


@contextlib.asynccontextmanager
async def operator_session(controller: Any, endpoint: str) -> AsyncIterator[Any]:
    """Yield an aiohttp session signed in as an operator whose phone is `endpoint`."""
    username = f"itest-op-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    await controller.accounts.add_user(username, password, "operator", endpoint=endpoint,
                                       actor="itest")
    signed_in = await controller.accounts.sign_in(username, password, "127.0.0.1")
    headers = {"Cookie": f"sigap_session={signed_in.token}",
               "X-CSRF-Token": signed_in.session.csrf_token}
    async with aiohttp.ClientSession(headers=headers) as session:
        session.username = username  # type: ignore[attr-defined]
        yield session


async def test_callback_reaches_caller_through_trunk(clean_stack: Stack, config,
                                                     caller_number):
    stack = clean_stack
    port = next_port()
    outbound = render_with_outbound_trunk(stack, f"{CARRIER_IP}:{port}")
    config = outbound.model_copy(update={"database": config.database})
    try:
        async with running_controller(config) as controller:
            call_id = await controller.store.upsert_call(
                "1733390000.41", caller_number="+62" + caller_number[1:],
                caller_number_raw=caller_number, outcome="abandoned_in_queue",
                arrived_at=datetime.now(UTC),
            )
            await stack.start_phone("op1", ring_ms=300)
            carrier, messages = await start_carrier_uas(stack, port)
            base = f"http://127.0.0.1:{controller.web_port}"

            async with operator_session(controller, "op1") as session:
                listed = await (await session.get(f"{base}/api/callbacks")).json()
                response = await session.post(f"{base}/api/callbacks/{call_id}", json={})
                body = await response.json()
                assert response.status == 202, body
                # Earlier tests of the session leave abandoned calls too; this one
                # arrived last, so it leads the list.
                assert [item["call_id"] for item in listed["callbacks"]][0] == call_id

                await Stack.wait_for(
                    lambda: f"INVITE sip:{caller_number}@" in _text(messages), 20,
                    "the carrier received the INVITE to the caller's number",
                )
                await Stack.wait_for(
                    lambda: "ACK sip:" in _text(messages), 10, "the carrier's answer acknowledged"
                )
                invite = _text(messages).split(f"INVITE sip:{caller_number}@", 1)[1]
                from_line = next(line for line in invite.splitlines()
                                 if line.startswith("From:"))
                # The callee sees the emergency number, not the operator's phone.
                assert "<sip:112@" in from_line
                stack.rx("channel request hangup all")
                await carrier.wait()

                store = CallbackStore(controller.db)

                async def ended() -> bool:
                    attempts = await store.list_attempts(call_id)
                    return bool(attempts) and attempts[0].ended_at is not None

                await Stack.wait_for(ended, 15, "the attempt's end recorded")
                (attempt,) = await store.list_attempts(call_id)
                assert attempt.outcome == "answered"
                assert attempt.endpoint == "op1"
                assert attempt.username == session.username
                assert attempt.caller_number == caller_number
                assert attempt.channel is not None and attempt.channel.startswith("PJSIP/op1-")
                assert attempt.uniqueid == body["uniqueid"]
                # The result is in CEL too, for a controller that misses the event.
                rows = callback_cel_rows(stack.paths.cel_db, attempt.uniqueid)
                assert outcome_from_cel(rows) == CallbackOutcome.ANSWERED
                after = await (await session.get(f"{base}/api/callbacks")).json()
                assert call_id not in [item["call_id"] for item in after["callbacks"]]
    finally:
        render_default(stack)


def _text(path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
