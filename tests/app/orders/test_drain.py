"""The retry worker drains a backlog after an outage without reopening the breaker it has
just closed (app/orders/drain.py).

The factory here is a fake that makes one pizza after another, as a busy factory does: the
more calls at once, the longer the last of them waits. With `QUEUE_S` a pizza, 25 calls at
once bring the last answer to FACTORY_SLOW_CALL_S (2 s), and WORKER_BATCH (32) at once
would make slow pizzas. The real retry worker, order workflow and breaker run against it
and an in-memory order store; time is a manual clock that the test moves.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from opentelemetry import metrics, trace

from app.factory import FactoryOps
from app.orders.drain import START_WINDOW
from app.orders.worker import RetryWorker
from app.orders.workflow import OrderWorkflow
from app.sql import ClaimedOrder, OrderStore
from app.sql.rows import PendingStats
from clients.breaker import BreakerState, FactoryBreaker
from clients.client import FactoryClient
from clients.schemas import DinerInfo, FactoryResult, OrderInfo, Outcome
from telemetry.metrics import PizzaMetrics
from tests.conftest import make_settings
from tests.utils.clock import ManualClock

QUEUE_S = 0.08  # the fake factory's time per pizza, one after another
BACKLOG = 100
STEP_S = 0.01  # the clock moves by this much while calls are out


class BusyFactory:
    """Makes pizzas one after another, ``queue_s`` each, and answers ``base_s`` after its
    pizza is made: a call waits for every call before it. Remembers each call."""

    def __init__(self, clock: ManualClock, *, queue_s: float = QUEUE_S, base_s: float = 0.0):
        self.clock = clock
        self.queue_s = queue_s
        self.base_s = base_s
        self._free_at = clock.monotonic()
        self.calls: list[tuple[float, Outcome]] = []  # (sent at, outcome), as answered

    async def create_pizza(self, diner: DinerInfo, order: OrderInfo, *, timeout_s: float) -> Any:
        sent = self.clock.monotonic()
        self._free_at = max(sent, self._free_at) + self.queue_s
        await self.clock.sleep(self._free_at + self.base_s - sent)
        took = self.clock.monotonic() - sent
        outcome = Outcome.SLOW if took > 2.0 else Outcome.SUCCESS
        self.calls.append((sent, outcome))
        return FactoryResult(outcome, took, f"{took:.2f} s", jwt=f"pizza-{order.id}")

    def rounds(self, since: int = 0) -> list[int]:
        """How many calls were sent at once, each time calls were sent (from the
        ``since``-th call answered on)."""
        return list(Counter(sent for sent, _ in self.calls[since:]).values())

    def most_at_once(self) -> int:
        return max(self.rounds(), default=0)

    def slow_sent_at(self) -> set[float]:
        return {sent for sent, outcome in self.calls if outcome is Outcome.SLOW}


class Orders:
    """The order store's part the worker and the workflow use, in memory."""

    def __init__(self, clock: ManualClock, count: int) -> None:
        self.clock = clock
        start = clock.now()
        self.pending = {i: start for i in range(1, count + 1)}  # id -> due
        self.claimed: dict[int, datetime] = {}  # id -> lease end
        self.made: dict[int, str] = {}

    async def pending_stats(self) -> PendingStats:
        dues = [due for i, due in self.pending.items() if i not in self.claimed]
        oldest = self.clock.now() if self.pending else None
        return PendingStats(len(self.pending), oldest, min(dues, default=None))

    async def claim(self, limit: int, now: datetime, until: datetime) -> list[int]:
        due = [i for i, at in sorted(self.pending.items()) if i not in self.claimed and at <= now]
        for order_id in due[:limit]:
            self.claimed[order_id] = until
        return due[:limit]

    async def load(self, ids: list[int]) -> list[ClaimedOrder]:
        item = (1, 1, "Veggie", Decimal("0.0038"))
        now = self.clock.now()
        return [
            ClaimedOrder(i, 1, 1, 1, now, Decimal("0.0038"), 1, None, "D", "d@jwt.com", (item,))
            for i in ids
        ]

    async def fulfil(self, order_id: int, jwt: str, now: datetime) -> bool:
        self.pending.pop(order_id, None)
        self.claimed.pop(order_id, None)
        self.made[order_id] = jwt
        return True

    async def retry_later(self, order_id: int, reason: str, at: datetime, *_: Any) -> bool:
        self.pending[order_id] = at
        self.claimed.pop(order_id, None)
        return True

    async def release(self, order_id: int, *_: Any) -> bool:
        self.claimed.pop(order_id, None)
        return True

    async def unclaim(self, ids: list[int]) -> int:
        for order_id in ids:
            self.claimed.pop(order_id, None)
        return len(ids)


