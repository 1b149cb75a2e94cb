"""The direct page: incident messages POSTed to ALERT_WEBHOOK_URL (docs/operations.md#settings).

It reaches a person even when the metrics pipeline is the thing that is silent. It never
costs an order anything: `send` only queues (a bounded queue; when full the message is
dropped and logged), and one background task delivers the messages in the order they
were queued, each with a timeout and a bounded number of tries with backoff. The webhook
URL may itself be a secret (Slack's are), so it is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.backoff import backoff_s, no_jitter

log = logging.getLogger("app.webhook")

WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_TRIES = 3
WEBHOOK_BACKOFF_S = 1.0  # then 2 s: three tries end within about 18 s
WEBHOOK_BACKOFF_MAX_S = 30.0
WEBHOOK_QUEUE = 100
SHUTDOWN_DRAIN_S = 2.0

Message = dict[str, Any]
# Builds the message when it is its turn, so "impact so far" is as of sending.
Build = Callable[[], Awaitable[Message]]
# Told how each delivery ended (e.g. to note it on the incident's timeline).
Report = Callable[["Delivery"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Delivery:
    incident_id: int
    event: str
    delivered: bool
    tries: int
    detail: str  # "HTTP 200", or the last error


@dataclass(frozen=True, slots=True)
class _Page:
    incident_id: int
    event: str
    build: Build


def _retryable(status_code: int) -> bool:
    return status_code >= 500 or status_code in (408, 429)


class WebhookPager:
    """Delivers incident messages to one webhook, in order, off the order path."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        tries: int = WEBHOOK_TRIES,
        backoff_s: float = WEBHOOK_BACKOFF_S,
        timeout_s: float = WEBHOOK_TIMEOUT_S,
        queue_size: int = WEBHOOK_QUEUE,
    ) -> None:
        self._http = http
        self._url = url
        self._tries = tries
        self._backoff_s = backoff_s
        self._timeout = httpx.Timeout(timeout_s)
        self._queue: asyncio.Queue[_Page] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.on_delivery: Report | None = None

    def send(self, incident_id: int, event: str, build: Build) -> None:
        """Queue one message; never waits."""
        try:
            self._queue.put_nowait(_Page(incident_id, event, build))
        except asyncio.QueueFull:
            log.error(
                "alert webhook: queue full, %s message for incident %d dropped", event, incident_id
            )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="alert-webhook")

    async def close(self, drain_s: float = SHUTDOWN_DRAIN_S) -> None:
        """Give queued messages up to `drain_s` to go out, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            page = await self._queue.get()
            try:
                delivery = await self._deliver(page)
                if self.on_delivery is not None:
                    await self.on_delivery(delivery)
            except Exception:
                # One bad message (a failed build, a failed note) must not stop the pager.
                log.exception(
                    "alert webhook: %s message for incident %d", page.event, page.incident_id
                )
            finally:
                self._queue.task_done()

    async def _deliver(self, page: _Page) -> Delivery:
        message = await page.build()
        detail = ""
        for attempt in range(1, self._tries + 1):
            try:
                answer = await self._http.post(self._url, json=message, timeout=self._timeout)
            except httpx.HTTPError as exc:
                text = str(exc).replace(self._url, "ALERT_WEBHOOK_URL")
                detail = type(exc).__name__ + (f": {text}" if text else "")
            else:
                detail = f"HTTP {answer.status_code}"
                if answer.is_success:
                    log.info("alert webhook: %s delivered (%s)", page.event, detail)
                    return Delivery(page.incident_id, page.event, True, attempt, detail)
                if not _retryable(answer.status_code):
                    break
            if attempt < self._tries:
                delay = backoff_s(
                    attempt, base_s=self._backoff_s, max_s=WEBHOOK_BACKOFF_MAX_S, rand=no_jitter
                )
                await asyncio.sleep(delay)
        log.error(
            "alert webhook: %s for incident %d not delivered after %d tries (%s)",
            page.event,
            page.incident_id,
            attempt,
            detail,
        )
        return Delivery(page.incident_id, page.event, False, attempt, detail)
