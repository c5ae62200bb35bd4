"""Wallboard routes: roles, the rendered page, and the checks before any spy action."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sigap_pbx.agencies import webhooks
from sigap_pbx.agencies.dispatch import UNACKNOWLEDGED_ALARM
from sigap_pbx.members import coverage, health, missed
from sigap_pbx.members.actions import PAUSE_REASONS
from sigap_pbx.roster.reporter import RosterUnavailable
from sigap_pbx.store.accounts import Role, UserView
from sigap_pbx.web import i18n
from sigap_pbx.web.feed import Feed
from sigap_pbx.web.wallboard import SpyResults, alarm_label
from sigap_pbx.web.wallboard_routes import SPY_CONTEXT
from tests.unit.wallboard_fakes import FakeController, FakeReporter, event, member_event
from tests.web_auth import signed_in_client

SPY = "/api/wallboard/spy"
NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
async def controller():
    controller = FakeController()
    controller.live.reset_from_status([])
    controller.ami.emit(member_event("QueueMemberAdded", "op1"))
    controller.ami.emit(member_event("QueueMemberAdded", "op2"))
    controller.ami.emit(member_event("QueueMemberStatus", "op1", status="2", in_call=True))
    controller.ami.emit(event(
        "QueueCallerJoin", ("Queue", "operators"), ("Uniqueid", "1796409216.7"),
        ("Channel", "PJSIP/carrier-00000007"), ("CallerIDNum", "0812<i>77"),
        ("CallerIDName", '<script>alert("x")</script>'), ("Position", "1"),
    ))
    controller.alarms.raise_alarm("long_wait", "operators", "Caller <b>waiting</b>")
    yield controller
    await controller.close()


async def client_for(controller, role, **kwargs):
    return await signed_in_client(controller, role, **kwargs)


# Roles -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["supervisor", "admin"])
async def test_snapshot_for_supervisors(controller, role):
    client = await client_for(controller, role)
    try:
        response = await client.get("/api/wallboard")
        assert response.status == 200
        body = await response.json()
    finally:
        await client.close()
    rows = {row["endpoint"]: row for row in body["operators"]}
    assert rows["op1"]["state"] == "on_call"
    assert rows["op2"]["state"] == "available"
    assert body["queues"][0]["waiting"] == 1
    assert body["synced"] is True


@pytest.mark.parametrize("role", ["operator", "agency"])
@pytest.mark.parametrize("path", ["/api/wallboard", "/wallboard"])
async def test_wallboard_refused_to_other_roles(controller, role, path):
    extra = {"agency": "fire"} if role == "agency" else {"endpoint": "op1"}
    client = await client_for(controller, role, **extra)
    try:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 403
    finally:
        await client.close()


@pytest.mark.parametrize("role", ["operator", "agency"])
async def test_spy_refused_to_other_roles(controller, role):
    extra = {"agency": "fire"} if role == "agency" else {"endpoint": "op2"}
    client = await client_for(controller, role, **extra)
    try:
        response = await client.post(SPY, json={"endpoint": "op1", "mode": "listen"})
        assert response.status == 403
    finally:
        await client.close()
    assert controller.ami.actions == []


# The page ------------------------------------------------------------------------------


async def test_page_renders_dom_contract(controller):
    client = await client_for(controller, "supervisor", endpoint="spv1")
    try:
        response = await client.get("/wallboard")
        assert response.status == 200
        html = await response.text()
    finally:
        await client.close()
    assert 'data-queue="operators"' in html
    assert 'data-field="waiting" data-value="1"' in html
    assert 'data-field="longest_wait"' in html
    assert 'data-caller="1796409216.7"' in html
    assert 'data-operator="op1" data-state="on_call"' in html
    assert 'data-operator="op2" data-state="available"' in html
    for figure in ("offered", "answered", "abandoned", "within_10", "within_15", "within_20"):
        assert f'data-figure="{figure}"' in html
    assert 'data-field="shift"' in html
    assert 'id="alarms"' in html
    assert 'class="ack-alarm" data-alarm-id="1"' in html
    for button in ("spy-listen", "spy-whisper", "spy-barge", "op-pause", "op-unpause",
                   "op-logout"):
        assert f'class="{button}" data-endpoint="op1"' in html
    assert "Papan pantau" in html
    assert "wallboard.js" in html


async def test_page_escapes_caller_text(controller):
    client = await client_for(controller, "supervisor")
    try:
        html = await (await client.get("/wallboard")).text()
    finally:
        await client.close()
    assert '<script>alert("x")' not in html
    assert "0812<i>77" not in html
    assert "&lt;script&gt;alert(" in html
    assert "0812&lt;i&gt;77" in html
    assert "Caller <b>waiting</b>" not in html


async def test_page_wall_mode_and_english(controller):
    client = await client_for(controller, "admin")
    try:
        client.session.cookie_jar.update_cookies({"sigap_lang": "en"})
        html = await (await client.get("/wallboard?tv=1")).text()
    finally:
        await client.close()
    assert 'class="wallboard-page wall"' in html
    assert "Wallboard" in html
    assert "On a call" in html


async def test_page_shows_not_synced(controller):
    controller.live.mark_unsynced()
    client = await client_for(controller, "supervisor")
    try:
        html = await (await client.get("/wallboard")).text()
        body = await (await client.get("/api/wallboard")).json()
    finally:
        await client.close()
    assert '<div id="sync-banner" class="alert-banner" role="alert">' in html
    assert body["synced"] is False


ALARM_KINDS = [
    coverage.BELOW_MINIMUM, coverage.NOBODY_AVAILABLE, coverage.LONG_WAIT,
    health.ALARM_KIND, missed.ALARM_KIND, UNACKNOWLEDGED_ALARM, webhooks.ALARM_KIND,
]


async def page_html(controller, lang=None, **user):
    client = await client_for(controller, "supervisor", **user)
    try:
        if lang is not None:
            client.session.cookie_jar.update_cookies({"sigap_lang": lang})
        return await (await client.get("/wallboard")).text()
    finally:
        await client.close()


# A subject of each alarm kind, in the form its guard raises it with.
ALARM_SUBJECTS = {
    coverage.BELOW_MINIMUM: "operators",
    coverage.NOBODY_AVAILABLE: "operators",
    coverage.LONG_WAIT: "operators",
    health.ALARM_KIND: "op1",
    missed.ALARM_KIND: "op1",
    UNACKNOWLEDGED_ALARM: "report:7:damkar",
    webhooks.ALARM_KIND: "webhook:damkar",
}


@pytest.mark.parametrize("kind", ALARM_KINDS)
def test_every_alarm_kind_has_label(kind):
    subject = ALARM_SUBJECTS[kind]
    label = alarm_label({"kind": kind, "subject": subject}, {})
    assert label["key"] == kind
    for text in i18n.MESSAGES[f"wallboard.alarm.{kind}"]:
        filled = text.format(**label["values"])
        assert "{" not in filled
        if ":" in subject:  # an internal subject, which the label replaces
            assert subject not in filled


async def test_alarms_show_translated_label(controller):
    controller.alarms.raise_alarm("endpoint_unreachable", "op1", "Phone op1 is gone")
    controller.alarms.raise_alarm("mystery", "x1", "Something odd")

    indonesian = await page_html(controller)
    english = await page_html(controller, "en")

    assert "Penelepon menunggu terlalu lama di antrean operators" in indonesian
    assert "Telepon op1 tidak terjangkau" in indonesian
    assert "Alarm mystery: x1" in indonesian
    assert 'title="Caller &lt;b&gt;waiting&lt;/b&gt;"' in indonesian
    assert 'title="Phone op1 is gone"' in indonesian
    assert ">Phone op1 is gone<" not in indonesian
    assert "Callers have waited too long in queue operators" in english
    assert "Phone op1 is unreachable" in english


async def test_report_alarms_name_report_and_agency(controller):
    sent_at = datetime(2026, 12, 4, 7, 50, tzinfo=UTC)
    controller.alarms.raise_alarm(
        UNACKNOWLEDGED_ALARM, "report:7:damkar",
        f"damkar has not acknowledged report 7 within 5 min of {sent_at.isoformat()}",
        "critical",
    )
    controller.alarms.raise_alarm(webhooks.ALARM_KIND, "webhook:damkar", "webhook failed")

    indonesian = alarm_list(await page_html(controller))
    english = alarm_list(await page_html(controller, "en"))

    assert "Laporan #7 · damkar belum dikonfirmasi" in indonesian
    assert "Pengiriman webhook ke damkar gagal" in indonesian
    assert "report:7:damkar" not in indonesian
    assert "webhook:damkar" not in indonesian
    assert "Report #7 · damkar not acknowledged" in english
    assert "Webhook delivery to damkar failed" in english
    # The tooltip gives the message's times in the site's zone (Asia/Pontianak).
    assert "within 5 min of 2026-12-04 14:50:00 WIB" in indonesian
    assert sent_at.isoformat() not in indonesian


def alarm_list(html: str) -> str:
    """Return the alarm list of a page, without the snapshot's JSON copy."""
    start = html.index('<ul id="alarms"')
    return html[start:html.index("</ul>", start)]


