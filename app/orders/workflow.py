"""The order workflow: store first, then one guarded factory attempt (docs/order-flow.md#workflow).

The customer path and the retry worker share `attempt()`: it asks the breaker for a
call, runs the factory call in the background for up to FACTORY_CALL_MAX_S, waits for
it at most FACTORY_TIMEOUT_S, and records the answer whenever it comes. A late answer
still fulfils the order and records the link; the breaker has already counted the
timeout and is not fed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from opentelemetry.trace import Status, StatusCode, Tracer

from app.backoff import backoff_s
from app.config import Settings
from app.models import OrderFailure, OrderStatus
from app.orders.inflight import FactorySlots, OrdersInFlight
from app.orders.leases import LeaseKeeper
from app.orders.placed import Attempt, PlacedItem, PlacedOrder
from app.orders.tracing import FULFILLED, REFUSED, attempt_event, order_event
from app.sql import OrderStore
from app.sql.rows import StoreError
from clients.breaker import CallRefused, FactoryBreaker, Ticket
from clients.client import FactoryClient
from clients.clock import SYSTEM_CLOCK, Clock
from clients.schemas import DinerInfo, FactoryResult, ItemInfo, OrderInfo, Outcome
from telemetry.spans import current_span

if TYPE_CHECKING:
    from app.factory import FactoryOps
    from telemetry.metrics import PizzaMetrics

log = logging.getLogger("app.orders")

# Factory calls in flight at once (one per pooled connection: app/main.py).
FACTORY_SLOTS = 64
# A made pizza whose answer could not be stored is stored again this often until it is.
RECORD_RETRY_S = 0.5
BREAKER_OPEN_REASON = "factory circuit open"
REJECTED_REASON = "rejected by factory"
CALL_FAILED_REASON = "the factory call failed on our side; retried"
# pizza.create's outcome when a shutdown stops the call (no answer; the order is retried).
INTERRUPTED = "interrupted"


@dataclass(slots=True)
class _Wait:
    """Shared by an attempt and its call: did the customer's wait end first, and what
    did the factory answer (known before the answer is stored)?"""

    over: bool = False
    outcome: Outcome | None = None


class OrderWorkflow:
    def __init__(
        self,
        *,
        settings: Settings,
        store: OrderStore,
        client: FactoryClient,
        breaker: FactoryBreaker,
        ops: FactoryOps,
        metrics: PizzaMetrics,
        tracer: Tracer,
        rand: Callable[[], float] = random.random,
        factory_slots: int = FACTORY_SLOTS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._store = store
        self._client = client
        self._breaker = breaker
        self._ops = ops
        self._metrics = metrics
        self._tracer = tracer
        self._rand = rand
        # Calls in flight to the factory, at most one per pooled connection. The customer's
        # wait for the factory (FACTORY_TIMEOUT_S) starts once the call has its slot, so a
        # burst of customers is never taken for a slow factory (nor opens the breaker).
        self._slots = FactorySlots(factory_slots)
        # The orders in hand here, by stage (attempting, calling, recording).
        self.in_flight = OrdersInFlight()
        # Their leases are short and renewed while they are in hand (app/orders/leases.py).
        self.leases = LeaseKeeper(
            store=store, held=self.in_flight.held, lease_s=settings.claim_lease_s, clock=clock
        )
        self._tasks: set[asyncio.Task[Attempt]] = set()
        # Attempts of orders already answered 202 (`attempt_later`).
        self._later: set[asyncio.Task[None]] = set()
        # Told when an order is left pending and when it may be tried again (the worker).
        self.on_pending: Callable[[datetime], None] = lambda _at: None

    def claim_until(self, now: datetime) -> datetime:
        return self.leases.until(now)

    def next_attempt(self, now: datetime, attempts: int) -> datetime:
        delay = backoff_s(
            attempts,
            base_s=self._settings.retry_base_s,
            max_s=self._settings.retry_max_s,
            rand=self._rand,
        )
        return now + timedelta(seconds=delay)

    def refusal(self) -> str | None:
        """Why no factory call can be made now (our key refused, the breaker open), if so."""
        if self._ops.config_fault:
            return self._ops.config_fault
        if self._breaker.refuses():
            return BREAKER_OPEN_REASON
        return None

    def refused(self, order_id: int, reason: str, now: datetime) -> None:
        """An order kept pending for `refusal()` without calling: counted as `attempt()` would."""
        order_event(REFUSED, order_id, **{"pizza.reason": reason})
        attempt_event(order_id, OrderStatus.PENDING, None, reason, attempts=0)
        if reason == BREAKER_OPEN_REASON:
            self._breaker.count_refused()  # pizza.factory.calls.refused
        self.on_pending(now)

    def attempt_later(
        self, order: PlacedOrder, diner: DinerInfo, items: Sequence[PlacedItem]
    ) -> None:
        """`attempt()` in the background for a stored order, claimed by this process,
        whose customer is answered now; the claim is renewed while it runs."""
        self.in_flight.start_attempt(order.id)  # before the task starts: its lease is renewed
        task = asyncio.create_task(self._attempt_logged(order, diner, items))
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _attempt_logged(
        self, order: PlacedOrder, diner: DinerInfo, items: Sequence[PlacedItem]
    ) -> None:
        try:
            await self.attempt(order, diner, items)
        except Exception:
            # No request to answer with it: said here. The worker retries it after its claim.
            log.exception("order %s: its attempt failed; the worker retries it", order.id)
        finally:
            self.in_flight.end_attempt(order.id)  # attempt_later's mark: attempt() may not run

    async def attempt(
        self, order: PlacedOrder, diner: DinerInfo, items: Sequence[PlacedItem]
    ) -> Attempt:
        """One guarded factory attempt for a stored, claimed, pending order; the current
        span (the request's or the retry's) says where it left the order."""
        self.in_flight.start_attempt(order.id)
        try:
            result = await self._guarded_attempt(order, diner, items)
        finally:
            self.in_flight.end_attempt(order.id)
        attempt_event(order.id, result.status, result.outcome, result.reason, order.attempts + 1)
        return result

    async def _guarded_attempt(
        self, order: PlacedOrder, diner: DinerInfo, items: Sequence[PlacedItem]
    ) -> Attempt:
        if self._ops.config_fault:
            # Our key was refused: calling again cannot help until it works (the probe says).
            order_event(REFUSED, order.id, **{"pizza.reason": self._ops.config_fault})
            await self._release(order, reason=self._ops.config_fault)
            return Attempt(OrderStatus.PENDING, None, reason=self._ops.config_fault)
        info = OrderInfo(
            id=order.id,
            franchise_id=order.franchise_id,
            store_id=order.store_id,
            items=tuple(ItemInfo(i.menu_id, i.description, float(i.price)) for i in items),
        )
        try:
            async with self._breaker.guard() as ticket:
                wait = _Wait()
                # The call holds its slot until it ends, however long after the wait.
                task = await self._slots.start_call(self._call_and_record, order, diner, info, wait)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                # asyncio.wait neither cancels the call when the wait ends nor mistakes a
                # TimeoutError raised inside the call for the end of the customer's wait.
                done, _ = await asyncio.wait({task}, timeout=self._settings.factory_timeout_s)
                if not done:
                    return await self._waited_out(order, wait, ticket)
                try:
                    result = task.result()
                except StoreError as exc:
                    # The factory answered but storing the answer failed: the breaker
                    # counts the factory's outcome, not our database; the order is
                    # stored and leased, so the worker tries it again after the lease.
                    _record(ticket, order, wait.outcome)
                    log.error(
                        "could not record the factory's answer for order %s: %s", order.id, exc
                    )
                    return Attempt(OrderStatus.PENDING, wait.outcome, reason="not recorded")
                except Exception as exc:
                    # Failed on our side (its own TimeoutError, a bug): no late answer frees it.
                    return await self._call_failed(order, ticket, wait, exc)
                assert result.outcome is not None
                _record(ticket, order, result.outcome)
                return result
        except CallRefused:
            # The breaker's refused listener counts it (pizza.factory.calls.refused).
            order_event(REFUSED, order.id, **{"pizza.reason": BREAKER_OPEN_REASON})
            await self._release(order, reason=BREAKER_OPEN_REASON)
            return Attempt(OrderStatus.PENDING, None, reason=BREAKER_OPEN_REASON)

    async def _waited_out(self, order: PlacedOrder, wait: _Wait, ticket: Ticket) -> Attempt:
        """The customer's wait ended first: the breaker and the failure count see a timeout
        now; the late answer, whenever it comes, only feeds the order and the link."""
        wait.over = True
        if not await self._store.defer(order.id, self._clock.now(), order.pending_answer):
            # The factory's answer was stored as the wait ended: that is the customer's
            # answer (a made pizza must not be answered "pending", see placement.py).
            return await self._stored_meanwhile(order, wait, ticket)
        ticket.record(Outcome.TIMEOUT)
        limit = self._settings.factory_timeout_s
        reason = f"no answer within FACTORY_TIMEOUT_S ({limit:g} s)"
        self._ops.observe_timeout(reason)
        self._metrics.creation_failure(Outcome.TIMEOUT)
        return Attempt(OrderStatus.PENDING, Outcome.TIMEOUT, reason=reason)

    async def _stored_meanwhile(self, order: PlacedOrder, wait: _Wait, ticket: Ticket) -> Attempt:
        _record(ticket, order, wait.outcome)
        stored = await self._store.find_order(order_id=order.id)
        if stored is None:
            return Attempt(OrderStatus.FAILED, wait.outcome, reason="order no longer exists")
        failure = OrderFailure(stored.failure) if stored.failure else None
        status, reason = OrderStatus(stored.status), stored.last_reason or ""
        return Attempt(status, wait.outcome, jwt=stored.jwt, reason=reason, failure=failure)

    async def _call_and_record(
        self, order: PlacedOrder, diner: DinerInfo, info: OrderInfo, wait: _Wait
    ) -> Attempt:
        self.in_flight.start_call(order.id)
        try:
            attributes: dict[str, str | int] = {
                "pizza.order.id": order.id,
                "pizza.order.items": len(info.items),
                "pizza.breaker.state": str(self._breaker.state),
            }
            with current_span(self._tracer, "pizza.create", attributes=attributes) as span:
                try:
                    result = await self._client.create_pizza(
                        diner, info, timeout_s=self._settings.factory_call_max_s
                    )
                except asyncio.CancelledError:
                    # Stopped by a shutdown (`shutdown`): the order stays pending and is
                    # tried again; the span says why it has no answer.
                    span.set_attribute("pizza.outcome", INTERRUPTED)
                    raise
                wait.outcome = result.outcome
                span.set_attribute("pizza.outcome", str(result.outcome))
                self._metrics.creation(result.outcome, result.duration_s)
                span.set_attribute("pizza.late_answer", wait.over)
                if not result.has_pizza:
                    # The outcome only: the factory's own text may carry a remediation link.
                    span.set_status(Status(StatusCode.ERROR, str(result.outcome)))
                # The pizza first: what the factory made is the customer's whatever the
                # bookkeeping after it (link, incident, webhook) comes to.
                try:
                    attempt = await self._record(order, info, result, counted=not wait.over)
                except StoreError:
                    # Not stored: the facts (outcome counts, the link) are kept all the same.
                    await self._observe(order.id, result, counted=not wait.over)
                    if result.has_pizza:
                        self._record_later(order, info, result)
                    raise
                if wait.over and attempt.status == OrderStatus.FULFILLED:
                    # The customer was told "pending": the pizza came after all. Said at
                    # once, as the order is stored fulfilled, not after the bookkeeping.
                    span.add_event(
                        FULFILLED, {"pizza.order.id": order.id, "pizza.late_answer": True}
                    )
                await self._observe(order.id, result, counted=not wait.over)
                return attempt
        finally:
            self.in_flight.end_call(order.id)

    def _record_later(self, order: PlacedOrder, info: OrderInfo, result: FactoryResult) -> None:
        """The pizza is made but the database is away: keep it and store it once the
        database is back, instead of letting the lease run out and the factory make the
        order a second time. Meanwhile the order stays leased here (renewed)."""
        self.in_flight.start_recording(order.id)
        task = asyncio.create_task(self._keep_recording(order, info, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_recording(
        self, order: PlacedOrder, info: OrderInfo, result: FactoryResult
    ) -> Attempt:
        try:
            while True:
                await asyncio.sleep(RECORD_RETRY_S)
                with contextlib.suppress(StoreError):
                    attempt = await self._record(order, info, result, counted=False)
                    log.info(
                        "order %s: its pizza, made while the database was away, is stored", order.id
                    )
                    return attempt
        finally:
            self.in_flight.end_recording(order.id)

    async def _observe(self, order_id: int, result: FactoryResult, *, counted: bool) -> None:
        """Operators' facts about an answer already stored: their failure is logged, with
        its traceback, and never reaches the order (re-raising would make it "not
        recorded" and a second pizza after the claim ran out)."""
        try:
            await self._ops.observe(result, counted=counted)
        except Exception:
            log.exception("order %s: the answer is stored; recording its facts failed", order_id)

    async def _record(
        self, order: PlacedOrder, info: OrderInfo, result: FactoryResult, *, counted: bool
    ) -> Attempt:
        now = self._clock.now()
        if result.has_pizza:
            assert result.jwt is not None
            # Conditional on `pending`: if two calls ever race, one pizza is recorded.
            if await self._store.fulfil(order.id, result.jwt, now):
                self._metrics.sold(len(info.items), float(order.total))
                self._metrics.order_made((now - order.date).total_seconds())
                return Attempt(OrderStatus.FULFILLED, result.outcome, jwt=result.jwt)
            stored = await self._store.order_state(order.id)
            if stored is None:
                return Attempt(OrderStatus.FAILED, result.outcome, reason="order no longer exists")
            return Attempt(OrderStatus(stored[0]), result.outcome, jwt=stored[1])
        if counted:
            self._metrics.creation_failure(result.outcome)
        if result.outcome is Outcome.REJECTED:
            reason = f"{REJECTED_REASON}: {result.reason}"[:300]
            log.error("factory rejected order %s: %s", order.id, result.reason)
            await self._store.fail(order.id, reason, now)
            return Attempt(
                OrderStatus.FAILED, result.outcome, reason=reason, failure=OrderFailure.REJECTED
            )
        log.warning("factory did not make order %s: %s", order.id, result.reason)
        next_at = self.next_attempt(now, order.attempts + 1)
        reason = result.reason[:300]
        await self._store.retry_later(order.id, reason, next_at, now, order.pending_answer)
        self.on_pending(next_at)
        return Attempt(OrderStatus.PENDING, result.outcome, reason=result.reason)

    async def _call_failed(
        self, order: PlacedOrder, ticket: Ticket, wait: _Wait, exc: Exception
    ) -> Attempt:
        """Hand the order back now, retried after its backoff, instead of leaving it
        claimed for FACTORY_CALL_MAX_S."""
        _record(ticket, order, wait.outcome)
        log.error("factory call for order %s failed", order.id, exc_info=exc)
        now = self._clock.now()
        next_at = self.next_attempt(now, order.attempts + 1)
        answer = order.pending_answer
        await self._store.retry_later(order.id, CALL_FAILED_REASON, next_at, now, answer)
        self.on_pending(next_at)
        return Attempt(OrderStatus.PENDING, wait.outcome, reason=CALL_FAILED_REASON)

    async def _release(self, order: PlacedOrder, *, reason: str) -> None:
        """Hand a claimed order back without counting an attempt: no call was made."""
        now = self._clock.now()
        await self._store.release(order.id, reason, now, order.pending_answer)
        self.on_pending(now)

    async def shutdown(self) -> None:
        """Stop in-flight calls and the attempts of orders answered 202 at once
        (`attempt_later`); their orders stay pending and are picked up again.

        Their claims are released, so the next start (or another replica) retries them
        at once instead of waiting out the lease. Only a killed process, or a database that
        refuses the release (said in a warning), leaves a lease.
        """
        interrupted = sorted(self.in_flight.interrupted_by_shutdown())
        tasks = [*self._later, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if interrupted:
                await self._store.unclaim(interrupted)
        except StoreError as error:
            log.warning(
                "shutdown: orders %s keep their leases till they lapse: %s", interrupted, error
            )


def _record(ticket: Ticket, order: PlacedOrder, outcome: Outcome | None) -> None:
    """The factory's answer to the breaker: every outcome counts, but a slow pizza of a
    drain round grown past its start (``order.slow_counts`` false) counts as nothing, on
    every path the answer takes (see app/orders/drain.py)."""
    if outcome is not None and (order.slow_counts or outcome is not Outcome.SLOW):
        ticket.record(outcome)
