"""Failing pending orders whose store, franchise or diner is deleted (resilience.md §4)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import DinerOrder, OrderFailure, OrderStatus, utcnow


async def fail_pending(session: AsyncSession, which: ColumnElement[bool], reason: str) -> int:
    """Mark matching pending orders failed (never charged); the caller commits."""
    result = await session.exec(
        update(DinerOrder)
        .where(which, col(DinerOrder.status) == OrderStatus.PENDING)
        .values(
            status=OrderStatus.FAILED,
            failure=OrderFailure.CANCELLED,
            last_reason=reason,
            finished_at=utcnow(),
            claimed_until=None,
        )
    )
    return int(result.rowcount)
