"""The workflow's holdings: which orders it has in hand (their leases are renewed, the
worker leaves a calling one be, a shutdown hands them back), and its factory call slots,
each taken before a call and given back when the call ends, however it ends."""

from __future__ import annotations

import asyncio

import pytest

from app.orders.inflight import FactorySlots, OrdersInFlight


class TestOrdersInFlight:
    def test_an_order_is_held_while_in_any_stage(self) -> None:
        orders = OrdersInFlight()
        orders.start_attempt(1)
        orders.start_call(1)
        orders.start_call(2)
        orders.start_recording(3)
        assert orders.held() == {1, 2, 3}
        orders.end_attempt(1)
        assert orders.held() == {1, 2, 3}  # its call still runs
        orders.end_call(1)
        assert orders.held() == {2, 3}

    def test_an_order_in_any_stage_is_held_and_only_a_calling_one_is_calling(self) -> None:
        orders = OrdersInFlight()
        orders.start_attempt(1)
        orders.start_call(2)
        orders.start_recording(3)
        assert [orders.is_held(i) for i in (1, 2, 3, 4)] == [True, True, True, False]
        assert orders.calling() == {2}

    def test_a_shutdown_hands_back_the_attempted_and_calling_not_the_made(self) -> None:
        orders = OrdersInFlight()
        orders.start_attempt(1)
        orders.start_call(2)
        orders.start_recording(3)
        assert orders.interrupted_by_shutdown() == {1, 2}

    def test_ending_a_stage_twice_or_never_started_is_harmless(self) -> None:
        orders = OrdersInFlight()
        orders.end_call(9)
        orders.start_recording(9)
        orders.end_recording(9)
        orders.end_recording(9)
        assert orders.held() == set()


async def assert_exactly_one_free(slots: FactorySlots) -> None:
    """One slot is free, not more: a slot given back twice would leave a second one."""
    assert not slots.all_taken()
    holder = await slots.start_call(asyncio.Event().wait)
    assert slots.all_taken()
    holder.cancel()
    await asyncio.gather(holder, return_exceptions=True)


class TestFactorySlots:
    async def test_a_call_waits_for_a_slot_until_one_ends(self) -> None:
        slots = FactorySlots(1)
        release = asyncio.Event()

        async def call(result: str) -> str:
            await release.wait()
            return result

        first = await slots.start_call(call, "first")
        assert slots.all_taken()
        second = asyncio.create_task(slots.start_call(call, "second"))
        await asyncio.sleep(0)
        assert not second.done()  # no slot: not started
        release.set()
        assert await first == "first"
        assert await (await second) == "second"
        await asyncio.sleep(0)  # the slot is given back as the call's task is done
        await assert_exactly_one_free(slots)

    @pytest.mark.parametrize("ending", ["raises", "cancelled", "cancelled_before_it_ran"])
    async def test_the_slot_comes_back_however_the_call_ends(self, ending: str) -> None:
        slots = FactorySlots(1)

        async def call() -> None:
            if ending == "raises":
                raise ValueError("bad answer")
            await asyncio.Event().wait()

        task = await slots.start_call(call)
        if ending != "cancelled_before_it_ran":
            await asyncio.sleep(0)  # it runs up to its wait (or its error)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
        await assert_exactly_one_free(slots)

    async def test_a_wait_for_a_slot_that_is_cancelled_takes_none(self) -> None:
        slots = FactorySlots(1)
        blocker = await slots.start_call(asyncio.Event().wait)
        waiting = asyncio.create_task(slots.start_call(asyncio.Event().wait))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        blocker.cancel()
        await asyncio.gather(blocker, return_exceptions=True)
        await asyncio.sleep(0)
        await assert_exactly_one_free(slots)
