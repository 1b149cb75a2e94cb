"""An incident as people read it: its timeline and its impact, from the database.

The timeline is the factory events the recorder tagged with the incident (breaker
transitions, links detected, remediation attempts, operator actions, pages sent, the
incident opening and closing) plus what the orders table says: the first failed order
(the first order answered pending, `deferred_at`, with the status its customer got) and
the first fulfilled order after it.

The impact (what became of the orders the incident delayed) is computed in impact.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.incidents.impact import Impact, impact_of, seconds
from app.models import (
    DinerOrder,
    FactoryEvent,
    Incident,
    OrderStatus,
    RemediationAttempt,
    RemediationLink,
    User,
)
from app.times import iso

# Timeline kinds that come from the orders table rather than from a factory event.
FIRST_FAILED = "first_failed_order"
FIRST_FULFILLED = "first_fulfilled_order"
ALL_MADE = "affected_orders_made"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str
    detail: str
    by: str | None = None  # a person who acted ("Ada Admin (user 3)"), if one did
    order_id: int | None = None
    breaker_to: str | None = None  # a breaker event's new state

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "kind": self.kind,
            "detail": self.detail,
            "by": self.by,
            "orderId": self.order_id,
        }


@dataclass(frozen=True, slots=True)
class AttemptEntry:
    """One remediation attempt during the incident, and the factory's answer."""

    at: datetime
    mode: str  # auto or manual
    by: str  # "the service" or the person
    link: str  # redacted
    status_code: int | None
    answer: str
    resolved: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "mode": self.mode,
            "by": self.by,
            "link": self.link,
            "statusCode": self.status_code,
            "answer": self.answer,
            "resolved": self.resolved,
        }


@dataclass(frozen=True, slots=True)
class IncidentView:
    incident: Incident
    timeline: list[TimelineEntry]
    impact: Impact
    attempts: list[AttemptEntry]

    @property
    def id(self) -> int:
        assert self.incident.id is not None
        return self.incident.id

    @property
    def is_open(self) -> bool:
        return self.incident.closed_at is None

    def first(self, kind: str) -> TimelineEntry | None:
        return next((e for e in self.timeline if e.kind == kind), None)

    def entries(self, kind: str) -> list[TimelineEntry]:
        return [e for e in self.timeline if e.kind == kind]

    @property
    def time_to_detect_s(self) -> float:
        """First customer impact (or the first sign) -> the service knew and paged."""
        return seconds(self.incident.started_at, self.incident.opened_at) or 0.0

    @property
    def time_to_mitigate_s(self) -> float | None:
        """First customer impact -> the incident closed (None while open)."""
        return seconds(self.incident.started_at, self.incident.closed_at)

    def to_json(self, *, timeline: bool = True) -> dict[str, Any]:
        incident = self.incident
        body: dict[str, Any] = {
            "id": self.id,
            "status": "open" if self.is_open else "closed",
            "trigger": incident.trigger,
            "fault": incident.fault,
            "startedAt": iso(incident.started_at),
            "openedAt": iso(incident.opened_at),
            "closedAt": iso(incident.closed_at),
            "reopened": incident.reopened,
            "timeToDetectS": round(self.time_to_detect_s, 3),
            "timeToMitigateS": None
            if self.time_to_mitigate_s is None
            else round(self.time_to_mitigate_s, 3),
            "impact": self.impact.to_json(),
        }
        if timeline:
            body["timeline"] = [entry.to_json() for entry in self.timeline]
            body["remediationAttempts"] = [attempt.to_json() for attempt in self.attempts]
        return body


def answered(status: int | None) -> str:
    """What a customer told "pending" was answered, as recorded when it was decided
    (`deferred_status`; orders stored before it was recorded say "answered pending")."""
    return f"answered {status}" if status is not None else "answered pending"


def _window(incident: Incident, now: datetime) -> tuple[datetime, datetime]:
    return incident.started_at, incident.closed_at or now


