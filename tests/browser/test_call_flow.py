"""One emergency call from end to end, through Asterisk and SIPp, seen in Chromium.

A SIPp caller dials 112 and waits in the queue while op1's SIPp phone rings for a
few seconds and answers. Three signed-in browser contexts follow the call: the
supervisor's wallboard, op1's operator console and the fire agency's portal. The
operator writes a report and sends it to the agency, the agency acknowledges it,
and the wallboard's shift figures count the call.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from sigap_pbx.store.accounts import Role
from tests.browser.conftest import assert_png, screenshot, sign_in
from tests.integration.stack import Stack, running_controller
from tests.integration.test_call_path import wait_for_final
from tests.integration.test_shifts import paused_reasons, roster_starting_now

pytestmark = [pytest.mark.browser, pytest.mark.asterisk, pytest.mark.timeout(300)]

AGENCY = "damkar"
DIRECTORY = f"""
agencies:
  - code: {AGENCY}
    dial_code: "1"
    name: Damkar
    kind: fire
    lines:
      - {{priority: 1, kind: endpoint, target: agency-fire-1}}
      - {{priority: 2, kind: endpoint, target: agency-fire-2}}
"""
# op1's phone rings this long before it answers. It must stay below the queue's
# ring timeout (SIGAP_QUEUE__RING_SECONDS=5 in the test stack), or the queue
# cancels the ring before the phone answers.
RING_MS = 4000
# Long enough for every page step below. The test hangs the caller up itself.
HOLD_MS = 120_000
REPORT = {
    "category": "fire",
    "call_type": "emergency",
    "priority": "1",
    "location": "Jalan Gajah Mada 12, Pontianak",
    "description": "Asap tebal dari ruko lantai dua",
    # One person per line: name, role, age (the console's hint for this field).
    "people": "Budi Santoso, pelapor, 42\nSiti, penghuni",
}
PEOPLE = [
    {"name": "Budi Santoso", "role": "pelapor", "age": 42},
    {"name": "Siti", "role": "penghuni"},
]

# Installed in a page: records, for each probe, every distinct value the page
# showed, so that a state shorter than Playwright's polling interval is still
# seen. A probe reads the attribute (or the text, without one) of every element
# that matches its selector, joined by "|", or null when nothing matches.
RECORDER = """
(probes) => {
  const seen = {};
  window.sigapTestSeen = seen;
  const read = (probe) => {
    const nodes = [...document.querySelectorAll(probe.selector)];
    if (nodes.length === 0) return null;
    return nodes
      .map((node) => probe.attribute ? node.getAttribute(probe.attribute)
                                     : node.textContent.trim())
      .join("|");
  };
  const scan = () => {
    for (const [key, probe] of Object.entries(probes)) {
      const value = read(probe);
      const values = seen[key] || (seen[key] = []);
      if (values[values.length - 1] !== value) values.push(value);
    }
  };
  scan();
  new MutationObserver(scan).observe(document.documentElement, {
    subtree: true, childList: true, attributes: true, characterData: true,
  });
}
"""


async def record(page: Page, probes: dict[str, dict[str, str | None]]) -> None:
    await page.evaluate(RECORDER, probes)


async def recorded(page: Page, key: str) -> list[str | None]:
    return await page.evaluate("(key) => window.sigapTestSeen[key] || []", key)


async def wait_recorded(page: Page, key: str, predicate: Any, what: str) -> None:
    async def seen() -> bool:
        return any(predicate(value) for value in await recorded(page, key))

    await Stack.wait_for(seen, 30, what)


async def live(page: Page) -> None:
    """Wait until the page's event stream is open (the top bar shows it connected)."""
    await expect(page.locator("#live-status")).to_be_visible()
    await expect(page.locator("#live-status")).not_to_have_class(re.compile(r"\bdown\b"))


async def figure(page: Page, name: str) -> int:
    """Return a wallboard figure's count once the page shows one."""
    element = page.locator(f'[data-figure="{name}"]')
    try:
        await expect(element).to_have_attribute("data-value", re.compile(r"^\d+$"))
    except AssertionError as exc:
        # The wallboard shows why it has no figures in #figures-error.
        reason = await page.locator("#figures-error").text_content()
        raise AssertionError(f"no {name} figure on the wallboard: {reason!r}") from exc
    return int(await element.get_attribute("data-value") or "")


async def fill_field(form: Locator, name: str, value: str) -> None:
    field = form.locator(f'[name="{name}"]')
    await expect(field).to_have_count(1)
    if await field.evaluate("(node) => node.tagName") == "SELECT":
        await field.select_option(value)
    else:
        await field.fill(value)


