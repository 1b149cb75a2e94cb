"""The order workflow: store first, then one guarded factory attempt (resilience.md §1, §4).

The customer path and the retry worker share `attempt()`: it asks the breaker for a
call, runs the factory call in the background for up to FACTORY_CALL_MAX_S, waits for
it at most FACTORY_TIMEOUT_S, and records the answer whenever it comes. A late answer
still fulfils the order and records the link; the breaker has already counted the
timeout and is not fed twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Tracer
from sqlalchemy import func, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.backoff import backoff_s
from app.config import Settings
from app.models import DinerOrder, OrderFailure, OrderItem, OrderStatus, utcnow
from clients.breaker import CallRefused, FactoryBreaker, Ticket
from clients.client import FactoryClient
from clients.schemas import DinerInfo, FactoryResult, ItemInfo, OrderInfo, Outcome

if TYPE_CHECKING:
    from app.remediation import FactoryOps
    from telemetry.metrics import PizzaMetrics

log = logging.getLogger("app.orders")

# How long past FACTORY_CALL_MAX_S a claim outlives its call, so another replica
# never retries an order whose call may still answer.
CLAIM_MARGIN_S = 5.0
BREAKER_OPEN_REASON = "factory circuit open"
REJECTED_REASON = "rejected by factory"
CALL_FAILED_REASON = "the factory call failed on our side; retried"


@dataclass(slots=True)
class _Wait:
    """Shared by an attempt and its call: did the customer's wait end first, and what
    did the factory answer (known before the answer is stored)?"""

    over: bool = False
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to, as the customer sees it."""

    status: OrderStatus
    outcome: Outcome | None
    jwt: str | None = None
    reason: str = ""


def _deferred(now: datetime) -> Any:
    """`deferred_at` keeps the first time an order was answered 202 (incident impact)."""
    return func.coalesce(col(DinerOrder.deferred_at), now)


