"""Chaos the factory reports in its vendor record (docs/resilience.md#chaos-the-factory-reports):
read off the order path, shown at /factory/status, told once per distinct chaos and phase.

The real factory keeps a fixed chaos in the record (`{"type": "none", ..., "fixDate"}`)
until its admin removes it: only a chaos of a real type, without a fix, is in force.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import EventKind, FactoryEvent
from clients.clock import Clock
from telemetry.metrics import CHAOS_TYPES, PizzaMetrics

log = logging.getLogger("app.factory")

# A failed or timed-out call reads the vendor record at once, then at most this often
# while failures go on (the throttle's first late answer takes 32 s, the record says so at
# once: docs/resilience.md#chaos-the-factory-reports); a
# read asked for sooner is made when this has passed.
CHAOS_READ_MIN_S = 5.0
CHAOS_PHASES = ("scheduled", "running")
CHAOS_KINDS = (EventKind.CHAOS_REPORTED, EventKind.CHAOS_CLEARED)


def in_force(chaos: dict[str, Any] | None) -> dict[str, Any] | None:
    """The vendor record's chaos if it is one: a real chaos type and no fix yet.

    After a fix the real factory keeps `{"type": "none", ..., "fixDate"}`: that, a type
    this service does not know as a chaos, or any chaos with a `fixDate`, is no chaos.
    """
    if chaos is None or chaos.get("type") not in CHAOS_TYPES or chaos.get("fixDate"):
        return None
    return chaos


def chaos_phase(chaos: dict[str, Any], now: datetime) -> str:
    """`scheduled` while the reported chaos' `startDate` is ahead, else `running`."""
    start = chaos.get("startDate")
    try:
        at = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    except ValueError:
        return "running"  # no readable start: the factory says it is there, take it as now
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return "scheduled" if at > now else "running"


class ChaosWatch:
    """What the vendor record last said about chaos, and when it was last read."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        metrics: PizzaMetrics,
        clock: Clock,
        read: Callable[[], None],
        event: Callable[[EventKind, str], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._clock = clock
        self._read = read  # starts a read of the vendor record, off the order path
        self._event = event
        self._spawn = spawn  # runs a task that shutdown cancels
        # The chaos the vendor record reports (scheduled or running), as last read.
        self.scheduled: dict[str, Any] | None = None
        self.seen: str | None = None  # the detail of the last chaos_reported event
        self._read_at: float | None = None
        self._owed = False  # a read was asked for inside the window and not made since
        self._waiting = False  # a task waits to make the owed read

    def read_soon(self, *, now: bool = False) -> None:
        """Read the vendor record off the order path, at most every CHAOS_READ_MIN_S; a
        read asked for sooner is made as soon as the window allows, never dropped."""
        at = self._clock.monotonic()
        if now or self._read_at is None or at - self._read_at >= CHAOS_READ_MIN_S:
            self._start_read(at)
            return
        self._owed = True
        if not self._waiting:
            self._waiting = True
            self._spawn(self._read_when_allowed())

    def _start_read(self, at: float) -> None:
        self._read_at, self._owed = at, False
        self._read()

    async def _read_when_allowed(self) -> None:
        # A read made meanwhile (another failure after the window) pays what is owed.
        try:
            while self._owed and self._read_at is not None:
                wait = self._read_at + CHAOS_READ_MIN_S - self._clock.monotonic()
                if wait <= 0:
                    self._start_read(self._clock.monotonic())
                    return
                await self._clock.sleep(wait)
        finally:
            self._waiting = False

    def shown(self) -> dict[str, Any] | None:
        """The reported chaos for /factory/status: type, start, scheduled or running."""
        chaos = self.scheduled
        if chaos is None:
            return None
        return {
            "type": chaos.get("type"),
            "startDate": chaos.get("startDate"),
            "phase": chaos_phase(chaos, self._clock.now()),
        }

    async def news(self, record: dict[str, Any] | None) -> None:
        """The metric always; a timeline event once per distinct chaos and phase.

        `record` is the vendor record's chaos as read: a fixed or removed one is none.
        """
        self.scheduled = chaos = in_force(record)
        if chaos is None:
            self._metrics.set_chaos(None, None)
            if self.seen is not None:
                self.seen = None
                log.warning("the factory no longer reports chaos")
                await self._event(EventKind.CHAOS_CLEARED, "the factory no longer reports chaos")
            return
        kind, start = str(chaos.get("type")), str(chaos.get("startDate"))
        phase = chaos_phase(chaos, self._clock.now())
        self._metrics.set_chaos(kind, phase)
        when = "scheduled for" if phase == "scheduled" else "running since"
        detail = f"{phase}: the factory reports chaos {kind} {when} {start}"
        if detail == self.seen:
            return
        self.seen = detail
        if await self._told_before(detail):
            return  # by another replica, or before a restart
        log.error("factory chaos reported: %s", detail)
        trace.get_current_span().add_event(
            "factory.chaos.reported", {"type": kind, "phase": phase, "start": start}
        )
        await self._event(EventKind.CHAOS_REPORTED, detail)

    async def _told_before(self, detail: str) -> bool:
        async with self._sessions() as session:
            latest = (
                await session.exec(
                    select(FactoryEvent)
                    .where(col(FactoryEvent.kind).in_(CHAOS_KINDS))
                    .order_by(col(FactoryEvent.id).desc())
                )
            ).first()
        return (
            latest is not None
            and latest.kind == EventKind.CHAOS_REPORTED
            and latest.detail == detail
        )
