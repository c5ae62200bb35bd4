"""structlog set-up: JSON lines in production, readable console output in development.

A call's identity (uniqueid, linkedid, channel) is bound with contextvars by the code
that handles the call, so every line logged while handling it carries those fields.
Every string value is cleaned of control characters and terminal escape sequences
before it reaches a log line (`strip_control_characters`), so a caller ID cannot
forge extra lines or rewrite the terminal.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# An ANSI escape sequence (CSI such as ESC [ 31 m, OSC such as ESC ] 0 ; title BEL,
# or another ESC sequence such as ESC c or ESC ( B), or a single C0 or C1 control
# character. U+2028 and U+2029 are included because some log viewers break lines
# at them.
_UNSAFE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|[\x00-\x1f\x7f-\x9f\u2028\u2029]"
)
# Nested dicts and lists deeper than this are left as they are.
_MAX_DEPTH = 8


def safe_log_text(value: str) -> str:
    """Replace each control character or ANSI escape sequence in `value` with U+FFFD.

    Letters, digits and symbols of every script are kept.
    """
    return _UNSAFE.sub("\ufffd", value)


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return safe_log_text(value) if _UNSAFE.search(value) else value
    if depth >= _MAX_DEPTH:
        return value
    # Exact types only: a subclass such as a named tuple is left as it is.
    if type(value) is dict:
        return {key: _clean(item, depth + 1) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_clean(item, depth + 1) for item in value)
    return value


def strip_control_characters(
    _logger: Any, _method: str, event_dict: dict[str, Any]
) -> dict[str, Any]:
    """structlog processor: clean every string value, also inside dicts and lists.

    Values such as a caller ID come from outside, and a line break or a terminal
    escape sequence in one could forge a log line or rewrite the operator's screen.
    The exception text that format_exc_info adds later is not cleaned.
    """
    for key, value in event_dict.items():
        event_dict[key] = _clean(value)
    return event_dict


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Route structlog and the standard library's loggers to stderr in one format."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        strip_control_characters,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what the API logs itself, and Alembic's per-start
    # notices say nothing the store's own "database_schema_upgraded" line does not.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
