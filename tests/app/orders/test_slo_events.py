"""The order-availability SLO's events as the service counts them (telemetry/slo/slos.yaml):
every accepted order once, and each order made, in time when its pizza is stored within
ORDER_MADE_WITHIN_S of its acceptance. Time moves on a manual clock."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from app.config import Settings
from telemetry.metrics import ORDER_MADE_WITHIN_S
from tests.conftest import make_settings, running_api
from tests.telemetry.conftest import value
from tests.utils.builders import Api
from tests.utils.clock import ManualClock
from tests.utils.orders import distinct, order_status, pending_orders
from tests.utils.simulator import end_chaos


def counted(api: Api) -> tuple[float, float, float]:
    """(accepted, made in time, made late) on /metrics."""
    page = api.services.telemetry.render_prometheus()[0].decode()
    return (
        value(page, "pizza_orders_accepted_total"),
        value(page, "pizza_orders_made_total", in_time="true"),
        value(page, "pizza_orders_made_total", in_time="false"),
    )


async def test_an_order_answered_with_its_pizza_is_accepted_and_made_in_time(
    calm_settings: Settings,
) -> None:
    async with running_api(calm_settings) as api:
        shop = await api.shop()
        assert counted(api) == (0, 0, 0)
        key = distinct()
        answer = await api.order(shop, headers=key)
        assert answer.status_code == 200, answer.text
        assert counted(api) == (1, 1, 0)
        # The same key again is the same order: nothing new to make.
        again = await api.order(shop, headers=key)
        assert again.json()["order"]["id"] == answer.json()["order"]["id"]
        # An order the service refuses is never accepted.
        bad = await api.order(shop, headers=distinct(), menu_ids=[999_999])
        assert bad.status_code == 400, bad.text
        assert counted(api) == (1, 1, 0)


async def test_a_pending_order_made_after_the_bound_is_made_late(
    database_url: str, factory_url: str, factory: httpx.Client
) -> None:
    # One order per worker cycle (the oldest first), so each is made when the test says.
    settings = make_settings(
        database_url, factory_url, factory_auto_remediate=False, worker_batch=1
    )
    clock = ManualClock(datetime.now(UTC))
    async with running_api(settings, clock=clock) as api:
        services = api.services
        await services.supervisor.stop()  # the test runs the worker's cycles itself
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        [early, late] = await pending_orders(api, shop, 2)
        end_chaos(factory)
        await services.breaker.force("auto")
        assert counted(api) == (2, 0, 0)  # accepted, not made: the budget burns meanwhile

        clock.advance(ORDER_MADE_WITHIN_S - 60)
        await services.worker.run_once()
        assert await order_status(api, shop, early) == "fulfilled"
        assert counted(api) == (2, 1, 0)

        clock.advance(120)  # the other one is now past the bound
        await services.worker.run_once()
        assert await order_status(api, shop, late) == "fulfilled"
        assert counted(api) == (2, 1, 1)
