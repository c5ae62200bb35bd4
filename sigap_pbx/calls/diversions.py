"""Publish the diversion flags in force to AstDB, where the emergency dialplan reads them.

A supervisor flags a repeat prank caller's number for a limited time (table
`number_diversions`). The dialplan looks the caller's number up in AstDB by itself,
so routing never waits for the controller:

    sigap/divert/<digits>/warning       until (epoch seconds)
    sigap/divert/<digits>/low_priority  until (epoch seconds)

`<digits>` is the number as the carrier may send it, with everything but the digits
removed. A stored number +6281234567890 is published as 6281234567890 (from
+62... or 62...), 081234567890 and 006281234567890. The dialplan compares `until`
with the clock itself, so a flag ends on time even if the controller is down.
Every REPUBLISH_SECONDS the controller publishes again, which retries a publish
that failed and removes the keys of ended flags.

A `warning` caller hears a warning after the greeting, while the operators' phones
already ring. A `low_priority` caller waits behind every other caller (QUEUE_PRIO
-1). Neither keeps a caller from the operators.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from sigap_pbx.ami.client import AmiActionFailed, AmiError
from sigap_pbx.clock import Clock, utc_now
from sigap_pbx.store.diversions import DiversionStore

log = structlog.get_logger(__name__)

DIVERSION_FAMILY = "sigap/divert"
REPUBLISH_SECONDS = 60.0


def published_numbers(number: str, country_code: str) -> list[str]:
    """Return the digit strings under which a stored number is published.

    A national number in E.164 (+<country code><national>) is also published in
    the national form with a leading 0 and in the 00 international form.
    """
    digits = number.removeprefix("+")
    forms = [digits]
    if number.startswith("+"):
        forms.append("00" + digits)
        if digits.startswith(country_code) and len(digits) > len(country_code):
            forms.append("0" + digits[len(country_code):])
    return forms


class DiversionPublisher:
    """Keep the `sigap/divert` family of AstDB equal to the flags in force."""

    def __init__(
        self, ami: Any, store: DiversionStore, *, country_code: str, clock: Clock = utc_now
    ) -> None:
        self.ami = ami
        self.store = store
        self.country_code = country_code
        self.clock = clock
        # The keys written in this AMI session; None until the first publish of one.
        self._published: set[tuple[str, str]] | None = None
        # One publish at a time, so a lift cannot delete what a newer publish wrote.
        self._lock = asyncio.Lock()

    async def on_session(self) -> None:
        """Publish everything again after an AMI login: Asterisk may have restarted."""
        async with self._lock:
            self._published = None
            await self._publish()

    async def desired(self) -> dict[tuple[str, str], int]:
        """Return (digits, action) -> until in epoch seconds, for every flag in force."""
        values: dict[tuple[str, str], int] = {}
        for flag in await self.store.list_in_force(self.clock()):
            until = int(flag.until.timestamp())
            for digits in published_numbers(flag.number, self.country_code):
                key = (digits, flag.action.value)
                values[key] = max(until, values.get(key, 0))
        return values

    async def publish(self) -> int:
        """Write the flags in force into AstDB, replacing what is there; return how many
        keys were written. Raises AmiError when Asterisk cannot be reached."""
        async with self._lock:
            return await self._publish()

    async def _publish(self) -> int:
        values = await self.desired()
        if self._published is None:
            # Keys left by an earlier run are unknown, so the family is cleared first.
            try:
                await self.ami.action("DBDelTree", {"Family": DIVERSION_FAMILY})
            except AmiActionFailed:
                pass  # the family does not exist yet
            self._published = set()
        for (digits, action), until in sorted(values.items()):
            await self.ami.action("DBPut", {
                "Family": f"{DIVERSION_FAMILY}/{digits}", "Key": action, "Val": str(until),
            })
            self._published.add((digits, action))
        # Lifted flags go after the new values are in, so a flag in force is not
        # missing between the two. (After a login the family is empty from the
        # DBDelTree until its puts: callers then queue as if unflagged.)
        for digits, action in sorted(self._published - set(values)):
            try:
                await self.ami.action(
                    "DBDel", {"Family": f"{DIVERSION_FAMILY}/{digits}", "Key": action}
                )
            except AmiActionFailed as exc:
                if "not found" not in (exc.completion.response.message or "").lower():
                    raise
            self._published.discard((digits, action))
        log.info("diversions_published", keys=len(values))
        return len(values)

    async def run(self, interval: float = REPUBLISH_SECONDS) -> None:
        """Publish again every `interval` seconds while AMI is up.

        A publish that failed after a flag was set or lifted is retried this way,
        and keys of flags that have ended are removed.
        """
        while True:
            await asyncio.sleep(interval)
            if not self.ami.connected:
                continue
            try:
                await self.publish()
            except asyncio.CancelledError:
                raise
            except AmiError as exc:
                log.warning("diversions_publish_failed", error=str(exc))
            except Exception:
                log.exception("diversions_publish_failed")
