"""What the breaker is and what it says about one call: its states, the refusal, the
ticket an admitted call carries, and the verdict its outcome gives.

The verdict is kept apart from counting on purpose: it is the one place that decides
which outcomes move the breaker at all (a REJECTED order or a block left without a
record counts as nothing, which pybreaker alone would call a success).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Admission:
    """How a call was let in, which decides whether its outcome still counts: an outcome
    from before a later transition or remediation says nothing about the factory now."""

    admitted_as: BreakerState  # CLOSED, HALF_OPEN (the probe) or FORCED_CLOSED
    epoch: int = 0  # the breaker's epoch then (see clients/breaker/machine.py)
    token: str = ""  # the probe's token, here and in Redis ("" for any other call)


class Ticket:
    """One admitted call. ``record()`` its outcome before the ``guard()`` block ends."""

    __slots__ = ("admission", "outcome", "version")

    def __init__(self, admission: Admission, version: int | None = None) -> None:
        self.admission = admission
        self.outcome: Outcome | None = None
        self.version = version  # the shared version then (None: not known)

    @property
    def probe(self) -> str | None:
        """The probe's token, if this call is the half-open probe."""
        return (
            self.admission.token if self.admission.admitted_as is BreakerState.HALF_OPEN else None
        )

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