class QuietOps:
    """The factory's operators' facts: nothing to report here."""

    config_fault: str | None = None

    async def observe(self, result: FactoryResult, *, counted: bool = True) -> None:
        pass

    def observe_timeout(self, reason: str) -> None:
        pass


class Service:
    """The worker, the workflow and the breaker of one service, on a manual clock."""

    def __init__(self, factory: BusyFactory, orders: Orders, clock: ManualClock) -> None:
        settings = make_settings("sqlite+aiosqlite:///unused.db", "http://factory.invalid")
        self.clock, self.orders = clock, orders
        self.breaker = FactoryBreaker(fail_max=5, reset_timeout_s=30, clock=clock)
        self.moves: list[BreakerState] = []
        self.breaker.add_listener(lambda _old, new, _origin: self.moves.append(new))
        tracer = trace.NoOpTracer()
        meter = PizzaMetrics(metrics.NoOpMeterProvider().get_meter("test"))
        workflow = OrderWorkflow(
            settings=settings,
            store=cast(OrderStore, orders),
            client=cast(FactoryClient, factory),
            breaker=self.breaker,
            ops=cast(FactoryOps, QuietOps()),
            metrics=meter,
            tracer=tracer,
            clock=clock,
        )
        self.worker = RetryWorker(
            settings=settings,
            store=cast(OrderStore, orders),
            workflow=workflow,
            breaker=self.breaker,
            metrics=meter,
            tracer=tracer,
            clock=clock,
        )

    async def cycle(self) -> None:
        """One worker cycle, the clock moved while its calls are out, then to its next."""
        running = asyncio.create_task(self.worker.run_once())
        while not running.done():
            for _ in range(20):  # let every call that can go on do so before time moves
                await asyncio.sleep(0)
            if not running.done():
                self.clock.advance(STEP_S)
        self.clock.advance(max(running.result(), STEP_S))

    async def drain(self, *, until: Callable[[], bool] = lambda: False) -> None:
        for _ in range(BACKLOG * 2):
            if not self.orders.pending or until():
                return
            await self.cycle()
        pytest.fail(f"not drained: {len(self.orders.pending)} orders pending")


async def test_a_backlog_is_made_without_slow_pizzas_and_the_breaker_stays_closed() -> None:
    clock = ManualClock()
    factory, orders = BusyFactory(clock), Orders(clock, BACKLOG)
    service = Service(factory, orders, clock)

    await service.drain()

    assert sorted(orders.made) == list(range(1, BACKLOG + 1))
    assert service.moves == []  # never opened
    assert factory.slow_sent_at() == set()
    # Small at first, then as many at once as the factory answers fast.
    assert factory.rounds()[0] == START_WINDOW
    assert START_WINDOW < factory.most_at_once() < 25


async def test_other_load_slowing_the_factory_shrinks_the_drain_not_the_breaker() -> None:
    clock = ManualClock()
    factory, orders = BusyFactory(clock), Orders(clock, BACKLOG)
    service = Service(factory, orders, clock)
    await service.drain(until=lambda: factory.most_at_once() >= 16)
    factory.queue_s = 0.2  # another service's drain now shares the factory
    slowed = len(factory.calls)

    await service.drain()

    assert service.moves == []
    assert sorted(orders.made) == list(range(1, BACKLOG + 1))
    # Slow pizzas came from one round only: the next one was small enough.
    assert len(factory.slow_sent_at()) == 1
    assert max(factory.rounds(slowed + 16)) < 16


async def test_a_factory_slow_even_for_the_smallest_round_still_opens_the_breaker() -> None:
    clock = ManualClock()
    factory, orders = BusyFactory(clock), Orders(clock, BACKLOG)
    service = Service(factory, orders, clock)
    await service.drain(until=lambda: factory.most_at_once() >= 16)
    factory.queue_s, factory.base_s = 0.0, 2.5  # slow whatever the load

    await service.drain(until=lambda: bool(service.moves))

    assert service.moves == [BreakerState.OPEN]
    # Before it opened, the drain had come down to its smallest round.
    assert factory.rounds()[-1] <= START_WINDOW


async def test_the_drain_starts_small_again_whenever_the_breaker_closes() -> None:
    clock = ManualClock()
    factory, orders = BusyFactory(clock), Orders(clock, BACKLOG)
    service = Service(factory, orders, clock)
    await service.drain(until=lambda: factory.most_at_once() >= 16)
    await service.breaker.force("open")
    await service.breaker.force("auto")  # closed again, by the operator
    before = len(factory.calls)

    await service.cycle()

    assert factory.rounds(before) == [START_WINDOW]
