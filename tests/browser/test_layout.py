"""The pages at the sizes they are used at: a 1366x768 operator screen and wall TVs.

Each page is opened signed in as its user, with a shift in force and operators
with long names in the queue. A caller with a 64-character caller ID name waits
while op2's phone rings unanswered. Reports are sent to the fire agency, and there
are more alarms than the TV's alarm card holds. On the operator screen no page scrolls sideways, and the
controls an operator or supervisor reaches for during a call are inside the first
screen. On the wallboard, at 1366x768 and in TV mode, no element reaches past the
right edge of its card or of the screen, each waiting caller's wait and each
operator's state stay visible, and long names are cut with an ellipsis instead.
The TV mode fits a 1366x768, a 1080p and a 4K TV without scrolling, its figures
grow with the screen, and its alarm card shows whole alarms only, with a count of
the rest and every critical alarm among those shown.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from sigap_pbx.agencies.dispatch import UNACKNOWLEDGED_ALARM, alarm_subject
from sigap_pbx.agencies.webhooks import ALARM_KIND as WEBHOOK_ALARM
from sigap_pbx.store.accounts import Role
from tests.browser.conftest import assert_png, screenshot, sign_in
from tests.browser.test_call_flow import AGENCY, DIRECTORY, caller_channel, live
from tests.integration.stack import Stack, running_controller
from tests.integration.test_shifts import roster_starting_now

pytestmark = [pytest.mark.browser, pytest.mark.asterisk, pytest.mark.timeout(300)]

OPERATOR_SCREEN = (1366, 768)
TV_SCREENS = {"tv-768p": (1366, 768), "tv-1080p": (1920, 1080), "tv-4k": (3840, 2160)}
# Page, the role that opens it, and the elements that must be inside the first screen.
PAGES = [
    ("/console", Role.OPERATOR, [
        "#call-card", '[data-field="my_state"]', "#report-save",
        '[data-forward-mode="consult"]', "#callbacks",
    ]),
    ("/wallboard", Role.SUPERVISOR, [
        "#queues section[data-queue]", "#figures", '[data-operator="op3"]', "#tv-toggle",
        "#pause-reason",
    ]),
    ("/portal", Role.AGENCY, ["#include-final", "#dispatches [data-dispatch-id]",
                              "#dispatches .ack-button"]),
    ("/history", Role.SUPERVISOR, ["#history-form", "#history-search", "#history-csv"]),
]

# Display names as long as a site may configure (at most 64 characters each).
OPERATOR_NAMES = {
    "op1": "Dewi Kartika Sari Ramadhani Putri",
    "op2": "Raden Ajeng Siti Nurhaliza Kusumawardhani Prawiranegara Sastro",
    "op3": "Andi Muhammad Fadhlurrahman Syahputra Wiraatmadja Siregar",
}
# A caller ID name of the maximum length the controller keeps (64 characters).
CALLER_NAME = "Muhammad Rizky Pratama Wijayakusuma Sastrowardoyo Mangkunegara I"
# The caller stays on the line this long after Asterisk answers; the test hangs
# the caller up itself once the pages are checked.
HOLD_MS = 240_000
# Reports sent to the fire agency with an unacknowledged-report alarm each: the
# critical ones (priority 1) are raised first, so they are older than the rest.
CRITICAL_REPORTS = 2
WARNING_REPORTS = 8

# The page's size and how far it scrolls each way.
EXTENT = """() => ({
  width: window.innerWidth, height: window.innerHeight,
  scrollWidth: document.documentElement.scrollWidth,
  scrollHeight: document.documentElement.scrollHeight,
})"""

# The element's box in viewport coordinates. Read in one call, because the
# wallboard redraws every second and bounding_box() can meet a replaced element.
BOX = """(node) => {
  const box = node.getBoundingClientRect();
  return { x: box.x, y: box.y, width: box.width, height: box.height };
}"""

# Lists every visible element of a card whose right edge is past the card's right
# edge or the viewport's. A part that a box inside the card clips (a name cut with
# an ellipsis) does not count. A part that the card's own clip hides does count,
# because that clip is what hides a wait time or a column.
OVERFLOWING = """() => {
  const viewport = document.documentElement.clientWidth;
  const label = (node) => node.tagName.toLowerCase() + (node.id ? `#${node.id}` : "")
    + [...node.classList].map((name) => `.${name}`).join("")
    + (node.dataset.field ? `[data-field=${node.dataset.field}]` : "");
  const found = [];
  for (const card of document.querySelectorAll(".card")) {
    const cardBox = card.getBoundingClientRect();
    if (cardBox.width === 0 || cardBox.height === 0) continue;
    if (cardBox.right > viewport + 0.5) {
      found.push(`${label(card)} ends at x=${cardBox.right}, past the viewport's `
        + `${viewport}`);
    }
    for (const node of card.querySelectorAll("*")) {
      const box = node.getBoundingClientRect();
      if (box.width === 0 || box.height === 0) continue;
      let right = box.right;
      let parent = node.parentElement;
      for (; parent !== card; parent = parent.parentElement) {
        if (getComputedStyle(parent).overflowX !== "visible") {
          right = Math.min(right, parent.getBoundingClientRect().right);
        }
      }
      if (right > cardBox.right + 0.5 || right > viewport + 0.5) {
        const text = node.textContent.trim().slice(0, 30);
        found.push(`${label(node)} "${text}" in ${label(card)} ends at x=${right}, `
          + `past the card's ${cardBox.right} or the viewport's ${viewport}`);
      }
    }
  }
  return found;
}"""

# The alarm card as the screen shows it: each alarm item, whether it is visible and
# whether it ends above the card's content edge, and the "+N" count's text.
ALARM_CARD = """() => {
  const list = document.getElementById("alarms");
  const card = list.closest(".card");
  const style = getComputedStyle(card);
  const bottom = card.getBoundingClientRect().bottom - parseFloat(style.paddingBottom)
    - parseFloat(style.borderBottomWidth);
  const items = [...list.querySelectorAll("li.alarm")].map((item) => {
    const box = item.getBoundingClientRect();
    return {
      id: item.dataset.alarmId,
      critical: item.classList.contains("severity-critical"),
      visible: item.getClientRects().length > 0,
      whole: box.bottom <= bottom + 0.5,
      bottom: box.bottom,
    };
  });
  const more = document.getElementById("alarms-more");
  return { items, bottom, more: more && !more.hidden ? more.textContent.trim() : "" };
}"""


async def extent(page: Page) -> dict[str, int]:
    return await page.evaluate(EXTENT)


async def inside_first_screen(page: Page, selector: str) -> None:
    element = page.locator(selector).first
    await expect(element).to_be_visible()
    box = await element.evaluate(BOX)
    size = page.viewport_size
    assert size is not None
    assert box["x"] >= 0, (selector, box)
    assert box["x"] + box["width"] <= size["width"], (selector, box)
    assert box["y"] >= 0, (selector, box)
    assert box["y"] + box["height"] <= size["height"], (selector, box)


async def signed_in_page(
    new_context: Any, controller: Any, base_url: str, role: Role, size: tuple[int, int]
) -> Page:
    page = await (await new_context(*size)).new_page()
    options: dict[str, str] = {}
    if role is Role.OPERATOR:
        options["endpoint"] = "op1"
    if role is Role.AGENCY:
        options["agency"] = "damkar"
    await sign_in(page, base_url, controller.accounts, role, **options)
    return page


def long_names_config(config: Any) -> Any:
    """Return `config` with long operator names and a caller who stays queued.

    No operator is paused for missed calls, the caller never overflows to the
    backup queue, and no long-wait alarm appears while the pages are checked.
    """
    operators = [
        operator.model_copy(update={"name": OPERATOR_NAMES.get(operator.endpoint,
                                                               operator.name)})
        for operator in config.sip.operators
    ]
    queue = config.queue.model_copy(update={
        "overflow_after_seconds": 600, "missed_calls_pause": 0,
        "long_wait_alarm_seconds": 3600,
    })
    return config.model_copy(update={
        "sip": config.sip.model_copy(update={"operators": operators}), "queue": queue,
    })


async def send_reports(controller: Any) -> list[int]:
    """Send reports to the fire agency, each with its unacknowledged-report alarm.

    The escalation watcher raises these alarms only minutes after a report is sent,
    so the test raises them as the watcher would. Returns the report ids, critical
    ones first.
    """
    report_ids = []
    for index in range(CRITICAL_REPORTS + WARNING_REPORTS):
        priority = 1 if index < CRITICAL_REPORTS else 3
        report = await controller.reports.create({
            "category": "fire", "call_type": "emergency", "priority": priority,
            "location_text": f"Jalan Gajah Mada {index + 1}",
            "description": "Asap tebal dari ruko",
        }, actor="op1")
        await controller.reports.dispatch(report.id, [AGENCY], actor="op1")
        dispatch = await controller.dispatches.find(report.id, AGENCY)
        controller.alarms.raise_alarm(
            UNACKNOWLEDGED_ALARM,
            alarm_subject(report.id, AGENCY),
            f"{AGENCY} has not acknowledged report {report.id} (priority {priority}, "
            f"fire) within 5 min of {dispatch.sent_at.isoformat()}; no callout is "
            "configured, so nobody was called; call the agency",
            "critical" if priority == 1 else "warning",
            {"dispatch_id": dispatch.id, "report_id": report.id, "agency": AGENCY,
             "priority": priority, "escalations": 0},
        )
        report_ids.append(report.id)
    controller.alarms.raise_alarm(
        WEBHOOK_ALARM, f"webhook:{AGENCY}",
        f"webhook delivery of report {report_ids[0]} version 1 to {AGENCY} failed: "
        "connection refused; fix the agency's webhook and send it again",
        "warning", {"report_id": report_ids[0], "agency": AGENCY},
    )
    return report_ids


async def check_nothing_overflows(page: Page, where: str) -> None:
    overflowing = await page.evaluate(OVERFLOWING)
    assert overflowing == [], (where, overflowing)


async def check_callers_and_states(page: Page, where: str) -> None:
    """Check that no card overflows and that waits and states are on screen.

    The long names keep their full text in the title attribute.
    """
    rows = page.locator("#queues [data-caller]")
    await expect(rows).to_have_count(1)
    await check_nothing_overflows(page, where)
    await inside_first_screen(page, '#queues [data-caller] [data-field="wait"]')
    wait = rows.locator('[data-field="wait"]')
    await expect(wait).to_have_text(re.compile(r"^\d+:\d\d$"))
    name = rows.locator(".caller-name")
    await expect(name).to_have_text(CALLER_NAME)
    await expect(name).to_have_attribute("title", CALLER_NAME)
    for endpoint, operator_name in OPERATOR_NAMES.items():
        row = f'[data-operator="{endpoint}"]'
        await inside_first_screen(page, f'{row} [data-field="state"]')
        await inside_first_screen(page, f'{row} [data-field="duration"]')
        operator = page.locator(f"{row} .operator-name")
        await expect(operator).to_have_attribute("title", operator_name)


async def check_alarm_labels(
    page: Page, controller: Any, report_ids: list[int]
) -> None:
    """Check that report alarms name the report and agency, with local times only."""
    zone = controller.config.roster.zone
    alarms = {alarm["subject"]: alarm for alarm in controller.alarms.snapshot()}
    for report_id in report_ids:
        alarm = alarms[alarm_subject(report_id, AGENCY)]
        item = page.locator(f'#alarms li[data-alarm-id="{alarm["id"]}"]')
        local = datetime.fromisoformat(alarm["raised_at"]).astimezone(zone)
        await expect(item.locator(".alarm-time")).to_have_text(local.strftime("%H:%M"))
        message = item.locator(".alarm-message")
        await expect(message).to_contain_text(f"Laporan #{report_id} · Damkar")
        await expect(message).not_to_contain_text("report:")
        title = await message.get_attribute("title") or ""
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", title), title
    webhook = page.locator(f'#alarms li .alarm-message[data-kind="{WEBHOOK_ALARM}"]')
    await expect(webhook).to_contain_text("Damkar")
    await expect(webhook).not_to_contain_text("webhook:")


async def check_tv_alarms(page: Page, where: str) -> None:
    """Check that the TV shows whole alarms only, every critical one, and a count."""
    card = await page.evaluate(ALARM_CARD)
    items = card["items"]
    visible = [item for item in items if item["visible"]]
    hidden = [item for item in items if not item["visible"]]
    assert hidden, (where, "more alarms than the card holds were all shown", card)
    cut = [item["id"] for item in visible if not item["whole"]]
    assert cut == [], (where, "alarms cut at the card's bottom", card)
    critical_hidden = [item["id"] for item in hidden if item["critical"]]
    assert critical_hidden == [], (where, "critical alarms hidden", card)
    assert card["more"] == f"+{len(hidden)} lagi", (where, card)


async def check_operator_screen(
    page: Page, controller: Any, base_url: str, path: str, controls: list[str],
    report_ids: list[int], artifacts: Path,
) -> Path:
    """Check one page at 1366x768 and return its screenshot."""
    if page.url != f"{base_url}{path}":
        await page.goto(f"{base_url}{path}")
    if path != "/history":  # the only page without live updates
        await live(page)
    else:
        await expect(page.locator("#history-results tr")).not_to_have_count(0)
    if path == "/wallboard":
        await expect(page.locator("#queues [data-caller]")).to_have_count(1)
    shot = await screenshot(page, artifacts, f"1366x768{path.replace('/', '-')}")
    size = await extent(page)
    assert size["scrollWidth"] <= size["width"], (path, size)
    for selector in controls:
        await inside_first_screen(page, selector)
    if path == "/wallboard":
        await check_callers_and_states(page, "1366x768")
        for endpoint in OPERATOR_NAMES:
            await inside_first_screen(page, f'[data-operator="{endpoint}"] td.actions')
        await check_alarm_labels(page, controller, report_ids)
    return shot


async def check_tv_screen(
    page: Page, base_url: str, name: str, artifacts: Path
) -> Path:
    """Check the wallboard's TV mode on one screen size and return its screenshot."""
    await page.goto(f"{base_url}/wallboard?tv=1")
    await live(page)
    await expect(page.locator("body")).to_have_class(re.compile(r"\bwall\b"))
    await expect(page.locator("#queues [data-caller]")).to_have_count(1)
    shot = await screenshot(page, artifacts, f"wallboard-{name}")
    size = await extent(page)
    assert size["scrollWidth"] <= size["width"], (name, size)
    assert size["scrollHeight"] <= size["height"], (name, size)
    for selector in ("#queues section[data-queue]", "#figures", '[data-operator="op3"]'):
        await inside_first_screen(page, selector)
    await check_callers_and_states(page, name)
    await check_tv_alarms(page, name)
    return shot


