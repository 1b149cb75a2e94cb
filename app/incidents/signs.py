"""What a factory event means for incidents: a sign of a fault, or a chance to close.

The recorder (recorder.py) asks these of every factory event; the report (report.py)
names an incident's trigger with TRIGGERS.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models import EventKind, FactoryEvent
from clients.breaker import BreakerState

_NOT_CLOSED = {BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.FORCED_OPEN}
TRIGGERS = {
    "breaker": "the circuit breaker left closed",
    "link": "the factory sent a remediation link",
    "unauthorized": "the factory refused our API key",
    "chaos": "the factory reports chaos",
}


@dataclass(frozen=True, slots=True)
class Conditions:
    """What this replica knows now about the factory (FactoryOps.conditions)."""

    breaker: BreakerState
    config_fault: str | None = None
    last_failure: str | None = None  # "outcome: reason" of the last failed call
    chaos: str | None = None  # the chaos the vendor record reports, scheduled or running

    @property
    def healthy(self) -> bool:
        return (
            self.breaker is BreakerState.CLOSED and self.config_fault is None and self.chaos is None
        )


def breaker_change(event: FactoryEvent) -> tuple[BreakerState, BreakerState] | None:
    """The breaker event's two states, from its typed fields."""
    if event.kind != EventKind.BREAKER or not (event.breaker_from and event.breaker_to):
        return None
    try:
        return BreakerState(event.breaker_from), BreakerState(event.breaker_to)
    except ValueError:
        return None  # a state a newer release knows


def fault_sign(event: FactoryEvent) -> str | None:
    """The trigger this event is a sign of, if it is one."""
    if event.kind == EventKind.LINK_DETECTED:
        return "link"
    if event.kind == EventKind.CONFIG_FAULT:
        return "unauthorized"
    if event.kind == EventKind.CHAOS_REPORTED:
        # Running: a fault. Scheduled: an announcement, paged ahead of time all the same.
        return "chaos"
    change = breaker_change(event)
    if change is not None and change[1] in _NOT_CLOSED:
        return "breaker"
    return None


_CLOSING_KINDS = (
    EventKind.REMEDIATION,
    EventKind.CONFIG_FAULT_CLEARED,
    EventKind.OPERATOR,
    EventKind.LINKS_CLEARED,
    EventKind.CHAOS_CLEARED,
)


def may_close(event: FactoryEvent) -> bool:
    """Whether the incident may be over after this event (the conditions then decide)."""
    if event.kind == EventKind.BREAKER:
        change = breaker_change(event)
        return change is not None and change[1] is BreakerState.CLOSED
    return event.kind in _CLOSING_KINDS


def fault_text(event: FactoryEvent, conditions: Conditions) -> str:
    """What the factory answered, as far as the service can tell (the report's root cause)."""
    change = breaker_change(event)
    forced = change is not None and change[1] is BreakerState.FORCED_OPEN
    if conditions.last_failure and not forced:
        return f"{event.detail}; last failed call: {conditions.last_failure}"
    return event.detail
