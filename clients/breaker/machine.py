"""The breaker's whole state as one value, and the one function that moves it.

Everything the breaker knows about itself is a :class:`CircuitState`, an immutable value;
everything that can happen to it is an event below, and ``transition(state, event, now)``
is the only place that turns a state and an event into the next state. It does no I/O and
reads no clock (``now`` is handed in), so a test walks it through every case with a few
rows of data. The breaker (clients/breaker/breaker.py) does the I/O around it: Redis,
pybreaker's failure count, the listeners.

The events:

- a call's outcome: ``CallSucceeded``, ``CallFailed`` (a slow answer is a failure too)
  and, for a probe that counts as nothing, ``ProbeReleased``;
- the half-open probe: ``ResetTimeoutElapsed`` (open -> half-open once a probe is due),
  ``ProbeClaimed``;
- an operator: ``OperatorForced`` (open, closed, or ``None`` to hand back to automatic);
- a remediation: ``Remediated`` (here and now, or one another replica made at ``at``);
- Redis: ``Copied`` (the replicas' shared state as read: adopted unless ours is a newer
  decision Redis lost track of), ``Confirmed`` (our write landed) and ``Unconfirmed``
  (Redis failed us, or our write is still on its way).

A *decision* (a change of mode or forcing, or a remediation's fresh count) stamps
``decided_at`` and moves ``epoch``; so does adopting another replica's. An outcome of a
call admitted at an older epoch says nothing about the factory now and is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from clients.breaker.shared import SharedState
from clients.breaker.state import Admission, BreakerState, Forced

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class CircuitState:
    """Everything the breaker knows; :class:`BreakerState` is what it reads as."""

    reset_timeout: timedelta  # how long an open breaker waits before a probe is due
    since: datetime  # when what it reads as last changed
    mode: BreakerState = CLOSED  # the automatic mode: CLOSED, OPEN or HALF_OPEN
    forced: Forced | None = None  # an operator's forcing, which outranks the mode
    opened_at: datetime | None = None  # when it last opened (a probe is due after that)
    # When the decision it reflects was made, here or on another replica (None: none yet).
    decided_at: datetime | None = None
    epoch: int = 0  # moves on every decision made or adopted
    probe: str | None = None  # the token of the one call let through while half-open
    # The shared version in Redis this copy reflects; None: not confirmed by Redis (it
    # failed us, or our write has not landed), so the next read weighs ours against it.
    version: int | None = 0

    @property
    def current(self) -> BreakerState:
        """The mode, or the operator's forcing when there is one."""
        if self.forced == "open":
            return BreakerState.FORCED_OPEN
        if self.forced == "closed":
            return BreakerState.FORCED_CLOSED
        return self.mode

    def probe_due(self, now: datetime) -> bool:
        return self.opened_at is None or now >= self.opened_at + self.reset_timeout

    def reads_as(self, now: datetime) -> BreakerState:
        """What callers are told: OPEN reads HALF_OPEN once the reset timeout has passed."""
        current = self.current
        if current is OPEN and self.probe_due(now):
            return HALF_OPEN
        return current

    def counts(self, admission: Admission) -> bool:
        """Whether the outcome of a call admitted so may move the breaker now: the probe
        still in office, or a closed call admitted since the last decision."""
        if admission.admitted_as is HALF_OPEN:
            return self.probe is not None and self.probe == admission.token
        if admission.admitted_as is CLOSED:
            return self.current is CLOSED and admission.epoch == self.epoch
        return False  # forced closed: outcomes do not move the breaker

    def outranks(self, shared: SharedState) -> bool:
        """Ours should be written over Redis's: our copy lost track of Redis (unconfirmed,
        or Redis restarted or was flushed: versions start again from 0) and it holds the
        newer decision."""
        lost_track = self.version is None or shared.version == 0 or shared.version < self.version
        if not lost_track or self.decided_at is None:
            return False
        return shared.decided_at is None or self.decided_at > shared.decided_at


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallSucceeded:
    admission: Admission


@dataclass(frozen=True, slots=True)
class CallFailed:
    admission: Admission
    trips: bool  # pybreaker's count reached fail_max (a probe's failure reopens regardless)


@dataclass(frozen=True, slots=True)
class ProbeClaimed:
    token: str


@dataclass(frozen=True, slots=True)
class ProbeReleased:
    token: str


