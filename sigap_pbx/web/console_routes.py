"""The operator console page and its JSON API: call card data, diversion flags,
the callback list and callbacks.

Operators act only from their own phone (the user's `endpoint`). Supervisors and
admins may set and lift diversion flags; everyone on the call staff may read
them and call back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from sigap_pbx.agencies.reports import CALL_TYPES, CATEGORIES, LABELS_ID
from sigap_pbx.ami.client import AmiError
from sigap_pbx.calls.numbers import normalise_number
from sigap_pbx.members.actions import PAUSE_REASONS
from sigap_pbx.store.callbacks import ABANDONED_OUTCOMES, CallbackOutcome, CallbackStore
from sigap_pbx.store.caller_history import earlier_calls
from sigap_pbx.store.diversions import (
    MAX_DIVERSION_DAYS,
    DiversionAction,
    DiversionNotFound,
    DiversionStore,
)
from sigap_pbx.store.errors import InvalidFieldValue
from sigap_pbx.web import i18n
from sigap_pbx.web.access import CALL_STAFF, SUPERVISORS, route, user_of
from sigap_pbx.web.app import CONTROLLER, MAX_CALL_ID, ApiError, _int_param
from sigap_pbx.web.console import (
    CALLER_TEXT_LIMIT,
    CallbackRejected,
    caller_text,
    validate_callback_number,
)
from sigap_pbx.web.operator_routes import _body
from sigap_pbx.web.pages import render
from sigap_pbx.web.wallboard import wallboard_of

log = structlog.get_logger(__name__)

MAX_NUMBER_LENGTH = 32
DIVERSION_KEYS = {"number", "action", "reason", "until"}

i18n.register({
    "console.title": ("Konsol operator", "Operator console"),
    "console.card": ("Panggilan", "Call"),
    "console.idle": ("Tidak ada panggilan", "No call"),
    "console.ringing": ("Berdering", "Ringing"),
    "console.connected": ("Tersambung", "Connected"),
    "console.caller_number": ("Nomor penelepon", "Caller number"),
    "console.caller_name": ("Nama penelepon", "Caller name"),
    "console.no_endpoint": (
        ("Akun Anda tidak punya telepon (endpoint); kartu panggilan dan panggilan balik"
        " tidak tersedia."),
        ("Your account has no phone (endpoint); call cards and callbacks are not"
        " available."),
    ),
    "console.history": ("Panggilan sebelumnya", "Earlier calls"),
    "console.no_history": ("Belum ada panggilan sebelumnya", "No earlier calls"),
    "console.no_report": ("tanpa laporan", "no report"),
    "console.report": ("Laporan", "Report"),
    "console.diversions": ("Penanda pengalihan", "Diversion flags"),
    "console.no_diversions": ("Tidak ada penanda", "No flags in force"),
    "console.until": ("sampai", "until"),
    "console.set_by": ("oleh", "by"),
    "console.diversion.warning": ("Peringatan", "Warning"),
    "console.diversion.low_priority": ("Antrean prioritas rendah", "Low-priority queue"),
    "console.lift": ("Cabut", "Lift"),
    "console.add_diversion": ("Tambah penanda", "Add flag"),
    "console.reason": ("Alasan", "Reason"),
    "console.report_form": ("Laporan kejadian", "Incident report"),
    "console.category": ("Kategori", "Category"),
    "console.call_type": ("Jenis panggilan", "Call type"),
    "console.location": ("Lokasi", "Location"),
    "console.description": ("Uraian", "Description"),
    "console.priority": ("Prioritas", "Priority"),
    "console.priority_hint": ("1 paling mendesak", "1 is the most urgent"),
    "console.people": ("Orang terlibat", "People involved"),
    "console.people_hint": (
        "Satu orang per baris: nama, peran, umur", "One person per line: name, role, age"
    ),
    "console.save": ("Simpan laporan", "Save report"),
    "console.saved": ("Laporan #{id} tersimpan", "Report #{id} saved"),
    "console.dispatch": ("Kirim laporan ke instansi", "Send the report to an agency"),
    "console.dispatched": ("Terkirim ke {agency}", "Sent to {agency}"),
    "console.forward": ("Teruskan panggilan", "Forward the call"),
    "console.mode.conference": ("Konferensi", "Conference"),
    "console.mode.transfer": ("Alihkan", "Transfer"),
    "console.mode.consult": ("Konsultasi", "Consult"),
    "console.forwarded": ("Panggilan diteruskan ke {agency}", "Call forwarded to {agency}"),
    "console.consults": ("Konsultasi berjalan", "Consults in progress"),
    "console.consult_started": ("Konsultasi dengan {agency} dimulai; penelepon menunggu",
                                "Consult with {agency} started; the caller is on hold"),
    "console.unsaved_report": (
        "Laporan panggilan sebelumnya belum disimpan. Simpan, lalu tekan Laporan baru"
        " untuk panggilan ini.",
        "The previous call's report is not saved. Save it, then press New report for"
        " this call.",
    ),
    "console.new_report": ("Laporan baru", "New report"),
    "console.discard_report": ("Buang perubahan laporan yang belum disimpan?",
                               "Discard the report changes not saved?"),
    "console.consult_hint": (
        "Penelepon menunggu. Setelah instansi menjawab, gabungkan bertiga atau serahkan.",
        "The caller is on hold. Once the agency answers, join all three or hand over.",
    ),
    "console.consult_with": ("{agency} · penelepon {number}", "{agency} · caller {number}"),
    "console.consult_join": ("Gabungkan bertiga", "Join all three"),
    "console.consult_transfer": ("Serahkan ke instansi", "Hand over to the agency"),
    "console.consult_joined": ("Penelepon, {agency} dan Anda tersambung",
                               "The caller, {agency} and you are connected"),
    "console.consult_transferred": ("Penelepon diserahkan ke {agency}",
                                    "The caller was handed over to {agency}"),
    "console.consult_ended": (
        "Konsultasi dengan {agency} berakhir; penelepon kembali ke antrean",
        "The consult with {agency} ended; the caller went back to the queue",
    ),
    "console.consult_caller_gone": (
        "Penelepon menutup telepon selama konsultasi dengan {agency}",
        "The caller hung up during the consult with {agency}",
    ),
    "console.callbacks": ("Panggilan terputus untuk dihubungi kembali",
                          "Abandoned calls to call back"),
    "console.no_callbacks": ("Tidak ada panggilan terputus", "No abandoned calls"),
    "console.call_back": ("Hubungi kembali", "Call back"),
    "console.calling_back": ("Menghubungi {number}…", "Calling {number}…"),
    "console.attempts": ("percobaan", "attempts"),
    "console.state": ("Status saya", "My state"),
    "console.pause_reason": ("Alasan jeda", "Pause reason"),
    "console.pause": ("Jeda", "Pause"),
    "console.unpause": ("Siap", "Unpause"),
    "console.login": ("Masuk antrean", "Log in"),
    "console.logout": ("Keluar antrean", "Log out"),
    "console.state.available": ("Siap", "Available"),
    "console.state.ringing": ("Berdering", "Ringing"),
    "console.state.on_call": ("Sedang menelepon", "On a call"),
    "console.state.wrapup": ("Penyelesaian", "Wrap-up"),
    "console.state.paused": ("Jeda", "Paused"),
    "console.state.logged_off": ("Di luar antrean", "Logged off"),
    "console.state.unreachable": ("Tidak terjangkau", "Unreachable"),
    "console.state.unknown": ("Tidak diketahui", "Unknown"),
    "console.failed": ("Gagal: {message}", "Failed: {message}"),
    # The API's errors are in English; these are the ones an operator meets during a
    # call, by their stable code. Any other code shows the API's own message.
    "console.error.agency_not_connected": (
        "instansi belum menjawab konsultasi; tunggu, atau tutup telepon",
        "the agency has not answered the consult yet; wait for it or hang up",
    ),
    "console.error.consult_in_progress": (
        "penelepon sedang ditahan untuk konsultasi; gabungkan, serahkan, atau tunggu"
        " sampai selesai",
        "the caller is on hold for a consult; join, hand over, or wait for it to end",
    ),
    "console.error.no_consult": ("konsultasi ini sudah berakhir", "this consult has ended"),
    "console.error.consult_completing": ("konsultasi ini sedang diselesaikan",
                                         "this consult is being completed"),
    "console.error.call_not_found": ("panggilan sudah berakhir", "the call has ended"),
    "console.error.call_not_connected": (
        "panggilan belum tersambung ke operator; konferensi dan konsultasi memerlukannya",
        "the call is not connected to an operator; conference and consult need that",
    ),
    "console.error.agency_has_no_lines": ("instansi ini tidak punya saluran yang bertugas"
                                          " sekarang", "this agency has no line staffed now"),
    "console.error.asterisk_unavailable": ("PBX tidak terhubung; coba lagi sebentar lagi",
                                           "the PBX is not connected; try again shortly"),
    "console.error.asterisk_rejected": ("PBX menolak perintah; panggilan mungkin sudah"
                                        " berakhir", "the PBX rejected the action; the call"
                                        " may have ended"),
    "console.error.report_conflict": (
        "laporan sudah diubah orang lain; muat ulang halaman untuk melihat versi terbaru",
        "someone else changed the report; reload the page to see the latest version",
    ),
    "console.error.forbidden": ("Anda tidak berhak melakukan ini", "you may not do this"),
    "console.outcome.calling": ("sedang memanggil", "calling"),
    "console.outcome.operator_no_answer": ("telepon operator tidak dijawab",
                                           "operator's phone not answered"),
    "console.outcome.answered": ("tersambung", "reached"),
    "console.outcome.no_answer": ("tidak dijawab", "no answer"),
    "console.outcome.busy": ("sibuk", "busy"),
    "console.outcome.failed": ("gagal", "failed"),
    "console.outcome.cancelled": ("dibatalkan", "cancelled"),
})

# English labels of the report's choices; the Indonesian ones are LABELS_ID.
LABELS_EN = {
    "category": {
        "fire": "Fire",
        "traffic_accident": "Traffic accident",
        "natural_disaster": "Natural disaster",
        "security": "Security and public order",
        "health": "Health",
        "other": "Other",
    },
    "call_type": {
        "emergency": "Emergency",
        "information": "Information request",
        "prank": "Prank call",
        "ghost": "Silent call",
        "misdial": "Misdial",
    },
}
PAUSE_LABELS_EN = {
    "break": "Break",
    "prayer": "Prayer",
    "toilet": "Toilet",
    "briefing": "Briefing",
    "training": "Training",
}
JS_KEYS = (
    "idle", "ringing", "connected", "no_history", "no_report", "report", "no_diversions",
    "until", "set_by", "lift", "saved", "dispatched", "forwarded", "no_callbacks",
    "call_back", "calling_back", "attempts", "failed", "diversion.warning",
    "diversion.low_priority", "consult_with", "consult_join", "consult_transfer",
    "consult_joined", "consult_transferred", "consult_ended", "consult_caller_gone",
    "consult_started", "unsaved_report", "discard_report",
) + tuple(f"error.{code}" for code in (
    "agency_not_connected", "consult_in_progress", "no_consult", "consult_completing",
    "call_not_found", "call_not_connected", "agency_has_no_lines", "asterisk_unavailable",
    "asterisk_rejected", "report_conflict", "forbidden",
)) + tuple(f"state.{s}" for s in (
    "available", "ringing", "on_call", "wrapup", "paused", "logged_off", "unreachable",
    "unknown",
)) + tuple(f"outcome.{o.value}" for o in CallbackOutcome)


def _controller(request: web.Request) -> Any:
    return request.app[CONTROLLER]


def _db(request: web.Request) -> Any:
    db = getattr(_controller(request), "db", None)
    if db is None:
        raise ApiError(503, "not_started", "the database is not open yet; retry shortly")
    return db


def _country_code(request: web.Request) -> str:
    config = getattr(_controller(request), "config", None)
    return config.site.country_code if config is not None else "62"


def _numbers_of(request: web.Request, raw: str) -> list[str]:
    """Return the forms under which a caller number may be stored: as received
    and normalised to E.164."""
    normalised = normalise_number(raw, _country_code(request))
    return [number for number in dict.fromkeys([normalised, raw]) if number]


def _number_param(request: web.Request) -> str:
    raw = request.query.get("number")
    if raw is None or raw == "":
        raise ApiError(400, "missing_parameter",
                       "query parameter number is missing: add ?number=0812...")
    if len(raw) > MAX_NUMBER_LENGTH:
        raise ApiError(400, "invalid_parameter",
                       f"number is {len(raw)} characters long, use at most "
                       f"{MAX_NUMBER_LENGTH}")
    return raw


# Operator state ----------------------------------------------------------------------


def operator_state(live: Any, endpoint: str) -> dict[str, Any]:
    """Return one phone's state in the queues, from the live view.

    The state is one of available, ringing, on_call, wrapup, paused, logged_off,
    unreachable, as the wallboard names them.
    """
    interface = f"PJSIP/{endpoint}"
    members = [
        (queue.name, queue.members[interface])
        for queue in sorted(live.queues.values(), key=lambda item: item.name)
        if interface in queue.members
    ]
    if not members:
        return {"state": "logged_off", "paused_reason": "", "queues": []}
    member = members[0][1]
    if member.status in ("unavailable", "invalid"):
        state = "unreachable"
    elif member.status in ("ringing", "ringing_in_use"):
        state = "ringing"
    elif member.in_call or member.status in ("in_use", "busy", "on_hold"):
        state = "on_call"
    elif member.paused and member.paused_reason == "wrapup":
        state = "wrapup"
    elif member.paused:
        state = "paused"
    else:
        state = "available"
    return {
        "state": state,
        "paused_reason": caller_text(member.paused_reason) if member.paused else "",
        "queues": [name for name, _ in members],
    }


# Page and card -------------------------------------------------------------------------


async def console_page(request: web.Request) -> web.Response:
    user = user_of(request)
    lang = i18n.language(request.cookies.get(i18n.LANG_COOKIE))
    english = lang == "en"
    choices = {
        field: [
            {"value": value, "label": (LABELS_EN if english else LABELS_ID)[field][value]}
            for value in values
        ]
        for field, values in (("category", CATEGORIES), ("call_type", CALL_TYPES))
    }
    pause_reasons = [
        {"value": key, "label": PAUSE_LABELS_EN[key] if english else label.capitalize()}
        for key, label in PAUSE_REASONS.items()
    ]
    agencies = []
    service = getattr(_controller(request), "agencies", None)
    if service is not None:
        agencies = [
            {"code": agency.code, "name": agency.name}
            for agency in await service.list_agencies(active=True)
        ]
    data = {
        "endpoint": user.endpoint,
        "role": user.role.value,
        "labels": {
            field: {item["value"]: item["label"] for item in items}
            for field, items in choices.items()
        },
        "messages": {key: i18n.translate(f"console.{key}", lang) for key in JS_KEYS},
    }
    return render(
        request,
        "console.html",
        choices=choices,
        pause_reasons=pause_reasons,
        agencies=agencies,
        modes=("conference", "transfer", "consult"),
        console_data=data,
        caller_limit=CALLER_TEXT_LIMIT,
    )


async def console_state(request: web.Request) -> web.Response:
    """Return the signed-in user's card and queue state, for a page (re)load."""
    user = user_of(request)
    controller = _controller(request)
    card = None
    state = None
    if user.endpoint:
        cards = getattr(controller, "call_cards", None)
        found = cards.card_for(user.endpoint) if cards is not None else None
        card = found.to_dict() if found is not None else None
        live = getattr(controller, "live", None)
        if getattr(controller, "config", None) is not None and live is not None:
            # The wallboard's view also tracks a ringing phone, which device state
            # shows as busy, so the console and the wallboard agree.
            state = wallboard_of(controller).state_of(user.endpoint)
        elif live is not None:
            state = operator_state(live, user.endpoint)
    return web.json_response({"endpoint": user.endpoint, "card": card, "state": state})


