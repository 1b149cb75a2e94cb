"""The recorder's reads and writes of the incidents table and the events it tags."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import DinerOrder, EventKind, FactoryEvent, Incident, OrderStatus

OPEN = 1  # Incident.open_slot while open: unique, so at most one incident is open


def note(
    incident_id: int, at: datetime, detail: str, *, kind: EventKind = EventKind.INCIDENT
) -> FactoryEvent:
    """A line on the incident's timeline written by the recorder itself."""
    return FactoryEvent(at=at, kind=kind, detail=detail, incident_id=incident_id)


async def tag(session: AsyncSession, event: FactoryEvent, incident_id: int) -> None:
    """Make a stored factory event part of the incident's timeline."""
    await session.exec(
        update(FactoryEvent).where(col(FactoryEvent.id) == event.id).values(incident_id=incident_id)
    )


async def open_incident(session: AsyncSession) -> Incident | None:
    """The open incident, read afresh (another replica may have changed it)."""
    return (
        await session.exec(
            select(Incident)
            .where(Incident.open_slot == OPEN)
            .execution_options(populate_existing=True)
        )
    ).first()


async def latest_incident(session: AsyncSession) -> Incident | None:
    """The newest incident, open or closed, read afresh."""
    return (
        await session.exec(
            select(Incident)
            .order_by(col(Incident.id).desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
    ).first()


async def first_deferral(session: AsyncSession, *, after: datetime | None) -> datetime | None:
    """When this outage first cost a customer: the first order answered pending since the
    factory last made an order at once (and since the previous incident closed)."""
    last_ok = (
        await session.exec(
            select(DinerOrder.id)
            .where(
                col(DinerOrder.status) == OrderStatus.FULFILLED,
                col(DinerOrder.deferred_at).is_(None),
            )
            .order_by(col(DinerOrder.id).desc())
            .limit(1)
        )
    ).first()
    query = select(DinerOrder.deferred_at).where(col(DinerOrder.deferred_at).is_not(None))
    if last_ok is not None:
        query = query.where(col(DinerOrder.id) > last_ok)
    if after is not None:
        query = query.where(col(DinerOrder.deferred_at) > after)
    return (await session.exec(query.order_by(col(DinerOrder.deferred_at)).limit(1))).first()
