"""Wallboard routes: the page, its JSON snapshot and the supervisor's spy actions.

- `GET /wallboard`: the page, rendered with a snapshot and then kept current from
  the "wallboard" events of GET /api/events. `?tv=1` starts it in wall-TV mode.
- `GET /api/wallboard`: the same snapshot as JSON.
- `POST /api/wallboard/spy` with `{"endpoint": "op1", "mode": "listen"}`: ring the
  signed-in supervisor's own phone, and once it answers, let the supervisor listen
  to (`listen`), talk to the operator only (`whisper`), or join (`barge`) the
  operator's call with ChanSpy (dialplans/sigap-supervisor.conf).

Pausing, unpausing and logging out an operator use POST
/api/operators/{endpoint}/{action}, and acknowledging an alarm POST
/api/alarms/{id}/ack; the page calls those routes.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from sigap_pbx.ami.client import AmiActionFailed, AmiError
from sigap_pbx.members.actions import PAUSE_REASONS
from sigap_pbx.web import i18n
from sigap_pbx.web.access import SUPERVISORS, route, user_of
from sigap_pbx.web.app import CONTROLLER, ApiError
from sigap_pbx.web.console_routes import PAUSE_LABELS_EN
from sigap_pbx.web.pages import render
from sigap_pbx.web.wallboard import wallboard_of
from sigap_pbx.wire.dialstring import validate_endpoint
from sigap_pbx.wire.errors import DialStringError

log = structlog.get_logger(__name__)

# Dialplan context that runs ChanSpy on the supervisor's answered phone. It is
# reachable only through Originate, never from a phone or the trunk.
SPY_CONTEXT = "sigap-supervisor-spy"
SPY_MODES = ("listen", "whisper", "barge")
SPY_BODY_KEYS = ("endpoint", "mode")
# Milliseconds the supervisor's phone rings before Asterisk gives up.
SPY_RING_MILLISECONDS = 30_000
# Caller ID name the supervisor's phone shows, so the call is recognisable.
SPY_CALLER_NAMES = {"listen": "Dengar", "whisper": "Bisik", "barge": "Sela"}

i18n.register({
    "wallboard.title": ("Papan pantau", "Wallboard"),
    "wallboard.not_synced": (
        "Belum sinkron dengan Asterisk: data di bawah bisa sudah usang.",
        "Not synced with Asterisk: the data below may be out of date.",
    ),
    "wallboard.tv": ("Mode TV", "TV mode"),
    "wallboard.tv_exit": ("Keluar mode TV", "Leave TV mode"),
    "wallboard.queue": ("Antrean", "Queue"),
    "wallboard.primary": ("utama", "primary"),
    "wallboard.waiting": ("Menunggu", "Waiting"),
    "wallboard.longest_wait": ("Tunggu terlama", "Longest wait"),
    "wallboard.available_members": ("Siap / anggota", "Available / members"),
    "wallboard.caller": ("Penelepon", "Caller"),
    "wallboard.wait": ("Tunggu", "Wait"),
    "wallboard.no_callers": ("Tidak ada penelepon menunggu.", "No callers waiting."),
    "wallboard.no_queues": ("Belum ada antrean.", "No queues yet."),
    "wallboard.operators": ("Operator", "Operators"),
    "wallboard.operator": ("Operator", "Operator"),
    "wallboard.state": ("Status", "State"),
    "wallboard.duration": ("Lama", "Duration"),
    "wallboard.reason": ("Alasan", "Reason"),
    "wallboard.queues": ("Antrean", "Queues"),
    "wallboard.actions": ("Tindakan", "Actions"),
    "wallboard.state.available": ("Siap", "Available"),
    "wallboard.state.ringing": ("Berdering", "Ringing"),
    "wallboard.state.on_call": ("Dalam panggilan", "On a call"),
    "wallboard.state.wrapup": ("Wrap-up", "Wrap-up"),
    "wallboard.state.paused": ("Jeda", "Paused"),
    "wallboard.state.logged_off": ("Keluar", "Logged off"),
    "wallboard.state.unreachable": ("Tak terjangkau", "Unreachable"),
    "wallboard.listen": ("Dengar", "Listen"),
    "wallboard.whisper": ("Bisik", "Whisper"),
    "wallboard.barge": ("Sela", "Barge"),
    "wallboard.pause": ("Jeda", "Pause"),
    "wallboard.unpause": ("Lanjut", "Unpause"),
    "wallboard.logout": ("Keluarkan", "Log out"),
    "wallboard.shift": ("Shift", "Shift"),
    "wallboard.crew": ("Regu", "Crew"),
    "wallboard.no_shift": ("Shift tidak diketahui", "Shift unknown"),
    "wallboard.figures": ("Angka shift ini", "This shift's figures"),
    "wallboard.figure.offered": ("Masuk", "Offered"),
    "wallboard.figure.answered": ("Dijawab", "Answered"),
    "wallboard.figure.abandoned": ("Ditinggal", "Abandoned"),
    "wallboard.figure.within_10": ("Dijawab ≤ 10 dtk", "Answered ≤ 10 s"),
    "wallboard.figure.within_15": ("Dijawab ≤ 15 dtk", "Answered ≤ 15 s"),
    "wallboard.figure.within_20": ("Dijawab ≤ 20 dtk", "Answered ≤ 20 s"),
    "wallboard.figures_note": (
        (
            "Sejak awal shift, waktu dihitung dari panggilan masuk; persen dari semua "
            "panggilan masuk, termasuk yang ditinggal."
        ),
        (
            "Since the shift started, timed from arrival; percentages are of all "
            "offered calls, abandoned ones included."
        ),
    ),
    "wallboard.alarms": ("Alarm", "Alarms"),
    "wallboard.no_alarms": ("Tidak ada alarm aktif.", "No active alarms."),
    # TV mode: the count of alarms that do not fit on the screen.
    "wallboard.alarms_more": ("+{count} lagi", "+{count} more"),
    "wallboard.ack": ("Tangani", "Acknowledge"),
    "wallboard.acked_by": ("Ditangani oleh", "Acknowledged by"),
    "wallboard.spy_started": (
        "Telepon Anda ({phone}) berdering; angkat untuk mulai.",
        "Your phone ({phone}) is ringing; answer it to start.",
    ),
    "wallboard.spy_answered": (
        "Telepon Anda tersambung ke panggilan {endpoint}.",
        "Your phone is connected to the call of {endpoint}.",
    ),
    "wallboard.spy_unanswered": (
        "Telepon Anda tidak diangkat; {endpoint} tidak disadap.",
        "Your phone was not answered; {endpoint} is not monitored.",
    ),
    "wallboard.no_phone": (
        "Akun Anda tidak punya telepon (endpoint), jadi tidak bisa memantau.",
        "Your account has no phone (endpoint), so it cannot listen in.",
    ),
    "wallboard.pause_prompt": ("Alasan jeda", "Pause reason"),
    "wallboard.confirm_logout": (
        "Keluarkan {endpoint} dari antrean sampai akhir shift?",
        "Log {endpoint} out of the queues until the end of the shift?",
    ),
    "wallboard.failed": ("Gagal", "Failed"),
    "wallboard.done": ("Selesai", "Done"),
    # One label per alarm kind (docs/alarms.md), filled with the values of
    # wallboard.alarm_label. The alarm's own English message stays in the item's
    # tooltip.
    "wallboard.alarm.endpoint_unreachable": (
        "Telepon {subject} tidak terjangkau", "Phone {subject} is unreachable"
    ),
    "wallboard.alarm.missed_calls": (
        "{subject} tidak menjawab panggilan beruntun dan dijeda",
        "{subject} left offered calls unanswered and is paused",
    ),
    "wallboard.alarm.below_minimum": (
        "Operator siaga di antrean {subject} di bawah minimum shift",
        "Fewer operators on post in queue {subject} than the shift minimum",
    ),
    "wallboard.alarm.nobody_available": (
        "Tidak ada yang bisa menjawab di antrean {subject}",
        "Nobody can answer in queue {subject}",
    ),
    "wallboard.alarm.long_wait": (
        "Penelepon menunggu terlalu lama di antrean {subject}",
        "Callers have waited too long in queue {subject}",
    ),
    "wallboard.alarm.report_unacknowledged": (
        "Laporan #{report} · {agency} belum dikonfirmasi",
        "Report #{report} · {agency} not acknowledged",
    ),
    "wallboard.alarm.webhook_failed": (
        "Pengiriman webhook ke {agency} gagal", "Webhook delivery to {agency} failed"
    ),
    "wallboard.alarm.other": ("Alarm {kind}: {subject}", "Alarm {kind}: {subject}"),
    # Error codes of Wallboard.shift_report, shown under the shift figures.
    "wallboard.figures_error.roster_missing": (
        (
            "Belum ada roster tersimpan, jadi shift tidak diketahui. Simpan roster "
            "dengan `sigap roster` dahulu."
        ),
        (
            "No roster is saved, so the shift is unknown. Save a roster with "
            "`sigap roster` first."
        ),
    ),
    "wallboard.figures_error.shift_reports_unavailable": (
        "Laporan shift belum berjalan.", "Shift reports have not started yet."
    ),
    "wallboard.figures_error.shift_report_failed": (
        "Laporan shift gagal; lihat log controller.",
        "The shift report failed; see the controller log.",
    ),
    "wallboard.figures_error.database_unavailable": (
        "Basis data tidak tersedia, jadi angka shift tidak ada.",
        "The database is unavailable, so there are no shift figures.",
    ),
    "wallboard.figures_error.other": (
        "Angka shift tidak tersedia.", "The shift figures are unavailable."
    ),
    # Pause reasons, with the labels the operator console shows, and the reasons
    # that the controller sets by itself.
    **{
        f"wallboard.pause_reason.{reason}": (label.capitalize(), PAUSE_LABELS_EN[reason])
        for reason, label in PAUSE_REASONS.items()
    },
    "wallboard.pause_reason.wrapup": ("Wrap-up", "Wrap-up"),
    "wallboard.pause_reason.unreachable": ("Tak terjangkau", "Unreachable"),
    "wallboard.pause_reason.missed_calls": ("Panggilan terlewat", "Missed calls"),
})


def page_messages(lang: str) -> dict[str, str]:
    """Return the wallboard's messages in `lang`, for the page's script."""
    prefix = "wallboard."
    return {
        key[len(prefix):]: i18n.translate(key, lang)
        for key in i18n.MESSAGES
        if key.startswith(prefix)
    }


async def page(request: web.Request) -> web.Response:
    board = wallboard_of(request.app[CONTROLLER])
    snapshot = await board.snapshot()
    lang = i18n.language(request.cookies.get(i18n.LANG_COOKIE))
    return render(
        request,
        "wallboard.html",
        board=snapshot,
        wall=request.query.get("tv") == "1",
        messages=page_messages(lang),
        own_endpoint=user_of(request).endpoint or "",
    )


async def snapshot(request: web.Request) -> web.Response:
    board = wallboard_of(request.app[CONTROLLER])
    return web.json_response(await board.snapshot())


# Spying --------------------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    example = '{"endpoint": "op1", "mode": "listen"}'
    try:
        body = await request.json() if request.can_read_body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", f"the body must be a JSON object such as {example}")
    unknown = sorted(str(key) for key in body if key not in SPY_BODY_KEYS)
    if unknown:
        raise ApiError(
            400, "invalid_body",
            f"unknown keys {unknown} in the body, send only endpoint and mode, "
            f"such as {example}",
        )
    return body


def _operator_endpoints(controller: Any) -> set[str]:
    actions = getattr(controller, "operator_actions", None)
    if actions is not None:
        return set(actions.operators)
    sip = controller.config.sip
    return {op.endpoint for op in sip.operators} | {sip.supervisor.endpoint}


def check_spy_request(controller: Any, body: dict[str, Any], own: str | None,
                      username: str) -> tuple[str, str, str]:
    """Validate a spy request; return (operator endpoint, mode, supervisor endpoint).

    Raises ApiError before any AMI action when a value is missing or invalid.
    """
    mode = body.get("mode")
    if mode not in SPY_MODES:
        raise ApiError(
            400, "invalid_mode",
            f"mode {mode!r} is invalid, use one of {', '.join(SPY_MODES)}",
        )
    raw = body.get("endpoint")
    try:
        endpoint = validate_endpoint(raw, field="endpoint")  # type: ignore[arg-type]
    except DialStringError as exc:
        raise ApiError(400, "invalid_endpoint", str(exc)) from None
    operators = _operator_endpoints(controller)
    if endpoint not in operators:
        raise ApiError(
            404, "operator_not_found",
            f"endpoint {endpoint!r} is not an operator of this site, use one of "
            f"{', '.join(sorted(operators))}",
        )
    if not own:
        raise ApiError(
            409, "no_own_endpoint",
            f"user {username!r} has no phone endpoint, so there is no phone to ring "
            f"for {mode}; use an account added with its own phone "
            "(sigap user add NAME --role supervisor --endpoint ENDPOINT)",
        )
    try:
        own = validate_endpoint(own, field="supervisor endpoint")
    except DialStringError as exc:
        raise ApiError(409, "invalid_own_endpoint", str(exc)) from None
    if own == endpoint:
        raise ApiError(
            400, "spy_on_self",
            f"endpoint {endpoint!r} is your own phone; choose another operator",
        )
    return endpoint, mode, own


async def spy(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    user = user_of(request)
    body = await _body(request)
    endpoint, mode, own = check_spy_request(controller, body, user.endpoint, user.username)
    if not controller.ami.connected:
        raise ApiError(
            503, "asterisk_unavailable",
            "the controller has no AMI session with Asterisk now; check GET /api/health "
            "and retry",
        )
    fields = {
        "Channel": f"PJSIP/{own}",
        "Context": SPY_CONTEXT,
        "Exten": "s",
        "Priority": "1",
        "Async": "true",
        "Timeout": str(SPY_RING_MILLISECONDS),
        "CallerID": f'"{SPY_CALLER_NAMES[mode]} {endpoint}" <{endpoint}>',
        "Variable": f"SIGAP_SPY_TARGET={endpoint},SIGAP_SPY_MODE={mode}",
    }
    try:
        completion = await controller.ami.action(
            "Originate", fields, timeout=controller.config.ami.action_timeout
        )
    except AmiActionFailed as exc:
        message = exc.completion.response.message or "no message"
        raise ApiError(502, "asterisk_rejected",
                       f"Asterisk rejected Originate of PJSIP/{own}: {message}") from None
    except AmiError as exc:
        raise ApiError(503, "asterisk_unavailable", f"AMI action Originate failed: {exc}") from None
    results = getattr(controller, "spy_results", None)
    if results is not None:
        results.expect(completion.action_id, user.username,
                       {"endpoint": endpoint, "mode": mode, "supervisor_endpoint": own})
    log.info("supervisor_spy_started", user=user.username, supervisor_endpoint=own,
             operator=endpoint, mode=mode)
    await _audit(controller, user.username, mode, endpoint, own)
    return web.json_response(
        {"endpoint": endpoint, "mode": mode, "supervisor_endpoint": own, "status": "ringing"},
        status=202,
    )


async def _audit(controller: Any, actor: str, mode: str, endpoint: str, own: str) -> None:
    rosters = getattr(controller, "rosters", None)
    if rosters is None:
        return
    try:
        await rosters.audit(actor, f"supervisor.{mode}", endpoint,
                            {"supervisor_endpoint": own, "mode": mode})
    except Exception:
        # The phone already rings; a failed audit write must not turn it into an error.
        log.exception("supervisor_spy_audit_failed", user=actor, operator=endpoint)


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/wallboard", page, SUPERVISORS)
    route(app, "GET", "/api/wallboard", snapshot, SUPERVISORS)
    route(app, "POST", "/api/wallboard/spy", spy, SUPERVISORS)

