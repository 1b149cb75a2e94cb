"""The one backoff of the service: order retries, task restarts, webhook tries, remediation."""

from __future__ import annotations

from collections.abc import Callable


def backoff_s(attempts: int, *, base_s: float, max_s: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with full jitter on the upper half (never zero, never above max)."""
    ceiling = min(max_s, base_s * 2.0 ** max(attempts - 1, 0))
    return ceiling * (0.5 + rand() / 2)


def no_jitter() -> float:
    """A `rand` for delays that must be exact (a documented schedule): the full ceiling."""
    return 1.0
