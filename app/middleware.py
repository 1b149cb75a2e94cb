"""Pure ASGI middleware: hardening headers, a body size cap, and JSON for any crash.

`HardeningMiddleware` sits inside CORS, so even a refused or crashed request carries the
CORS headers the browser needs to show the message instead of "Failed to fetch".
`SecurityHeadersMiddleware` only sets headers; it belongs outside CORS, so that the answers
CORS gives on its own (preflights) are hardened too.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import internal_error

log = logging.getLogger("app.errors")


def _hardened(message: Message) -> Message:
    """A response start without a server banner and with `nosniff`; other messages as they are."""
    if message["type"] != "http.response.start":
        return message
    drop = (b"server", b"x-content-type-options")
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in drop]
    headers.append((b"x-content-type-options", b"nosniff"))
    return {**message, "headers": headers}


class SecurityHeadersMiddleware:
    """`nosniff` and no `server` header on every answer, whoever inside wrote it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_hardened(message: Message) -> None:
            await send(_hardened(message))

        await self.app(scope, receive, send_hardened)


class HardeningMiddleware:
    """413 for oversized bodies, JSON 500 for unhandled errors (headers: see above)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _too_large(scope, receive, send_tracked)
            return
        # The whole body is read here, before the app: a streamed (chunked) body has no
        # Content-Length to check, and an error raised while the app reads it would reach
        # the app's own body parser, which answers 400 rather than 413.
        try:
            app_receive = await _buffered_body(receive, self.max_body_bytes)
        except _BodyTooLarge:
            await _too_large(scope, receive, send_tracked)
            return
        try:
            await self.app(scope, app_receive, send_tracked)
        except Exception as exc:
            if started:
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                raise
            answer = internal_error(str(scope.get("method")), str(scope.get("path")), exc)
            await answer(scope, receive, send_tracked)


class _BodyTooLarge(Exception):
    pass


async def _buffered_body(receive: Receive, limit: int) -> Receive:
    """Read the request body (at most `limit` bytes); hand it to the app as one message."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            first: Message = message  # the client went away: the app learns it at once
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            break
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return first
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(
        {"message": "request body too large"}, 413, headers={"connection": "close"}
    )
    await response(scope, receive, send)
