"""The factory's HTTP transport: httpx's API over aiohttp's connection pool.

httpx's own transport (httpcore) costs about 2.6 ms of CPU per call at concurrency 32 on
this kind of machine, aiohttp's about a fifth of that. `FactoryClient` and its tests keep
speaking httpx (respx and `httpx.MockTransport` plug in as before); only the app's one
factory client runs on this transport.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class FactoryTransport(AiohttpTransport):
    """`AiohttpTransport`, with a refused connection reported as one, not as a timeout.

    httpx-aiohttp 0.2 maps every aiohttp connection error to `httpx.ConnectTimeout`; the
    factory client tells `timeout` from `unavailable` (docs/resilience.md#outcomes) by that class.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
                cause, TimeoutError
            ):
                raise httpx.ConnectError(str(exc), request=request) from cause
            raise


@functools.cache
def verified_tls() -> ssl.SSLContext:
    """The TLS context every outgoing client shares: httpx's default (the CA bundle, or
    SSL_CERT_FILE / SSL_CERT_DIR), loaded once per process. Loading it costs about 20 ms,
    which each new client would otherwise pay again."""
    return httpx.create_ssl_context()


def factory_http_client(
    factory_url: str,
    *,
    timeout_s: float,
    connections: int,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> httpx.AsyncClient:
    """The one factory client (base_url = FACTORY_URL), a pooled connection per call slot;
    ``wrap`` puts another transport around it (the telemetry's client spans)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        auto_decompress=False,
    )
    transport: httpx.AsyncBaseTransport = FactoryTransport(client=session, verify=verified_tls())
    if wrap is not None:
        transport = wrap(transport)
    return httpx.AsyncClient(base_url=factory_url, timeout=timeout_s, transport=transport)
