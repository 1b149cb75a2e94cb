"""Fixtures shared by the service's tests: a webhook receiver for ALERT_WEBHOOK_URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.utils.incidents import WEBHOOK_TOKEN, Receiver
from tests.utils.servers import serve_in_thread


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    async def hook(request: Request) -> JSONResponse:
        receiver.messages.append(await request.json())
        return JSONResponse({"ok": True})

    routes = [Route("/hook/{token}", hook, methods=["POST"])]
    with serve_in_thread(Starlette(routes=routes)) as url:
        receiver.url = f"{url}/hook/{WEBHOOK_TOKEN}"  # such URLs are credentials (Slack's)
        yield receiver


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.messages.clear()
    return receiver_server
