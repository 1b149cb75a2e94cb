"""Run an ASGI app on a real port for tests that must go over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

STARTUP_TIMEOUT_S = 10.0
# Requests still running at shutdown (a throttled order, a hang) are cancelled
# after this long rather than waited for.
SHUTDOWN_GRACE_S = 1.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yield its base URL.

    The server binds port 0, so the kernel picks the port and two servers
    never race for one. On exit the server stops and its thread is joined.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        ws="none",  # as the service's own servers (app/cli/serving.py)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{host}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on {host}")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S + SHUTDOWN_GRACE_S)
