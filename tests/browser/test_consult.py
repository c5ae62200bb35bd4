"""A consult run from the operator console in Chromium, through Asterisk and SIPp.

op1 answers a caller, presses Konsultasi for the fire agency and, once the
agency's SIPp phone has answered, joins all three from the consult panel.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from sigap_pbx.store.accounts import Role
from tests.browser.conftest import assert_png, screenshot, sign_in
from tests.browser.test_call_flow import AGENCY, DIRECTORY, caller_channel, live
from tests.integration.stack import Stack, running_controller

pytestmark = [pytest.mark.browser, pytest.mark.asterisk, pytest.mark.timeout(240)]

# The agency's phone rings this long, so the page shows the consult before the
# agency answers, and a join pressed then is refused.
AGENCY_RING_MS = 3000
HOLD_MS = 90_000


async def test_consult_joined_from_console(
    clean_stack: Stack, config, caller_number, new_context, requests_made, artifacts: Path
):
    stack = clean_stack
    async with running_controller(config) as controller:
        await controller.agencies.import_yaml(DIRECTORY, actor="test")
        await controller.publish_agency_lines()
        base_url = f"http://127.0.0.1:{controller.web_port}"
        console = await (await new_context()).new_page()
        await sign_in(console, base_url, controller.accounts, Role.OPERATOR, endpoint="op1")
        await live(console)

        await stack.start_phone("op1", ring_ms=300)
        stack.add_member("op1")
        await stack.start_phone("agency-fire-1", ring_ms=AGENCY_RING_MS)
        call = asyncio.create_task(
            stack.call(caller_number, hold_ms=HOLD_MS, timeout=HOLD_MS / 1000 + 60)
        )
        card = console.locator("#call-card")
        await expect(card).to_have_attribute("data-state", "connected")
        uniqueid = await card.get_attribute("data-uniqueid")
        assert uniqueid

        panel = console.locator("#consult-panel")
        await expect(panel).to_be_hidden()
        await console.locator(
            f'[data-forward-agency="{AGENCY}"][data-forward-mode="consult"]'
        ).click()
        row = console.locator(f'#consults [data-consult="{uniqueid}"]')
        await expect(panel).to_be_visible()
        await expect(row).to_contain_text("Damkar")
        await expect(row).to_contain_text(caller_number[1:])
        join = row.locator('[data-consult-how="join"]')
        # The agency's phone is still ringing: the join is refused and the row stays.
        await join.click()
        message = console.locator("#console-message")
        await expect(message).to_have_class(re.compile(r"\berror\b"))
        await expect(message).to_contain_text("instansi belum menjawab")
        await expect(row).to_be_visible()
        shots = [await screenshot(console, artifacts, "01-console-consult-ringing")]

        consult = controller.forwarder.consults[uniqueid]
        await Stack.wait_for(
            lambda: controller.forwarder._bridged_peer(consult.operator_channel), 20,
            "the agency line answered the consult",
        )
        await join.click()
        await expect(panel).to_be_hidden()
        await expect(message).not_to_have_class(re.compile(r"\berror\b"))
        await expect(message).to_contain_text("Damkar")
        room = f"sigap-{uniqueid.replace('.', '-')}"
        await Stack.wait_for(
            lambda: stack.rx(f"confbridge list {room}").count("sigap-bridge") >= 3, 15,
            "caller, operator and agency in the conference",
        )
        shots.append(await screenshot(console, artifacts, "02-console-consult-joined"))

        channel = caller_channel(stack)
        assert channel is not None, stack.rx("core show channels concise")
        stack.rx(f"channel request hangup {channel}")
        await call

    for path in shots:
        assert_png(path)
    assert requests_made.foreign() == []
