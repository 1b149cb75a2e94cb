"""A clock for tests: it stands still until the test moves it (clients/clock.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from clients.clock import Clock


class ManualClock(Clock):
    """A clock that stands still until it is moved: both readings move together, and a
    `sleep` ends when the clock is moved past its end (never by itself)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._monotonic = 1_000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._monotonic + seconds, woken))
        await woken

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds
        still = []
        for until, woken in self._sleepers:
            if woken.done():
                continue  # cancelled meanwhile
            if until <= self._monotonic:
                woken.set_result(None)
            else:
                still.append((until, woken))
        self._sleepers = still
