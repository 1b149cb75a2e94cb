"""Failing pending orders whose store, franchise or diner is deleted.

They can no longer be made: they are failed (never charged) in the same transaction as
the deletion, at the time the caller read from the service's clock (clients/clock.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import DinerOrder, OrderFailure, OrderStatus


async def fail_pending(
    session: AsyncSession, which: ColumnElement[bool], reason: str, now: datetime
) -> int:
    """Mark matching pending orders failed at ``now`` (never charged); the caller commits."""
    result = await session.exec(
        update(DinerOrder)
        .where(which, col(DinerOrder.status) == OrderStatus.PENDING)
        .values(
            status=OrderStatus.FAILED,
            failure=OrderFailure.CANCELLED,
            last_reason=reason,
            finished_at=now,
            claimed_until=None,
        )
    )
    return int(result.rowcount)
