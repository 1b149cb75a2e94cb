"""The retry worker after the database was away (found by pizza soak): its first
cycle claims nothing, so that the replica whose call is still running renews its lease (or
stores its pizza) before another one could take the order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from app.config import Settings
from app.sql.rows import PendingStats, StoreError
from tests.conftest import running_api
from tests.utils.clock import ManualClock
from tests.utils.orders import order_status, pending_orders
from tests.utils.simulator import end_chaos
from tests.utils.waiting import eventually


async def test_the_first_cycle_after_a_database_outage_claims_nothing(
    calm_settings: Settings, factory: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with running_api(calm_settings, clock=clock) as api:
        services = api.services
        await services.supervisor.stop()  # this test runs the worker itself
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        [order_id] = await pending_orders(api, shop, 1)
        end_chaos(factory)
        await services.breaker.force("auto")  # closed, whatever the failure did
        clock.advance(60)  # the order's retry is due

        real = services.store.pending_stats
        cycles = 0

        async def away_once() -> PendingStats:
            nonlocal cycles
            cycles += 1
            if cycles == 1:
                raise StoreError("ConnectionDoesNotExistError: the database restarted")
            return await real()

        monkeypatch.setattr(services.store, "pending_stats", away_once)
        worker = asyncio.create_task(services.worker.run_forever())
        try:
            # The failed cycle, then the one after it: that one leaves the due order alone.
            async def after_the_outage() -> bool:
                return cycles >= 2

            await eventually(after_the_outage)
            assert await order_status(api, shop, order_id) == "pending"
            assert services.orders.in_flight.calling() == set()
            # The next cycle (woken here rather than waiting out a lease's third) makes it.
            services.worker.wake()

            async def made() -> bool:
                return await order_status(api, shop, order_id) == "fulfilled"

            await eventually(made)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


@pytest.mark.parametrize("stage", ["calling", "recording"])
async def test_an_order_still_in_hand_here_is_handed_back_not_made_again(
    calm_settings: Settings, factory: httpx.Client, stage: str
) -> None:
    """The worker claims an order this process still has in hand: its call's bookkeeping
    still runs after the answer was stored and the order handed back (calling), or its
    pizza, made while the database was away, is still to be stored here and its lease ran
    out meanwhile (recording). The worker hands it back at once, without calling the
    factory, instead of leaving it leased to nobody for CLAIM_LEASE_S or making it twice."""
    clock = ManualClock(datetime.now(UTC))
    async with running_api(calm_settings, clock=clock) as api:
        services = api.services
        await services.supervisor.stop()  # this test runs the worker itself
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        [order_id] = await pending_orders(api, shop, 1)
        end_chaos(factory)
        await services.breaker.force("auto")
        clock.advance(1)  # its retry is due
        in_flight = services.orders.in_flight
        start, end = {
            "calling": (in_flight.start_call, in_flight.end_call),
            "recording": (in_flight.start_recording, in_flight.end_recording),
        }[stage]
        calls = factory.get("/api/sim/stats").json()["calls"]

        start(order_id)
        await services.worker.run_once()
        assert factory.get("/api/sim/stats").json()["calls"] == calls
        assert await order_status(api, shop, order_id) == "pending"
        end(order_id)
        await services.worker.run_once()

        assert await order_status(api, shop, order_id) == "fulfilled"
