"""What the breaker is and what it says about one call: its states, the refusal, the
ticket an admitted call carries, and the verdict its outcome gives (resilience.md §2).

The verdict is kept apart from counting on purpose: it is the one place that decides
which outcomes move the breaker at all (a REJECTED order or a block left without a
record counts as nothing, which pybreaker alone would call a success).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Literal

from clients.schemas import Outcome

TransitionListener = Callable[["BreakerState", "BreakerState", bool], None]
Forced = Literal["open", "closed"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


AUTOMATIC = (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN)


class CallRefused(Exception):
    """The breaker refused the call: the factory was not called."""

    def __init__(self, state: BreakerState) -> None:
        super().__init__(f"factory circuit breaker is {state}")
        self.state = state


class Ticket:
    """One admitted call. ``record()`` its outcome before the ``guard()`` block ends."""

    __slots__ = ("admitted_as", "epoch", "outcome", "token", "version")

    def __init__(
        self, admitted_as: BreakerState, token: str = "", *, epoch: int = 0, version: int = -1
    ) -> None:
        self.admitted_as = admitted_as  # CLOSED, HALF_OPEN (the probe) or FORCED_CLOSED
        self.outcome: Outcome | None = None
        self.token = token  # the probe's value in Redis
        # What the breaker was when the call was admitted: an outcome from before a later
        # transition or remediation says nothing about the factory now (it is not counted).
        self.epoch = epoch
        self.version = version  # the shared version then (-1: unknown)

    def record(self, outcome: Outcome) -> None:
        """Set the outcome the breaker counts for this call (the last one recorded wins)."""
        self.outcome = outcome


def verdict(outcome: Outcome | None, *, raised: bool) -> bool | None:
    """True: a failure; False: a success; None: counts as nothing.

    Without a recorded outcome, an exception escaping the block is a failure and a normal
    exit is nothing (the caller did not say what the factory did).
    """
    if outcome is None:
        return True if raised else None
    if outcome.counts_as_failure:
        return True
    return False if outcome.counts_as_success else None