async def caller_info(request: web.Request) -> web.Response:
    """Return a caller number's earlier calls with their reports, and the diversion
    flags in force for it."""
    raw = _number_param(request)
    uniqueid = request.query.get("uniqueid") or None
    numbers = _numbers_of(request, raw)
    db = _db(request)
    calls = await earlier_calls(db, numbers=numbers, exclude_uniqueid=uniqueid, limit=10)
    now = _controller(request).clock()
    flags = await _flags_in_force(db, numbers, now)
    return web.json_response({
        "number": caller_text(raw),
        "calls": [call.to_dict() for call in calls],
        "diversions": [flag.to_dict(now) for flag in flags],
    })


async def _flags_in_force(db: Any, numbers: list[str], at: datetime) -> list[Any]:
    valid = [number for number in numbers if number.lstrip("+").isdigit()]
    valid = [number for number in valid if 3 <= len(number.lstrip("+")) <= 20]
    if not valid:
        return []
    return await DiversionStore(db).list_for(valid, in_force_at=at)


# Diversions ---------------------------------------------------------------------------


def _diversion_number(request: web.Request, raw: Any) -> str:
    if (not isinstance(raw, str) or not raw or len(raw) > MAX_NUMBER_LENGTH
            or any(ord(char) < 0x20 for char in raw)):
        raise ApiError(400, "invalid_number",
                       f"number {raw!r:.40} is invalid: send the caller number as text, "
                       "such as 081234567890 or +6281234567890")
    normalised = normalise_number(raw, _country_code(request))
    if not normalised:
        raise ApiError(400, "invalid_number",
                       f"number {raw!r:.40} is not a phone number: send digits with an "
                       "optional leading +, such as 081234567890")
    return normalised


