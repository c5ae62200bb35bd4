"""Delivery of outbox messages to the agencies' webhooks, signed and retried.

The sender claims due ``pending`` rows of the outbox with a lease (see
sigap_pbx/store/outbox.py) and POSTs each row's payload to its agency's
``webhook_url``. Delivery is at least once. When a sender stops during an attempt,
or a response is lost, the message is sent again after the lease ends, with the same
body and the same ``X-Sigap-Delivery`` key, so the receiver must drop a key it has
already processed. docs/webhooks.md describes the headers, the signature and the
retry schedule for agencies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import structlog
import yarl

from sigap_pbx.alarms import AlarmBoard
from sigap_pbx.config import AgenciesConfig
from sigap_pbx.members.pauses import Clock, utc_now
from sigap_pbx.store.alarms import AlarmSeverity
from sigap_pbx.store.outbox import ClaimedMessage, OutboxStore

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Sigap-Signature"
TIMESTAMP_HEADER = "X-Sigap-Timestamp"
DELIVERY_HEADER = "X-Sigap-Delivery"
ATTEMPT_HEADER = "X-Sigap-Attempt"
USER_AGENT = "Sigap112-Webhook/1"

ALARM_KIND = "webhook_failed"
# 4xx statuses that mean "try again later". Any other 4xx means the request itself
# is wrong for this receiver, so sending the same bytes again cannot help.
RETRY_STATUSES = frozenset({408, 425, 429})
# Seconds added to the HTTP timeout in a claim's lease. They cover the database
# write of the outcome, so a slow write does not let a second sender claim the row.
LEASE_MARGIN_SECONDS = 15.0
# Seconds between polls of the outbox when nothing woke the sender earlier.
POLL_SECONDS = 1.0
# Attempts in flight at once, across all agencies.
MAX_IN_FLIGHT = 16
# Characters of a receiver's response body kept in ``last_error``.
ERROR_BODY_CHARS = 200


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Serialise a payload to the body bytes that are signed and sent.

    The encoding is canonical (sorted keys, no spaces, UTF-8), so every attempt of
    one message sends the same bytes, whatever form the database returned the
    JSON column in.
    """
    text = json.dumps(
        payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return text.encode("utf-8")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header value: ``sha256=`` and the hex HMAC-SHA256.

    The signed bytes are the decimal timestamp, a dot, and the raw body.
    """
    material = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), material, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str,
    body: bytes,
    signature: str,
    timestamp: str,
    *,
    now: float,
    tolerance_seconds: float = 300.0,
) -> bool:
    """Check a received signature and timestamp, as an agency's receiver would.

    ``now`` is the receiver's Unix time in seconds. A timestamp further than
    ``tolerance_seconds`` from it fails, which limits replays of a captured request.
    """
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def classify_status(status: int) -> str:
    """Return what an HTTP status means for a message: delivered, retry or failed."""
    if 200 <= status < 300:
        return "delivered"
    if status in RETRY_STATUSES or status >= 500:
        return "retry"
    return "failed"


def backoff_seconds(attempt: int, backoff_max: float, jitter: float) -> float:
    """Return the wait after failed attempt number ``attempt`` (1 for the first).

    The base doubles from 1 s (1, 2, 4, ...) up to ``backoff_max``. ``jitter`` in
    [0, 1) picks the wait between half the base and the whole base, so the
    senders of many messages that failed together do not retry in step.
    """
    base = min(backoff_max, 2.0 ** min(attempt - 1, 30))
    return base * (0.5 + 0.5 * jitter)


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    raw = response.headers.get("Retry-After", "")
    if raw.isascii() and raw.isdigit():
        return float(raw)
    # NOTE: the HTTP-date form of Retry-After is ignored and the backoff is used.
    return None


def safe_url(url: str) -> str:
    """Return the URL without user, password, query or fragment, for logs."""
    try:
        parsed = yarl.URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "(unparsable URL)"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """Outcome of one POST: ``outcome`` is delivered, retry or failed."""

    outcome: str
    error: str | None = None
    status: int | None = None
    retry_after: float | None = None


class WebhookSender:
    """Loop that delivers due outbox messages and records each attempt's outcome.

    ``session`` is an aiohttp client session to use. Without one, the sender opens
    its own at the first attempt and closes it in ``close()``. ``jitter`` returns
    a number in [0, 1) for the backoff.
    """

    def __init__(
        self,
        store: OutboxStore,
        *,
        timeout: float,
        max_attempts: int,
        backoff_max: float,
        alarms: AlarmBoard | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = utc_now,
        jitter: Callable[[], float] = random.random,
        poll_seconds: float = POLL_SECONDS,
        max_in_flight: int = MAX_IN_FLIGHT,
        lease_margin: float = LEASE_MARGIN_SECONDS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"invalid max_attempts {max_attempts}: use 1 or more")
        self.store = store
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        self.alarms = alarms
        self.clock = clock
        self.jitter = jitter
        self.poll_seconds = poll_seconds
        self.max_in_flight = max_in_flight
        self.lease_seconds = timeout + lease_margin
        self._session = session
        self._owns_session = session is None
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        # Agencies already logged as having no webhook_url, to log each once.
        self._no_url_logged: set[str] = set()

    @classmethod
    def from_config(
        cls, store: OutboxStore, config: AgenciesConfig, **options: Any
    ) -> WebhookSender:
        return cls(
            store,
            timeout=config.webhook_timeout_seconds,
            max_attempts=config.webhook_max_attempts,
            backoff_max=config.webhook_backoff_max_seconds,
            **options,
        )

    # Loop --------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake the loop to look for due messages now, such as after a commit."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and send due messages until cancelled.

        Cancelling also cancels the attempts in flight. Their rows stay pending under
        their lease, and are sent again once the lease ends.
        """
        log.info(
            "webhook_sender_started",
            timeout_seconds=self.timeout,
            max_attempts=self.max_attempts,
            lease_seconds=self.lease_seconds,
        )
        try:
            while True:
                free = self.max_in_flight - len(self._in_flight)
                claimed = 0
                if free > 0:
                    claimed = await self._claim_and_start(free)
                if claimed and claimed == free:
                    # The batch was full, so more rows may be due already.
                    await asyncio.sleep(0)
                    continue
                await self._wait_for_work()
        finally:
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            log.info("webhook_sender_stopped")

    async def _claim_and_start(self, limit: int) -> int:
        try:
            messages = await self.store.claim_due(
                self.clock(), lease_seconds=self.lease_seconds, limit=limit
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook_claim_failed")
            return 0
        for message in messages:
            task = asyncio.create_task(
                self._deliver_logged(message), name=f"webhook-{message.delivery_id}"
            )
            self._in_flight.add(task)
            task.add_done_callback(self._attempt_finished)
        return len(messages)

    def _attempt_finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        # A free slot may let the loop claim a row it had to leave.
        self._wake.set()

    async def _wait_for_work(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def deliver_due(self, limit: int = MAX_IN_FLIGHT) -> int:
        """Claim the due messages once and deliver them, waiting for every attempt.

        Returns how many messages were claimed. For tests and one-off runs; the
        controller uses ``run``.
        """
        messages = await self.store.claim_due(
            self.clock(), lease_seconds=self.lease_seconds, limit=limit
        )
        await asyncio.gather(*(self._deliver_logged(message) for message in messages))
        return len(messages)

    async def _deliver_logged(self, message: ClaimedMessage) -> None:
        try:
            await self.deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Most likely the outcome's database write failed. The row is still
            # pending under its lease, so it is sent again when the lease ends.
            log.exception(
                "webhook_delivery_error",
                outbox_id=message.id,
                delivery_id=message.delivery_id,
                attempt=message.attempt,
            )

    async def close(self) -> None:
        """Close the HTTP session if the sender opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # One message ------------------------------------------------------------------

    async def deliver(self, message: ClaimedMessage) -> AttemptResult:
        """Make one attempt at a claimed message and record its outcome."""
        if not message.webhook_url:
            return await self._skip_without_url(message)
        if not message.webhook_secret:
            # NOTE: counted as a failed attempt, so a secret added within the retry
            # window still gets the message out.
            result = AttemptResult(
                "retry",
                f"agency {message.agency_code} has a webhook_url but no webhook_secret; "
                "set the secret, because messages are only sent signed",
            )
        else:
            result = await self.post(message)
        await self._record(message, result)
        return result

    async def post(self, message: ClaimedMessage) -> AttemptResult:
        """POST the message once, signed, and classify the response or error."""
        assert message.webhook_url is not None and message.webhook_secret is not None
        url = message.webhook_url
        scheme = url.split(":", 1)[0].lower()
        if scheme not in ("http", "https"):
            return AttemptResult(
                "failed",
                f"webhook_url {safe_url(url)!r} of agency {message.agency_code} is not "
                "an http or https URL; correct it in the agency directory",
            )
        body = encode_payload(message.payload)
        timestamp = int(self.clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(message.webhook_secret, timestamp, body),
            TIMESTAMP_HEADER: str(timestamp),
            DELIVERY_HEADER: message.delivery_id,
            ATTEMPT_HEADER: str(message.attempt),
        }
        session = self._client_session()
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                text = await response.content.read(ERROR_BODY_CHARS * 4)
                return self._result_of(response, text)
        except TimeoutError:
            return AttemptResult("retry", f"timed out after {self.timeout:g} s")
        except aiohttp.InvalidURL:
            return AttemptResult(
                "failed",
                f"webhook_url {safe_url(url)!r} of agency {message.agency_code} is "
                "invalid; correct it in the agency directory",
            )
        except aiohttp.ClientError as error:
            return AttemptResult("retry", f"connection failed: {type(error).__name__}: {error}")

    def _result_of(self, response: aiohttp.ClientResponse, body: bytes) -> AttemptResult:
        status = response.status
        outcome = classify_status(status)
        if outcome == "delivered":
            return AttemptResult(outcome, status=status)
        snippet = body.decode("utf-8", "replace")[:ERROR_BODY_CHARS].strip()
        error = f"HTTP {status} {response.reason or ''}".rstrip()
        if 300 <= status < 400:
            location = safe_url(response.headers.get("Location", ""))
            error += f" redirect to {location}; set webhook_url to the final URL"
        elif snippet:
            error += f": {snippet}"
        return AttemptResult(outcome, error, status, _retry_after(response))

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _skip_without_url(self, message: ClaimedMessage) -> AttemptResult:
        # The agency reads reports in the portal only; there is nothing to send.
        if message.agency_code not in self._no_url_logged:
            self._no_url_logged.add(message.agency_code)
            log.info("webhook_skipped_no_url", agency=message.agency_code)
        await self.store.mark_delivered(message, self.clock(), note="no webhook_url")
        return AttemptResult("delivered", "no webhook_url")

    # Outcomes -----------------------------------------------------------------------

    async def _record(self, message: ClaimedMessage, result: AttemptResult) -> None:
        fields = {
            "outbox_id": message.id,
            "delivery_id": message.delivery_id,
            "agency": message.agency_code,
            "attempt": message.attempt,
            "http_status": result.status,
        }
        now = self.clock()
        if result.outcome == "delivered":
            recorded = await self.store.mark_delivered(message, now)
            log.info("webhook_delivered", **fields)
            if recorded:
                await self._clear_alarm_if_none_failed(message.agency_code)
        elif result.outcome == "retry" and message.attempt < self.max_attempts:
            delay = backoff_seconds(message.attempt, self.backoff_max, self.jitter())
            if result.retry_after is not None:
                delay = min(max(delay, result.retry_after), self.backoff_max)
            assert result.error is not None
            recorded = await self.store.schedule_retry(
                message, now + timedelta(seconds=delay), result.error
            )
            log.warning("webhook_attempt_failed", error=result.error, retry_in=delay, **fields)
        else:
            error = result.error or "failed"
            if result.outcome == "retry":
                error = f"gave up after {message.attempt} attempts: {error}"
            recorded = await self.store.mark_failed(message, error)
            log.error("webhook_failed", error=error, **fields)
            if recorded:
                self._raise_alarm(message, error)
        if not recorded:
            # The lease ran out during the attempt and another claim took the row.
            log.warning("webhook_outcome_not_recorded", outcome=result.outcome, **fields)

    def _raise_alarm(self, message: ClaimedMessage, error: str) -> None:
        if self.alarms is None:
            return
        severity = AlarmSeverity.CRITICAL if message.priority <= 2 else AlarmSeverity.WARNING
        self.alarms.raise_alarm(
            ALARM_KIND,
            f"webhook:{message.agency_code}",
            f"webhook delivery of report {message.report_id} version {message.version} "
            f"to {message.agency_code} failed: {error}; fix the agency's webhook and "
            f"send it again with POST /api/outbox/{message.id}/retry",
            severity,
            {
                "outbox_id": message.id,
                "report_id": message.report_id,
                "version": message.version,
                "agency": message.agency_code,
                "attempts": message.attempt,
            },
        )

    async def _clear_alarm_if_none_failed(self, agency_code: str) -> None:
        if self.alarms is None:
            return
        subject = f"webhook:{agency_code}"
        if self.alarms.get_active(ALARM_KIND, subject) is None:
            return
        failed = await self.store.list_messages(
            status="failed", agency_code=agency_code, limit=1
        )
        if not failed:
            self.alarms.clear(ALARM_KIND, subject, "no_failed_messages")