@dataclass(frozen=True, slots=True)
class ResetTimeoutElapsed:
    pass


@dataclass(frozen=True, slots=True)
class OperatorForced:
    target: Forced | None  # None: back to automatic, closed with a fresh count


@dataclass(frozen=True, slots=True)
class Remediated:
    # When another replica made it (acted on only if newer than the last decision);
    # None: made here, just now.
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Copied:
    shared: SharedState


@dataclass(frozen=True, slots=True)
class Confirmed:
    version: int


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    pass


Event = (
    CallSucceeded
    | CallFailed
    | ProbeClaimed
    | ProbeReleased
    | ResetTimeoutElapsed
    | OperatorForced
    | Remediated
    | Copied
    | Confirmed
    | Unconfirmed
)


# -- the transition --------------------------------------------------------------------------


def transition(state: CircuitState, event: Event, now: datetime) -> CircuitState:
    """The state after ``event`` happened to ``state`` at ``now`` (``state`` itself when
    the event changes nothing)."""
    match event:
        case CallSucceeded(admission):
            if not state.counts(admission) or admission.admitted_as is not HALF_OPEN:
                return state  # a closed call's success only resets pybreaker's count
            return _decide(state, replace(state, mode=CLOSED), now)
        case CallFailed(admission, trips):
            if not state.counts(admission):
                return state
            if admission.admitted_as is HALF_OPEN or trips:
                return _decide(state, replace(state, mode=OPEN), now)
            return state
        case ProbeClaimed(token):
            if state.reads_as(now) is HALF_OPEN and state.probe is None:
                return replace(state, probe=token)
            return state
        case ProbeReleased(token):
            return replace(state, probe=None) if state.probe == token else state
        case ResetTimeoutElapsed():
            if state.current is OPEN and state.probe_due(now):
                return _decide(state, replace(state, mode=HALF_OPEN), now)
            return state
        case OperatorForced(target):
            if state.forced == target:
                return state
            return _decide(state, replace(state, forced=target, mode=CLOSED), now)
        case Remediated(at):
            return _remediated(state, at, now)
        case Copied(shared):
            return _copied(state, shared)
        case Confirmed(version):
            return replace(state, version=version)
        case Unconfirmed():
            return replace(state, version=None)


def _decide(state: CircuitState, changed: CircuitState, now: datetime) -> CircuitState:
    """``state`` becomes ``changed`` by a decision made here at ``now``: stamped, a new
    epoch, ``since`` and ``opened_at`` moved with it, the probe kept only while half-open."""
    after = replace(changed, decided_at=now, epoch=state.epoch + 1)
    if after.current is not state.current:  # a remediation's fresh count keeps `since`
        after = replace(after, since=now)
    if after.current is OPEN:
        after = replace(after, opened_at=now)
    if after.current is not HALF_OPEN:
        after = replace(after, probe=None)
    return after


def _remediated(state: CircuitState, at: datetime | None, now: datetime) -> CircuitState:
    """The factory was fixed: let a probe in now if open (retiring a probe sent during
    the fault), count afresh if closed; an operator's forcing stands."""
    if at is not None and state.decided_at is not None and at <= state.decided_at:
        return state  # decided since (a probe after it failed, an operator): that stands
    current = state.current
    if current is HALF_OPEN and state.probe is not None:
        return replace(state, probe=None)
    if current is CLOSED:
        return _decide(state, replace(state, mode=CLOSED), now)
    if current is OPEN:
        return _decide(state, replace(state, mode=HALF_OPEN), now)
    return state


def _copied(state: CircuitState, shared: SharedState) -> CircuitState:
    """Adopt the replicas' state, unless ours is the newer decision Redis lost track of
    (then the breaker writes ours back) or it is the one our copy already reflects."""
    if state.outranks(shared) or shared.version == state.version:
        return state
    adopted = CircuitState(
        reset_timeout=state.reset_timeout,
        since=shared.since or state.since,
        mode=shared.state,
        forced=shared.forced,
        opened_at=shared.opened_at or state.opened_at,
        decided_at=shared.decided_at,
        epoch=state.epoch + 1,
        probe=state.probe,
        version=shared.version,
    )
    if adopted.current is not HALF_OPEN:
        adopted = replace(adopted, probe=None)
    return adopted
