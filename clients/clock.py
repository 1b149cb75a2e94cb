"""The one clock that everything time-dependent reads: tests move it, never sleep.

Like .NET's `TimeProvider` (which Polly's resilience strategies take), one object is
handed to the breaker, the retry worker, login throttling, token expiry, the factory
client, the key cache and the factory operations: the service runs on `SYSTEM_CLOCK`,
and a test moves a manual clock (tests/utils/clock.py) forward instead of patching
each module's `utcnow` or sleeping.

Two readings, because they answer different questions: `now()` is the wall time that is
stored and shown (aware UTC), `monotonic()` measures how long something took and never
jumps when the wall clock is set. `sleep` waits by the same clock, so that a test moves
it past a deadline rather than waiting for it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


class Clock:
    """The system's time."""

    def now(self) -> datetime:
        """Aware UTC, as stored in the database and shown in answers."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward, for durations and deadlines."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait until `monotonic()` has moved on by `seconds` (a manual clock: until moved)."""
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = Clock()