class OrderWorkflow:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        client: FactoryClient,
        breaker: FactoryBreaker,
        ops: FactoryOps,
        metrics: PizzaMetrics,
        tracer: Tracer,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._client = client
        self._breaker = breaker
        self._ops = ops
        self._metrics = metrics
        self._tracer = tracer
        self._rand = rand
        # Orders whose factory call is in flight in this process: the worker leaves them be.
        self.inflight: set[int] = set()
        self._tasks: set[asyncio.Task[Attempt]] = set()

    def claim_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._settings.factory_call_max_s + CLAIM_MARGIN_S)

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

    def refused(self, reason: str) -> None:
        """An order kept pending for `refusal()` without calling: counted as `attempt()` would."""
        if reason == BREAKER_OPEN_REASON:
            self._breaker.count_refused()  # pizza.factory.calls.refused

    async def attempt(self, order: DinerOrder, diner: DinerInfo, items: list[OrderItem]) -> Attempt:
        """One guarded factory attempt for a stored, claimed, pending order."""
        assert order.id is not None
        if self._ops.config_fault:
            # Our key was refused: calling again cannot help until it works (the probe says).
            await self._release(order.id, reason=self._ops.config_fault)
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
                task = asyncio.create_task(self._call_and_record(order, diner, info, wait))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                try:
                    result = await asyncio.wait_for(
                        asyncio.shield(task), self._settings.factory_timeout_s
                    )
                except TimeoutError as exc:
                    if task.done() and not task.cancelled() and task.exception() is exc:
                        # Raised by the call task itself, not the customer's wait ending:
                        # no late answer will come to free the order.
                        return await self._call_failed(order, ticket, wait, exc)
                    # The breaker and the failure count see a timeout now; the late
                    # answer, whenever it comes, only feeds the order and the link.
                    wait.over = True
                    ticket.record(Outcome.TIMEOUT)
                    limit = self._settings.factory_timeout_s
                    reason = f"no answer within FACTORY_TIMEOUT_S ({limit:g} s)"
                    self._ops.observe_timeout(reason)
                    await self._defer(order.id)
                    self._metrics.creation_failure(Outcome.TIMEOUT)
                    return Attempt(OrderStatus.PENDING, Outcome.TIMEOUT, reason=reason)
                except (SQLAlchemyError, OSError) as exc:  # after TimeoutError, an OSError
                    # The factory answered but storing the answer failed: the breaker
                    # counts the factory's outcome, not our database; the order is
                    # stored and leased, so the worker tries it again after the lease.
                    if wait.outcome is not None:
                        ticket.record(wait.outcome)
                    log.error(
                        "could not record the factory's answer for order %s: %s", order.id, exc
                    )
                    return Attempt(OrderStatus.PENDING, wait.outcome, reason="not recorded")
                assert result.outcome is not None
                ticket.record(result.outcome)
                return result
        except CallRefused:
            # The breaker's refused listener counts it (pizza.factory.calls.refused).
            await self._release(order.id, reason=BREAKER_OPEN_REASON)
            return Attempt(OrderStatus.PENDING, None, reason=BREAKER_OPEN_REASON)

    async def _call_and_record(
        self, order: DinerOrder, diner: DinerInfo, info: OrderInfo, wait: _Wait
    ) -> Attempt:
        assert order.id is not None
        self.inflight.add(order.id)
        try:
            with self._tracer.start_as_current_span("pizza.create") as span:
                span.set_attribute("pizza.order.id", order.id)
                span.set_attribute("pizza.order.items", len(info.items))
                span.set_attribute("pizza.breaker.state", str(self._breaker.state))
                result = await self._client.create_pizza(
                    diner, info, timeout_s=self._settings.factory_call_max_s
                )
                wait.outcome = result.outcome
                span.set_attribute("pizza.outcome", str(result.outcome))
                self._metrics.creation(result.outcome, result.duration_s)
                span.set_attribute("pizza.late_answer", wait.over)
                # The order first: a verified pizza is stored (and the customer told)
                # whatever happens to the link, incident or webhook bookkeeping after it.
                try:
                    attempt = await self._record(order, info, result, counted=not wait.over)
                except (SQLAlchemyError, OSError):
                    # Not stored: the facts (outcome counts, the link) are kept all the same.
                    await self._observe(order.id, result, counted=not wait.over)
                    raise
                await self._observe(order.id, result, counted=not wait.over)
                return attempt
        finally:
            self.inflight.discard(order.id)

    async def _observe(self, order_id: int, result: FactoryResult, *, counted: bool) -> None:
        """Operators' facts about an answer already stored: their failure is logged, with
        its traceback, and never reaches the order (re-raising would make it "not
        recorded" and a second pizza after the claim ran out)."""
        try:
            await self._ops.observe(result, counted=counted)
        except Exception:
            log.exception("order %s: the answer is stored; recording its facts failed", order_id)

    async def _record(
        self, order: DinerOrder, info: OrderInfo, result: FactoryResult, *, counted: bool
    ) -> Attempt:
        assert order.id is not None
        now = utcnow()
        pending = col(DinerOrder.status) == OrderStatus.PENDING
        async with self._sessions() as session:
            if result.has_pizza:
                # Conditional on `pending`: if two calls ever race, one pizza is recorded.
                done = await session.execute(
                    update(DinerOrder)
                    .where(col(DinerOrder.id) == order.id, pending)
                    .values(
                        status=OrderStatus.FULFILLED,
                        jwt=result.jwt,
                        finished_at=now,
                        claimed_until=None,
                        attempts=DinerOrder.attempts + 1,
                        last_reason=None,
                    )
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
                if done.rowcount == 1:  # type: ignore[attr-defined]
                    self._metrics.sold(len(info.items), float(order.total))
                    return Attempt(OrderStatus.FULFILLED, result.outcome, jwt=result.jwt)
                return await self._current(session, order.id, result.outcome)
            if counted:
                self._metrics.creation_failure(result.outcome)
            if result.outcome is Outcome.REJECTED:
                reason = f"{REJECTED_REASON}: {result.reason}"[:300]
                log.error("factory rejected order %s: %s", order.id, result.reason)
                await session.execute(
                    update(DinerOrder)
                    .where(col(DinerOrder.id) == order.id, pending)
                    .values(
                        status=OrderStatus.FAILED,
                        failure=OrderFailure.REJECTED,
                        finished_at=now,
                        claimed_until=None,
                        last_reason=reason,
                    )
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
                return Attempt(OrderStatus.FAILED, result.outcome, reason=reason)
            log.warning("factory did not make order %s: %s", order.id, result.reason)
            await session.execute(
                update(DinerOrder)
                .where(col(DinerOrder.id) == order.id, pending)
                .values(
                    attempts=DinerOrder.attempts + 1,
                    last_reason=result.reason[:300],
                    next_attempt_at=self.next_attempt(now, order.attempts + 1),
                    claimed_until=None,
                    deferred_at=_deferred(now),
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return Attempt(OrderStatus.PENDING, result.outcome, reason=result.reason)

    async def _current(self, session: AsyncSession, order_id: int, outcome: Outcome) -> Attempt:
        stored = await session.get(DinerOrder, order_id, populate_existing=True)
        if stored is None:
            return Attempt(OrderStatus.FAILED, outcome, reason="order no longer exists")
        return Attempt(OrderStatus(stored.status), outcome, jwt=stored.jwt)

    async def _call_failed(
        self, order: DinerOrder, ticket: Ticket, wait: _Wait, exc: BaseException
    ) -> Attempt:
        """The call task raised a TimeoutError of its own: hand the order back now, retried
        after its backoff, instead of leaving it claimed for FACTORY_CALL_MAX_S."""
        assert order.id is not None
        if wait.outcome is not None:
            ticket.record(wait.outcome)
        log.error("factory call for order %s failed: %s", order.id, type(exc).__name__)
        now = utcnow()
        async with self._sessions() as session:
            await session.execute(
                update(DinerOrder)
                .where(
                    col(DinerOrder.id) == order.id,
                    col(DinerOrder.status) == OrderStatus.PENDING,
                )
                .values(
                    claimed_until=None,
                    attempts=DinerOrder.attempts + 1,
                    last_reason=CALL_FAILED_REASON,
                    next_attempt_at=self.next_attempt(now, order.attempts + 1),
                    deferred_at=_deferred(now),
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return Attempt(OrderStatus.PENDING, wait.outcome, reason=CALL_FAILED_REASON)

    async def _release(self, order_id: int, *, reason: str) -> None:
        """Hand a claimed order back without counting an attempt: no call was made."""
        now = utcnow()
        async with self._sessions() as session:
            await session.execute(
                update(DinerOrder)
                .where(
                    col(DinerOrder.id) == order_id,
                    col(DinerOrder.status) == OrderStatus.PENDING,
                )
                .values(
                    claimed_until=None,
                    last_reason=reason,
                    next_attempt_at=now,
                    deferred_at=_deferred(now),
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    async def _defer(self, order_id: int) -> None:
        """The customer's wait ended (answered 202) while the call runs on."""
        async with self._sessions() as session:
            await session.execute(
                update(DinerOrder)
                .where(col(DinerOrder.id) == order_id)
                .values(deferred_at=_deferred(utcnow()))
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    async def shutdown(self) -> None:
        """Stop in-flight calls; their orders stay pending and are picked up again.

        Their claims are released, so the next start (or another replica) retries them
        at once instead of waiting out the lease. Only a killed process leaves a lease.
        """
        interrupted = list(self.inflight)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if interrupted:
            async with self._sessions() as session:
                await session.execute(
                    update(DinerOrder)
                    .where(
                        col(DinerOrder.id).in_(interrupted),
                        col(DinerOrder.status) == OrderStatus.PENDING,
                    )
                    .values(claimed_until=None)
                )
                await session.commit()


async def items_of(session: AsyncSession, order_id: int) -> list[OrderItem]:
    rows = await session.exec(
        select(OrderItem).where(OrderItem.order_id == order_id).order_by(col(OrderItem.id))
    )
    return list(rows)


def order_total(items: list[OrderItem]) -> Decimal:
    return sum((i.price for i in items), Decimal(0))