def _until(raw: Any) -> datetime:
    value = None
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            value = None
    if value is None or value.tzinfo is None:
        raise ApiError(
            400, "invalid_until",
            f"until {raw!r:.60} must be an ISO 8601 time with an offset, at most "
            f"{MAX_DIVERSION_DAYS} days ahead, e.g. 2026-12-06T07:00:00+07:00",
        )
    return value


async def list_diversions(request: web.Request) -> web.Response:
    raw = _number_param(request)
    numbers = [n for n in _numbers_of(request, raw) if n.lstrip("+").isdigit()]
    now = _controller(request).clock()
    try:
        flags = await DiversionStore(_db(request)).list_for(numbers) if numbers else []
    except InvalidFieldValue as exc:
        raise ApiError(400, "invalid_number", str(exc)) from None
    return web.json_response({
        "number": caller_text(raw),
        "diversions": [flag.to_dict(now) for flag in flags],
    })


async def add_diversion(request: web.Request) -> web.Response:
    body = await _body(request)
    unknown = sorted(set(body) - DIVERSION_KEYS)
    if unknown:
        raise ApiError(400, "invalid_body",
                       f"unknown field {unknown[0]!r:.40}, use {', '.join(sorted(DIVERSION_KEYS))}")

    number = _diversion_number(request, body.get("number"))
    action = body.get("action", DiversionAction.WARNING.value)
    actions = [a.value for a in DiversionAction]
    if action not in actions:
        raise ApiError(400, "invalid_action",
                       f"action {action!r:.40} is invalid, use one of {', '.join(actions)}")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ApiError(400, "missing_reason",
                       "reason is missing: say why the number is diverted, such as "
                       "'five prank calls on 5 December'")
    until = _until(body.get("until"))

    user = user_of(request)
    try:
        flag = await DiversionStore(_db(request)).add(
            number=number, action=action, reason=reason, set_by=user.username,
            set_at=_controller(request).clock(), until=until,
        )
    except InvalidFieldValue as exc:
        raise ApiError(400, f"invalid_{exc.field}", str(exc)) from None
    log.info("diversion_set", diversion=flag.id, number=number, action=action,
             until=until.isoformat(), user=user.username)
    await _audit(request, "diversion.set", number, {"id": flag.id, "action": action,
                                                   "until": until.isoformat()})
    await _publish_diversions(request)
    return web.json_response(flag.to_dict(_controller(request).clock()), status=201)


