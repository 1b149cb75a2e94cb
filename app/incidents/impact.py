"""An incident's impact: what became of the orders answered pending while it lasted.

The impact is computed from the orders answered pending between the incident's start (its
first failed order, or its opening if no order failed before) and its close (or now):
what became of them since, whenever that was. The recorder's pages and the incident
view both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, literal
from sqlalchemy import select as sa_select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import DinerOrder, Incident, OrderStatus
from app.times import iso


def decimal_text(value: Decimal) -> str:
    """Exact, without the storage's trailing zeros: `0.019`, not `0.01900000`."""
    return format(value.normalize(), "f") if value else "0"


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class Impact:
    as_of: datetime
    orders_affected: int  # answered pending (503, or 202) during the incident
    pending: int  # of those, still waiting
    failed: int  # given up (never charged)
    fulfilled_late: int  # made later
    customers_affected: int
    orders_made_at_once: int  # orders the factory made at once meanwhile
    revenue_delayed: Decimal  # fulfilled late or still pending
    revenue_lost: Decimal  # failed: never charged
    longest_wait_s: float  # placed -> made or given up (still pending: until as_of)
    longest_wait_order_id: int | None
    all_made_at: datetime | None  # the last affected order fulfilled, once none is pending

    def to_json(self) -> dict[str, Any]:
        return {
            "asOf": iso(self.as_of),
            "ordersAffected": self.orders_affected,
            "pending": self.pending,
            "failed": self.failed,
            "fulfilledLate": self.fulfilled_late,
            "customersAffected": self.customers_affected,
            "ordersMadeAtOnce": self.orders_made_at_once,
            "revenueDelayed": decimal_text(self.revenue_delayed),
            "revenueLost": decimal_text(self.revenue_lost),
            "longestWaitS": round(self.longest_wait_s, 3),
            "longestWaitOrderId": self.longest_wait_order_id,
            "allMadeAt": iso(self.all_made_at),
        }


async def impact_of(session: AsyncSession, incident: Incident, now: datetime) -> Impact:
    assert incident.id is not None
    return (await impacts_of(session, [incident], now))[incident.id]


async def impacts_of(
    session: AsyncSession, incidents: list[Incident], now: datetime
) -> dict[int, Impact]:
    """The impact of each incident, in two statements however many incidents there are."""
    ids = [incident.id for incident in incidents if incident.id is not None]
    if not ids:
        return {}
    # Each incident's window, in SQL: started_at to closed_at, or to `now` while open.
    start = col(Incident.started_at)
    as_of = literal(now, type_=Incident.__table__.c.opened_at.type)  # type: ignore[attr-defined]
    end = func.coalesce(col(Incident.closed_at), as_of)
    # Plain SQLAlchemy rows, read on the session's connection (SQLModel's session reads
    # its models; these are columns of two tables).
    connection = await session.connection()
    rows = (
        await connection.execute(
            sa_select(
                col(Incident.id),
                col(DinerOrder.id),
                col(DinerOrder.diner_id),
                col(DinerOrder.status),
                col(DinerOrder.total),
                col(DinerOrder.date),
                col(DinerOrder.finished_at),
            )
            .join(
                DinerOrder,
                and_(col(DinerOrder.deferred_at) >= start, col(DinerOrder.deferred_at) <= end),
            )
            .where(col(Incident.id).in_(ids))
            .order_by(col(DinerOrder.id))
        )
    ).all()
    at_once = (
        await connection.execute(
            sa_select(col(Incident.id), func.count(col(DinerOrder.id)))
            .join(
                DinerOrder,
                and_(
                    col(DinerOrder.deferred_at).is_(None),
                    col(DinerOrder.status) == OrderStatus.FULFILLED,
                    col(DinerOrder.finished_at) >= start,
                    col(DinerOrder.finished_at) <= end,
                ),
            )
            .where(col(Incident.id).in_(ids))
            .group_by(col(Incident.id))
        )
    ).all()
    affected: dict[int, list[Any]] = {incident_id: [] for incident_id in ids}
    for incident_id, *order in rows:
        affected[incident_id].append(order)
    made_at_once = {incident_id: int(count) for incident_id, count in at_once}
    return {
        incident_id: _impact(orders, made_at_once.get(incident_id, 0), now)
        for incident_id, orders in affected.items()
    }


def _impact(rows: list[Any], at_once: int, now: datetime) -> Impact:
    count = {status: 0 for status in OrderStatus}
    delayed, lost = Decimal(0), Decimal(0)
    longest, longest_id = 0.0, None
    last_made: datetime | None = None
    for order_id, _diner, status, total, placed, finished in rows:
        count[OrderStatus(status)] += 1
        if status == OrderStatus.FAILED:
            lost += total
        else:
            delayed += total
        if status == OrderStatus.FULFILLED and finished is not None:
            last_made = finished if last_made is None else max(last_made, finished)
        wait = seconds(placed, finished or now) or 0.0
        if longest_id is None or wait > longest:
            longest, longest_id = wait, order_id
    pending = count[OrderStatus.PENDING]
    return Impact(
        as_of=now,
        orders_affected=len(rows),
        pending=pending,
        failed=count[OrderStatus.FAILED],
        fulfilled_late=count[OrderStatus.FULFILLED],
        customers_affected=len({row[1] for row in rows}),
        orders_made_at_once=int(at_once),
        revenue_delayed=delayed,
        revenue_lost=lost,
        longest_wait_s=longest,
        longest_wait_order_id=longest_id,
        all_made_at=last_made if pending == 0 else None,
    )
