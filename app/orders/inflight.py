"""What the order workflow holds while it works on orders: the orders in hand, by stage,
and the factory call slots.

The workflow (workflow.py) reads and changes both through these two objects only, so that
who holds an order, and who holds a slot, is said in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class OrdersInFlight:
    """The orders this process is working on, by stage. An order may be in several at
    once (its attempt waits for its call; a call whose answer could not be stored hands
    it on to recording).

    - attempting: in an attempt (waiting for the breaker, a slot, or the answer), or
      answered 202 and about to be;
    - calling: its factory call is running here;
    - recording: its pizza is made but could not be stored yet (the database away).

    Every order held in any stage keeps its claim lease (`held`, read by the lease keeper)
    and is left be by the retry worker (`is_held`).
    """

    __slots__ = ("_attempting", "_calling", "_recording")

    def __init__(self) -> None:
        self._attempting: set[int] = set()
        self._calling: set[int] = set()
        self._recording: set[int] = set()

    def start_attempt(self, order_id: int) -> None:
        self._attempting.add(order_id)

    def end_attempt(self, order_id: int) -> None:
        self._attempting.discard(order_id)

    def start_call(self, order_id: int) -> None:
        self._calling.add(order_id)

    def end_call(self, order_id: int) -> None:
        self._calling.discard(order_id)

    def start_recording(self, order_id: int) -> None:
        self._recording.add(order_id)

    def end_recording(self, order_id: int) -> None:
        self._recording.discard(order_id)

    def is_held(self, order_id: int) -> bool:
        """Whether the order is in hand here, in any stage."""
        stages = (self._attempting, self._calling, self._recording)
        return any(order_id in stage for stage in stages)

    def calling(self) -> frozenset[int]:
        """The orders whose factory call is running here."""
        return frozenset(self._calling)

    def held(self) -> set[int]:
        """Every order in hand, whatever its stage: their leases are renewed."""
        return self._attempting | self._calling | self._recording

    def interrupted_by_shutdown(self) -> set[int]:
        """The orders a shutdown leaves unfinished: attempted or calling (an order being
        recorded is made; its recording is only stopped)."""
        return self._attempting | self._calling


class FactorySlots:
    """At most `size` factory calls at once (one per pooled connection).

    Waiting for a slot is this service's queue, not the factory's time: an attempt takes
    its slot before the customer's wait for the factory starts. The call then keeps the
    slot until it ends, which may be long after the customer's wait (a late answer still
    fulfils the order), so the slot cannot be an ``async with`` around the attempt.
    `start_call` is the one place that takes a slot and that gives it back: the task it
    starts holds the slot and hands it back when it is done, however it ends (answered,
    raised, cancelled, even before its first step).
    """

    __slots__ = ("_free",)

    def __init__(self, size: int) -> None:
        self._free = asyncio.Semaphore(size)

    async def start_call(
        self, call: Callable[..., Coroutine[Any, Any, T]], *args: Any
    ) -> asyncio.Task[T]:
        """Wait for a free slot, then start ``call(*args)`` in a task that holds it."""
        await self._free.acquire()
        try:
            task = asyncio.create_task(call(*args))
        except BaseException:
            self._free.release()
            raise
        task.add_done_callback(self._give_back)
        return task

    def _give_back(self, _done: asyncio.Task[Any]) -> None:
        self._free.release()

    def all_taken(self) -> bool:
        """Whether a call would have to wait for a slot now."""
        return self._free.locked()
