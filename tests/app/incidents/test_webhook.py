"""The direct page: ALERT_WEBHOOK_URL hears of an incident opening, its link and its close,
in order; a dead or slow webhook costs an order nothing."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.incidents.webhook import Delivery, WebhookPager
from telemetry.logging import configure_logging
from tests.conftest import FACTORY_KEY, JWT_SECRET, make_settings, running_api
from tests.utils.incidents import WEBHOOK_TOKEN, Receiver, listed
from tests.utils.orders import all_fulfilled, distinct, pending_orders
from tests.utils.waiting import eventually

PUBLIC_URL = "https://pizza.example"


class TestWebhookReceivesTheIncident:
    async def test_open_link_and_close_messages_arrive_in_order(
        self, database_url: str, factory_url: str, factory: httpx.Client, receiver: Receiver
    ) -> None:
        settings = make_settings(
            database_url, factory_url, alert_webhook_url=receiver.url, public_url=PUBLIC_URL
        )
        async with running_api(settings) as api:
            written = io.StringIO()
            services = api.services
            configure_logging(
                secrets=services.settings.secrets, telemetry=services.telemetry, stream=written
            )
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            ids = await pending_orders(api, shop, 1)  # auto-remediation ends it
            await eventually(lambda: all_fulfilled(api, shop, ids))

            async def four() -> bool:
                return len(receiver.messages) >= 4

            await eventually(four)
            # The link and the chaos the vendor record names (read at the same failed
            # call) race each other; either opens the incident.
            events = receiver.events()
            assert (events[0], events[-1]) == ("incident.opened", "incident.closed"), events
            assert sorted(events[1:3]) == ["incident.chaos_reported", "incident.link_detected"]
            opened, closed = receiver.messages[0], receiver.messages[-1]
            [link] = [m for m in receiver.messages if m["event"] == "incident.link_detected"]
            [chaos] = [m for m in receiver.messages if m["event"] == "incident.chaos_reported"]
            assert "the factory reports chaos fail running since" in chaos["text"]
            # One incident. Its id need not be 1: on PostgreSQL the insert that loses the
            # race may spend a sequence number.
            [incident_id] = {m["incident"]["id"] for m in receiver.messages}
            for message in receiver.messages:
                assert message["statusPage"] == f"{PUBLIC_URL}/factory/status"
                assert message["incident"]["url"] == (
                    f"{PUBLIC_URL}/factory/incidents/{incident_id}"
                )
                assert f"{PUBLIC_URL}/factory/status" in message["text"]
                assert message["impact"]["ordersAffected"] in (0, 1)
            assert opened["incident"]["status"] == "open"
            assert opened["incident"]["trigger"] in ("link", "chaos")
            # The link as the service follows it (at FACTORY_URL), key masked.
            assert link["link"].startswith(f"{factory_url}/api/support/***/report/")
            assert link["link"] in link["text"]
            assert closed["incident"]["status"] == "closed"
            assert closed["impact"]["ordersAffected"] == 1
            everything = json.dumps(receiver.messages)
            assert FACTORY_KEY not in everything and JWT_SECRET not in everything

            # Each delivery is on the incident's timeline.
            async def pages() -> list[str]:
                answer = await api.client.get(
                    f"/factory/incidents/{incident_id}", headers=shop.admin.headers
                )
                timeline = answer.json()["timeline"]
                found = [e["detail"] for e in timeline if e["kind"] == "page"]
                return found if len(found) == 4 else []

            for detail in await eventually(pages):
                assert "delivered (HTTP 200, 1 try)" in detail
            # The service's own lines; the receiver's access log runs in this process too.
            lines = [json.loads(line) for line in written.getvalue().splitlines()]
            ours = "\n".join(str(x) for x in lines if x["logger"] != "uvicorn.access")
            assert "alert webhook: incident.closed delivered" in ours
            assert "HTTP Request: POST ***" in ours  # httpx logs each URL: masked
            assert WEBHOOK_TOKEN not in ours and WEBHOOK_TOKEN not in everything


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A webhook that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A webhook whose port refuses connections."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


class TestADeadWebhookCostsNothing:
    @pytest.mark.parametrize("webhook", ["hanging_url", "refusing_url"])
    async def test_orders_are_answered_at_once_and_shutdown_is_bounded(
        self,
        webhook: str,
        request: pytest.FixtureRequest,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
    ) -> None:
        settings = make_settings(
            database_url,
            factory_url,
            alert_webhook_url=request.getfixturevalue(webhook),
            factory_auto_remediate=False,
            breaker_fail_max=3,
            breaker_reset_s=600,
        )
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            for _ in range(5):  # opens the incident, detects the link, opens the breaker
                started = time.monotonic()
                answer = await api.order(shop, headers=distinct())
                assert answer.status_code == 503
                # Each page waits up to 5 s a try, three tries: none of it is the order's.
                assert time.monotonic() - started < 1.0
            [incident] = await listed(api, shop)
            assert incident["impact"]["ordersAffected"] == 5
            stopping = time.monotonic()
        # Queued pages get a short drain at shutdown, then are dropped.
        assert time.monotonic() - stopping < 5.0


class TestPagerRetries:
    @staticmethod
    async def deliver(answers: list[int | Exception]) -> tuple[Delivery, int]:
        calls = 0

        def handler(request: httpx.Request) -> httpx.Response:
            nonlocal calls
            answer = answers[min(calls, len(answers) - 1)]
            calls += 1
            if isinstance(answer, Exception):
                raise answer
            return httpx.Response(answer)

        done: list[Delivery] = []

        async def note(delivery: Delivery) -> None:
            done.append(delivery)

        async def build() -> dict[str, Any]:
            return {"event": "incident.opened"}

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            pager = WebhookPager(http, "https://hooks.example/secret-token", backoff_s=0.0)
            pager.on_delivery = note
            pager.start()
            pager.send(1, "incident.opened", build)
            await pager.close(drain_s=5)
        [delivery] = done
        return delivery, calls

    async def test_a_server_error_is_retried_until_it_is_delivered(self) -> None:
        delivery, calls = await self.deliver([503, 500, 204])
        assert delivery.delivered and delivery.tries == 3 and calls == 3
        assert delivery.detail == "HTTP 204"

    async def test_a_network_error_is_retried_and_the_tries_are_bounded(self) -> None:
        delivery, calls = await self.deliver([httpx.ConnectError("refused")])
        assert not delivery.delivered and delivery.tries == 3 and calls == 3
        assert delivery.detail == "ConnectError: refused"

    async def test_a_client_error_is_not_retried(self) -> None:
        delivery, calls = await self.deliver([404])
        assert not delivery.delivered and calls == 1
