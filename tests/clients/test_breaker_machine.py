"""The breaker's transitions, as a table: (state before, event, when, state after).

Every event the breaker handles goes through ``transition()`` (clients/breaker/machine.py);
these rows walk it through each state that matters (closed, open before and after its
reset timeout, half-open with and without the probe out, forced open, forced closed, a
copy Redis lost track of) and each event. Time is a manual clock moved to the row's
moment, never slept through.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from clients.breaker.machine import (
    CallFailed,
    CallSucceeded,
    CircuitState,
    Confirmed,
    Copied,
    Event,
    OperatorForced,
    ProbeClaimed,
    ProbeReleased,
    Remediated,
    ResetTimeoutElapsed,
    Unconfirmed,
    transition,
)
from clients.breaker.shared import SharedState
from clients.breaker.state import Admission, BreakerState
from tests.utils.clock import ManualClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
FORCED_CLOSED = BreakerState.FORCED_CLOSED
T0 = datetime(2024, 12, 5, 11, 49, tzinfo=UTC)
RESET_S = 30
EPOCH = 3


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# The states before: each last decided at T0, at epoch 3, confirmed by Redis at version 7.
closed = CircuitState(
    reset_timeout=timedelta(seconds=RESET_S), since=T0, decided_at=T0, epoch=EPOCH, version=7
)
opened = replace(closed, mode=OPEN, opened_at=T0)
half_open = replace(closed, mode=HALF_OPEN)
probing = replace(half_open, probe="probe-1")
forced_open = replace(closed, forced="open")
forced_closed = replace(closed, forced="closed")

# How calls were admitted.
CLOSED_CALL = Admission(CLOSED, epoch=EPOCH)
CLOSED_CALL_FROM_BEFORE = Admission(CLOSED, epoch=EPOCH - 1)
THE_PROBE = Admission(HALF_OPEN, token="probe-1")
A_RETIRED_PROBE = Admission(HALF_OPEN, token="probe-0")
FORCED_CLOSED_CALL = Admission(FORCED_CLOSED)


def decided(before: CircuitState, seconds: float, **changes: object) -> CircuitState:
    """``before`` with ``changes``, decided at T0 + ``seconds`` (the next epoch)."""
    return replace(before, decided_at=at(seconds), epoch=EPOCH + 1, **changes)  # type: ignore[arg-type]


def shared(
    state: BreakerState, version: int, decided_s: float | None, forced: str = ""
) -> SharedState:
    """What Redis holds: ``decided_s`` seconds after T0 (None: nothing ever written)."""
    fields = {"state": state.value, "forced": forced, "version": str(version)}
    if decided_s is not None:
        stamp = str(at(decided_s).timestamp())
        fields |= {"since": stamp, "decided_at": stamp, "opened_at": stamp}
    return SharedState.parse(fields, "2")


ROWS: list[tuple[str, CircuitState, Event, float, CircuitState]] = [
    # -- a closed call's outcome --
    (
        "closed, a failure short of fail_max",
        closed,
        CallFailed(CLOSED_CALL, trips=False),
        5,
        closed,
    ),
    (
        "closed, the failure that trips",
        closed,
        CallFailed(CLOSED_CALL, trips=True),
        5,
        decided(closed, 5, mode=OPEN, opened_at=at(5), since=at(5)),
    ),
    ("closed, a success", closed, CallSucceeded(CLOSED_CALL), 5, closed),
    (
        "closed, a failure admitted before the last decision",
        closed,
        CallFailed(CLOSED_CALL_FROM_BEFORE, trips=True),
        5,
        closed,
    ),
    ("open, a late closed call's failure", opened, CallFailed(CLOSED_CALL, trips=True), 5, opened),
    (
        "forced closed, failures count for nothing",
        forced_closed,
        CallFailed(FORCED_CLOSED_CALL, trips=True),
        5,
        forced_closed,
    ),
    (
        "forced open, a closed call from before",
        forced_open,
        CallFailed(CLOSED_CALL, trips=True),
        5,
        forced_open,
    ),
    # -- the reset timeout and the probe --
    ("open, a probe before the reset timeout", opened, ProbeClaimed("p"), RESET_S - 1, opened),
    (
        "open, a probe once the reset timeout passed",
        opened,
        ProbeClaimed("p"),
        RESET_S,
        replace(opened, probe="p"),
    ),
    ("open, not yet due", opened, ResetTimeoutElapsed(), RESET_S - 1, opened),
    (
        "open, due: half-open",
        opened,
        ResetTimeoutElapsed(),
        RESET_S,
        decided(opened, RESET_S, mode=HALF_OPEN, since=at(RESET_S)),
    ),
    (
        "open with its probe claimed, due: half-open, the probe kept",
        replace(opened, probe="p"),
        ResetTimeoutElapsed(),
        RESET_S,
        decided(opened, RESET_S, mode=HALF_OPEN, since=at(RESET_S), probe="p"),
    ),
    (
        "half-open, no probe out: claimed",
        half_open,
        ProbeClaimed("p"),
        5,
        replace(half_open, probe="p"),
    ),
    ("half-open, the probe out: one probe only", probing, ProbeClaimed("p"), 5, probing),
    ("forced open, never a probe", forced_open, ProbeClaimed("p"), 100 * RESET_S, forced_open),
    (
        "forced open, never half-open",
        forced_open,
        ResetTimeoutElapsed(),
        100 * RESET_S,
        forced_open,
    ),
    ("closed, no reset timeout", closed, ResetTimeoutElapsed(), 100 * RESET_S, closed),
    (
        "half-open, the probe succeeds",
        probing,
        CallSucceeded(THE_PROBE),
        35,
        decided(probing, 35, mode=CLOSED, since=at(35), probe=None),
    ),
    (
        "half-open, the probe fails (or is slow)",
        probing,
        CallFailed(THE_PROBE, trips=False),
        35,
        decided(probing, 35, mode=OPEN, since=at(35), opened_at=at(35), probe=None),
    ),
    (
        "half-open, a retired probe fails",
        probing,
        CallFailed(A_RETIRED_PROBE, trips=True),
        35,
        probing,
    ),
    ("half-open, a retired probe succeeds", probing, CallSucceeded(A_RETIRED_PROBE), 35, probing),
    (
        "half-open, the probe counts nothing",
        probing,
        ProbeReleased("probe-1"),
        35,
        replace(probing, probe=None),
    ),
    ("half-open, another's probe released", probing, ProbeReleased("probe-0"), 35, probing),
    # -- an operator --
    (
        "closed, forced open",
        closed,
        OperatorForced("open"),
        5,
        decided(closed, 5, forced="open", since=at(5)),
    ),
    (
        "open, forced closed",
        opened,
        OperatorForced("closed"),
        5,
        decided(opened, 5, mode=CLOSED, forced="closed", since=at(5)),
    ),
    (
        "half-open with a probe out, forced open: the probe is retired",
        probing,
        OperatorForced("open"),
        5,
        decided(probing, 5, mode=CLOSED, forced="open", since=at(5), probe=None),
    ),
    (
        "forced open, handed back: closed",
        forced_open,
        OperatorForced(None),
        5,
        decided(forced_open, 5, forced=None, since=at(5)),
    ),
    ("forced open, forced open again", forced_open, OperatorForced("open"), 5, forced_open),
    ("closed, handed back while automatic", closed, OperatorForced(None), 5, closed),
    # -- a remediation --
    (
        "open, remediated here: half-open at once",
        opened,
        Remediated(),
        5,
        decided(opened, 5, mode=HALF_OPEN, since=at(5)),
    ),
    (
        "closed, remediated here: a fresh count, since kept",
        closed,
        Remediated(),
        5,
        decided(closed, 5),
    ),
    (
        "half-open with a probe out, remediated: the probe is retired",
        probing,
        Remediated(),
        5,
        replace(probing, probe=None),
    ),
    ("half-open without a probe, remediated", half_open, Remediated(), 5, half_open),
    (
        "forced open, remediated: the operator's decision stands",
        forced_open,
        Remediated(),
        5,
        forced_open,
    ),
    (
        "open, remediated on another replica after it opened",
        opened,
        Remediated(at(2)),
        5,
        decided(opened, 5, mode=HALF_OPEN, since=at(5)),
    ),
    (
        "open, remediated on another replica before it opened",
        opened,
        Remediated(at(-1)),
        5,
        opened,
    ),
    # -- a copy from Redis --
    (
        "closed, another replica opened it",
        closed,
        Copied(shared(OPEN, 8, 3)),
        5,
        replace(
            closed,
            mode=OPEN,
            opened_at=at(3),
            since=at(3),
            decided_at=at(3),
            epoch=EPOCH + 1,
            version=8,
        ),
    ),
    (
        "closed, another replica forced it open",
        closed,
        Copied(shared(CLOSED, 8, 3, forced="open")),
        5,
        replace(
            closed,
            forced="open",
            opened_at=at(3),
            since=at(3),
            decided_at=at(3),
            epoch=EPOCH + 1,
            version=8,
        ),
    ),
    ("closed, Redis holds what we hold", closed, Copied(shared(OPEN, 7, 3)), 5, closed),
    (
        "half-open with our probe out, the replicas' half-open: the probe kept",
        probing,
        Copied(shared(HALF_OPEN, 8, 3)),
        5,
        replace(
            probing, since=at(3), opened_at=at(3), decided_at=at(3), epoch=EPOCH + 1, version=8
        ),
    ),
    (
        "half-open with our probe out, the replicas' open: the probe is retired",
        probing,
        Copied(shared(OPEN, 8, 3)),
        5,
        replace(
            probing,
            mode=OPEN,
            probe=None,
            since=at(3),
            opened_at=at(3),
            decided_at=at(3),
            epoch=EPOCH + 1,
            version=8,
        ),
    ),
    (
        "in step with Redis, which is authoritative even over a later decision of ours",
        replace(closed, decided_at=at(20)),
        Copied(shared(OPEN, 8, 10)),
        25,
        replace(
            closed,
            mode=OPEN,
            opened_at=at(10),
            since=at(10),
            decided_at=at(10),
            epoch=EPOCH + 1,
            version=8,
        ),
    ),
    (
        "lost track, Redis emptied: ours stands (it is written back)",
        replace(opened, version=None, decided_at=at(20)),
        Copied(shared(CLOSED, 0, None)),
        25,
        replace(opened, version=None, decided_at=at(20)),
    ),
    (
        "Redis flushed and refilled with an older decision: ours stands",
        replace(opened, decided_at=at(20)),
        Copied(shared(CLOSED, 1, 10)),
        25,
        replace(opened, decided_at=at(20)),
    ),
    (
        "lost track, Redis holds a newer decision: adopted",
        replace(opened, version=None, decided_at=at(10)),
        Copied(shared(CLOSED, 1, 20)),
        25,
        replace(
            opened,
            mode=CLOSED,
            version=1,
            since=at(20),
            opened_at=at(20),
            decided_at=at(20),
            epoch=EPOCH + 1,
        ),
    ),
    (
        "lost track, nothing decided here: Redis's adopted",
        replace(closed, version=None, decided_at=None),
        Copied(shared(OPEN, 1, 3)),
        5,
        replace(
            closed,
            mode=OPEN,
            version=1,
            since=at(3),
            opened_at=at(3),
            decided_at=at(3),
            epoch=EPOCH + 1,
        ),
    ),
    ("Redis failed us: unconfirmed", closed, Unconfirmed(), 5, replace(closed, version=None)),
    (
        "our write landed",
        replace(closed, version=None),
        Confirmed(9),
        5,
        replace(closed, version=9),
    ),
]


@pytest.mark.parametrize(
    ("before", "event", "seconds", "after"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_transition(
    before: CircuitState, event: Event, seconds: float, after: CircuitState
) -> None:
    clock = ManualClock(T0)
    clock.advance(seconds)
    assert transition(before, event, clock.now()) == after


@pytest.mark.parametrize(
    ("state", "reads_as"),
    [
        (closed, CLOSED),
        (opened, OPEN),
        (half_open, HALF_OPEN),
        (forced_open, BreakerState.FORCED_OPEN),
        (forced_closed, FORCED_CLOSED),
    ],
    ids=str,
)
def test_a_state_reads_as_its_mode_or_forcing(state: CircuitState, reads_as: BreakerState) -> None:
    assert state.reads_as(T0) is reads_as


def test_an_open_breaker_reads_half_open_once_the_reset_timeout_passed() -> None:
    clock = ManualClock(T0)
    clock.advance(RESET_S - 0.001)
    assert opened.reads_as(clock.now()) is OPEN
    clock.advance(0.001)
    assert opened.reads_as(clock.now()) is HALF_OPEN