async def test_alarm_time_is_local(controller):
    # The fixture's alarm was raised at 08:00 UTC, which is 15:00 in Pontianak.
    html = alarm_list(await page_html(controller))

    assert '<span class="alarm-time">15:00</span>' in html
    assert '<span class="alarm-time">08:00</span>' not in html


async def test_long_names_have_titles(controller):
    html = await page_html(controller)

    assert 'class="caller-name" title="&lt;script&gt;alert(' in html
    assert 'class="caller-number" title="0812&lt;i&gt;77"' in html
    assert '<b class="operator-name" title="Operator 1">Operator 1</b>' in html
    assert '<span id="alarms-more" class="muted" hidden></span>' in html


async def test_figures_error_translated():
    message = "no roster is saved, so shift windows are unknown"
    controller = FakeController(FakeReporter(error=RosterUnavailable(message)))
    try:
        indonesian = await page_html(controller)
        english = await page_html(controller, "en")
    finally:
        await controller.close()

    assert "Belum ada roster tersimpan" in indonesian
    assert f'title="{message}"' in indonesian
    assert f">{message}<" not in indonesian
    assert "No roster is saved, so the shift is unknown" in english


async def test_pause_reasons_show_console_labels(controller):
    indonesian = await page_html(controller)
    english = await page_html(controller, "en")

    for reason in PAUSE_REASONS:
        indonesian_label, english_label = i18n.MESSAGES[f"wallboard.pause_reason.{reason}"]
        assert f'<option value="{reason}">{indonesian_label}</option>' in indonesian
        assert f'<option value="{reason}">{english_label}</option>' in english
    assert '<option value="break">Istirahat</option>' in indonesian
    assert '<option value="break">Break</option>' in english


