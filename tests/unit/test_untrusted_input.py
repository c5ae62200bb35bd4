"""Caller-supplied text (caller ID name and number) on its way through the controller.

It is cut to MAX_CALLER_ID_LENGTH where it enters from AMI, cleaned of control
characters in log lines, and escaped in pages: as HTML text, in attribute values
and in the JSON blocks that pages hand to their scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sigap_pbx.calls.cdr import _caller_name
from sigap_pbx.calls.tracker import MAX_CALLER_ID_LENGTH, CallTracker
from sigap_pbx.live import LiveView
from sigap_pbx.logs import safe_log_text, strip_control_characters
from sigap_pbx.store import CallStore, Database
from sigap_pbx.web.pages import environment
from sigap_pbx.wire.ami import Event
from tests.unit.test_call_tracker import CALLER_AT_TRUNK, event, feed, only_call, parse
from tests.unit.wallboard_fakes import FakeController
from tests.unit.wallboard_fakes import event as ami_event
from tests.web_auth import signed_in_client

SCRIPT_BREAKOUT = "</script><script>alert(1)</script>"
ATTRIBUTE_BREAKOUT = '"><img src=x onerror=alert(1)>'
LINE_SEPARATOR = "Budi\u2028Santoso\u2029"
# Characters that would end or split a Dial() string or an AMI header.
DIAL_STRING_BREAKOUT = "0812&PJSIP/x,1|2;3"
HOSTILE = [SCRIPT_BREAKOUT, ATTRIBUTE_BREAKOUT, LINE_SEPARATOR, DIAL_STRING_BREAKOUT]


# --- Length cap where caller ID enters ---------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallStore]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    yield CallStore(db)
    await db.close()


@pytest.fixture
async def tracker(store: CallStore) -> AsyncIterator[CallTracker]:
    tracker = CallTracker(store)
    writer = asyncio.create_task(tracker.run_writer())
    yield tracker
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer


async def test_long_caller_id_cut_call_kept(
    tracker: CallTracker, store: CallStore
) -> None:
    name = "N" * 70 + "é" * 10 + "X" * 500
    number = "0812" + "9" * 5000
    caller = replace(CALLER_AT_TRUNK, caller_number=number, caller_name=name)

    feed(tracker, parse(event("Newchannel", 0.0, caller)))
    await tracker.flush()

    call = await only_call(store)
    assert call.caller_name == name[:MAX_CALLER_ID_LENGTH]
    assert call.caller_name.endswith("é" * 10)
    assert call.caller_number_raw == number[:MAX_CALLER_ID_LENGTH]
    assert call.events is not None
    assert call.events[0].data["CallerIDName"] == name[:MAX_CALLER_ID_LENGTH]
    assert call.events[0].data["CallerIDNum"] == number[:MAX_CALLER_ID_LENGTH]
    assert call.events[0].data["ConnectedLineName"] == "<unknown>"


async def test_colon_in_caller_name_kept(tracker: CallTracker, store: CallStore) -> None:
    # AMI splits a header at its first colon only.
    caller = replace(CALLER_AT_TRUNK, caller_name="Unit 7: Budi")

    feed(tracker, parse(event("Newchannel", 0.0, caller)))
    await tracker.flush()

    assert (await only_call(store)).caller_name == "Unit 7: Budi"


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ('Pak \\"Budi\\"', 'Pak "Budi"'),
        ("C:\\\\temp", "C:\\temp"),
        ("no escapes", "no escapes"),
        # A trailing lone backslash is not a quoted pair and is kept.
        ("end\\", "end\\"),
    ],
)
async def test_display_name_escapes_undone(
    tracker: CallTracker, store: CallStore, sent: str, shown: str
) -> None:
    # What Asterisk passes on for the quoted SIP display name "Pak \"Budi\"".
    caller = replace(CALLER_AT_TRUNK, caller_name=sent)

    feed(tracker, parse(event("Newchannel", 0.0, caller)))
    await tracker.flush()

    assert (await only_call(store)).caller_name == shown


def test_cdr_display_name_escapes_undone() -> None:
    assert _caller_name('"Pak \\"Budi\\"" <081234567890>') == 'Pak "Budi"'
    assert _caller_name("081234567890") == ""


@pytest.mark.parametrize("number", [DIAL_STRING_BREAKOUT, "0812\r\nAction: Originate"])
async def test_dial_characters_in_number_kept(
    tracker: CallTracker, store: CallStore, number: str
) -> None:
    # Built in code: a line break cannot travel inside an AMI header.
    (parsed,) = parse(event("Newchannel", 0.0, CALLER_AT_TRUNK))
    headers = tuple(
        (key, number if key == "CallerIDNum" else value) for key, value in parsed.headers
    )

    tracker.on_event(Event(headers=headers))
    await tracker.flush()

    call = await only_call(store)
    assert call.caller_number_raw == number
    assert call.caller_number == ""


def test_live_view_cuts_caller_id() -> None:
    view = LiveView()
    view.on_event(ami_event(
        "QueueCallerJoin", ("Queue", "operators"), ("Uniqueid", "1.1"),
        ("Channel", "PJSIP/carrier-1"), ("CallerIDNum", "1" * 300),
        ("CallerIDName", "x" * 300),
    ))
    view.reset_from_status([ami_event(
        "QueueEntry", ("Queue", "operators"), ("Uniqueid", "1.2"),
        ("Channel", "PJSIP/carrier-2"), ("CallerIDNum", "2" * 300),
        ("CallerIDName", "y" * 300), ("Wait", "3"),
    )])
    view.on_event(ami_event(
        "QueueCallerJoin", ("Queue", "operators"), ("Uniqueid", "1.3"),
        ("Channel", "PJSIP/carrier-3"), ("CallerIDNum", "3" * 300),
        ("CallerIDName", "z" * 300),
    ))

    callers = view.queues["operators"].callers
    assert callers["1.2"].caller_number == "2" * MAX_CALLER_ID_LENGTH
    assert callers["1.2"].caller_name == "y" * MAX_CALLER_ID_LENGTH
    assert callers["1.3"].caller_number == "3" * MAX_CALLER_ID_LENGTH
    assert callers["1.3"].caller_name == "z" * MAX_CALLER_ID_LENGTH


def test_live_view_undoes_display_name_escapes() -> None:
    view = LiveView()
    view.on_event(ami_event(
        "QueueCallerJoin", ("Queue", "operators"), ("Uniqueid", "1.1"),
        ("Channel", "PJSIP/carrier-1"), ("CallerIDNum", "0812"),
        ("CallerIDName", 'Pak \\"Budi\\"'),
    ))
    view.reset_from_status([ami_event(
        "QueueEntry", ("Queue", "operators"), ("Uniqueid", "1.2"),
        ("Channel", "PJSIP/carrier-2"), ("CallerIDNum", "0813"),
        ("CallerIDName", 'Bu \\"Ani\\"'), ("Wait", "3"),
    )])
    view.on_event(ami_event(
        "QueueCallerJoin", ("Queue", "operators"), ("Uniqueid", "1.3"),
        ("Channel", "PJSIP/carrier-3"), ("CallerIDNum", "0814"),
        ("CallerIDName", 'Pak \\"Budi\\"'),
    ))

    callers = view.queues["operators"].callers
    assert callers["1.2"].caller_name == 'Bu "Ani"'
    assert callers["1.3"].caller_name == 'Pak "Budi"'


# --- Log lines ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("Budi\r\nlevel=error forged", "Budi\ufffd\ufffdlevel=error forged"),
        ("a\x00b\x7fc", "a\ufffdb\ufffdc"),
        ("\x1b[2J\x1b[31mred\x1b[0m", "\ufffd\ufffdred\ufffd"),
        ("\x1b]0;new title\x07after", "\ufffdafter"),
        ("\x1bcreset", "\ufffdreset"),
        ("\x1b(Bcharset", "\ufffdcharset"),
        ("c1\x85\x9b31m", "c1\ufffd\ufffd31m"),
        (LINE_SEPARATOR, "Budi\ufffdSantoso\ufffd"),
        ("tab\there", "tab\ufffdhere"),
    ],
)
def test_log_text_cleaned(raw: str, logged: str) -> None:
    assert safe_log_text(raw) == logged


def test_log_keeps_unicode_text() -> None:
    text = "Śantoso 漢字 ☎ 🚑 عربي O'Neil & <b>"

    assert safe_log_text(text) == text


def test_log_processor_cleans_every_value() -> None:
    event_dict: dict[str, Any] = {
        "event": "call_arrived\n",
        "caller_name": "a\nb",
        "count": 3,
        "detail": {"name": "c\x1b[1md", "names": ["e\rf", ("g\x00",)]},
        "clean": "Śantoso",
    }

    result = strip_control_characters(None, "info", event_dict)

    assert result["event"] == "call_arrived\ufffd"
    assert result["caller_name"] == "a\ufffdb"
    assert result["count"] == 3
    assert result["detail"] == {"name": "c\ufffdd", "names": ["e\ufffdf", ("g\ufffd",)]}
    assert result["clean"] == "Śantoso"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_log_line_not_forged(fmt: str) -> None:
    # A separate process, because configure_logging changes global logging state.
    program = (
        "import structlog\n"
        "from sigap_pbx.logs import configure_logging\n"
        f"configure_logging({fmt!r})\n"
        "structlog.get_logger('t').info('call_arrived', caller_name="
        "'Budi\\nlevel=error event=forged\\x1b[31m', note='Śantoso')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True,
        timeout=60,
    )

    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert "\x1b" not in result.stderr
    if fmt == "json":
        record = json.loads(lines[0])
        assert record["caller_name"] == "Budi\ufffdlevel=error event=forged\ufffd"
        assert record["note"] == "Śantoso"
    else:
        assert "Śantoso" in lines[0]


# --- Pages -------------------------------------------------------------------------


class PageParser(HTMLParser):
    """Collect the elements, the text and the script bodies of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.text.append(data)


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def assert_no_executable_markup(page: PageParser) -> None:
    for tag, attrs in page.tags:
        assert tag not in ("img", "svg", "iframe", "object", "embed"), (tag, attrs)
        handlers = [name for name in attrs if name.startswith("on")]
        assert handlers == [], (tag, attrs)
    for attrs, body in page.scripts:
        if attrs.get("type") == "application/json":
            json.loads(body)
        else:
            assert (attrs.get("src") or "").startswith("/static/"), attrs
            assert body.strip() == "", body


