"""structlog set-up: JSON lines in production, readable console output in development.

A call's identity (uniqueid, linkedid, channel) is bound with contextvars by the code
that handles the call, so every line logged while handling it carries those fields.
Values that come from callers are stripped of control characters before they reach a
log line, so a caller ID cannot forge extra lines.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _strip_control(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str) and _CONTROL.search(value):
            event_dict[key] = _CONTROL.sub("\ufffd", value)
    return event_dict


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Route structlog and the standard library's loggers to stderr in one format."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _strip_control,
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