async def test_page_messages_carry_labels(controller):
    html = await page_html(controller, "en")

    assert '"alarm.long_wait": "Callers have waited too long in queue {subject}"' in html
    assert '"alarm.other": "Alarm {kind}: {subject}"' in html
    assert '"alarms_more": "+{count} more"' in html
    assert '"figures_error.roster_missing": "No roster is saved' in html
    assert '"pause_reason.missed_calls": "Missed calls"' in html


async def test_spy_buttons_need_own_phone(controller):
    without_phone = await page_html(controller)
    with_phone = await page_html(controller, endpoint="spv1")

    for mode in ("listen", "whisper", "barge"):
        button = f'class="spy-{mode}" data-endpoint="op1"'
        assert f"{button} disabled" in without_phone
        assert f"{button}>" in with_phone
    assert 'class="op-pause" data-endpoint="op1">' in without_phone


# Spying ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["listen", "whisper", "barge"])
async def test_spy_originates_on_own_phone(controller, mode):
    client = await client_for(controller, "supervisor", endpoint="spv1")
    try:
        response = await client.post(SPY, json={"endpoint": "op1", "mode": mode})
        assert response.status == 202, await response.text()
        body = await response.json()
    finally:
        await client.close()
    assert body == {"endpoint": "op1", "mode": mode, "supervisor_endpoint": "spv1",
                    "status": "ringing"}
    assert controller.ami.names() == ["Originate"]
    fields = controller.ami.actions[0][1]
    assert fields["Channel"] == "PJSIP/spv1"
    assert fields["Context"] == SPY_CONTEXT
    assert fields["Exten"] == "s"
    assert fields["Async"] == "true"
    assert fields["Variable"] == f"SIGAP_SPY_TARGET=op1,SIGAP_SPY_MODE={mode}"


