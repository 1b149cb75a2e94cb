"""A clock for tests: it stands still until the test moves it (clients/clock.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clients.clock import Clock


class ManualClock(Clock):
    """A clock that stands still until it is moved: both readings move together."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._monotonic = 1_000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds
