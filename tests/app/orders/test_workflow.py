"""A factory answer is stored before anything else is done with it, and a failure of our
own never leaves an order claimed for nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from app.factory.links import RemediationLinks
from app.models import DinerOrder
from clients.client import FactoryClient
from clients.schemas import Outcome
from tests.conftest import make_settings, running_api
from tests.utils.builders import Api
from tests.utils.orders import order_status, status


class TestAVerifiedPizzaIsStoredFirst:
    async def test_storing_the_link_fails_and_the_customer_still_gets_the_pizza(
        self,
        api: Api,
        factory: httpx.Client,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        async def link_store_fails(self: RemediationLinks, url: str, outcome: Outcome) -> None:
            raise OperationalError("INSERT INTO remediationlink", {}, Exception("disk I/O error"))

        monkeypatch.setattr(RemediationLinks, "record", link_store_fails)
        shop = await api.shop()
        # Throttle: a slow (0.5 s, within the 2 s wait) but verified pizza, with a link.
        factory.put("/api/vendor/chaos/throttle").raise_for_status()
        calls = factory.get("/api/sim/stats").json()["calls"]

        answer = await api.order(shop)

        assert answer.status_code == 200, answer.text
        assert answer.json()["jwt"]
        order_id = answer.json()["order"]["id"]
        assert await order_status(api, shop, order_id) == "fulfilled"
        assert factory.get("/api/sim/stats").json()["calls"] == calls + 1
        # The bookkeeping failure is not hidden: logged, with its traceback.
        (failed,) = [r for r in caplog.records if "recording its facts failed" in r.message]
        assert failed.exc_info is not None


class TestATimeoutErrorOfTheCallItself:
    async def test_is_not_taken_for_the_customers_wait_and_frees_the_order(
        self,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        async def raises_timeout_error(self: FactoryClient, *args: Any, **kwargs: Any) -> Any:
            # E.g. an asyncio.timeout of our own inside the call, long before FACTORY_TIMEOUT_S.
            raise TimeoutError("waited for a connection")

        monkeypatch.setattr(FactoryClient, "create_pizza", raises_timeout_error)
        # A long retry backoff, so the worker leaves the order alone while the test looks.
        settings = make_settings(database_url, factory_url, retry_base_s=600, retry_max_s=600)
        async with running_api(settings) as api:
            shop = await api.shop()
            answer = await api.order(shop)
            assert answer.status_code == 503, answer.text  # kept pending
            order_id = answer.json()["order"]["id"]

            async with api.services.sessions() as session:
                order = await session.get(DinerOrder, order_id)
            assert order is not None
            assert order.status == "pending"
            # Not left claimed for FACTORY_CALL_MAX_S waiting for a late answer that never comes.
            assert order.claimed_until is None
            assert order.attempts == 1
            assert "FACTORY_TIMEOUT_S" not in (order.last_reason or "")
            # Nor counted as a factory timeout the customer waited out.
            assert "timeout" not in (await status(api, shop))["recentOutcomes"]