async def _publish_diversions(request: web.Request) -> None:
    """Bring the dialplan's copy of the flags up to date.

    The flag is stored either way, and the request succeeds. A publish that fails
    now is retried by the controller within a minute.
    """
    publisher = getattr(_controller(request), "diversions", None)
    if publisher is None:
        return
    try:
        await publisher.publish()
    except AmiError as exc:
        log.warning("diversions_publish_failed", error=str(exc),
                    fix="the flag is stored; the controller publishes it again within a minute")
    except Exception:
        log.exception("diversions_publish_failed")


async def lift_diversion(request: web.Request) -> web.Response:
    raw = request.match_info["diversion_id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_CALL_ID:
        raise ApiError(400, "invalid_parameter",
                       f"diversion id {raw!r:.40} must be a whole number from a listed flag")
    await _body(request)
    user = user_of(request)
    now = _controller(request).clock()
    try:
        flag = await DiversionStore(_db(request)).lift(int(raw), by=user.username, at=now)
    except DiversionNotFound as exc:
        raise ApiError(404, "diversion_not_found", str(exc)) from None
    log.info("diversion_lifted", diversion=flag.id, number=flag.number, user=user.username)
    await _audit(request, "diversion.lift", flag.number, {"id": flag.id})
    await _publish_diversions(request)
    return web.json_response(flag.to_dict(now))


async def _audit(request: web.Request, action: str, subject: str, detail: dict[str, Any]) -> None:
    rosters = getattr(_controller(request), "rosters", None)
    if rosters is None:
        return
    try:
        await rosters.audit(user_of(request).username, action, subject, detail)
    except Exception:
        log.exception("diversion_audit_failed", action=action, subject=subject)


# Callbacks ----------------------------------------------------------------------------


async def list_callbacks(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 50, 1, 200)
    pending = await CallbackStore(_db(request)).pending_callbacks(limit=limit)
    callbacks = []
    for item in pending:
        row = item.to_dict()
        for key in ("caller_number", "caller_number_raw", "caller_name"):
            row[key] = caller_text(row[key])
        callbacks.append(row)
    return web.json_response({"callbacks": callbacks})


async def call_back(request: web.Request) -> web.Response:
    user = user_of(request)
    if not user.endpoint:
        raise ApiError(
            409, "no_endpoint",
            f"user {user.username!r} has no phone endpoint, and a callback rings the "
            "user's own phone first; sign in with an account made with "
            "`sigap user add --endpoint ENDPOINT`",
        )
    raw = request.match_info["call_id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_CALL_ID:
        raise ApiError(400, "invalid_parameter", f"call id {raw!r:.40} must be a whole number")
    body = await _body(request)
    if body:
        raise ApiError(400, "invalid_body",
                       f"unknown field {min(body)!r:.40}: send an empty body")

    controller = _controller(request)
    dialer = getattr(controller, "callback_dialer", None)
    store = getattr(controller, "store", None)
    if dialer is None or store is None:
        raise ApiError(503, "not_started", "callbacks have not started yet; retry shortly")
    call = await store.get_call(int(raw))
    if call is None:
        raise ApiError(404, "call_not_found", f"no call with id {raw}")
    if call.outcome.value not in ABANDONED_OUTCOMES:
        raise ApiError(409, "not_abandoned",
                       f"call {raw} has outcome {call.outcome.value}; only abandoned calls "
                       "are called back from the console")

    attempts = await CallbackStore(_db(request)).list_attempts(call.id)
    if any(a.outcome == CallbackOutcome.ANSWERED for a in attempts):
        raise ApiError(409, "already_called_back",
                       f"call {raw} was called back successfully already")
    if any(a.call_id == call.id for a in dialer.attempts.values()):
        raise ApiError(409, "callback_in_progress",
                       f"a callback of call {raw} is going on now; wait for its outcome")

    number = _dialled_number(call)
    try:
        result = await dialer.start(call_id=call.id, number=number,
                                    username=user.username, endpoint=user.endpoint)
    except CallbackRejected as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    return web.json_response(result, status=202)


def _dialled_number(call: Any) -> str:
    """Return the number to dial: as the carrier delivered it when that is valid,
    else the normalised form."""
    for candidate in (call.caller_number_raw, call.caller_number):
        try:
            return validate_callback_number(candidate)
        except CallbackRejected:
            continue
    raise ApiError(
        409, "invalid_number",
        f"call {call.id} has caller number {caller_text(call.caller_number_raw)!r}, which "
        "a callback cannot dial: it needs an optional '+' and 3 to 20 digits",
    )


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/console", console_page, CALL_STAFF)
    route(app, "GET", "/api/console/state", console_state, CALL_STAFF)
    route(app, "GET", "/api/console/caller", caller_info, CALL_STAFF)
    route(app, "GET", "/api/diversions", list_diversions, CALL_STAFF)
    route(app, "POST", "/api/diversions", add_diversion, SUPERVISORS)
    route(app, "POST", "/api/diversions/{diversion_id}/lift", lift_diversion, SUPERVISORS)
    route(app, "GET", "/api/callbacks", list_callbacks, CALL_STAFF)
    route(app, "POST", "/api/callbacks/{call_id}", call_back, CALL_STAFF)
