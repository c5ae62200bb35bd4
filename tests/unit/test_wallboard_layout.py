"""The wallboard's layout in Chromium against the fake wallboard controller.

At 1366x768 the operator table keeps within its card with long names and every
column at its widest. In TV mode the alarm card shows only the alarms that fit
whole, every critical one among them, and counts the rest next to its title. A
redraw, a resize and leaving TV mode fit it again. tests/browser/test_layout.py
checks the same pages on the real stack.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.test_layout import ALARM_CARD, BOX, OVERFLOWING
from tests.unit.test_page_controls import (  # noqa: F401
    browser,
    controller,
    open_page,
)
from tests.unit.wallboard_fakes import member_event

pytestmark = pytest.mark.browser

CRITICAL_ALARMS = 2
WARNING_ALARMS = 14
# Display names of the maximum length a site may configure (64 characters).
LONG_NAMES = {
    "op1": "Dewi Kartika Sari Ramadhani Putri binti Haji Abdurrahman Wahidin",
    "op2": "Raden Ajeng Siti Nurhaliza Kusumawardhani Prawiranegara Sastrodi",
}
# Resolves once the browser has drawn the next frame.
NEXT_FRAME = "() => new Promise((resolve) => requestAnimationFrame(() => resolve()))"


def raise_alarms(controller: Any) -> None:
    """Raise the critical alarms first, so that every warning is newer."""
    for index in range(CRITICAL_ALARMS + WARNING_ALARMS):
        critical = index < CRITICAL_ALARMS
        controller.alarms.raise_alarm(
            "nobody_available" if critical else "endpoint_unreachable",
            f"operators-{index}" if critical else f"op{index}",
            "test alarm",
            "critical" if critical else "warning",
        )
        controller.clock.advance(1)


async def use_english(page: Page) -> None:
    await page.context.add_cookies(
        [{"name": "sigap_lang", "value": "en", "url": page.url}]
    )
    await page.reload()


async def check_fitted(page: Page, total: int) -> None:
    """Check the card in TV mode once it lists `total` alarms."""
    await expect(page.locator("#alarms li.alarm")).to_have_count(total)
    card = await page.evaluate(ALARM_CARD)
    visible = [item["id"] for item in card["items"] if item["visible"]]
    hidden = [item["id"] for item in card["items"] if not item["visible"]]
    cut = [item["id"] for item in card["items"] if item["visible"] and not item["whole"]]
    critical_hidden = [
        item["id"] for item in card["items"] if item["critical"] and not item["visible"]
    ]
    assert visible, card
    assert hidden, card
    assert cut == [], card
    assert critical_hidden == [], card
    assert card["more"] == f"+{len(hidden)} more", card


async def test_tv_alarm_card_shows_whole_alarms(browser, controller):
    raise_alarms(controller)
    total = CRITICAL_ALARMS + WARNING_ALARMS
    page, client = await open_page(browser, controller, "supervisor", "/wallboard?tv=1",
                                   viewport=(1920, 1080))
    try:
        await use_english(page)
        await check_fitted(page, total)

        # A redraw with one more alarm fits the card again.
        controller.alarms.raise_alarm("long_wait", "operators", "caller waiting")
        await check_fitted(page, total + 1)

        # A lower screen fits again at once, not only at the next snapshot. (The
        # snapshots that come every second fit the card too, so a check that
        # waited could not tell.)
        await page.set_viewport_size({"width": 1920, "height": 800})
        # The HTML Standard's "update the rendering" steps run the resize steps
        # before the animation frame callbacks.
        await page.evaluate(NEXT_FRAME)
        await check_fitted(page, total + 1)

        # Outside TV mode the page scrolls, so every alarm is listed at once.
        await page.locator("#tv-toggle").click()
        card = await page.evaluate(ALARM_CARD)
        hidden = [item["id"] for item in card["items"] if not item["visible"]]
        assert hidden == [], card
        assert card["more"] == "", card
    finally:
        await page.context.close()
        await client.close()


@pytest.mark.parametrize("english", [False, True])
async def test_operator_table_fits_at_1366(browser, controller, english):
    sip = controller.config.sip
    operators = [
        operator.model_copy(update={"name": LONG_NAMES.get(operator.endpoint,
                                                           operator.name)})
        for operator in sip.operators
    ]
    controller.config = controller.config.model_copy(
        update={"sip": sip.model_copy(update={"operators": operators})}
    )
    # The widest each column gets: a call, a pause for missed calls (the longest
    # reason) and a member of both queues.
    controller.ami.emit(member_event("QueueMemberStatus", "op1", status="2",
                                     in_call=True))
    controller.ami.emit(member_event("QueueMemberPause", "op2", paused=True,
                                     reason="missed_calls"))
    for queue in ("operators", "operators-backup"):
        controller.ami.emit(member_event("QueueMemberAdded", "spv1", queue=queue))
    page, client = await open_page(browser, controller, "supervisor", "/wallboard",
                                   endpoint="spv1")
    try:
        if english:
            await use_english(page)
        await expect(page.locator('[data-operator="op1"]')).to_have_attribute(
            "data-state", "on_call")
        await expect(page.locator('[data-operator="op2"]')).to_have_attribute(
            "data-state", "paused")
        overflowing = await page.evaluate(OVERFLOWING)
        assert overflowing == []
        for endpoint in ("op1", "op2", "spv1"):
            row = page.locator(f'[data-operator="{endpoint}"]')
            actions = await row.locator("td.actions").evaluate(BOX)
            assert actions["x"] + actions["width"] <= 1366, (endpoint, actions)
            state = row.locator('[data-field="state"]')
            await expect(state).to_be_visible()
        for endpoint, name in LONG_NAMES.items():
            operator = page.locator(f'[data-operator="{endpoint}"] .operator-name')
            await expect(operator).to_have_attribute("title", name)
    finally:
        await page.context.close()
        await client.close()