def caller_channel(stack: Stack) -> str | None:
    for line in stack.rx("core show channels concise").splitlines():
        if line.startswith("PJSIP/carrier-"):
            return line.split("!")[0]
    return None


async def test_call_from_queue_to_agency(
    clean_stack: Stack, config, caller_number, new_context, requests_made, artifacts: Path
):
    stack = clean_stack
    # The caller must stay in the first queue until op1 answers, however slow the
    # pages are: no overflow to the backup queue meanwhile.
    config = config.model_copy(
        update={"queue": config.queue.model_copy(update={"overflow_after_seconds": 120})}
    )
    shots: list[Path] = []
    async with running_controller(config) as controller:
        await controller.agencies.import_yaml(DIRECTORY, actor="test")
        await controller.publish_agency_lines()
        # The wallboard shows the figures of the shift in force, so the roster has
        # one that started a minute ago, with op1's crew (op1 and spv1) on it.
        roster, _, _ = roster_starting_now(config.roster.zone)
        await controller.rosters.save(roster, actor="test")
        await controller.membership.reconcile("test")
        base_url = f"http://127.0.0.1:{controller.web_port}"
        queue = config.queue.name

        wallboard = await (await new_context()).new_page()
        await sign_in(wallboard, base_url, controller.accounts, Role.SUPERVISOR)
        console = await (await new_context()).new_page()
        operator = await sign_in(
            console, base_url, controller.accounts, Role.OPERATOR, endpoint="op1"
        )
        portal = await (await new_context()).new_page()
        agency_user = await sign_in(
            portal, base_url, controller.accounts, Role.AGENCY, agency=AGENCY
        )
        for page in (wallboard, console, portal):
            await live(page)

        # Before the call ---------------------------------------------------------------
        await stack.start_phone("op1", ring_ms=RING_MS)
        await Stack.wait_for(
            lambda: "PJSIP/op1" in stack.queue_members(queue)
            and "op1" not in paused_reasons(stack, queue),
            15, "op1 in the queue and not paused",
        )
        section = wallboard.locator(f'section[data-queue="{queue}"]')
        await expect(section).to_be_visible()
        await expect(section.locator('[data-field="waiting"]')).to_have_text("0")
        await expect(wallboard.locator('[data-operator="op1"]')).to_have_attribute(
            "data-state", "available"
        )
        # A call of an earlier test that ended moments ago is written by a later
        # reconciliation pass, and would count in this shift's figures meanwhile.
        await Stack.wait_for(
            lambda: controller.reconciler.unsettled_calls() == 0, 30,
            "earlier calls reconciled",
        )
        # The page then shows figures read after them (the server keeps them 1 s).
        await asyncio.sleep(1.2)
        await wallboard.reload()
        await live(wallboard)
        offered_before = await figure(wallboard, "offered")
        answered_before = await figure(wallboard, "answered")
        await expect(console.locator("#call-card")).to_have_attribute("data-state", "idle")
        await expect(portal.locator("#new-report-alert")).to_be_hidden()
        shots.append(await screenshot(wallboard, artifacts, "01-wallboard-before"))

        await record(wallboard, {
            "callers": {"selector": f'[data-queue="{queue}"] [data-caller]',
                        "attribute": "data-caller"},
            "waiting": {"selector": f'[data-queue="{queue}"] [data-field="waiting"]',
                        "attribute": None},
            "op1": {"selector": '[data-operator="op1"]', "attribute": "data-state"},
        })
        await record(console, {
            "state": {"selector": "#call-card", "attribute": "data-state"},
            "my_state": {"selector": '[data-field="my_state"]', "attribute": "data-state"},
        })

        # The call waits in the queue while op1's phone rings ------------------------
        call = asyncio.create_task(
            stack.call(caller_number, hold_ms=HOLD_MS, timeout=HOLD_MS / 1000 + 60)
        )
        await Stack.wait_for(
            lambda: any(c.queued_at for c in controller.tracker.calls.values()), 15,
            "the caller joined the queue",
        )
        uniqueid = next(
            c.uniqueid for c in controller.tracker.calls.values() if c.queued_at
        )

        await wait_recorded(
            wallboard, "callers", lambda value: value == uniqueid,
            f"a [data-caller={uniqueid!r}] row on the wallboard",
        )
        await wait_recorded(
            console, "state", lambda value: value == "ringing",
            "the call card ringing on the console",
        )
        shots.append(await screenshot(wallboard, artifacts, "02-wallboard-waiting"))
        shots.append(await screenshot(console, artifacts, "03-console-ringing"))
        assert "1" in await recorded(wallboard, "waiting")

        # op1 answers ------------------------------------------------------------------
        card = console.locator("#call-card")
        await expect(card).to_have_attribute("data-state", "connected")
        await expect(card).to_have_attribute("data-uniqueid", uniqueid)
        # The console may show the number as dialled (0812...) or normalised
        # (+62812...): both end with the digits after the leading 0.
        await expect(card.locator('[data-field="caller_number"]')).to_contain_text(
            caller_number[1:]
        )
        await expect(section.locator("[data-caller]")).to_have_count(0)
        await expect(section.locator('[data-field="waiting"]')).to_have_text("0")
        await expect(wallboard.locator('[data-operator="op1"]')).to_have_attribute(
            "data-state", "on_call"
        )
        assert "ringing" in await recorded(wallboard, "op1")
        await expect(console.locator('[data-field="my_state"]')).to_have_attribute(
            "data-state", "on_call"
        )
        shots.append(await screenshot(console, artifacts, "04-console-connected"))

        # The operator writes the report and sends it to the agency ---------------
        form = console.locator("#report-form")
        for name, value in REPORT.items():
            await fill_field(form, name, value)
        await console.locator("#report-save").click()
        await expect(form).to_have_attribute("data-report-id", re.compile(r"^\d+$"))
        report_id = int(await form.get_attribute("data-report-id") or "")
        detail = await controller.reports.get(report_id)
        assert detail.report.category == REPORT["category"]
        assert detail.report.call_type == REPORT["call_type"]
        assert detail.report.priority == int(REPORT["priority"])
        assert detail.report.location_text == REPORT["location"]
        assert detail.report.description == REPORT["description"]
        assert detail.report.people == PEOPLE
        assert detail.report.created_by == operator
        assert [c.call_uniqueid for c in detail.calls] == [uniqueid]
        shots.append(await screenshot(console, artifacts, "05-console-report-saved"))

        await console.locator(f'[data-dispatch-agency="{AGENCY}"]').click()

        async def dispatched() -> bool:
            return bool((await controller.reports.get(report_id)).dispatches)

        await Stack.wait_for(dispatched, 30, f"report {report_id} sent to {AGENCY}")
        dispatch = await controller.dispatches.find(report_id, AGENCY)
        assert dispatch.sent_by == operator
        assert dispatch.status == "sent"
        shots.append(await screenshot(console, artifacts, "06-console-dispatched"))

        # The portal shows the new report, and the agency acknowledges it ------------
        row = portal.locator(f'#dispatches [data-dispatch-id="{dispatch.id}"]')
        await expect(row).to_have_attribute("data-acknowledged", "false")
        await expect(portal.locator("#dispatches [data-dispatch-id]")).to_have_count(1)
        alert = portal.locator("#new-report-alert")
        await expect(alert).to_be_visible()
        await expect(alert).to_have_attribute("data-count", "1")
        shots.append(await screenshot(portal, artifacts, "07-portal-new-report"))

        await row.locator(".ack-button").click()
        await expect(row).to_have_attribute("data-acknowledged", "true")
        await expect(row.locator(".ack-button")).to_have_count(0)
        dispatch = await controller.dispatches.find(report_id, AGENCY)
        assert dispatch.status == "acknowledged"
        assert dispatch.acknowledged_by == agency_user
        shots.append(await screenshot(portal, artifacts, "08-portal-acknowledged"))

        # The caller's channel is hung up, and the shift figures count the call ------
        channel = caller_channel(stack)
        assert channel is not None, stack.rx("core show channels concise")
        stack.rx(f"channel request hangup {channel}")
        # The caller's SIPp scenario expects to send the BYE itself, so its result is
        # not checked here; the call's record is.
        await call
        await controller.tracker.flush()
        [stored] = await wait_for_final(config, caller_number)
        assert stored.outcome == "answered"
        assert stored.operator == "op1"

        await expect(card).to_have_attribute("data-state", "idle")
        await expect(wallboard.locator('[data-operator="op1"]')).to_have_attribute(
            "data-state", re.compile(r"^(available|wrapup)$")
        )
        await expect(wallboard.locator('[data-figure="offered"]')).to_have_attribute(
            "data-value", str(offered_before + 1)
        )
        await expect(wallboard.locator('[data-figure="answered"]')).to_have_attribute(
            "data-value", str(answered_before + 1)
        )
        shots.append(await screenshot(wallboard, artifacts, "09-wallboard-after"))

    for path in shots:
        assert_png(path)
    assert requests_made.foreign() == []
