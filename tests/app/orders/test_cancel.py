"""A pending order whose store is deleted is failed at the service's time (its clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from app.config import Settings
from app.models import DinerOrder
from tests.conftest import running_api
from tests.utils.clock import ManualClock
from tests.utils.orders import pending_orders


async def test_an_order_failed_by_a_store_deletion_finishes_at_the_clocks_time(
    calm_settings: Settings, factory: httpx.Client
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with running_api(calm_settings, clock=clock) as api:
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        [order_id] = await pending_orders(api, shop, 1)
        clock.advance(90)
        path = f"/api/franchise/{shop.franchise['id']}/store/{shop.store['id']}"
        assert (await api.client.delete(path, headers=shop.admin.headers)).status_code == 200
        async with api.services.sessions() as session:
            order = await session.get(DinerOrder, order_id)
        assert order is not None
        assert order.status == "failed"
        assert order.finished_at == clock.now()
