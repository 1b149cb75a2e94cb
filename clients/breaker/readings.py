"""What the breaker says about itself: its state, since when, when a probe is due, and
who hears of its transitions and refusals. Admission and sharing build on this
(clients/breaker/breaker.py). The state moves in one place, :meth:`BreakerReadings._apply`,
which hands each event to the transition function (clients/breaker/machine.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn

from clients.breaker.counting import Counter
from clients.breaker.machine import CircuitState, Event, transition
from clients.breaker.state import BreakerState, CallRefused, TransitionListener
from clients.clock import Clock

log = logging.getLogger(__name__)


class BreakerReadings:
    """The breaker's state as this process holds it (one value, moved only by
    :meth:`_apply`), pybreaker's failure count, and the listeners."""

    def __init__(self, *, name: str, clock: Clock, fail_max: int, reset_timeout_s: float) -> None:
        self._name = name
        self._clock = clock
        self._counter = Counter(fail_max=fail_max, reset_timeout_s=reset_timeout_s, name=name)
        self._state = CircuitState(
            reset_timeout=timedelta(seconds=reset_timeout_s), since=clock.now()
        )
        self._listeners: list[TransitionListener] = []
        self._refused_listeners: list[Callable[[], None]] = []

    def _apply(self, event: Event) -> CircuitState:
        """The one way the state moves; pybreaker's mode follows each decision (a fresh
        count whenever it lands closed)."""
        before = self._state
        after = self._state = transition(before, event, self._clock.now())
        if after.epoch != before.epoch:
            self._counter.follow(after.mode)
        return after

    # -- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; OPEN reads HALF_OPEN once the reset timeout has passed."""
        return self._state.reads_as(self._clock.now())

    @property
    def since(self) -> datetime:
        """UTC time of the last transition (for an elapsed OPEN, when the probe became due)."""
        state = self._state
        if state.reads_as(self._clock.now()) is not state.current and state.opened_at:
            return state.opened_at + state.reset_timeout
        return state.since

    @property
    def forced(self) -> bool:
        return self._state.forced is not None

    def probe_due_in_s(self) -> float | None:
        """Seconds until an automatic, open breaker lets a probe in (0: now); None when it
        is not open or is forced (then only a transition or an operator changes it)."""
        state = self._state
        if state.current is not BreakerState.OPEN:
            return None
        if state.opened_at is None:
            return 0.0
        due = state.opened_at + state.reset_timeout
        return max((due - self._clock.now()).total_seconds(), 0.0)

    # -- listeners -------------------------------------------------------------------------

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(old, new, origin)`` on each transition this process makes or sees.

        ``origin`` is True only in the process that made it: record it there, once.
        """
        self._listeners.append(listener)

    def add_refused_listener(self, listener: Callable[[], None]) -> None:
        self._refused_listeners.append(listener)

    def _emit(self, old: BreakerState, new: BreakerState, origin: bool) -> None:
        if old is new:
            return
        log.info("breaker %s: %s -> %s (origin=%s)", self._name, old, new, origin)
        for listener in self._listeners:
            try:
                listener(old, new, origin)
            except Exception:
                # A broken metrics listener must not fail the order that caused the event.
                log.exception("breaker %s: transition listener failed", self._name)

    def _refuse(self, state: BreakerState) -> NoReturn:
        self.count_refused()
        raise CallRefused(state)

    def refuses(self) -> bool:
        """Would a call be refused now, without a probe being claimed? (open, forced open,
        or the half-open probe already out). A caller that then skips the call reports it
        with `count_refused()`, as `guard()` would have."""
        reading = self.state
        if reading in (BreakerState.CLOSED, BreakerState.FORCED_CLOSED):
            return False
        if reading is BreakerState.HALF_OPEN:
            return self._state.probe is not None
        return True  # open, forced open

    def count_refused(self) -> None:
        """One call refused by this breaker: the refused listeners count it."""
        for listener in self._refused_listeners:
            listener()
