"""The retry worker: pending orders are made as soon as the factory lets us (resilience.md §4)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from opentelemetry.trace import Tracer
from sqlalchemy import func, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.models import DinerOrder, OrderItem, OrderStatus, User, utcnow
from app.orders.workflow import OrderWorkflow
from app.supervisor import Heartbeat
from clients.breaker import BreakerState, FactoryBreaker
from clients.schemas import DinerInfo
from telemetry.metrics import PizzaMetrics

log = logging.getLogger("app.orders.worker")


class RetryWorker:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        workflow: OrderWorkflow,
        breaker: FactoryBreaker,
        metrics: PizzaMetrics,
        tracer: Tracer,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._workflow = workflow
        self._breaker = breaker
        self._metrics = metrics
        self._tracer = tracer
        self._wake = asyncio.Event()
        # Beaten after each completed cycle: a dead or stuck worker shows as its age.
        self.heartbeat = Heartbeat()

    def wake(self) -> None:
        """Run the next cycle now (remediation succeeded, an operator acted)."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Cycles until cancelled; anything unexpected propagates to the supervisor."""
        while True:
            retried = 0
            try:
                retried = await self.run_once()
            except (SQLAlchemyError, OSError) as exc:
                # The database went away or was busy for a moment: the orders are safe in
                # it, and the next cycle tries again. Not a completed cycle: no beat.
                log.error("retry worker cycle failed: %s", exc)
            else:
                self.heartbeat.beat()
            if retried >= self._settings.worker_batch:
                # A full batch: more are likely due (a backlog after an outage). Go on at
                # once; the pause comes back as soon as a batch is not full.
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.worker_poll_s)
            self._wake.clear()

    async def run_once(self) -> int:
        """One cycle: give up on orders past their age, update gauges, retry what is due."""
        await self._expire()
        await self._measure()
        if self._workflow.refusal() is not None:
            # No call would be let through (breaker open, our key refused): claiming
            # orders now would only hand them back. HALF_OPEN means a probe is due.
            return 0
        state = self._breaker.state
        # While not closed, one order at a time: it is the half-open probe.
        limit = (
            self._settings.worker_batch
            if state in (BreakerState.CLOSED, BreakerState.FORCED_CLOSED)
            else 1
        )
        claimed = await self._claim(limit)
        if not claimed:
            return 0
        await asyncio.gather(*(self._retry(*loaded) for loaded in await self._load(claimed)))
        return len(claimed)

    async def _load(self, ids: list[int]) -> list[tuple[DinerOrder, DinerInfo, list[OrderItem]]]:
        """The claimed orders still pending, with their diners and items: two statements."""
        async with self._sessions() as session:
            rows = (
                await session.exec(
                    select(DinerOrder, col(User.name), col(User.email))
                    .outerjoin(User, col(User.id) == col(DinerOrder.diner_id))
                    .where(
                        col(DinerOrder.id).in_(ids),
                        col(DinerOrder.status) == OrderStatus.PENDING,
                    )
                    .order_by(col(DinerOrder.id))
                )
            ).all()
            if not rows:
                return []
            items: dict[int, list[OrderItem]] = {order.id: [] for order, _, _ in rows if order.id}
            for item in await session.exec(
                select(OrderItem)
                .where(col(OrderItem.order_id).in_(items))
                .order_by(col(OrderItem.id))
            ):
                items[item.order_id].append(item)
        return [
            (
                order,
                DinerInfo(id=order.diner_id, name=name or "", email=email or ""),
                items[order.id],
            )
            for order, name, email in rows
            if order.id
        ]

    async def _retry(self, order: DinerOrder, diner: DinerInfo, items: list[OrderItem]) -> None:
        # A span per retry, so the attempt's spans and events (a breaker change, a link
        # found) have a trace of their own outside any request.
        with self._tracer.start_as_current_span("pizza.retry") as span:
            span.set_attribute("pizza.order.id", order.id or 0)
            span.set_attribute("pizza.order.attempts", order.attempts)
            await self._workflow.attempt(order, diner, items)

    async def _claim(self, limit: int) -> list[int]:
        """Lease due orders to this process, oldest first; no lock outlives this transaction."""
        now = utcnow()
        due = (
            select(DinerOrder.id)
            .where(
                col(DinerOrder.status) == OrderStatus.PENDING,
                col(DinerOrder.next_attempt_at) <= now,
                or_(col(DinerOrder.claimed_until).is_(None), col(DinerOrder.claimed_until) < now),
            )
            .order_by(col(DinerOrder.id))
            .limit(limit)
        )
        async with self._sessions() as session:
            if self._settings.is_sqlite:
                # One statement: SQLite's write lock makes the claim atomic across processes.
                result = await session.execute(
                    update(DinerOrder)
                    .where(col(DinerOrder.id).in_(due.scalar_subquery()))
                    .values(claimed_until=self._workflow.claim_until(now))
                    .returning(col(DinerOrder.id))
                )
                ids = [row[0] for row in result]
            else:
                ids = list(await session.exec(due.with_for_update(skip_locked=True)))
                ids = [i for i in ids if i is not None]
                if ids:
                    await session.execute(
                        update(DinerOrder)
                        .where(col(DinerOrder.id).in_(ids))
                        .values(claimed_until=self._workflow.claim_until(now))
                    )
            await session.commit()
        return sorted(i for i in ids if i not in self._workflow.inflight)

    async def _expire(self) -> None:
        now = utcnow()
        cutoff = now - timedelta(seconds=self._settings.order_max_age_s)
        async with self._sessions() as session:
            result = await session.execute(
                update(DinerOrder)
                .where(
                    col(DinerOrder.status) == OrderStatus.PENDING,
                    col(DinerOrder.date) < cutoff,
                    or_(
                        col(DinerOrder.claimed_until).is_(None), col(DinerOrder.claimed_until) < now
                    ),
                )
                .values(
                    status=OrderStatus.FAILED,
                    finished_at=now,
                    last_reason=f"not made within ORDER_MAX_AGE_S "
                    f"({self._settings.order_max_age_s:g} s); not charged",
                )
            )
            await session.commit()
        expired = int(result.rowcount)  # type: ignore[attr-defined]
        if expired:
            log.error("%d pending orders failed: older than ORDER_MAX_AGE_S", expired)
            for _ in range(expired):
                self._metrics.creation_failure("expired")

    async def _measure(self) -> None:
        async with self._sessions() as session:
            count, oldest = (
                await session.exec(
                    select(func.count(), func.min(DinerOrder.date)).where(
                        DinerOrder.status == OrderStatus.PENDING
                    )
                )
            ).one()
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        self._metrics.set_pending(int(count), max(age, 0.0))