async def test_pages_fit_operator_screen_and_tv(
    clean_stack: Stack, config, caller_number, new_context, requests_made,
    artifacts: Path,
):
    stack = clean_stack
    config = long_names_config(config)
    shots: list[Path] = []
    async with running_controller(config) as controller:
        await controller.agencies.import_yaml(DIRECTORY, actor="test")
        roster, _, _ = roster_starting_now(config.roster.zone)
        await controller.rosters.save(roster, actor="test")
        await controller.membership.reconcile("test")
        for endpoint in ("op2", "op3"):
            stack.add_member(endpoint)
        report_ids = await send_reports(controller)

        # op2's phone rings and is never answered, so the caller keeps waiting.
        await stack.start_phone("op2", ring_ms=HOLD_MS * 2)
        call = asyncio.create_task(stack.call(
            caller_number, hold_ms=HOLD_MS, name=CALLER_NAME,
            timeout=HOLD_MS / 1000 + 60,
        ))
        try:
            await Stack.wait_for(
                lambda: any(c.queued_at for c in controller.tracker.calls.values()), 15,
                "the caller joined the queue",
            )
            base_url = f"http://127.0.0.1:{controller.web_port}"
            for path, role, controls in PAGES:
                page = await signed_in_page(new_context, controller, base_url, role,
                                            OPERATOR_SCREEN)
                shots.append(await check_operator_screen(
                    page, controller, base_url, path, controls, report_ids, artifacts))

            figure_sizes = {}
            for name, dimensions in TV_SCREENS.items():
                page = await signed_in_page(new_context, controller, base_url,
                                            Role.SUPERVISOR, dimensions)
                shots.append(await check_tv_screen(page, base_url, name, artifacts))
                figure = page.locator("#figures .figure").first
                figure_sizes[name] = await figure.evaluate(
                    "(node) => parseFloat(getComputedStyle(node).fontSize)"
                )
            assert figure_sizes["tv-4k"] > figure_sizes["tv-1080p"], figure_sizes
        finally:
            channel = caller_channel(stack)
            if channel is not None:
                stack.rx(f"channel request hangup {channel}")
            # The caller's SIPp scenario expects to send the BYE itself, so its
            # result is not checked.
            await asyncio.wait_for(call, 30)

    for path in shots:
        assert_png(path)
    assert requests_made.foreign() == []