async def _order_milestones(
    session: AsyncSession, incident: Incident, impact: Impact, now: datetime
) -> list[TimelineEntry]:
    start, end = _window(incident, now)
    entries = []
    first_failed = (
        await session.exec(
            select(DinerOrder)
            .where(col(DinerOrder.deferred_at) >= start, col(DinerOrder.deferred_at) <= end)
            .order_by(col(DinerOrder.deferred_at), col(DinerOrder.id))
            .limit(1)
        )
    ).first()
    if first_failed is not None and first_failed.deferred_at is not None:
        entries.append(
            TimelineEntry(
                first_failed.deferred_at,
                FIRST_FAILED,
                f"order {first_failed.id} {answered(first_failed.deferred_status)} (pending: "
                "the factory did not make it at once)",
                order_id=first_failed.id,
            )
        )
    first_made = (
        await session.exec(
            select(DinerOrder)
            .where(
                col(DinerOrder.status) == OrderStatus.FULFILLED,
                col(DinerOrder.finished_at) >= start,
            )
            .order_by(col(DinerOrder.finished_at), col(DinerOrder.id))
            .limit(1)
        )
    ).first()
    if first_made is not None and first_made.finished_at is not None:
        late = " (one of the affected orders)" if first_made.deferred_at is not None else ""
        entries.append(
            TimelineEntry(
                first_made.finished_at,
                FIRST_FULFILLED,
                f"order {first_made.id}{late}",
                order_id=first_made.id,
            )
        )
    if impact.all_made_at is not None:
        entries.append(
            TimelineEntry(
                impact.all_made_at,
                ALL_MADE,
                f"the last of the {impact.orders_affected} affected orders was fulfilled",
            )
        )
    return entries


async def people_named(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    """Each user id as people read it: "Ada Admin (user 3)"."""
    if not ids:
        return {}
    users = await session.exec(select(User).where(col(User.id).in_(ids)))
    return {u.id: f"{u.name} (user {u.id})" for u in users if u.id is not None}


async def load_view(session: AsyncSession, incident: Incident, now: datetime) -> IncidentView:
    assert incident.id is not None
    events = list(
        await session.exec(
            select(FactoryEvent)
            .where(FactoryEvent.incident_id == incident.id)
            .order_by(col(FactoryEvent.at), col(FactoryEvent.id))
        )
    )
    start, end = _window(incident, now)
    attempts = list(
        (
            await session.exec(
                select(RemediationAttempt, RemediationLink)
                .join(RemediationLink, col(RemediationLink.id) == RemediationAttempt.link_id)
                .where(col(RemediationAttempt.at) >= start, col(RemediationAttempt.at) <= end)
                .order_by(col(RemediationAttempt.at), col(RemediationAttempt.id))
            )
        ).all()
    )
    user_ids = {e.user_id for e in events} | {a.by_user_id for a, _ in attempts}
    people = await people_named(session, {i for i in user_ids if i is not None})

    def who(user_id: int | None) -> str | None:
        return people.get(user_id, f"user {user_id}") if user_id is not None else None

    impact = await impact_of(session, incident, now)
    timeline = [
        TimelineEntry(e.at, e.kind, e.detail, by=who(e.user_id), breaker_to=e.breaker_to)
        for e in events
    ]
    timeline += await _order_milestones(session, incident, impact, now)
    # Stable: at one instant the recorded order of events is kept.
    timeline.sort(key=lambda entry: entry.at)
    return IncidentView(
        incident=incident,
        timeline=timeline,
        impact=impact,
        attempts=[
            AttemptEntry(
                at=a.at,
                mode=a.mode,
                by=who(a.by_user_id) or "the service",
                link=link.redacted,
                status_code=a.status_code,
                answer=a.message,
                resolved=a.resolved,
            )
            for a, link in attempts
        ],
    )


async def get_incident(session: AsyncSession, incident_id: int | None) -> Incident | None:
    """One incident by id, or the latest when `incident_id` is None."""
    if incident_id is not None:
        return await session.get(Incident, incident_id)
    return (await session.exec(select(Incident).order_by(col(Incident.id).desc()).limit(1))).first()


async def list_incidents(session: AsyncSession, limit: int) -> list[Incident]:
    return list(await session.exec(select(Incident).order_by(col(Incident.id).desc()).limit(limit)))


async def earlier_alike(session: AsyncSession, incident: Incident) -> list[Incident]:
    """Earlier incidents with the same trigger: the Prevention section's question."""
    return list(
        await session.exec(
            select(Incident)
            .where(col(Incident.id) < incident.id, Incident.trigger == incident.trigger)
            .order_by(col(Incident.id).desc())
            .limit(10)
        )
    )
