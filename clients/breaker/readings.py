"""What the breaker says about itself: its state, since when, when a probe is due, and
who hears of its transitions and refusals. Admission and sharing build on this
(clients/breaker/breaker.py); nothing here changes the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn

from clients.breaker.counting import Counter
from clients.breaker.state import BreakerState, CallRefused, Forced, Ticket, TransitionListener
from clients.clock import Clock

log = logging.getLogger(__name__)


class BreakerReadings:
    """The breaker's state as this process holds it, and its listeners."""

    def __init__(self, *, name: str, clock: Clock, fail_max: int, reset_timeout_s: float) -> None:
        self._name = name
        self._clock = clock
        self._reset_timeout = timedelta(seconds=reset_timeout_s)
        self._counter = Counter(fail_max=fail_max, reset_timeout_s=reset_timeout_s, name=name)
        self._storage = self._counter.storage
        self._forced: Forced | None = None
        self._since = clock.now()
        # When the decision our state reflects was made: a transition or remediation made
        # here, an operator's, or one adopted from the replicas (None: none yet). After a
        # Redis loss the newest decision is the one the replicas agree on.
        self._decided_at: datetime | None = None
        self._probe: Ticket | None = None  # the one call let through while half-open
        self._listeners: list[TransitionListener] = []
        self._refused_listeners: list[Callable[[], None]] = []

    # -- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; OPEN reads HALF_OPEN once the reset timeout has passed."""
        current = self._current()
        if current is BreakerState.OPEN and self._probe_due():
            return BreakerState.HALF_OPEN
        return current

    @property
    def since(self) -> datetime:
        """UTC time of the last transition (for an elapsed OPEN, when the probe became due)."""
        opened_at = self._storage.opened_at
        if self._current() is BreakerState.OPEN and opened_at is not None and self._probe_due():
            return opened_at + self._reset_timeout
        return self._since

    @property
    def forced(self) -> bool:
        return self._forced is not None

    def _current(self) -> BreakerState:
        if self._forced == "open":
            return BreakerState.FORCED_OPEN
        if self._forced == "closed":
            return BreakerState.FORCED_CLOSED
        return self._counter.state

    def probe_due_in_s(self) -> float | None:
        """Seconds until an automatic, open breaker lets a probe in (0: now); None when it
        is not open or is forced (then only a transition or an operator changes it)."""
        if self._forced is not None or self._current() is not BreakerState.OPEN:
            return None
        opened_at = self._storage.opened_at
        if opened_at is None:
            return 0.0
        return max((opened_at + self._reset_timeout - self._clock.now()).total_seconds(), 0.0)

    def _probe_due(self) -> bool:
        opened_at = self._storage.opened_at
        return opened_at is None or self._clock.now() >= opened_at + self._reset_timeout

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
        if self._forced is not None:
            return self._forced == "open"
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        return state is BreakerState.OPEN or self._probe is not None

    def count_refused(self) -> None:
        """One call refused by this breaker: the refused listeners count it."""
        for listener in self._refused_listeners:
            listener()