async def test_spy_needs_csrf(controller):
    client = await signed_in_client(controller, "supervisor", endpoint="spv1", csrf=False)
    try:
        response = await client.post(SPY, json={"endpoint": "op1", "mode": "listen"})
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "csrf_rejected"
    finally:
        await client.close()
    assert controller.ami.actions == []


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"endpoint": "op1", "mode": "eavesdrop"}, 400, "invalid_mode", "'eavesdrop'"),
        ({"endpoint": "op1"}, 400, "invalid_mode", "listen, whisper, barge"),
        ({"endpoint": "op1&PJSIP/spv1", "mode": "listen"}, 400, "invalid_endpoint", "'&'"),
        ({"endpoint": "op1,qB", "mode": "listen"}, 400, "invalid_endpoint", "','"),
        ({"endpoint": 5, "mode": "listen"}, 400, "invalid_endpoint", "expected a str"),
        ({"mode": "listen"}, 400, "invalid_endpoint", "None"),
        ({"endpoint": "op9", "mode": "listen"}, 404, "operator_not_found", "'op9'"),
        ({"endpoint": "spv1", "mode": "listen"}, 400, "spy_on_self", "'spv1'"),
        ({"endpoint": "op1", "mode": "listen", "actor": "x"}, 400, "invalid_body", "actor"),
        (["op1"], 400, "invalid_body", "JSON object"),
    ],
)
async def test_spy_rejects_bad_request(controller, body, status, code, words):
    client = await client_for(controller, "supervisor", endpoint="spv1")
    try:
        response = await client.post(SPY, json=body)
        assert response.status == status
        error = (await response.json())["error"]
    finally:
        await client.close()
    assert error["code"] == code
    assert words in error["message"]
    assert controller.ami.actions == []


async def test_spy_needs_own_phone(controller):
    client = await client_for(controller, "supervisor", username="spv-nophone")
    try:
        response = await client.post(SPY, json={"endpoint": "op1", "mode": "listen"})
        assert response.status == 409
        error = (await response.json())["error"]
    finally:
        await client.close()
    assert error["code"] == "no_own_endpoint"
    assert "'spv-nophone' has no phone endpoint" in error["message"]
    assert controller.ami.actions == []


async def test_spy_without_ami_session(controller):
    controller.ami.connected = False
    client = await client_for(controller, "admin", endpoint="spv1")
    try:
        response = await client.post(SPY, json={"endpoint": "op1", "mode": "barge"})
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "asterisk_unavailable"
    finally:
        await client.close()
    assert controller.ami.actions == []


@pytest.mark.parametrize(("response", "answered"), [("Success", True), ("Failure", False)])
async def test_spy_result_reaches_own_pages(controller, response, answered):
    controller.spy_results = SpyResults(controller.feed)
    controller.ami.add_event_listener(controller.spy_results.on_event)
    mine = controller.feed.subscribe(user_view("spv1", "kepala-1"))
    other = controller.feed.subscribe(user_view("spv1", "kepala-2"))
    client = await client_for(controller, "supervisor", endpoint="spv1", username="kepala-1")
    try:
        posted = await client.post(SPY, json={"endpoint": "op1", "mode": "whisper"})
        assert posted.status == 202
    finally:
        await client.close()
    drain(mine)
    drain(other)
    # Another Originate's result (a callback) is not this supervisor's.
    controller.ami.emit(event("OriginateResponse", ("ActionID", "other-7"),
                              ("Response", "Success"), ("Reason", "4")))
    assert drain(mine) == []

    controller.ami.emit(event("OriginateResponse", ("ActionID", "fake-1"),
                              ("Response", response), ("Reason", "4" if answered else "3")))

    [result] = [e for e in drain(mine) if e.kind == "spy.result"]
    assert result.data["endpoint"] == "op1"
    assert result.data["mode"] == "whisper"
    assert result.data["answered"] is answered
    assert [e for e in drain(other) if e.kind == "spy.result"] == []


def test_spy_result_before_its_registration():
    feed = Feed()
    results = SpyResults(feed)
    page = feed.subscribe(user_view("spv1", "kepala-1"))
    results.on_event(event("OriginateResponse", ("ActionID", "a-1"), ("Response", "Failure"),
                           ("Reason", "3")))

    results.expect("a-1", "kepala-1",
                   {"endpoint": "op2", "mode": "listen", "supervisor_endpoint": "spv1"})

    [result] = drain(page)
    assert result.kind == "spy.result"
    assert result.data["answered"] is False
    assert result.data["reason"] == "3"


def user_view(endpoint, username):
    return UserView(
        id=1, username=username, display_name=username, role=Role.SUPERVISOR,
        agency_code=None, endpoint=endpoint, password_hash="", disabled=False,
        created_at=NOW, password_changed_at=NOW,
    )


def drain(subscription):
    events = []
    while not subscription.queue.empty():
        events.append(subscription.queue.get_nowait())
    return events
