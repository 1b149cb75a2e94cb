"""The retry worker: pending orders are made as soon as the factory lets us.

See docs/resilience.md#pending-orders-and-the-retry-worker.

It wakes on work, not on a timer alone: when this process leaves an order pending (the
workflow tells it when that order may be tried again), when the breaker changes state,
and when an operator or a remediation asks. Otherwise it sleeps until the earliest due
order, the breaker's next probe, or IDLE_POLL_S, whichever comes first: the poll is what
finds orders that another replica left (or a replica that died, once its lease ends), and
an idle service makes one small read every IDLE_POLL_S.

A backlog is drained in rounds that start small whenever the breaker changes state and
grow while the factory answers fast (app/orders/drain.py): the whole backlog at once
would slow the factory down enough to reopen the breaker just closed.

A cycle that did something (orders expired, orders claimed and tried) is one trace,
``pizza.worker.cycle``; each attempt in it is a ``pizza.retry`` span linked to the
order's first trace. Polling that finds nothing to do records no trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta

from opentelemetry.trace import Tracer

from app.config import Settings
from app.orders.drain import Answer, DrainWindow
from app.orders.placed import PlacedItem, PlacedOrder
from app.orders.tracing import links_to
from app.orders.workflow import OrderWorkflow
from app.sql import ClaimedOrder, OrderStore
from app.sql.rows import StoreError
from app.supervisor import Heartbeat
from clients.breaker import BreakerState, FactoryBreaker
from clients.clock import SYSTEM_CLOCK, Clock
from clients.schemas import DinerInfo
from telemetry.metrics import PizzaMetrics

log = logging.getLogger("app.orders.worker")

# An idle worker reads the pending count this often: orders left by other replicas,
# leases of a replica that died, and the gauges.
IDLE_POLL_S = 5.0


class RetryWorker:
    def __init__(
        self,
        *,
        settings: Settings,
        store: OrderStore,
        workflow: OrderWorkflow,
        breaker: FactoryBreaker,
        metrics: PizzaMetrics,
        tracer: Tracer,
        idle_poll_s: float = IDLE_POLL_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._store = store
        self._workflow = workflow
        self._breaker = breaker
        self._metrics = metrics
        self._tracer = tracer
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._next_run = self._clock.now()
        # Set when a cycle failed on the database: the first cycle after it claims nothing,
        # so that replicas whose leases ran out meanwhile renew (or store their pizza) first.
        self._recovering = False
        self._drain = DrainWindow(
            cap=settings.worker_batch, slow_call_s=settings.factory_slow_call_s
        )
        workflow.on_pending = self.notify
        breaker.add_listener(self._breaker_moved)
        # Beaten after each completed cycle: a dead or stuck worker shows as its age.
        self.heartbeat = Heartbeat()

    def wake(self) -> None:
        """Run the next cycle now (remediation succeeded, an operator acted)."""
        self._wake.set()

    def _breaker_moved(self, _old: BreakerState, _new: BreakerState, _origin: bool) -> None:
        """Closed after an outage (or opened, or forced): drain from a small round again."""
        self._drain.restart()
        self.wake()

    def notify(self, due: datetime) -> None:
        """An order was left pending, to be tried at ``due``: wake up for it if sooner."""
        if due < self._next_run:
            self._wake.set()

    async def run_forever(self) -> None:
        """Cycles until cancelled; anything unexpected propagates to the supervisor."""
        while True:
            try:
                delay = await self.run_once()
            except StoreError as exc:
                # The database went away or was busy for a moment: the orders are safe in
                # it, and the next cycle tries again. Not a completed cycle: no beat.
                log.error("retry worker cycle failed: %s", exc)
                delay = self._settings.worker_poll_s
                self._recovering = True
            else:
                self.heartbeat.beat()
            self._next_run = self._clock.now() + timedelta(seconds=delay)
            if delay > 0 and not self._wake.is_set():
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
                # cancellation that arrives as the event is set, and shutdown then waits
                # for a worker that never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
            self._wake.clear()

    async def run_once(self) -> float:
        """One cycle: gauges, orders past their age, then what is due. Seconds to the next."""
        now = self._clock.now()
        stats = await self._store.pending_stats()
        oldest = stats.oldest
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        self._metrics.set_pending(stats.count, max(age, 0.0))
        if stats.count == 0:
            return self._idle_poll_s
        if age > self._settings.order_max_age_s:
            await self._expire(now)
        if self._workflow.refusal() is not None:
            # No call would be let through (breaker open, our key refused): claiming
            # orders now would only hand them back. Sleep until a probe is due.
            probe_in = self._breaker.probe_due_in_s()
            return min(probe_in, self._idle_poll_s) if probe_in is not None else self._idle_poll_s
        if stats.next_due is not None and stats.next_due > now:
            return min((stats.next_due - now).total_seconds(), self._idle_poll_s)
        if self._recovering:
            self._recovering = False
            return self._workflow.leases.period_s + 1.0
        # While not closed, one order at a time: it is the half-open probe.
        closed = self._breaker.state in (BreakerState.CLOSED, BreakerState.FORCED_CLOSED)
        drain = self._drain.begin() if closed else None
        claimed = await self._claim(drain.size if drain else 1)
        if not claimed:
            return min(self._settings.worker_poll_s, self._idle_poll_s)
        slow_counts = drain is None or drain.slow_counts
        with self._tracer.start_as_current_span(
            "pizza.worker.cycle", attributes={"pizza.orders.claimed": len(claimed)}
        ):
            loaded = await self._store.load(claimed)
            answers = await asyncio.gather(*(self._retry(o, slow_counts) for o in loaded))
        if drain is not None:
            self._drain.end(drain, len(claimed), answers)
        return 0.0  # look again at once: more may be due (a backlog after an outage)

    async def _retry(self, claimed: ClaimedOrder, slow_counts: bool) -> Answer:
        order = PlacedOrder(
            id=claimed.id,
            diner_id=claimed.diner_id,
            franchise_id=claimed.franchise_id,
            store_id=claimed.store_id,
            date=claimed.date,
            total=claimed.total,
            attempts=claimed.attempts,
            slow_counts=slow_counts,
        )
        items = [PlacedItem(*item) for item in claimed.items]
        diner = DinerInfo(id=claimed.diner_id, name=claimed.diner_name, email=claimed.diner_email)
        # A span per retry, in the cycle's trace, for the attempt's spans and events (a
        # breaker change, a link found, where it left the order); linked to the trace of
        # the request that placed the order.
        with self._tracer.start_as_current_span(
            "pizza.retry", links=links_to(claimed.trace_context)
        ) as span:
            span.set_attribute("pizza.order.id", claimed.id)
            span.set_attribute("pizza.order.attempts", claimed.attempts)
            started = self._clock.monotonic()
            attempt = await self._workflow.attempt(order, diner, items)
            return Answer(attempt.outcome, self._clock.monotonic() - started)

    async def _claim(self, limit: int) -> list[int]:
        """Lease due orders to this process, oldest first; no lock outlives this transaction.

        An order this process still has in hand is handed straight back: a call still
        finishing (its answer stored and the order handed back, the bookkeeping after it
        still running), or a pizza made while the database was away and still to be stored
        here (its lease may have run out meanwhile). It is tried again at a next cycle if
        it is still due, not left leased to nobody for CLAIM_LEASE_S nor made twice."""
        now = self._clock.now()
        ids = await self._store.claim(limit, now, self._workflow.claim_until(now))
        busy = [i for i in ids if self._workflow.in_flight.is_held(i)]
        if busy:
            await self._store.unclaim(busy)
        return [i for i in ids if i not in busy]

    async def _expire(self, now: datetime) -> None:
        cutoff = now - timedelta(seconds=self._settings.order_max_age_s)
        reason = (
            f"not made within ORDER_MAX_AGE_S ({self._settings.order_max_age_s:g} s); not charged"
        )
        started_ns = time.time_ns()
        expired = await self._store.expire(cutoff, now, reason)
        if expired:
            # A trace only when orders were given up: the sweep that finds none is polling.
            self._tracer.start_span(
                "pizza.orders.expire",
                start_time=started_ns,
                attributes={"pizza.orders.expired": expired},
            ).end()
            log.error("%d pending orders failed: older than ORDER_MAX_AGE_S", expired)
            for _ in range(expired):
                self._metrics.creation_failure("expired")