def json_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in json_strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in json_strings(item)]
    return []


@pytest.mark.parametrize("text", HOSTILE)
def test_template_escapes_text_attribute_json(text: str) -> None:
    template = environment().from_string(
        '<p title="{{ text }}" data-x=\'{{ text }}\'>{{ text }}</p>'
        '<script id="d" type="application/json">{{ {"name": text} | tojson }}</script>'
    )

    page = parse_page(template.render(text=text))

    assert_no_executable_markup(page)
    ((tag, attrs), (script_tag, _)) = page.tags
    assert tag == "p"
    assert attrs["title"] == text
    assert attrs["data-x"] == text
    assert "".join(page.text) == text
    assert script_tag == "script"
    assert json.loads(page.scripts[0][1]) == {"name": text}


async def test_wallboard_escapes_hostile_callers() -> None:
    controller = FakeController()
    controller.live.reset_from_status([])
    for index, text in enumerate(HOSTILE):
        controller.ami.emit(ami_event(
            "QueueCallerJoin", ("Queue", "operators"), ("Uniqueid", f"1.{index}"),
            ("Channel", f"PJSIP/carrier-{index}"), ("CallerIDNum", text),
            ("CallerIDName", text), ("Position", str(index + 1)),
        ))
    controller.alarms.raise_alarm("long_wait", "operators", SCRIPT_BREAKOUT)
    client = await signed_in_client(controller, "supervisor")
    try:
        response = await client.get("/wallboard")
        html = await response.text()
    finally:
        await client.close()
        await controller.close()

    assert response.status == 200
    page = parse_page(html)
    assert_no_executable_markup(page)
    (board_script,) = [body for attrs, body in page.scripts
                       if attrs.get("id") == "wallboard-data"]
    board = json.loads(board_script)
    callers = {c["uniqueid"]: c for q in board["queues"] for c in q["callers"]}
    for index, text in enumerate(HOSTILE):
        assert callers[f"1.{index}"]["caller_name"] == text
        assert callers[f"1.{index}"]["caller_number"] == text
    assert SCRIPT_BREAKOUT in json_strings(board["alarms"])
    page_text = "".join(page.text)
    assert SCRIPT_BREAKOUT in page_text
    assert ATTRIBUTE_BREAKOUT in page_text


async def test_display_name_escaped_in_top_bar() -> None:
    controller = FakeController()
    controller.live.reset_from_status([])
    client = await signed_in_client(controller, "supervisor")
    await controller.accounts.store.update_user(
        client.username, display_name=ATTRIBUTE_BREAKOUT + SCRIPT_BREAKOUT
    )
    try:
        html = await (await client.get("/wallboard")).text()
    finally:
        await client.close()
        await controller.close()

    page = parse_page(html)
    assert_no_executable_markup(page)
    assert ATTRIBUTE_BREAKOUT + SCRIPT_BREAKOUT in "".join(page.text)
