"""The call history page and its CSV export.

GET /history searches the stored calls through GET /api/calls, and
GET /api/calls.csv sends every call that matches the same filters as CSV. The
export reads the calls in batches and writes each batch as it is read, so a long
history never sits in memory. A cell that starts with =, +, -, @, a tab or a
carriage return gets a leading apostrophe, because a spreadsheet would run it as
a formula (the roster export does the same).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from sigap_pbx.agencies.reports import CALL_TYPES, CATEGORIES, LABELS_ID
from sigap_pbx.store import CallOutcome
from sigap_pbx.web import i18n
from sigap_pbx.web.access import CALL_STAFF, route
from sigap_pbx.web.app import CONTROLLER, ApiError, _filters
from sigap_pbx.web.pages import language_of, render

if TYPE_CHECKING:
    from sigap_pbx.store import CallStore, CallView

log = structlog.get_logger(__name__)

# Calls read from the store per query while the CSV is written.
CSV_BATCH = 500
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "call_id",
    "uniqueid",
    "arrived_at",
    "answered_at",
    "ended_at",
    "caller_number",
    "caller_number_raw",
    "caller_name",
    "dialled_number",
    "queue",
    "outcome",
    "operator",
    "wait_seconds",
    "talk_seconds",
    "overflow_stage",
    "hangup_cause",
    "report_ids",
    "categories",
    "call_types",
)
PAGE_SIZE = 50

i18n.register({
    "history.title": ("Riwayat panggilan", "Call history"),
    "history.number": ("Nomor penelepon", "Caller number"),
    "history.since": ("Sejak", "Since"),
    "history.until": ("Sampai", "Until"),
    "history.operator": ("Operator (endpoint)", "Operator (endpoint)"),
    "history.outcome": ("Hasil", "Outcome"),
    "history.category": ("Kategori", "Category"),
    "history.call_type": ("Jenis panggilan", "Call type"),
    "history.any": ("Semua", "Any"),
    "history.search": ("Cari", "Search"),
    "history.reset": ("Kosongkan", "Clear"),
    "history.csv": ("Unduh CSV", "Download CSV"),
    "history.arrived": ("Waktu masuk", "Arrived"),
    "history.queue": ("Antrean", "Queue"),
    "history.wait": ("Tunggu", "Wait"),
    "history.talk": ("Bicara", "Talk"),
    "history.report": ("Laporan", "Report"),
    "history.previous": ("Sebelumnya", "Previous"),
    "history.next": ("Berikutnya", "Next"),
    "history.range": ("{first}–{last} dari {total}", "{first}–{last} of {total}"),
    "history.empty": (
        "Tidak ada panggilan yang cocok.", "No call matches these filters."
    ),
    "history.loading": ("Memuat…", "Loading…"),
    "history.failed": ("Gagal memuat: {message}", "Loading failed: {message}"),
    "history.time_note": (
        "Waktu ditampilkan dalam zona waktu peramban ini.",
        "Times are shown in this browser's time zone.",
    ),
})

# Outcome labels. The category and call type labels come from the report module.
OUTCOME_LABELS = {
    CallOutcome.IN_PROGRESS: ("Sedang berlangsung", "In progress"),
    CallOutcome.ANSWERED: ("Dijawab", "Answered"),
    CallOutcome.ABANDONED_BEFORE_QUEUE: (
        "Ditutup sebelum antrean", "Abandoned before the queue"
    ),
    CallOutcome.ABANDONED_IN_QUEUE: ("Ditutup dalam antrean", "Abandoned in the queue"),
    CallOutcome.OVERFLOWED: ("Dialihkan (overflow)", "Overflowed"),
    CallOutcome.FAILED: ("Gagal", "Failed"),
}
CATEGORY_LABELS_EN = {
    "fire": "Fire",
    "traffic_accident": "Traffic accident",
    "natural_disaster": "Natural disaster",
    "security": "Security and public order",
    "health": "Health",
    "other": "Other",
}
CALL_TYPE_LABELS_EN = {
    "emergency": "Emergency",
    "information": "Information request",
    "prank": "Prank call",
    "ghost": "Ghost call",
    "misdial": "Misdial",
}


def labels(lang: str) -> dict[str, dict[str, str]]:
    """Return the outcome, category and call type labels in `lang`."""
    english = lang == "en"
    return {
        "outcome": {
            outcome.value: pair[1] if english else pair[0]
            for outcome, pair in OUTCOME_LABELS.items()
        },
        "category": {
            value: CATEGORY_LABELS_EN[value] if english else LABELS_ID["category"][value]
            for value in CATEGORIES
        },
        "call_type": {
            value: CALL_TYPE_LABELS_EN[value] if english else LABELS_ID["call_type"][value]
            for value in CALL_TYPES
        },
    }


def escape_cell(value: Any) -> str:
    """Return a CSV cell's text, with an apostrophe before a formula prefix."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _time(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _seconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else ""


