"""Counting failures and deciding when they trip the breaker: pybreaker's job, used
through its public API only. The breaker's state itself is one value of its own
(clients/breaker/machine.py); pybreaker follows its mode, so that a failure fed to it
while closed trips at ``fail_max`` and a probe's outcome closes or reopens it.

pybreaker learns of a call's result the way it documents: the block under
``CircuitBreaker.calling()`` ends normally (a success: the count is reset, a half-open
breaker closes) or raises (a failure: counted, and the breaker trips at ``fail_max`` or
when the half-open trial fails). So a failure is handed to it as a real exception,
:class:`FactoryCallFailed`, carrying the outcome that made it one, raised inside
``calling()``; nothing writes pybreaker's internals.

The counter lives in :class:`CountingStorage`, our own implementation of pybreaker's
``CircuitBreakerStorage`` interface: pybreaker reads and writes the state, the failure
and success counters and ``opened_at`` through it, and the breaker sets the failure count
to the replicas' shared one (Redis) through :meth:`CountingStorage.set_counter`.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

import pybreaker

from clients.breaker.state import BreakerState
from clients.schemas import Outcome

_FROM_PYBREAKER = {
    pybreaker.STATE_CLOSED: BreakerState.CLOSED,
    pybreaker.STATE_OPEN: BreakerState.OPEN,
    pybreaker.STATE_HALF_OPEN: BreakerState.HALF_OPEN,
}


class FactoryCallFailed(Exception):
    """A factory call whose outcome counts as a failure (``None``: the block raised
    without recording one). Raised inside pybreaker's ``calling()`` to count it."""

    def __init__(self, outcome: Outcome | None) -> None:
        super().__init__(f"factory call failed: {outcome or 'no outcome recorded'}")
        self.outcome = outcome


class CountingStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's state, counters and ``opened_at``, held in this process's memory
    (pybreaker's ``opened_at`` is not read: when a probe is due is the breaker's state)."""

    def __init__(self) -> None:
        super().__init__("factory-breaker")
        self._state = pybreaker.STATE_CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at: datetime | None = None

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state

    def increment_counter(self) -> None:
        self._failures += 1

    def reset_counter(self) -> None:
        self._failures = 0

    def set_counter(self, value: int) -> None:
        """Take the failure count the replicas share (ours is one contribution to it)."""
        self._failures = value

    def increment_success_counter(self) -> None:
        self._successes += 1

    def reset_success_counter(self) -> None:
        self._successes = 0

    @property
    def counter(self) -> int:
        return self._failures

    @property
    def success_counter(self) -> int:
        return self._successes

    @property
    def opened_at(self) -> datetime | None:
        return self._opened_at

    @opened_at.setter
    def opened_at(self, value: datetime | None) -> None:
        self._opened_at = value


class Counter:
    """pybreaker's breaker over our storage: it counts what it is fed and trips the state."""

    def __init__(self, *, fail_max: int, reset_timeout_s: float, name: str) -> None:
        self.storage = CountingStorage()
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            state_storage=self.storage,
            name=name,
            throw_new_error_on_trip=False,  # the failure itself comes back out of calling()
        )

    @property
    def state(self) -> BreakerState:
        """The automatic state pybreaker holds (CLOSED, OPEN or HALF_OPEN)."""
        return _FROM_PYBREAKER[self.storage.state]

    def feed(self, failure: bool, outcome: Outcome | None) -> None:
        """Hand one counted outcome to pybreaker, which counts it and trips the state.

        Only called while pybreaker is closed or half-open (an open breaker admits no
        call of ours), so ``calling()`` always runs the block instead of refusing it.
        """
        with contextlib.suppress(FactoryCallFailed), self._cb.calling():
            if failure:
                raise FactoryCallFailed(outcome)

    @property
    def count(self) -> int:
        """The failures counted since the last reset (the shared count, with Redis)."""
        return self.storage.counter

    def set_count(self, value: int) -> None:
        """Take the failure count the replicas share (ours is one contribution to it)."""
        self.storage.set_counter(value)

    def follow(self, mode: BreakerState) -> None:
        """Take the mode the breaker decided or adopted; landing closed starts a fresh
        count (a close, a remediation, an operator's hand-back: earlier failures no
        longer count)."""
        if mode is BreakerState.CLOSED:
            self._cb.close()
            self.storage.reset_counter()
        elif mode is self.state:
            return
        elif mode is BreakerState.OPEN:
            self._cb.open()
        else:
            self._cb.half_open()
