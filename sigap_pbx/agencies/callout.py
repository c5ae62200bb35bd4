"""The FastAGI side of an escalation call-out: play the report, read "1" to acknowledge.

When an agency has not acknowledged a report in time, the controller originates a
call to the agency's lines (Forwarder.callout). The line that answers runs the
`report/acknowledge` script: it hears a generated Indonesian message naming the
report, and pressing 1 acknowledges it. The message is spoken up to three times.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from sigap_pbx.agi.server import AgiSession
from sigap_pbx.asterisk.paths import InstancePaths
from sigap_pbx.asterisk.prompts import PromptError, prompt_seconds, synthesize

log = structlog.get_logger(__name__)

CATEGORY_LABELS = {
    "fire": "kebakaran",
    "traffic_accident": "kecelakaan lalu lintas",
    "natural_disaster": "bencana alam",
    "security": "gangguan keamanan dan ketertiban",
    "health": "kesehatan",
    "other": "kejadian lain",
}
# Characters of operator-typed text that reach the speech synthesizer. It gets the
# text as one argument, with no shell and no markup mode, so this only keeps the
# message short and speakable.
MAX_LOCATION_CHARS = 120
ATTEMPTS = 3
DIGIT_WAIT_MS = 6000


@dataclass(frozen=True)
class CalloutMessage:
    dispatch_id: int
    report_id: int
    agency_code: str
    agency_name: str
    category: str
    priority: int
    location: str


def message_text(message: CalloutMessage) -> str:
    """Return the Indonesian text spoken to the agency."""
    category = CATEGORY_LABELS.get(message.category, "kejadian")
    location = "".join(ch for ch in message.location if ch.isprintable())[:MAX_LOCATION_CHARS]
    where = f" di {location}." if location.strip() else "."
    return (
        f"Panggilan otomatis layanan darurat satu satu dua. Laporan nomor"
        f" {message.report_id}, {category}, prioritas {message.priority}{where}"
        f" Laporan ini belum dikonfirmasi oleh {message.agency_name}."
        " Tekan satu untuk konfirmasi."
    )


class ReportAcknowledgeLine:
    def __init__(
        self,
        describe: Callable[[int], Awaitable[CalloutMessage | None]],
        acknowledge: Callable[[int, str], Awaitable[object]],
        paths: InstancePaths,
        *,
        token: str | None,
    ) -> None:
        self.describe = describe
        self.acknowledge = acknowledge
        self.paths = paths
        self.token = token

    def message_path(self, dispatch_id: int) -> tuple[Path, Path]:
        """Return the host path of a message file and the path Asterisk plays."""
        name = f"dispatch-{dispatch_id}"
        return (
            self.paths.host / "spool" / "sigap" / f"{name}.wav",
            self.paths.inner / "spool" / "sigap" / name,
        )

    async def handle(self, session: AgiSession) -> None:
        if self.token is not None and not hmac.compare_digest(
            session.arg(2).encode(), self.token.encode()
        ):
            log.warning("report_ack_bad_token")
            return
        argument = session.arg(1)
        if not argument.isdigit() or len(argument) > 12:
            log.warning("report_ack_invalid_dispatch", value=argument[:32])
            return
        dispatch_id = int(argument)
        message = await self.describe(dispatch_id)
        if message is None:
            log.warning("report_ack_dispatch_not_found", dispatch=dispatch_id)
            return
        host_path, played = self.message_path(dispatch_id)
        try:
            await asyncio.to_thread(synthesize, message_text(message), host_path)
        except PromptError as exc:
            log.error("report_ack_message_failed", dispatch=dispatch_id, error=str(exc))
            return
        seconds = prompt_seconds(host_path)
        for attempt in range(1, ATTEMPTS + 1):
            reply = await session.command(
                "GET", "DATA", str(played), str(DIGIT_WAIT_MS), "1",
                timeout=seconds + DIGIT_WAIT_MS / 1000 + 5,
            )
            if reply.result == "1":
                await self.acknowledge(dispatch_id, f"phone:{message.agency_code}")
                await session.set_variable("SIGAP_RESULT", "acknowledged")
                await session.command(
                    "STREAM", "FILE", str(self.paths.inner_prompts / "report-ack-ok"), "",
                    timeout=10,
                )
                log.info("report_acknowledged_by_phone", dispatch=dispatch_id,
                         report=message.report_id, agency=message.agency_code, attempt=attempt)
                return
            if session.hung_up:
                break
        await session.set_variable("SIGAP_RESULT", "not_acknowledged")
        log.warning("report_callout_not_acknowledged", dispatch=dispatch_id,
                    report=message.report_id, agency=message.agency_code)

    @staticmethod
    def script_seconds() -> float:
        """Return the longest a call-out script may run, for the FastAGI route."""
        return 180.0
