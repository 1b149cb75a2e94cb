"""The factory's HTTP transport (httpx over aiohttp) against a real aiohttp server on
127.0.0.1: an answer arrives as httpx's, and each way a call can go wrong raises the class
the factory client sorts by: a timeout is a timeout, and a refused or dropped connection is
a connection error (the factory unavailable), never a timeout."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from clients.transport import factory_http_client

# Long enough for a loaded machine to answer /ok well within it; /hang never answers.
TIMEOUT_S = 2.0


class Factory:
    """A stand-in for the factory: answers, hangs, or drops the connection."""

    def __init__(self) -> None:
        self.never = asyncio.Event()
        self.seen: list[tuple[str, str, str | None]] = []

    async def ok(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append((request.method, request.path, request.headers.get("authorization")))
        return web.json_response({"echo": body}, status=201, headers={"x-factory": "sim"})

    async def hang(self, request: web.Request) -> web.Response:
        await self.never.wait()
        raise AssertionError("unreachable")

    async def drop(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await self.never.wait()
        raise AssertionError("unreachable")


@pytest.fixture
async def factory() -> AsyncIterator[tuple[Factory, str]]:
    handlers = Factory()
    app = web.Application()
    app.router.add_post("/api/order", handlers.ok)
    app.router.add_get("/hang", handlers.hang)
    app.router.add_get("/drop", handlers.drop)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield handlers, f"http://127.0.0.1:{port}"
    finally:
        handlers.never.set()
        await runner.cleanup()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (just released by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_answer_arrives_as_httpx_s_with_status_body_and_headers(
    factory: tuple[Factory, str],
) -> None:
    handlers, url = factory
    async with factory_http_client(url, timeout_s=TIMEOUT_S, connections=4) as http:
        answer = await http.post(
            "/api/order", json={"pizza": "Veggie"}, headers={"Authorization": "Bearer key"}
        )
    assert answer.status_code == 201
    assert answer.json() == {"echo": {"pizza": "Veggie"}}
    assert answer.headers["x-factory"] == "sim"
    assert handlers.seen == [("POST", "/api/order", "Bearer key")]


async def test_a_factory_that_never_answers_is_a_timeout(factory: tuple[Factory, str]) -> None:
    _, url = factory
    async with factory_http_client(url, timeout_s=0.1, connections=4) as http:
        with pytest.raises(httpx.TimeoutException) as raised:
            await http.get("/hang")
    assert not isinstance(raised.value, httpx.ConnectError)


async def test_a_refused_connection_is_a_connection_error_not_a_timeout() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with factory_http_client(url, timeout_s=TIMEOUT_S, connections=4) as http:
        with pytest.raises(httpx.ConnectError) as raised:
            await http.get("/api/order")
    assert not isinstance(raised.value, httpx.TimeoutException)


async def test_a_connection_dropped_mid_answer_is_a_connection_error(
    factory: tuple[Factory, str],
) -> None:
    _, url = factory
    async with factory_http_client(url, timeout_s=TIMEOUT_S, connections=4) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/drop")


async def test_a_wrapping_transport_sees_every_call(factory: tuple[Factory, str]) -> None:
    """The telemetry's client spans wrap the transport this way."""
    _, url = factory
    seen: list[str] = []

    class Recording(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(f"{request.method} {request.url.path}")
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    async with factory_http_client(url, timeout_s=TIMEOUT_S, connections=4, wrap=Recording) as http:
        answer = await http.post("/api/order", json={})
    assert answer.status_code == 201
    assert seen == ["POST /api/order"]
