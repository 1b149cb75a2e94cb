"""Server-side telemetry in one pure ASGI pass: duration metric, server span, access log.

`opentelemetry-instrumentation-fastapi` matched every request against every route a
second time to name it, cleaned and hashed its attributes twice and wrapped each ASGI
message; on `GET /api/order/menu` it was half of the service's CPU. This does what
docs/telemetry.md describes, once per request:

- `http.server.request.duration` (seconds, stable HTTP semantic conventions: method,
  route template, status code, scheme), for every request but the probes;
- a SERVER span named `{method} {route}` with the W3C trace context of the caller, only
  when spans are recorded (an exporter is configured): otherwise none is made at all;
- one access log line (`app.access`): method, path, status, duration, whether a token
  was sent. It passes the redaction filter like every record.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry import propagate
from opentelemetry.metrics import Histogram
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from telemetry.spans import current_span

access_log = logging.getLogger("app.access")

# OpenTelemetry's advice for http.server.request.duration.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# Health probes and scrapes are noise in every signal (they still get a log line at DEBUG).
UNMEASURED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


class ServerInstruments:
    """What the middleware records into: one app's meter and tracer (telemetry/setup.py)."""

    def __init__(self, duration: Histogram, tracer: Tracer, *, spans: bool) -> None:
        self.duration = duration
        self.tracer = tracer
        self.spans = spans  # False: spans would be dropped anyway, so none is started


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _has_token(scope: Scope) -> bool:
    return any(key == b"authorization" for key, _ in scope.get("headers", ()))


class ServerTelemetryMiddleware:
    """Outermost middleware; the instruments arrive with the lifespan (`app.state`)."""

    def __init__(self, app: ASGIApp, *, state: Any) -> None:
        self.app = app
        self._state = state  # the app's `State`: `server_instruments` is set by instrument_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instruments: ServerInstruments | None = getattr(self._state, "server_instruments", None)
        if scope["type"] != "http" or instruments is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method, path = scope["method"], scope["path"]
        measured = path not in UNMEASURED_PATHS
        try:
            if instruments.spans and measured:
                await self._traced(instruments, scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None)
            if measured:
                attributes: dict[str, Any] = {
                    "http.request.method": method,
                    "url.scheme": scope.get("scheme", "http"),
                    "http.response.status_code": status,
                }
                if template is not None:
                    attributes["http.route"] = template
                instruments.duration.record(elapsed, attributes)
            access_log.log(
                logging.INFO if measured else logging.DEBUG,
                "%s %s %d %.1f ms",
                method,
                path,
                status,
                elapsed * 1000,
                extra={
                    "http_method": method,
                    "http_path": path,
                    "http_status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "auth_sent": _has_token(scope),
                },
            )

    async def _traced(
        self, instruments: ServerInstruments, scope: Scope, receive: Receive, send: Send
    ) -> None:
        method = scope["method"]
        context = propagate.extract(_headers(scope))
        with current_span(
            instruments.tracer,
            method,
            kind=SpanKind.SERVER,
            context=context,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
        ) as span:
            status = 500

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_traced)
            finally:
                template = getattr(scope.get("route"), "path", None)
                if template is not None:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
