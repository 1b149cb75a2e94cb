"""The factory breaker itself: admission, guarding a call, settling its outcome, operator
actions, and keeping our copy in step with the replicas'.

Every change of state is an event handed to one pure transition function
(clients/breaker/machine.py); this module does the I/O around it. Admission is ours
(pybreaker's open state would let *every* caller through once the reset timeout has
passed, so we refuse open calls and let exactly one probe in); counting is pybreaker's
(clients/breaker/counting.py); sharing is Redis's (clients/breaker/shared.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from clients.breaker.machine import (
    CallFailed,
    CallSucceeded,
    Confirmed,
    Copied,
    Event,
    OperatorForced,
    ProbeClaimed,
    ProbeReleased,
    Remediated,
    ResetTimeoutElapsed,
    Unconfirmed,
)
from clients.breaker.readings import BreakerReadings
from clients.breaker.shared import PROBE_TTL_S, RedisShare, SharedState, Written
from clients.breaker.state import Admission, BreakerState, Forced, Ticket, verdict
from clients.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

REFRESH_PERIOD_S = 0.25
# A lost compare-and-set means another replica moved first; an operator action looks again.
CAS_ATTEMPTS = 3


class FactoryBreaker(BreakerReadings):
    """Guards factory calls; see the package docstring (clients/breaker/) for the
    semantics. ``clock`` is the one time it reads (a test moves a manual one)."""

    def __init__(
        self,
        *,
        fail_max: int = 5,
        reset_timeout_s: float = 30.0,
        redis_url: str | None = None,
        name: str = "factory",
        probe_ttl_s: float = PROBE_TTL_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(name=name, clock=clock, fail_max=fail_max, reset_timeout_s=reset_timeout_s)
        # Serialises transitions and Redis refreshes; the closed path never takes it.
        self._lock = asyncio.Lock()
        self._share = RedisShare(
            redis_url, name, probe_ttl_s, on_down=lambda: self._apply(Unconfirmed())
        )
        self._refresher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis and keep our copy refreshed; a no-op in memory."""
        if not self._share.connect():
            return
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever(), name=f"breaker-{self._name}")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._share.disconnect()

    async def refresh(self) -> None:
        """Adopt the shared state from Redis (the background task calls this periodically)."""
        # Probe outside the lock: a Redis that hangs must not hold up transitions.
        if not await self._share.reconnect():
            return
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_PERIOD_S)
            await self.refresh()
            await self.renew_probe()

    @property
    def shared(self) -> bool:
        """Whether our copy is in step with the other replicas' through Redis now (False
        without Redis, or while it is away: then each replica decides on its own)."""
        return self._share.active

    async def renew_probe(self) -> None:
        """Our probe's call is still running: keep the shared probe key ours."""
        if self._state.probe is not None:
            await self._share.renew_probe(self._state.probe)

    # -- guarding a call -------------------------------------------------------------------

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[Ticket]:
        """Let one factory call through, or raise CallRefused at once.

        The block's recorded outcome counts (a failure, a success, or nothing for
        REJECTED). Without a record, an exception escaping the block counts as a failure
        and a normal exit as nothing. Cancellation counts nothing, whatever was recorded.
        """
        ticket = await self._admit()
        try:
            try:
                yield ticket
            except Exception:
                await self._settle(ticket, verdict(ticket.outcome, raised=True))
                raise
            await self._settle(ticket, verdict(ticket.outcome, raised=False))
        finally:
            # Cancelled (here or while settling): free the probe, count nothing.
            self._drop_probe(ticket)

    async def _admit(self) -> Ticket:
        state = self._state
        reading = state.reads_as(self._clock.now())
        if reading is BreakerState.FORCED_CLOSED:
            return Ticket(Admission(reading))
        if reading is BreakerState.CLOSED:
            return Ticket(Admission(reading, epoch=state.epoch), state.version)
        if reading is not BreakerState.HALF_OPEN or state.probe is not None:
            self._refuse(reading)  # open, forced open, or the probe is out
        # A probe is due and none is out: claim it before any await, so that concurrent
        # callers are refused at once instead of queueing behind this one.
        token = secrets.token_hex(8)
        self._apply(ProbeClaimed(token))
        ticket = Ticket(Admission(BreakerState.HALF_OPEN, token=token))
        try:
            if await self._take_probe(token):
                return ticket
        except BaseException:
            self._drop_probe(ticket)
            raise
        self._apply(ProbeReleased(token))
        self._refuse(self.state)

    async def _take_probe(self, token: str) -> bool:
        """Half-open the breaker if still open (the reset timeout has passed), then take
        the replicas' one probe; False if another caller or replica has it."""
        if self._state.current is BreakerState.OPEN:
            async with self._lock:
                await self._decide(ResetTimeoutElapsed())
        state = self._state
        if state.current is not BreakerState.HALF_OPEN or state.probe != token:
            return False
        return await self._share.take_probe(token)

    async def _settle(self, ticket: Ticket, failure: bool | None) -> None:
        """Hand a call's outcome to the breaker (``failure`` None: it counts as nothing)."""
        if failure is None:
            await self._release_probe(ticket)
        elif self._may_move(ticket, failure):
            async with self._lock:
                if await self._count(ticket, failure):
                    admission = ticket.admission
                    trips = self._counter.state is BreakerState.OPEN
                    await self._decide(
                        CallFailed(admission, trips) if failure else CallSucceeded(admission)
                    )

    def _may_move(self, ticket: Ticket, failure: bool) -> bool:
        """The check without the lock: an outcome from before a later decision or under
        forced closed moves nothing, nor does a closed call's success with no failure to
        reset (the hot path: no lock and no Redis)."""
        admission = ticket.admission
        if not self._state.counts(admission):
            return False
        return (
            failure or admission.admitted_as is not BreakerState.CLOSED or self._counter.count > 0
        )

    async def _count(self, ticket: Ticket, failure: bool) -> bool:
        """Count the outcome (pybreaker, and Redis for a closed call); False if it no
        longer counts (a decision was made meanwhile, here or on another replica)."""
        if not self._state.counts(ticket.admission):
            return False
        closed = ticket.admission.admitted_as is BreakerState.CLOSED
        if closed and not await self._count_shared(ticket, failure):
            return False
        self._counter.feed(failure, ticket.outcome)
        return True

    async def _release_probe(self, ticket: Ticket) -> None:
        """A probe that counts as nothing frees its slot for the next caller."""
        token = ticket.probe
        if token is not None and self._state.probe == token:
            await self._share.release_probe(token)
            # After: if cancelled meanwhile, _drop_probe releases it again.
            self._apply(ProbeReleased(token))

    async def _count_shared(self, ticket: Ticket, failure: bool) -> bool:
        """Count a closed call's outcome in Redis; False if another replica has closed or
        remediated since it was admitted (then the outcome is stale and we adopt that)."""
        if not self._share.active:
            return True
        if not failure:
            await self._share.reset_failures()
            return True
        count = await self._share.count_failure(ticket.version)
        if count is None:
            return True  # Redis down: counted in this process only
        if count < 0:
            await self._refresh_locked()
            return False
        self._counter.set_count(count - 1)  # pybreaker adds this one
        return True

    def _drop_probe(self, ticket: Ticket) -> None:
        token = ticket.probe
        if token is None or self._state.probe != token:
            return
        self._apply(ProbeReleased(token))
        if self._share.shared:
            task = asyncio.create_task(self._share.release_probe(token))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- operator actions ------------------------------------------------------------------

    async def force(self, mode: Literal["open", "closed", "auto"]) -> None:
        """Force open or closed until handed back with "auto" (which resumes closed)."""
        target: Forced | None = None if mode == "auto" else mode
        async with self._lock:
            await self._refresh_locked()  # act on the shared state, not on a stale copy
            if not await self._decide_against_replicas(OperatorForced(target)):
                log.warning("breaker %s: force(%s) kept losing to other replicas", self._name, mode)

    async def half_open(self) -> None:
        """Remediation succeeded here: if automatic and open, let a probe in now.

        If a probe admitted during the fault is still in flight, it is retired: its
        failure says nothing about the factory now and must not re-open the breaker, and
        the next caller may probe at once. If closed, the failure count starts afresh and
        the calls still in flight from before (on any replica) no longer count.
        """
        await self._remediation(Remediated())

    async def remediated(self, at: datetime) -> None:
        """A remediation succeeded at ``at``, on this replica or on another (the database
        knows every one): if that is newer than the last decision this breaker reflects,
        act on it as `half_open()` does; if not, the breaker has decided since (a probe
        after it failed, an operator) and that decision stands."""
        await self._remediation(Remediated(at))

    async def _remediation(self, event: Remediated) -> None:
        async with self._lock:
            await self._refresh_locked()
            await self._decide_against_replicas(event)

    # -- deciding, and keeping our copy in step with the shared one -------------------------

    async def _decide_against_replicas(self, event: Event) -> bool:
        """An operator's or a remediation's decision: if another replica moved first, it
        is weighed again against theirs. False if it kept losing."""
        for _ in range(CAS_ATTEMPTS):
            if await self._decide(event) is not False:
                return True
        return False

    async def _decide(self, event: Event) -> bool | None:
        """Apply ``event`` here; if that decided something, make it the replicas' and
        announce it. None: nothing decided; True: ours stands; False: another replica
        moved first, and its state was adopted (and announced, with origin=False)."""
        before = self._state
        after = self._apply(event)
        if after.epoch == before.epoch:
            if before.probe is not None and after.probe is None:  # retired by a remediation
                await self._share.release_probe(before.probe)
            return None
        origin = True
        if self._share.active:
            # Until the answer is in, our copy is unconfirmed: if this await is cancelled,
            # the next refresh weighs it against whatever Redis holds.
            self._apply(Unconfirmed())
            landed = await self._share.transition(before.version, self._written())
            if landed == 0:
                origin = False
                await self._pull()
            elif landed is not None:  # None: Redis down, each replica on its own
                self._apply(Confirmed(landed))
        self._emit(before.current, self._state.current, origin)
        return origin

    def _written(self) -> Written:
        state = self._state
        return Written(state.mode, state.forced, state.opened_at, state.since, state.decided_at)

    async def _refresh_locked(self) -> None:
        before = self._state.current
        await self._pull()
        self._emit(before, self._state.current, False)

    async def _pull(self) -> None:
        """Adopt Redis's state into our copy: Redis is authoritative, but when our copy
        lost track of it (Redis away, restarted or flushed) the newer decision of the two
        wins, ours or Redis's, whichever copy reaches Redis first."""
        for _ in range(CAS_ATTEMPTS):
            shared = await self._share.read()
            if shared is None:
                return
            if not self._state.outranks(shared):
                if self._apply(Copied(shared)).current is BreakerState.CLOSED:
                    self._counter.set_count(shared.failures)
                return
            if await self._write_back(shared):
                return
        # Other replicas kept writing first: weighed again at the next refresh.

    async def _write_back(self, shared: SharedState) -> bool:
        """Write our newer decision over Redis's (an open breaker kept open across a Redis
        restart, a remediation made while Redis was away kept). False if another replica
        wrote first: Redis is then read and weighed again."""
        landed = await self._share.transition(shared.version, self._written())
        if landed == 0:
            return False
        if landed is not None:  # None: Redis failed again; ours stands until it is back
            self._apply(Confirmed(landed))
            log.info(
                "breaker %s: Redis held an older decision than ours; wrote back %s (%s)",
                self._name,
                self.state,
                self._state.decided_at,
            )
        return True