def csv_row(call: CallView, reports: Sequence[dict[str, Any]]) -> list[str]:
    """Return one call's CSV cells, escaped, in CSV_COLUMNS order."""
    cells = [
        call.id,
        call.uniqueid,
        _time(call.arrived_at),
        _time(call.answered_at),
        _time(call.ended_at),
        call.caller_number,
        call.caller_number_raw,
        call.caller_name,
        call.dialled_number,
        call.queue,
        call.outcome.value,
        call.answering_endpoint,
        _seconds(call.wait_seconds),
        _seconds(call.talk_seconds),
        call.overflow_stage.value if call.overflow_stage else "",
        call.hangup_cause,
        " ".join(str(report["id"]) for report in reports),
        " ".join(report["category"] for report in reports),
        " ".join(report["call_type"] for report in reports),
    ]
    return [escape_cell(cell) for cell in cells]


def _encode(rows: Iterable[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _store(request: web.Request) -> CallStore:
    store: CallStore | None = getattr(request.app[CONTROLLER], "store", None)
    if store is None:
        raise ApiError(
            503, "store_unavailable", "the call store has not started yet, retry shortly"
        )
    return store


async def calls_csv(request: web.Request) -> web.StreamResponse:
    """Stream every call that matches the /api/calls filters as CSV, newest first."""
    store = _store(request)
    filters = _filters(request)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="sigap-calls-{stamp}.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    await response.write(_encode([CSV_COLUMNS]))

    written = 0
    batch: list[CallView] = []
    try:
        async for call in store.iter_calls(batch=CSV_BATCH, **filters):
            batch.append(call)
            if len(batch) == CSV_BATCH:
                written += await _write_batch(response, store, batch)
                batch = []
        written += await _write_batch(response, store, batch)
    except ConnectionResetError:
        log.info("calls_csv_client_left", rows=written)
        return response
    except Exception:
        # The status line is already sent, so the error cannot become a JSON reply.
        # Closing the connection before the last chunk makes the client see an
        # incomplete download rather than a short CSV that looks whole.
        log.exception("calls_csv_failed", rows=written)
        if request.transport is not None:
            request.transport.close()
        return response

    await response.write_eof()
    log.info("calls_csv_sent", rows=written)
    return response


async def _write_batch(
    response: web.StreamResponse, store: CallStore, calls: list[CallView]
) -> int:
    if not calls:
        return 0
    reports = await store.linked_reports(call.uniqueid for call in calls)
    await response.write(
        _encode(csv_row(call, reports.get(call.uniqueid, [])) for call in calls)
    )
    return len(calls)


async def history_page(request: web.Request) -> web.Response:
    lang = language_of(request)
    page_labels = labels(lang)
    messages = {
        key.removeprefix("history."): i18n.translate(key, lang)
        for key in i18n.MESSAGES
        if key.startswith("history.")
    }
    return render(
        request,
        "history.html",
        outcomes=list(page_labels["outcome"].items()),
        categories=list(page_labels["category"].items()),
        call_types=list(page_labels["call_type"].items()),
        page_data={"labels": page_labels, "messages": messages, "page_size": PAGE_SIZE},
    )


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/history", history_page, CALL_STAFF)
    route(app, "GET", "/api/calls.csv", calls_csv, CALL_STAFF)
